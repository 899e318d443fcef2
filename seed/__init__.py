"""The OLTP source `shop` (RDS MySQL stand-in): schema and deterministic data generator."""
