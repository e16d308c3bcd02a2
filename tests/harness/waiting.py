"""Deadline-based waiting (``wait_for``, ``wait_until``): the code lives in
``bench.waiting`` (``scgw bench`` waits the same way); this module keeps the tests'
imports working. A timeout raises ``WaitTimeout``, an ``AssertionError``."""

from bench.waiting import WaitTimeout, wait_for, wait_until

__all__ = ["WaitTimeout", "wait_for", "wait_until"]
