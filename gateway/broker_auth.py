"""Broker logins for ``config/mosquitto-secure.conf``: account names, random passwords, the
mosquitto password file (hashed by ``mosquitto_passwd``) and per-responder ACL blocks.

Account names (see ``config/mosquitto.acl``): a device logs in with its device id; every other
account has a dot in its name, which a device id cannot contain, so the two never collide.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

GATEWAY_USER: Final = "scgw.gateway"
ZIGBEE_BRIDGE_USER: Final = "z2m.bridge"
PASSWORD_BYTES: Final = 18  # 144 bits: far beyond guessing, short enough to type into a device
RESPONDER_MARK: Final = "# -- responder phone apps"
_USER_RE: Final = re.compile(r"\A[A-Za-z0-9_.-]{1,80}\Z")
_PASSWD_CANDIDATES: Final = (Path("/usr/bin/mosquitto_passwd"), Path("/usr/sbin/mosquitto_passwd"))


class BrokerAuthError(Exception):
    """The password file could not be written (the message says why, never a password)."""


def new_password() -> str:
    return secrets.token_urlsafe(PASSWORD_BYTES)


def responder_user(responder_id: str) -> str:
    return f"responder.{responder_id}"


def check_user(name: str) -> str:
    if not _USER_RE.match(name):
        raise BrokerAuthError(f"unusable broker user name {name[:80]!r}")
    return name


def find_mosquitto_passwd() -> Path:
    found = shutil.which("mosquitto_passwd")
    if found:
        return Path(found)
    for candidate in _PASSWD_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise BrokerAuthError("mosquitto_passwd not found (Debian: apt-get install mosquitto)")


def write_password_file(
    path: Path, credentials: Mapping[str, str], *, tool: Path | None = None
) -> None:
    """Replace ``path`` with hashed ``user:password`` lines (``mosquitto_passwd -U``).

    Plain passwords only ever sit in a 0600 temporary file next to ``path``, which is hashed
    in place and then renamed over it, so the broker never sees a half-written file."""
    binary = tool or find_mosquitto_passwd()
    lines = []
    for user, password in sorted(credentials.items()):
        check_user(user)
        if not password or any(c in password for c in ":\r\n\x00"):
            raise BrokerAuthError(f"unusable password for {user!r}")
        lines.append(f"{user}:{password}\n")
    fd, tmp = tempfile.mkstemp(prefix=".passwd-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(lines)
        done = subprocess.run(
            [str(binary), "-U", tmp], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise BrokerAuthError(f"mosquitto_passwd failed: {done.stderr.strip()[:300]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def responder_acl(responder_ids: Iterable[str], prefix: str = "scgw") -> str:
    """One ACL block per responder app: its own alerts to read, its own reply to write."""
    blocks = []
    for rid in responder_ids:
        user = check_user(responder_user(rid))
        blocks.append(
            f"user {user}\n"
            f"topic read {prefix}/responders/{rid}/alerts\n"
            f"topic write {prefix}/responders/{rid}/reply\n"
        )
    return "\n".join(blocks)


def acl_with_responders(shipped_acl: str, responder_ids: Iterable[str], prefix: str) -> str:
    """The shipped ACL with its example responder block replaced by one per responder."""
    head, mark, _ = shipped_acl.partition(RESPONDER_MARK)
    if not mark:
        raise BrokerAuthError(f"the ACL template has no line starting {RESPONDER_MARK!r}")
    if prefix != "scgw":
        head = head.replace(" scgw/", f" {prefix}/")
    return f"{head}{RESPONDER_MARK} (generated) --\n{responder_acl(responder_ids, prefix)}"
