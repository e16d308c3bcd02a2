"""Free TCP ports on 127.0.0.1 for the private servers (tests, ``scgw bench``).

Ports are picked at random *below* the kernel's ephemeral range (``ip_local_port_range``), so
an outgoing client connection can never happen to sit on a test server's port while that server
is stopped, which would make its restart on the same port fail. Each candidate is checked by
binding it (without ``SO_REUSEADDR``, so a port in ``TIME_WAIT`` is also skipped); a port handed
out once is not handed out again by this process. Two pytest-xdist workers can still race for
the same port between the check and the server's bind: the servers retry a first start on a new
port when the bind fails.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

HOST = "127.0.0.1"

_PORT_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST_PORT = 15000
_handed_out: set[int] = set()
_lock = threading.Lock()


def _ephemeral_low() -> int:
    try:
        low, _high = _PORT_RANGE_FILE.read_text().split()
        return int(low)
    except (OSError, ValueError):
        return 32768


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _kernel_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_port(host: str = HOST) -> int:
    """Return a TCP port on ``host`` that nothing listens on and this process never handed out."""
    high = _ephemeral_low() - 1
    rng = random.SystemRandom()
    with _lock:
        if high - _LOWEST_PORT >= 1000:
            for _ in range(200):
                port = rng.randint(_LOWEST_PORT, high)
                if port not in _handed_out and _bindable(port, host):
                    _handed_out.add(port)
                    return port
        for _ in range(200):  # odd port range: let the kernel choose
            port = _kernel_port(host)
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError(f"no free TCP port found on {host}")
