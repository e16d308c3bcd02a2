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

# Alerts (alerts/store.py). The partial unique index on active_key is what makes "a repeat
# joins the active alert, never a second one" hold across processes sharing the file; the
# predicate text must equal _alerts.ACTIVE_PREDICATE (the ON CONFLICT target names it).
_V2_ALERTS: Final[tuple[str, ...]] = (
    f"""CREATE TABLE alerts (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        priority TEXT NOT NULL CHECK (priority IN ('P1', 'P2', 'P3')),
        state TEXT NOT NULL
            CHECK (state IN ('open', 'acknowledged', 'resolved', 'cancelled')),
        device_id TEXT,
        resident_id TEXT,
        active_key TEXT NOT NULL,
        count INTEGER NOT NULL DEFAULT 1,
        steps TEXT NOT NULL DEFAULT '[]',
        step_index INTEGER NOT NULL DEFAULT 0,
        next_due_at {TS},
        claim TEXT,
        acked_at {TS},
        acked_by TEXT,
        resolved_at {TS},
        resolved_by TEXT,
        outcome TEXT,
        note TEXT,
        source TEXT NOT NULL,
        source_seq INTEGER,
        detail TEXT NOT NULL DEFAULT '{{}}',
        opened_at {TS} NOT NULL,
        updated_at {TS} NOT NULL)""",
    "CREATE UNIQUE INDEX alerts_active_key ON alerts (active_key)"
    " WHERE state IN ('open', 'acknowledged')",
    "CREATE INDEX alerts_due ON alerts (next_due_at) WHERE state = 'open'",
    "CREATE INDEX alerts_opened ON alerts (opened_at)",
    "CREATE INDEX alerts_state_opened ON alerts (state, opened_at)",
    "CREATE INDEX alerts_device ON alerts (device_id, opened_at)",
    "CREATE INDEX alerts_resident ON alerts (resident_id, opened_at)",
    "CREATE INDEX alerts_acked_by ON alerts (acked_by) WHERE state = 'acknowledged'",
    # Which trigger (an event's dedup key) went to which alert: a redelivered event changes
    # nothing. Retention must prune it together with the alerts it points to.
    """CREATE TABLE alert_triggers (
        trigger_key TEXT PRIMARY KEY,
        alert_id TEXT NOT NULL) WITHOUT ROWID""",
    # No foreign keys (here or below): this connection does not enable SQLite's FK checks,
    # and the PostgreSQL schema matches so both backends accept exactly the same writes.
    f"""CREATE TABLE alert_timeline (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        alert_id TEXT NOT NULL,
        at {TS} NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{{}}')""",
    "CREATE INDEX alert_timeline_alert ON alert_timeline (alert_id, id)",
    f"""CREATE TABLE accept_tokens (
        token_hash TEXT PRIMARY KEY,
        alert_id TEXT NOT NULL,
        responder_id TEXT NOT NULL,
        created_at {TS} NOT NULL,
        expires_at {TS} NOT NULL,
        used_at {TS},
        action TEXT)""",
    "CREATE INDEX accept_tokens_alert ON accept_tokens (alert_id)",
    """CREATE VIEW v_alerts AS
        SELECT id, opened_at, device_id, resident_id, kind, priority, state, acked_at,
               acked_by, resolved_at, outcome
        FROM alerts""",
)

# Logins of the duty-desk API and dashboard (gateway/users.py): only hashes of tokens and
# session ids are stored. The role is checked in code, so a new role needs no migration.
_V3_USERS: Final[tuple[str, ...]] = (
    f"""CREATE TABLE users (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        created_at {TS} NOT NULL,
        token_set_at {TS} NOT NULL)""",
    f"""CREATE TABLE sessions (
        id_hash TEXT PRIMARY KEY,
        user_name TEXT NOT NULL,
        created_at {TS} NOT NULL,
        expires_at {TS} NOT NULL)""",
    "CREATE INDEX sessions_user ON sessions (user_name)",
    "CREATE INDEX sessions_expires ON sessions (expires_at)",
)

# The audit log (gateway/audit.py): human actions and reads of residents' cards. Append-only;
# id only grows, so it orders entries of the same instant.
_V4_AUDIT: Final[tuple[str, ...]] = (
    f"""CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at {TS} NOT NULL,
        actor TEXT NOT NULL,
        role TEXT NOT NULL,
        action TEXT NOT NULL,
        target_kind TEXT NOT NULL,
        target_id TEXT,
        detail TEXT NOT NULL DEFAULT '{{}}',
        client_ip TEXT)""",
    "CREATE INDEX audit_log_at ON audit_log (at, id)",
    "CREATE INDEX audit_log_target ON audit_log (target_kind, target_id, at)",
    "CREATE INDEX audit_log_actor ON audit_log (actor, at)",
)

# The registry's version (gateway/registry.py): every committed change to devices, residents,
# responders or assignments bumps it, in the same transaction, whoever wrote it (`scgw
# import` in another process, the API, another instance). One single-row read tells a
# running gateway whether its in-memory registry is still current — at the next message,
# never after a cache timer.
_REGISTRY_TABLES: Final = ("devices", "residents", "responders", "resident_responders")
_V5_REGISTRY_VERSION: Final[tuple[str, ...]] = (
    """CREATE TABLE registry_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL)""",
    "INSERT INTO registry_version (id, version) VALUES (1, 1)",
    *(
        f"""CREATE TRIGGER {table}_{op.lower()}_bumps_registry AFTER {op} ON {table}
            BEGIN UPDATE registry_version SET version = version + 1 WHERE id = 1; END"""
        for table in _REGISTRY_TABLES
        for op in ("INSERT", "UPDATE", "DELETE")
    ),
)

