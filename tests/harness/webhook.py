"""A tiny local HTTP webhook: the real target of ``json://127.0.0.1:PORT/…`` channels.

It records every request and answers ``status`` (or holds the answer, to play a slow
provider). Tests read ``requests`` (and wait on them with ``wait_for``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    body: bytes

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
            self.requests.append(Request(method, path, body))
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
