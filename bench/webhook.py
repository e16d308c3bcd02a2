"""A tiny local HTTP webhook: the real target of ``json://127.0.0.1:PORT/…`` channels.

``scgw bench`` stands it in for the volunteers' phones and times each notification's arrival;
the tests use it the same way. It records every request with its arrival time and answers
``status`` (or holds the answer, to play a slow provider).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    body: bytes
    # time.perf_counter() when the whole request had arrived (the same clock the bench's
    # press publisher reads, so arrival minus publish is the latency)
    at: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A tiny HTTP/1.1 webhook: records each request, answers ``status``."""

    status: int = 200
    hold: bool = False  # a provider that never answers (until the test ends)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    # Called with each request as it arrives (in the event loop): lets a waiter be woken by
    # the request itself instead of polling ``requests``.
    on_request: Callable[[Request], None] | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            request = Request(method, path, body, time.perf_counter())
            self.requests.append(request)
            if self.on_request is not None:
                self.on_request(request)
            if self.hold:
                await self.released.wait()
            reason = "OK" if self.status < 400 else "Error"
            writer.write(
                f"HTTP/1.1 {self.status} {reason}\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client gave up (a timeout test)
        finally:
            writer.close()

    def to(self, path: str) -> list[Request]:
        """Requests whose path starts with ``path``."""
        return [r for r in self.requests if r.path.startswith(path)]


@asynccontextmanager
async def running_receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    server = await asyncio.start_server(rec.handle, "127.0.0.1", 0)
    rec.port = server.sockets[0].getsockname()[1]
    try:
        yield rec
    finally:
        rec.released.set()
        server.close()
        await server.wait_closed()
