"""A TCP proxy between the gateway and its broker that a test can cut: a network fault without
root (no iptables, no tc).

``TcpProxy(target_port)`` listens on a free 127.0.0.1 port and forwards both ways. Faults:

* ``cut()`` — the link is down: every open connection is reset, new ones are accepted and
  closed at once (like a router that answers with RST). The client notices immediately.
* ``blackhole()`` — packets vanish: connections stay open but nothing is forwarded, new
  connections hang. Only the MQTT keepalive notices (as behind a dead NAT or a pulled cable).
* ``heal()`` — forwarding resumes for new connections; connections that lived through a
  blackhole are closed (bytes were lost in them, so their stream can never be valid again).

The proxy runs its own asyncio loop in a thread, so it works the same for a gateway in the
test's event loop, in another thread, or in a subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

from .ports import HOST, free_port
from .process import HarnessError

T = TypeVar("T")
_CHUNK = 65536


class LinkState(enum.Enum):
    UP = "up"
    CUT = "cut"
    BLACKHOLE = "blackhole"


class _Pair:
    """One client connection and its upstream connection."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.poisoned = False  # lived through a blackhole: bytes were dropped

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                transport = writer.transport
                # abort(): RST, not FIN — a cut link does not say goodbye.
                with contextlib.suppress(OSError, RuntimeError):
                    transport.abort()
        for task in self.tasks:
            task.cancel()


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = HOST) -> None:
        self._target = (target_host, target_port)
        self.port = free_port()
        self._state = LinkState.UP
        self._pairs: set[_Pair] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.connections = 0  # accepted in total (a reconnect shows as +1)
        self._thread.start()
        try:
            self._call(self._listen())
        except BaseException:
            self.close()
            raise

    # -- the test's controls ----------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    @property
    def state(self) -> LinkState:
        return self._state

    def cut(self) -> None:
        self._call(self._set(LinkState.CUT))

    def blackhole(self) -> None:
        self._call(self._set(LinkState.BLACKHOLE))

    def heal(self) -> None:
        self._call(self._set(LinkState.UP))

    def open_connections(self) -> int:
        return self._call(self._count())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            with contextlib.suppress(HarnessError):
                self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- inside the proxy's loop ------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(10)
        except TimeoutError:
            future.cancel()
            raise HarnessError("tcp proxy did not answer within 10 s") from None

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, HOST, self.port)

    async def _count(self) -> int:
        return len(self._pairs)

    async def _set(self, state: LinkState) -> None:
        previous, self._state = self._state, state
        if state is LinkState.CUT:
            for pair in list(self._pairs):
                pair.abort()
            self._pairs.clear()
        elif state is LinkState.BLACKHOLE:
            for pair in self._pairs:
                pair.poisoned = True
        elif previous is LinkState.BLACKHOLE:
            for pair in [p for p in self._pairs if p.poisoned]:
                pair.abort()
                self._pairs.discard(pair)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in list(self._pairs):
            pair.abort()
        self._pairs.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        pair = _Pair(writer)
        if self._state is LinkState.CUT:
            pair.abort()
            return
        self._pairs.add(pair)
        if self._state is LinkState.BLACKHOLE:
            pair.poisoned = True  # hangs: its bytes go nowhere until heal() closes it
            pair.tasks.append(asyncio.current_task())  # type: ignore[arg-type]
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                while await reader.read(_CHUNK):
                    pass
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            pair.abort()  # broker down: the client sees its connection refused-ish
            self._pairs.discard(pair)
            return
        pair.upstream = up_writer
        pair.tasks = [
            asyncio.create_task(self._pump(pair, reader, up_writer)),
            asyncio.create_task(self._pump(pair, up_reader, writer)),
        ]

    async def _pump(
        self, pair: _Pair, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if pair.poisoned:
                    continue  # blackholed: swallowed
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if not pair.poisoned:
                # One side closed: close both, like the real connection would.
                pair.abort()
                self._pairs.discard(pair)