# v7 (alerts engineer, issue 14): who answered, who holds it, incidents.
# - ``assignee``: who holds an acknowledged alert now; ``acked_by``/``acked_at`` keep the first
#   acknowledgement for good. Existing rows: acked_by is repaired from the timeline's first
#   accept/acknowledge (an assignment used to overwrite it), bare responder ids become
#   "responder:ID", and the assignee is the latest assignment or else the acker.
# - ``incident_id`` and ``incidents``: alerts of one kind and place grouped for the desk; the
#   partial unique index keeps one open incident per (kind, place) across instances.
_V7_PEOPLE_AND_INCIDENTS: Final[tuple[str, ...]] = (
    "ALTER TABLE alerts ADD COLUMN assignee TEXT",
    "ALTER TABLE alerts ADD COLUMN incident_id TEXT",
    """UPDATE alerts SET
        acked_by = (SELECT t.actor FROM alert_timeline t WHERE t.alert_id = alerts.id
                    AND t.action IN ('accepted', 'acknowledged') ORDER BY t.at, t.id LIMIT 1),
        acked_at = (SELECT t.at FROM alert_timeline t WHERE t.alert_id = alerts.id
                    AND t.action IN ('accepted', 'acknowledged') ORDER BY t.at, t.id LIMIT 1)
      WHERE EXISTS (SELECT 1 FROM alert_timeline t WHERE t.alert_id = alerts.id
                    AND t.action IN ('accepted', 'acknowledged'))""",
    """UPDATE alerts SET acked_by = 'responder:' || acked_by
      WHERE acked_by IS NOT NULL AND acked_by NOT LIKE 'user:%'
        AND acked_by NOT LIKE 'responder:%' AND acked_by <> 'system'""",
    """UPDATE alerts SET assignee = COALESCE(
        (SELECT 'responder:' || json_extract(t.detail, '$.responder_id') FROM alert_timeline t
          WHERE t.alert_id = alerts.id AND t.action = 'assigned'
            AND json_extract(t.detail, '$.responder_id') IS NOT NULL
          ORDER BY t.at DESC, t.id DESC LIMIT 1),
        acked_by)
      WHERE acked_by IS NOT NULL""",
    "DROP INDEX alerts_acked_by",
    "CREATE INDEX alerts_assignee ON alerts (assignee) WHERE state = 'acknowledged'",
    "CREATE INDEX alerts_incident ON alerts (incident_id) WHERE incident_id IS NOT NULL",
    f"""CREATE TABLE incidents (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        place TEXT NOT NULL,
        priority TEXT NOT NULL CHECK (priority IN ('P1', 'P2', 'P3')),
        state TEXT NOT NULL CHECK (state IN ('open', 'closed')),
        lead_alert_id TEXT NOT NULL,
        opened_at {TS} NOT NULL,
        updated_at {TS} NOT NULL,
        closed_at {TS},
        closed_by TEXT)""",
    "CREATE UNIQUE INDEX incidents_open ON incidents (kind, place) WHERE state = 'open'",
    "CREATE INDEX incidents_opened ON incidents (opened_at)",
)

# Inputs set aside for good (gateway/intake): content the database refused, or a message the
# gateway kept failing on. Kept with an escaped copy of what came in, so nothing is silently
# lost and a technician can see it; a set-aside input is acked, never retried forever.
_V9_SET_ASIDE: Final[tuple[str, ...]] = (
    f"""CREATE TABLE set_aside (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at {TS} NOT NULL,
        lane TEXT NOT NULL,
        source TEXT NOT NULL,
        reason TEXT NOT NULL,
        content TEXT NOT NULL)""",
    "CREATE INDEX set_aside_at ON set_aside (at)",
    # Devices over their rate (flooding), as every instance and a restarted one sees them.
    f"""CREATE TABLE device_flags (
        device_id TEXT PRIMARY KEY,
        since {TS} NOT NULL,
        last_over {TS} NOT NULL,
        over_count INTEGER NOT NULL)""",
    # One definition of "online" (SPEC, Time): what the device said last (its will, or any
    # message) and, by the gateway's clock, seen within its type's offline timeout — which
    # the gateway writes here from [alerts] offline_after at every start. The API, the
    # offline check and Grafana all read this view.
    """CREATE TABLE device_timeouts (
        type TEXT PRIMARY KEY,
        seconds REAL NOT NULL)""",
    "DROP VIEW v_devices",
    """CREATE VIEW v_devices AS
        SELECT d.device_id, d.type, d.name, d.resident_id, d.building, d.unit, d.room,
               s.last_seen, s.battery,
               CASE WHEN COALESCE(s.online, 0) AND s.last_seen >= strftime(
                        '%Y-%m-%dT%H:%M:%f', 'now',
                        '-' || COALESCE(t.seconds, dt.seconds, 3600) || ' seconds')
                    THEN 1 ELSE 0 END AS online
        FROM devices d
        LEFT JOIN device_state s ON s.device_id = d.device_id
        LEFT JOIN device_timeouts t ON t.type = d.type
        LEFT JOIN device_timeouts dt ON dt.type = 'default'""",
)

# (version, statements), strictly increasing. Append new steps; never edit a released one.
MIGRATIONS: Final[Sequence[tuple[int, Sequence[str]]]] = (
    (1, _V1),
    (2, _V2_ALERTS),
    (3, _V3_USERS),
    (4, _V4_AUDIT),
    (5, _V5_REGISTRY_VERSION),
    (7, _V7_PEOPLE_AND_INCIDENTS),
    (9, _V9_SET_ASIDE),
)

LATEST: Final = MIGRATIONS[-1][0]
