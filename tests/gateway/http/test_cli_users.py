"""``scgw users add NAME --role ROLE`` prints the token once; only its hash is stored."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from gateway.audit import AuditEntry, AuditQuery, AuditStore
from gateway.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from gateway.storage.factory import open_store
from gateway.users import Role, User, UserStore, hash_secret


async def _lookup(url: str, token: str) -> tuple[User | None, str, list[AuditEntry]]:
    store = open_store(url)
    await store.open()
    try:
        user = await cast(UserStore, store).user_by_token(hash_secret(token))
        rows = await store.query("SELECT token_hash FROM users")
        audit = await cast(AuditStore, store).audit_entries(AuditQuery(target_kind="user"))
        return user, repr(rows), audit
    finally:
        await store.close()


def test_users_add_prints_a_working_token_once(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["users", "add", "王芳", "--role", "duty", "--db", sqlite_url]) == EXIT_OK
    out = capsys.readouterr().out
    token = out.strip().splitlines()[-1]
    assert token.startswith("scgw_")
    user, stored, audit = asyncio.run(_lookup(sqlite_url, token))
    assert user is not None
    assert (user.name, user.role) == ("王芳", Role.DUTY)
    assert token not in stored  # only the hash is kept
    # On the audit record, with who made it at the console; never the token.
    [entry] = audit
    assert (entry.action, entry.target_id, entry.role) == ("user.create", "王芳", "console")
    assert entry.actor.startswith("os:")
    assert token not in entry.detail

    assert main(["users", "add", "王芳", "--role", "viewer", "--db", sqlite_url]) == EXIT_FAILED
    assert "exists" in capsys.readouterr().err
    assert main(["users", "add", "bob", "--role", "boss", "--db", sqlite_url]) == EXIT_USAGE
    assert "unknown role 'boss'" in capsys.readouterr().err
    assert main(["users", "add", "a b", "--role", "viewer", "--db", sqlite_url]) == EXIT_USAGE
    assert "bad user name" in capsys.readouterr().err
    assert main(["users", "list", "--db", sqlite_url]) == EXIT_OK
    assert "王芳\tduty" in capsys.readouterr().out
