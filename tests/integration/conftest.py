"""The integration suite's fixtures live in tests/conftest.py (shared with tests/faults)."""

from tests.conftest import TEST_PORTS

__all__ = ["TEST_PORTS"]
