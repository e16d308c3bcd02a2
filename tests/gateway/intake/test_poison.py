"""PoisonGuard: a failing input is retried, then left for a redelivery, and set aside for good
only when it failed again after a redelivery while other inputs were handled."""

from __future__ import annotations

from gateway.intake.poison import PoisonGuard, Verdict

KEY = 'scgw/btn-1/event#{"type": "sos"}'
RETRY, SKIP, POISON = Verdict.RETRY, Verdict.SKIP, Verdict.POISON


def test_first_failures_are_retried_then_skipped() -> None:
    guard = PoisonGuard(limit=3)
    assert [guard.failed(KEY) for _ in range(3)] == [RETRY, RETRY, SKIP]


def test_a_systemic_fault_never_makes_poison() -> None:
    """Nothing handled in between (the database schema is broken, say): skipped and kept at
    the source again and again, never acknowledged away."""
    guard = PoisonGuard(limit=3)
    verdicts = [guard.failed(KEY) for _ in range(12)]
    assert POISON not in verdicts
    assert verdicts.count(SKIP) == 4


def test_poison_once_others_flowed_after_the_skip() -> None:
    guard = PoisonGuard(limit=3)
    for _ in range(3):
        guard.failed(KEY)
    guard.handled += 10  # other inputs went through fine meanwhile
    assert [guard.failed(KEY) for _ in range(3)] == [RETRY, RETRY, POISON]
    # Forgotten once set aside: the same bytes later start afresh.
    assert guard.failed(KEY) == RETRY


def test_memory_is_bounded() -> None:
    guard = PoisonGuard(limit=3, remember=100)
    for n in range(1000):
        guard.failed(f"t#{n}")
    assert len(guard._failures) <= 100  # a flood of distinct failures cannot grow it
