"""Live transactions on the `shop` source: stands in for the AWS Lambda that simulates them.

`simulate()` runs paced, real transactions (new customers and orders, status moves, price
and address changes, rare deletes) so the CDC service has inserts, updates and deletes to
replicate.
"""

from pipeline.simulator.simulate import KINDS, simulate

__all__ = ["KINDS", "simulate"]
