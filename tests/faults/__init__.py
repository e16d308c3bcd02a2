"""Fault-injection tests (docs/reliability.md)."""
