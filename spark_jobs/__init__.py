"""Glue ETL jobs (bronze -> silver -> gold), one PySpark script per job."""
