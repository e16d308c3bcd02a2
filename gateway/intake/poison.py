"""What happens to an input the gateway keeps failing on (a bug, not a passing fault: the
database being away is retried or spooled inside the paths and never gets here).

- First failures: the input goes back to the front of its queue and the task is restarted by
  its supervisor (with backoff) — a transient bug costs nothing.
- After ``limit`` failures it is *skipped*: left unacknowledged, so its source sends it again
  (the broker after a reconnect), while every later input flows. If everything fails (a
  systemic fault) everything is skipped and kept: nothing is lost, and the crash loop shows
  on /readyz and in the metrics.
- Only an input that failed ``limit`` times again after a redelivery, while other inputs were
  handled fine in between, is poison for sure: it is set aside for good (acknowledged),
  logged with its payload and counted as ``rejected{reason="poison"}``.
"""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    RETRY = "retry"
    SKIP = "skip"
    POISON = "poison"


class PoisonGuard:
    def __init__(self, limit: int = 3, remember: int = 10_000) -> None:
        self._limit = limit
        self._remember = remember
        self._failures: dict[str, tuple[int, int]] = {}  # key → (count, handled at the skip)
        self.handled = 0  # inputs handled without failure (the "others flow" evidence)

    def failed(self, key: str) -> Verdict:
        """Record one failure of the input with this key."""
        count, ok_at_skip = self._failures.get(key, (0, -1))
        count += 1
        if len(self._failures) >= self._remember:
            self._failures.clear()  # bounded: forgetting only costs a few extra retries
        if count < self._limit:
            self._failures[key] = (count, ok_at_skip)
            return Verdict.RETRY
        if ok_at_skip < 0:
            self._failures[key] = (count, self.handled)
            return Verdict.SKIP
        if count >= 2 * self._limit and self.handled > ok_at_skip:
            self._failures.pop(key, None)
            return Verdict.POISON
        self._failures[key] = (count, ok_at_skip)
        return Verdict.SKIP if count % self._limit == 0 else Verdict.RETRY
