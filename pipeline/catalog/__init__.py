"""The Glue Crawler and Data Catalog stand-in.

`crawl` scans bronze, infers each table's schema from its files' own schemas (Parquet
footers, CSV headers) and writes Glue-shaped table definitions (TableType, Parameters,
StorageDescriptor, PartitionKeys) in the Glue Data Catalog through the Glue API (moto's
server here, Glue on AWS). A schema change gives a new table version and a log line, never
a failure.
"""

from __future__ import annotations

from pipeline.catalog.crawler import CrawlResult, crawl
from pipeline.catalog.store import get_table, list_tables

__all__ = ["CrawlResult", "crawl", "get_table", "list_tables"]
