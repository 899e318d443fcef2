"""The OLTP source `shop` (RDS MySQL stand-in): its schema, connections, the deterministic
seed generator and loader (`load`, `generate`), and the simulator of live transactions
standing in for the AWS Lambda (`simulate`).

Everything that reads or writes the source goes through `pipeline.source.db`, so a refused
login or an unreachable server is classified once, by MySQL error code.
"""

MAX_SCALE = 100
"""Largest seed scale: 1M customers and 10M orders, generated in memory (~20 GB at 100)."""
