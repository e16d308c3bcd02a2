"""Who was asked and who answered, read from an alert's timeline.

A decline is one person's answer, not the step's (SPEC, Alerts): the step moves on at once
only when every responder it paged has declined or could not be reached; otherwise its ack
timeout still runs. The timeline already holds everything needed — the ``step`` entry names
whom the step pages (written before the pages go out, so a quick decline always finds it),
``notify`` entries say who was reached, ``declined`` entries who said no — so the answer is a
pure function of it, used by the engine (on a decline), the dispatcher (after a step) and the
console (who is still pending).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from alerts.models import TimelineEntry

# notify entries of pages that ask for an answer; other kinds (closure, "taken by …")
# carry a ``kind`` of their own and are not part of a step.
PAGE = "page"


def detail_of(entry: TimelineEntry) -> dict[str, object]:
    try:
        detail = json.loads(entry.detail)
    except ValueError:
        return {}
    return detail if isinstance(detail, dict) else {}


def _keys(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


@dataclass(frozen=True, slots=True)
class StepAnswers:
    step: int | None  # None: no step has gone out yet
    asked: tuple[str, ...]  # responder keys the current step pages ("responder:ID")
    declined: tuple[str, ...]  # of ``asked``, who declined (any time)
    unreached: tuple[str, ...]  # of ``asked``, whom no channel reached
    pending: tuple[str, ...]  # of ``asked``: reached (or still being paged), no answer yet
    sending: bool  # some page of the step has no outcome yet

    @property
    def all_answered_no(self) -> bool:
        """Everyone asked declined or could not be reached (and nobody is still being
        paged): the step has nothing left to wait for."""
        return bool(self.asked) and not self.pending and not self.sending


def step_answers(timeline: Iterable[TimelineEntry]) -> StepAnswers:
    step: int | None = None
    asked: list[str] = []
    outcome: dict[str, bool] = {}  # recipient → reached by some attempt of this step
    declined: set[str] = set()
    for e in timeline:
        if e.action == "declined" and e.actor.startswith("responder:"):
            declined.add(e.actor)
            continue
        detail = detail_of(e)
        if e.action == "step":
            raw = detail.get("step")
            step = raw if isinstance(raw, int) else step
            asked = _keys(detail.get("asked"))
            outcome = {}
        elif e.action == "step_desk":
            asked += [k for k in _keys(detail.get("asked")) if k not in asked]
        elif e.action == "notify" and detail.get("kind", PAGE) == PAGE:
            key = str(detail.get("recipient", ""))
            outcome[key] = outcome.get(key, False) or detail.get("ok") is True
    said_no = tuple(k for k in asked if k in declined)
    unreached = tuple(k for k in asked if k not in declined and outcome.get(k) is False)
    pending = tuple(k for k in asked if k not in declined and outcome.get(k) is not False)
    sending = any(k not in outcome and k not in declined for k in asked)
    return StepAnswers(step, tuple(asked), said_no, unreached, pending, sending)
