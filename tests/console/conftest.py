"""The console's tests use the gate's small indexed knowledge base (tests/gate/conftest.py)."""

from tests.gate.conftest import indexed  # noqa: F401
