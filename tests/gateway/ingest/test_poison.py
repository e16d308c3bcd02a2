"""PoisonGuard: a failing message is retried, then held back unacked, and set aside for good
only when it failed again after a redelivery while other messages were handled."""

from __future__ import annotations

from gateway.ingest.common import PoisonGuard

KEY = PoisonGuard.key("scgw/btn-1/event", b'{"type": "sos"}')


def test_first_failures_are_retried_then_skipped() -> None:
    guard = PoisonGuard(limit=3)
    assert [guard.failed(KEY) for _ in range(3)] == ["retry", "retry", "skip"]


def test_a_systemic_fault_never_makes_poison() -> None:
    """Nothing handled in between (the database schema is broken, say): skipped and kept at
    the broker again and again, never acked away."""
    guard = PoisonGuard(limit=3)
    verdicts = [guard.failed(KEY) for _ in range(12)]
    assert "poison" not in verdicts
    assert verdicts.count("skip") == 4


def test_poison_once_others_flowed_after_the_skip() -> None:
    guard = PoisonGuard(limit=3)
    for _ in range(3):
        guard.failed(KEY)
    guard.handled += 10  # other messages went through fine meanwhile
    assert [guard.failed(KEY) for _ in range(3)] == ["retry", "retry", "poison"]
    # Forgotten once set aside: the same bytes later start afresh.
    assert guard.failed(KEY) == "retry"


def test_keys_survive_redelivery_and_differ_by_payload() -> None:
    assert PoisonGuard.key("t", b"a") == PoisonGuard.key("t", b"a")
    assert PoisonGuard.key("t", b"a") != PoisonGuard.key("t", b"b")


def test_memory_is_bounded() -> None:
    guard = PoisonGuard(limit=3, remember=100)
    for n in range(1000):
        guard.failed(PoisonGuard.key("t", str(n).encode()))
    assert len(guard._failures) <= 100  # a flood of distinct failures cannot grow it
