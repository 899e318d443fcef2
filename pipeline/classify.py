"""Any error as shoplake's typed error, decided by the error code each client library gives.

The CLI's one handler and the Step Functions workers call `typed_error` on whatever
escaped: shoplake's own errors pass through, a MySQL, PostgreSQL or AWS client error
becomes the matching terminal or transient error (naming the service, with what to do),
and anything else is left as it is (None): a bug, reported as unexpected.
"""

from __future__ import annotations

import psycopg2
import pymysql
from botocore.exceptions import BotoCoreError, ClientError

from pipeline.aws.errors import translate as translate_aws
from pipeline.config import Settings
from pipeline.errors import ShoplakeError


def typed_error(exc: BaseException, settings: Settings | None = None) -> ShoplakeError | None:
    """`exc` as a ShoplakeError, or None when no library code classifies it."""
    if isinstance(exc, ShoplakeError):
        return exc
    if isinstance(exc, pymysql.err.Error):
        from pipeline.source.db import translate

        return translate(exc, None)
    if isinstance(exc, psycopg2.Error):
        from pipeline.warehouse.errors import from_psycopg

        return _as_shoplake(from_psycopg(exc, "a warehouse statement"))
    from pipeline.glue.errors import is_spark_error

    if is_spark_error(exc) and settings is not None:
        from pipeline.glue.errors import translate as translate_spark

        return translate_spark(exc, settings)
    if isinstance(exc, BotoCoreError | ClientError):
        endpoint = settings.localstack.endpoint_url if settings else "the AWS endpoint"
        return translate_aws(exc, endpoint, settings.localstack.port if settings else None)
    return None


def _as_shoplake(exc: Exception) -> ShoplakeError | None:
    return exc if isinstance(exc, ShoplakeError) else None
