"""Broker logins from the registry, for ``config/mosquitto-secure.conf``.

    python scripts/broker_credentials.py --db URL | -c scgw.toml \\
        --passwd /etc/mosquitto/passwd --acl /etc/mosquitto/acl --out logins.csv

Gives every registered device (username = device id), every responder's phone app
(``responder.<id>``), the gateway (``scgw.gateway``) and the zigbee2mqtt bridge (``z2m.bridge``)
a fresh random password; writes the mosquitto password file (hashed with mosquitto_passwd),
the ACL (config/mosquitto.acl with one block per responder) and a CSV of username,password,
kind for flashing devices and configuring apps. The CSV is created 0600 and is the only place
the plain passwords are kept: move it somewhere safe. Re-running issues new passwords for all.
Then: ``systemctl reload mosquitto``.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
from pathlib import Path

from gateway.broker_auth import (
    GATEWAY_USER,
    ZIGBEE_BRIDGE_USER,
    BrokerAuthError,
    acl_with_responders,
    new_password,
    responder_user,
    write_password_file,
)
from gateway.config import ConfigError, load_settings
from gateway.storage.factory import open_store

SHIPPED_ACL = Path(__file__).resolve().parents[1] / "config" / "mosquitto.acl"


async def _registry(url: str) -> tuple[list[str], list[str]]:
    store = open_store(url)
    await store.open()
    try:
        devices = [d.device_id for d in await store.devices()]
        responders = [r.responder_id for r in await store.responders()]
    finally:
        await store.close()
    return devices, responders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", type=Path, help="scgw TOML config")
    parser.add_argument("--db", help="database URL (overrides the config)")
    parser.add_argument("--passwd", type=Path, required=True, help="mosquitto password file")
    parser.add_argument("--acl", type=Path, required=True, help="mosquitto ACL file to write")
    parser.add_argument("--out", type=Path, required=True, help="CSV of the new logins (0600)")
    parser.add_argument("--acl-template", type=Path, default=SHIPPED_ACL)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    url = args.db or settings.database.url
    devices, responders = asyncio.run(_registry(url))
    logins = [(d, "device") for d in devices]
    logins += [(responder_user(r), "responder_app") for r in responders]
    logins += [(GATEWAY_USER, "gateway"), (ZIGBEE_BRIDGE_USER, "zigbee2mqtt")]
    passwords = {user: new_password() for user, _ in logins}
    try:
        acl = acl_with_responders(
            args.acl_template.read_text(encoding="utf-8"), responders, settings.mqtt.prefix
        )
        write_password_file(args.passwd, passwords)
    except (BrokerAuthError, OSError) as exc:
        print(f"broker credentials / 代理账号: {exc}", file=sys.stderr)
        return 1
    args.acl.write_text(acl, encoding="utf-8")
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["username", "password", "kind"])
        writer.writerows((user, passwords[user], kind) for user, kind in logins)
    print(
        f"{len(devices)} devices, {len(responders)} responder apps, gateway, zigbee2mqtt bridge\n"
        f"  password file / 密码文件: {args.passwd}\n  ACL / 访问控制: {args.acl}\n"
        f"  logins / 账号清单 (keep safe / 妥善保管): {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
