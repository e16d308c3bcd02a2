"""The SQLite store's one worker thread, with the event path first in line.

SQLite has one writer, so every statement runs on one thread in turn. With a plain FIFO
executor a press's insert would wait behind every telemetry batch already queued; here a call
submitted while the event path is urgent (``gateway.priority.URGENT``, set by ``UrgentGate``)
runs before queued bulk calls. A call already running is never interrupted (its transaction
is short: ``database.batch_max_rows``).
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

from gateway.priority import URGENT

P = ParamSpec("P")
T = TypeVar("T")

_URGENT, _BULK, _STOP = 0, 1, 2

_Call = Callable[..., Any]
_Job = tuple[int, int, "Future[Any] | None", "_Call | None", tuple[Any, ...], dict[str, Any]]


class PriorityWorker(Executor):
    def __init__(self, name: str) -> None:
        self._queue: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        self._order = itertools.count()  # FIFO within a priority; never compares futures
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        if self._closed:
            raise RuntimeError("cannot schedule new calls after shutdown")
        future: Future[T] = Future()
        priority = _URGENT if URGENT.get() else _BULK
        self._queue.put((priority, next(self._order), future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        while True:
            _, _, future, fn, args, kwargs = self._queue.get()
            if future is None or fn is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the awaiting caller
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._closed = True
        # After everything already queued (bulk included): nothing submitted is dropped.
        self._queue.put((_STOP, next(self._order), None, None, (), {}))
        if wait:
            self._thread.join()
