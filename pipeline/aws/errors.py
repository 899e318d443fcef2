"""botocore's errors as shoplake's typed errors: an unreachable endpoint is transient, a
refused request is terminal unless AWS's error code says a retry may succeed."""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from pipeline.errors import ServiceUnavailableError, ShoplakeError, TerminalError

TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
    "TooManyRequestsException", "SlowDown", "ServiceUnavailable", "InternalError",
    "InternalFailure", "InternalServerError", "RequestTimeout", "RequestTimeoutException",
})
"""AWS error codes after which the same request may succeed."""

UNREACHABLE = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError,
               ReadTimeoutError)
"""Transport failures: nothing answered, or the answer never came (botocore gives these no
error code, so their classes are what tells them apart)."""


MISSING_CODES = frozenset({
    "NoSuchBucket", "NoSuchKey", "ResourceNotFoundException", "StateMachineDoesNotExist",
    "ActivityDoesNotExist", "ExecutionDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
})
"""AWS error codes for a resource that is not there: after a LocalStack restart, likely."""

PARAMETER_CODES = frozenset({
    "ValidationException", "ValidationError", "InvalidParameterValue",
    "InvalidParameterValueException", "InvalidParameterException", "InvalidRequest",
    "InvalidArgument", "ParamValidationError",
})
"""AWS error codes for a request whose parameters were refused: the message says which."""


class AwsRequestError(TerminalError):
    """An AWS API (LocalStack) refused a request: a missing bucket, a bad parameter."""

    def __init__(self, operation: str, code: str, detail: str) -> None:
        if code in MISSING_CODES:
            hint = ("check `shoplake stack status` (LocalStack forgets everything on restart: "
                    "`shoplake stack up` provisions again)")
        elif code in PARAMETER_CODES:
            hint = (f"a parameter of {operation} was refused (the message above says which): "
                    "check the value you gave; rerun with --debug to see the request")
        else:
            hint = f"rerun with --debug to see the {operation} request and the answer"
        super().__init__(f"AWS {operation} failed with `{code}`: {detail}", hint=hint)
        self.operation, self.code = operation, code


class AwsThrottledError(ServiceUnavailableError):
    """An AWS API answered that it is busy or failing for now."""


def translate(exc: BotoCoreError | ClientError, endpoint: str, port: int | None = None
              ) -> ShoplakeError:
    """The typed error for a botocore error raised talking to `endpoint`."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        operation = getattr(exc, "operation_name", "request")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in TRANSIENT_CODES or status >= 500:
            return AwsThrottledError(f"LocalStack at {endpoint} failed {operation} for now: "
                                     f"{code}", service="localstack", port=port,
                                     hint="retry; check `shoplake stack status`")
        return AwsRequestError(operation, code, str(error.get("Message", "")) or code)
    if isinstance(exc, UNREACHABLE):
        refused = isinstance(exc, EndpointConnectionError | ConnectTimeoutError)
        reason = "nothing answers" if refused else "the connection broke or timed out"
        return ServiceUnavailableError(f"LocalStack (S3, Secrets Manager, Step Functions) at "
                                       f"{endpoint} is not reachable: {reason}",
                                       service="localstack", port=port,
                                       hint="start it with `shoplake stack up`")
    from botocore.exceptions import ParamValidationError

    if isinstance(exc, ParamValidationError):  # refused before it was sent
        return AwsRequestError("request", "ParamValidationError", " ".join(str(exc).split()))
    return AwsRequestError("request", type(exc).__name__, str(exc))
