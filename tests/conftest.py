"""Suite-wide fixtures: real PostgreSQL and mosquitto servers started by the tests.

Each pytest-xdist worker is its own process, so the session-scoped ``pg_server`` is one
server per worker. Servers run on free 127.0.0.1 ports in private temporary folders; the
machine's own services (5432, 1883) are never used. A missing server binary fails the
fixture with instructions — it never skips (``scripts/test.sh`` installs them).
Test-area fixtures belong in the conftest.py of that test folder, not here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests import fault_matrix
from tests.harness.gateway_process import GatewayProcess
from tests.harness.mosquitto import MosquittoServer
from tests.harness.postgres import PostgresServer, remove_template_clusters
from tests.harness.process import HarnessError


def pytest_configure(config: pytest.Config) -> None:
    """The fault matrix plugin (@pytest.mark.fault → docs/reliability.md's table)."""
    fault_matrix.register(config)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Delete the worker's cached ``initdb`` template (xdist workers skip atexit), and check
    that no gateway process outlived the tests (each test ends its own; see below)."""
    remove_template_clusters()
    left = GatewayProcess.end_all()
    if left:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nFAILED: gateway processes left running after the tests: {left}")


@pytest.fixture(autouse=True)
def _no_gateway_outlives_its_test() -> Iterator[None]:
    """A test that started a gateway process and failed before stopping it does not leave it
    running (to load the machine for every later test): killed when the test ends."""
    yield
    GatewayProcess.end_all()


def _start_pg() -> PostgresServer:
    try:
        server = PostgresServer()
    except HarnessError as exc:
        pytest.fail(f"cannot set up the test PostgreSQL server: {exc}", pytrace=False)
    try:
        server.start()
    except HarnessError:
        server.close()
        raise
    return server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """This worker's PostgreSQL server, shared by its tests: do not stop or kill it."""
    server = _start_pg()
    yield server
    server.close()


@pytest.fixture
def pg_url(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a fresh, empty database on ``pg_server``, dropped after the test."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    name = f"t_{slug}_{uuid.uuid4().hex[:8]}"
    url = pg_server.create_database(name)
    yield url
    try:
        pg_server.drop_database(name)
    except psycopg.Error as exc:  # a test may leave the database busy or the server down
        print(f"pg_url: could not drop database {name}: {exc}")


@pytest.fixture
def pg_owned_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL server, for tests that stop, kill or restart the database."""
    server = _start_pg()
    yield server
    server.close()


@pytest.fixture
def mosquitto() -> Iterator[MosquittoServer]:
    """A fresh mosquitto broker (shipped config/mosquitto.conf + test listener) per test."""
    try:
        server = MosquittoServer()
    except HarnessError as exc:
        pytest.fail(f"cannot set up the test mosquitto broker: {exc}", pytrace=False)
    try:
        server.start()
    except HarnessError:
        server.close()
        raise
    yield server
    server.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """``sqlite:///{tmp_path}/scgw.db`` (an absolute path, hence four slashes)."""
    return f"sqlite:///{tmp_path}/scgw.db"
