"""SQLite schema, as an ordered list of versioned migration steps.

Instants are stored as fixed-format UTC text (see ``_util.utc_text``) in columns declared
``UTC_TEXT``: the name has TEXT affinity, and the connection registers a converter under it so
reads (also through the views) come back as aware datetimes, as they do from PostgreSQL.
Booleans are 0/1 integers (SQLite has no boolean type).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

TS: Final = "UTC_TEXT"

SCHEMA_VERSION_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    f" version INTEGER PRIMARY KEY, applied_at {TS} NOT NULL)"
)

_V1: Final[tuple[str, ...]] = (
    f"""CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        name TEXT, resident_id TEXT, building TEXT, unit TEXT, room TEXT,
        serial_port TEXT, serial_addr INTEGER, zigbee_name TEXT,
        sia_account TEXT, sia_zone TEXT,
        attributes TEXT NOT NULL DEFAULT '{{}}',
        created_at {TS} NOT NULL, updated_at {TS} NOT NULL)""",
    "CREATE INDEX devices_resident ON devices (resident_id)",
    "CREATE INDEX devices_serial ON devices (serial_port, serial_addr)",
    "CREATE INDEX devices_zigbee ON devices (zigbee_name)",
    "CREATE INDEX devices_sia ON devices (sia_account, sia_zone)",
    f"""CREATE TABLE residents (
        resident_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        phone TEXT, building TEXT, unit TEXT, room TEXT, grid TEXT,
        lives_alone BOOLEAN NOT NULL DEFAULT 0,
        medical_notes TEXT,
        contacts TEXT NOT NULL DEFAULT '[]',
        attributes TEXT NOT NULL DEFAULT '{{}}',
        created_at {TS} NOT NULL, updated_at {TS} NOT NULL)""",
    """CREATE TABLE resident_responders (
        resident_id TEXT NOT NULL,
        responder_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (resident_id, responder_id))""",
    f"""CREATE TABLE responders (
        responder_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        phone TEXT, building TEXT, grid TEXT,
        channels TEXT NOT NULL DEFAULT '[]',
        skills TEXT NOT NULL DEFAULT '[]',
        on_duty TEXT,
        attributes TEXT NOT NULL DEFAULT '{{}}',
        created_at {TS} NOT NULL, updated_at {TS} NOT NULL)""",
    f"""CREATE TABLE device_state (
        device_id TEXT PRIMARY KEY,
        last_seen {TS} NOT NULL,
        battery INTEGER,
        online BOOLEAN,
        online_at {TS},
        fw TEXT,
        rssi REAL)""",
    f"""CREATE TABLE pending_devices (
        device_id TEXT PRIMARY KEY,
        first_seen {TS} NOT NULL,
        last_seen {TS} NOT NULL,
        messages INTEGER NOT NULL,
        sos_count INTEGER NOT NULL,
        last_kind TEXT NOT NULL,
        last_payload TEXT NOT NULL)""",
    f"""CREATE TABLE events (
        time {TS} NOT NULL,
        device_id TEXT NOT NULL,
        type TEXT NOT NULL,
        event_id TEXT NOT NULL,
        seq INTEGER,
        battery INTEGER,
        source TEXT NOT NULL,
        payload TEXT NOT NULL,
        received_at {TS} NOT NULL)""",
    "CREATE INDEX events_device_time ON events (device_id, time)",
    "CREATE INDEX events_time ON events (time)",
    f"""CREATE TABLE event_keys (
        device_id TEXT NOT NULL,
        dedup_key TEXT NOT NULL,
        time {TS} NOT NULL,
        PRIMARY KEY (device_id, dedup_key)) WITHOUT ROWID""",
    # The primary key (device, metric, time) is the readings-by-device index; WITHOUT ROWID
    # stores rows in that order, so a chart query reads one contiguous range. No time index:
    # it would cost a quarter of the ingest rate for queries nobody runs on the embedded store.
    f"""CREATE TABLE readings (
        time {TS} NOT NULL,
        device_id TEXT NOT NULL,
        metric TEXT NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (device_id, metric, time)) WITHOUT ROWID""",
    "CREATE VIEW v_readings AS SELECT time, device_id, metric, value FROM readings",
    "CREATE VIEW v_events AS SELECT time, device_id, type, event_id, payload FROM events",
    """CREATE VIEW v_devices AS
        SELECT d.device_id, d.type, d.name, d.resident_id, d.building, d.unit, d.room,
               s.last_seen, s.battery, COALESCE(s.online, 0) AS online
        FROM devices d LEFT JOIN device_state s ON s.device_id = d.device_id""",
)

# (version, statements), strictly increasing. Append new steps; never edit a released one.
MIGRATIONS: Final[Sequence[tuple[int, Sequence[str]]]] = ((1, _V1),)

LATEST: Final = MIGRATIONS[-1][0]
