"""``/api/v1/stats/response``: how fast alerts are answered (see ``stats.py``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Query
from fastapi.exceptions import RequestValidationError

from alerts.models import Priority
from gateway.http.api.deps import AUTH_RESPONSES, ConsoleDep, Reader
from gateway.http.api.models import Instant, ResponseStats
from gateway.http.api.stats import summarize, to_samples

DEFAULT_SPAN: Final = timedelta(days=30)
MAX_SPAN: Final = timedelta(days=800)


def stats_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/stats", tags=["stats"], responses=AUTH_RESPONSES)

    @router.get("/response", summary="Time to acknowledge: p50, p90, share within 60 s / 180 s")
    async def response_times(
        _: Reader,
        console: ConsoleDep,
        since: Annotated[Instant | None, Query(alias="from")] = None,
        until: Annotated[Instant | None, Query(alias="to")] = None,
        period: Annotated[Literal["all", "day", "week", "month"], Query()] = "all",
        priority: Annotated[list[Priority] | None, Query(description="repeatable")] = None,
    ) -> ResponseStats:
        """Alerts opened in [from, to) (default: the last 30 days), per priority and, with
        ``period``, per local day, week or month."""
        end = until or console.now()
        start = since or end - DEFAULT_SPAN
        if start >= end or end - start > MAX_SPAN:
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", "from"),
                        "msg": "'from' must be before 'to', at most 800 days apart",
                        "type": "value_error",
                    }
                ]
            )
        samples = to_samples(await console.store.response_samples(start, end))
        if priority:
            samples = [s for s in samples if s.priority in priority]
        return ResponseStats(
            since=start, until=end, period=period, groups=summarize(samples, period)
        )

    return router
