"""Durations as people write them in config and scenario files: ``"60s"``, ``"5m"``, ``"50ms"``.

Domain code (alert policies, device offline timeouts) and the runtime's config both read
them, so the parser lives here, below both.
"""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import BeforeValidator

_DURATION_RE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float:
    """``"60s"``, ``"5m"``, ``"50ms"``, ``"2h"``, ``"1d"`` or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like '60s', '5m' or '50ms'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION_RE.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ValueError(f"expected a duration like '60s', '5m' or '50ms', got {value!r}")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


# A pydantic field type: seconds as a float, written as a duration or a number.
Duration = Annotated[float, BeforeValidator(parse_duration)]
