"""The Glue ETL runtime stand-in: Glue-style jobs on plain Spark.

No local Glue runtime exists (the awsglue wrappers need Glue's own JVM jars), so jobs are
plain PySpark behind a thin Glue-shaped interface: a job name, `--KEY value` arguments,
job bookmarks kept in S3, one SparkSession per worker process reused across jobs.
"""
