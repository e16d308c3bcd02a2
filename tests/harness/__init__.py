"""Hermetic test harness: real mosquitto and PostgreSQL servers started by the test suite.

Each server runs as a child process on a free 127.0.0.1 port with its data in a private
temporary folder, so tests can stop, SIGKILL and restart it without touching the machine's own
services (PostgreSQL on 5432, mosquitto on 1883).

Modules: ``ports`` (free TCP ports), ``waiting`` (deadline-based waiting instead of sleeps),
``process`` (child processes, service users, process groups), ``postgres`` (PostgresServer),
``mosquitto`` (MosquittoServer), ``gateway_process``, ``webhook``. The servers, waiting, the
gateway process and the webhook are shared with ``scgw bench`` and live in ``bench``;
these modules re-export them. Test-only helpers (``proxy``) live here.
"""

from .process import HarnessError

__all__ = ["HarnessError"]
