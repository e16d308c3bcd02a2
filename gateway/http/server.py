"""uvicorn inside the gateway's event loop, without uvicorn's own signal handling (the gateway
owns SIGINT/SIGTERM and shuts everything down in order)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Generator

import uvicorn
from fastapi import FastAPI


class EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Responses that never finish by themselves (the dashboard's event streams) are
        # ended first, so stopping does not sit out the graceful-shutdown timeout.
        state = getattr(self.config.app, "state", None)
        for stop in getattr(state, "on_server_stop", ()):
            await stop()
        await super().shutdown(sockets)


def make_server(app: FastAPI, host: str, port: int) -> EmbeddedServer:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        access_log=False,
        # Open keep-alive or event-stream connections must not hold a shutdown forever.
        timeout_graceful_shutdown=3,
    )
    return EmbeddedServer(config)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind now, so a taken port fails at start with a clear error, not later in a task."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    return sock
