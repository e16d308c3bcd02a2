"""PostgreSQL schema: versioned migration steps and the time-partitioning DDL.

``readings`` and ``events`` are split by time in one of two ways, decided once, when version 1
is created:

* **TimescaleDB** where the extension is available: hypertables with compression and retention
  policies (see ``TIMESCALE_V1``; untested here, the extension is not installed on CI).
* **Native** declarative partitioning otherwise: ``PARTITION BY RANGE (time)``, one partition
  per UTC month, created on demand by the store before a write needs it.

Either way the same views sit on top, so Grafana and analysts see one SQL surface.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

# Key for pg_advisory_xact_lock: serialises migrations of one database across processes.
MIGRATION_LOCK_KEY: Final = 0x5C6_0001
# Registry upserts read-compare-write; serialise concurrent importers per table.
UPSERT_LOCK_BASE: Final = 0x5C6_0100

PARTITIONED_TABLES: Final = ("readings", "events")

SCHEMA_VERSION_DDL: Final = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
)

_REGISTRY_AND_STATE: Final[tuple[str, ...]] = (
    """CREATE TABLE devices (
        device_id text PRIMARY KEY,
        type text NOT NULL,
        name text, resident_id text, building text, unit text, room text,
        serial_port text, serial_addr bigint, zigbee_name text,
        sia_account text, sia_zone text,
        attributes jsonb NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)""",
    "CREATE INDEX devices_resident ON devices (resident_id)",
    "CREATE INDEX devices_serial ON devices (serial_port, serial_addr)",
    "CREATE INDEX devices_zigbee ON devices (zigbee_name)",
    "CREATE INDEX devices_sia ON devices (sia_account, sia_zone)",
    """CREATE TABLE residents (
        resident_id text PRIMARY KEY,
        name text NOT NULL,
        phone text, building text, unit text, room text, grid text,
        lives_alone boolean NOT NULL DEFAULT false,
        medical_notes text,
        contacts jsonb NOT NULL DEFAULT '[]',
        attributes jsonb NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)""",
    """CREATE TABLE resident_responders (
        resident_id text NOT NULL,
        responder_id text NOT NULL,
        position integer NOT NULL,
        PRIMARY KEY (resident_id, responder_id))""",
    """CREATE TABLE responders (
        responder_id text PRIMARY KEY,
        name text NOT NULL,
        role text NOT NULL,
        phone text, building text, grid text,
        channels jsonb NOT NULL DEFAULT '[]',
        skills jsonb NOT NULL DEFAULT '[]',
        on_duty text,
        attributes jsonb NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)""",
    """CREATE TABLE device_state (
        device_id text PRIMARY KEY,
        last_seen timestamptz NOT NULL,
        battery integer,
        online boolean,
        online_at timestamptz,
        fw text,
        rssi double precision)""",
    """CREATE TABLE pending_devices (
        device_id text PRIMARY KEY,
        first_seen timestamptz NOT NULL,
        last_seen timestamptz NOT NULL,
        messages bigint NOT NULL,
        sos_count bigint NOT NULL,
        last_kind text NOT NULL,
        last_payload text NOT NULL)""",
    # Not partitioned: its key has no time column, and it must be unique across all time.
    """CREATE TABLE event_keys (
        device_id text NOT NULL,
        dedup_key text NOT NULL,
        time timestamptz NOT NULL,
        PRIMARY KEY (device_id, dedup_key))""",
    "CREATE INDEX event_keys_time ON event_keys (time)",
)

# payload is json, not jsonb: json keeps the device's text byte for byte (what SQLite returns
# too) and accepts \u0000, which jsonb refuses; an event must never fail on its payload.
_EVENTS_COLUMNS: Final = """(
        time timestamptz NOT NULL,
        device_id text NOT NULL,
        type text NOT NULL,
        event_id text NOT NULL,
        seq bigint,
        battery integer,
        source text NOT NULL,
        payload json NOT NULL,
        received_at timestamptz NOT NULL)"""

# The primary key (device, metric, time) is also the readings-by-device index: one extra index
# per row would cost ingest rate, and time-range scans are served by partition pruning.
_READINGS_COLUMNS: Final = """(
        time timestamptz NOT NULL,
        device_id text NOT NULL,
        metric text NOT NULL,
        value double precision NOT NULL,
        PRIMARY KEY (device_id, metric, time))"""

_TIME_INDEXES: Final[tuple[str, ...]] = (
    "CREATE INDEX events_device_time ON events (device_id, time DESC)",
    "CREATE INDEX events_time ON events (time DESC)",
)

NATIVE_V1: Final[tuple[str, ...]] = (
    f"CREATE TABLE readings {_READINGS_COLUMNS} PARTITION BY RANGE (time)",
    f"CREATE TABLE events {_EVENTS_COLUMNS} PARTITION BY RANGE (time)",
    *_TIME_INDEXES,
)

# --- TimescaleDB (only where the extension exists) --------------------------------------------
READINGS_COMPRESS_AFTER: Final = "7 days"
READINGS_RETAIN: Final = "400 days"
EVENTS_COMPRESS_AFTER: Final = "30 days"
EVENTS_RETAIN: Final = "1825 days"  # emergency calls are records: five years

TIMESCALE_V1: Final[tuple[str, ...]] = (
    f"CREATE TABLE readings {_READINGS_COLUMNS}",
    f"CREATE TABLE events {_EVENTS_COLUMNS}",
    *_TIME_INDEXES,
    # No default time index: _TIME_INDEXES already has the ones the queries use.
    "SELECT create_hypertable('readings', 'time', chunk_time_interval => INTERVAL '1 day',"
    " create_default_indexes => false)",
    "SELECT create_hypertable('events', 'time', chunk_time_interval => INTERVAL '7 days',"
    " create_default_indexes => false)",
    "ALTER TABLE readings SET (timescaledb.compress,"
    " timescaledb.compress_segmentby = 'device_id, metric',"
    " timescaledb.compress_orderby = 'time DESC')",
    "ALTER TABLE events SET (timescaledb.compress,"
    " timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'time DESC')",
    f"SELECT add_compression_policy('readings', INTERVAL '{READINGS_COMPRESS_AFTER}')",
    f"SELECT add_compression_policy('events', INTERVAL '{EVENTS_COMPRESS_AFTER}')",
    f"SELECT add_retention_policy('readings', INTERVAL '{READINGS_RETAIN}')",
    f"SELECT add_retention_policy('events', INTERVAL '{EVENTS_RETAIN}')",
)

VIEWS_V1: Final[tuple[str, ...]] = (
    "CREATE VIEW v_readings AS SELECT time, device_id, metric, value FROM readings",
    "CREATE VIEW v_events AS SELECT time, device_id, type, event_id, payload FROM events",
    """CREATE VIEW v_devices AS
        SELECT d.device_id, d.type, d.name, d.resident_id, d.building, d.unit, d.room,
               s.last_seen, s.battery, COALESCE(s.online, false) AS online
        FROM devices d LEFT JOIN device_state s ON s.device_id = d.device_id""",
)


# Alerts (alerts/store.py): small, mutable, kept as records, so plain (unpartitioned) tables.
# The partial unique index on active_key makes "a repeat joins the active alert, never a
# second one" hold across gateway instances; its predicate text must equal
# _alerts.ACTIVE_PREDICATE, because INSERT … ON CONFLICT infers the index from it.
ALERTS_V2: Final[tuple[str, ...]] = (
    """CREATE TABLE alerts (
        id text PRIMARY KEY,
        kind text NOT NULL,
        priority text NOT NULL CHECK (priority IN ('P1', 'P2', 'P3')),
        state text NOT NULL
            CHECK (state IN ('open', 'acknowledged', 'resolved', 'cancelled')),
        device_id text,
        resident_id text,
        active_key text NOT NULL,
        count integer NOT NULL DEFAULT 1,
        steps jsonb NOT NULL DEFAULT '[]',
        step_index integer NOT NULL DEFAULT 0,
        next_due_at timestamptz,
        claim text,
        acked_at timestamptz,
        acked_by text,
        resolved_at timestamptz,
        resolved_by text,
        outcome text,
        note text,
        source text NOT NULL,
        source_seq bigint,
        detail json NOT NULL DEFAULT '{}',
        opened_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL)""",
    "CREATE UNIQUE INDEX alerts_active_key ON alerts (active_key)"
    " WHERE state IN ('open', 'acknowledged')",
    "CREATE INDEX alerts_due ON alerts (next_due_at) WHERE state = 'open'",
    "CREATE INDEX alerts_opened ON alerts (opened_at)",
    "CREATE INDEX alerts_state_opened ON alerts (state, opened_at)",
    "CREATE INDEX alerts_device ON alerts (device_id, opened_at)",
    "CREATE INDEX alerts_resident ON alerts (resident_id, opened_at)",
    "CREATE INDEX alerts_acked_by ON alerts (acked_by) WHERE state = 'acknowledged'",
    # Which trigger (an event's dedup key) went to which alert: a redelivered event changes
    # nothing. Not partitioned (its key has no time); retention must prune it together with
    # the alerts it points to.
    """CREATE TABLE alert_triggers (
        trigger_key text PRIMARY KEY,
        alert_id text NOT NULL)""",
    # No foreign keys (here or below), as on SQLite, where they are not enforced: both
    # backends then accept exactly the same writes, and retention deletes parent and
    # children in one transaction anyway.
    # detail is json, not jsonb: the caller's text comes back byte for byte, as from SQLite.
    """CREATE TABLE alert_timeline (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        alert_id text NOT NULL,
        at timestamptz NOT NULL,
        actor text NOT NULL,
        action text NOT NULL,
        detail json NOT NULL DEFAULT '{}')""",
    "CREATE INDEX alert_timeline_alert ON alert_timeline (alert_id, id)",
    """CREATE TABLE accept_tokens (
        token_hash text PRIMARY KEY,
        alert_id text NOT NULL,
        responder_id text NOT NULL,
        created_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL,
        used_at timestamptz,
        action text)""",
    "CREATE INDEX accept_tokens_alert ON accept_tokens (alert_id)",
    """CREATE VIEW v_alerts AS
        SELECT id, opened_at, device_id, resident_id, kind, priority, state, acked_at,
               acked_by, resolved_at, outcome
        FROM alerts""",
)


# Logins of the duty-desk API and dashboard (gateway/users.py): only hashes of tokens and
# session ids are stored. The role is checked in code, so a new role needs no migration.
USERS_V3: Final[tuple[str, ...]] = (
    """CREATE TABLE users (
        name text PRIMARY KEY,
        role text NOT NULL,
        token_hash text NOT NULL UNIQUE,
        created_at timestamptz NOT NULL,
        token_set_at timestamptz NOT NULL)""",
    """CREATE TABLE sessions (
        id_hash text PRIMARY KEY,
        user_name text NOT NULL,
        created_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL)""",
    "CREATE INDEX sessions_user ON sessions (user_name)",
    "CREATE INDEX sessions_expires ON sessions (expires_at)",
)


# The audit log (gateway/audit.py): human actions and reads of residents' cards. Append-only;
# id only grows, so it orders entries of the same instant. detail is json (text kept as given).
AUDIT_V4: Final[tuple[str, ...]] = (
    """CREATE TABLE audit_log (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at timestamptz NOT NULL,
        actor text NOT NULL,
        role text NOT NULL,
        action text NOT NULL,
        target_kind text NOT NULL,
        target_id text,
        detail json NOT NULL DEFAULT '{}',
        client_ip text)""",
    "CREATE INDEX audit_log_at ON audit_log (at, id)",
    "CREATE INDEX audit_log_target ON audit_log (target_kind, target_id, at)",
    "CREATE INDEX audit_log_actor ON audit_log (actor, at)",
)


# The registry's version (gateway/registry.py): bumped by a statement trigger in the same
# transaction as any change to devices, residents, responders or assignments, whoever made
# it, so one single-row read tells every instance whether its in-memory registry is current.
REGISTRY_TABLES: Final = ("devices", "residents", "responders", "resident_responders")
REGISTRY_VERSION_V5: Final[tuple[str, ...]] = (
    """CREATE TABLE registry_version (
        id integer PRIMARY KEY CHECK (id = 1),
        version bigint NOT NULL)""",
    "INSERT INTO registry_version (id, version) VALUES (1, 1)",
    """CREATE FUNCTION bump_registry_version() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE registry_version SET version = version + 1 WHERE id = 1;
            RETURN NULL;
        END $$""",
    *(
        f"""CREATE TRIGGER {table}_bumps_registry
            AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION bump_registry_version()"""
        for table in REGISTRY_TABLES
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
    "ALTER TABLE alerts ADD COLUMN assignee text",
    "ALTER TABLE alerts ADD COLUMN incident_id text",
    """UPDATE alerts SET acked_by = f.actor, acked_at = f.at
      FROM (SELECT DISTINCT ON (alert_id) alert_id, actor, at FROM alert_timeline
            WHERE action IN ('accepted', 'acknowledged') ORDER BY alert_id, at, id) f
      WHERE f.alert_id = alerts.id""",
    """UPDATE alerts SET acked_by = 'responder:' || acked_by
      WHERE acked_by IS NOT NULL AND acked_by NOT LIKE 'user:%'
        AND acked_by NOT LIKE 'responder:%' AND acked_by <> 'system'""",
    """UPDATE alerts SET assignee = COALESCE(
        (SELECT 'responder:' || (t.detail::jsonb ->> 'responder_id') FROM alert_timeline t
          WHERE t.alert_id = alerts.id AND t.action = 'assigned'
            AND (t.detail::jsonb ->> 'responder_id') IS NOT NULL
          ORDER BY t.at DESC, t.id DESC LIMIT 1),
        acked_by)
      WHERE acked_by IS NOT NULL""",
    "DROP INDEX alerts_acked_by",
    "CREATE INDEX alerts_assignee ON alerts (assignee) WHERE state = 'acknowledged'",
    "CREATE INDEX alerts_incident ON alerts (incident_id) WHERE incident_id IS NOT NULL",
    """CREATE TABLE incidents (
        id text PRIMARY KEY,
        kind text NOT NULL,
        place text NOT NULL,
        priority text NOT NULL CHECK (priority IN ('P1', 'P2', 'P3')),
        state text NOT NULL CHECK (state IN ('open', 'closed')),
        lead_alert_id text NOT NULL,
        opened_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        closed_at timestamptz,
        closed_by text)""",
    "CREATE UNIQUE INDEX incidents_open ON incidents (kind, place) WHERE state = 'open'",
    "CREATE INDEX incidents_opened ON incidents (opened_at)",
)


# Inputs set aside for good (see the SQLite schema): an escaped copy, never retried.
SET_ASIDE_V9: Final[tuple[str, ...]] = (
    """CREATE TABLE set_aside (
        id bigserial PRIMARY KEY,
        at timestamptz NOT NULL,
        lane text NOT NULL,
        source text NOT NULL,
        reason text NOT NULL,
        content text NOT NULL)""",
    "CREATE INDEX set_aside_at ON set_aside (at)",
    """CREATE TABLE device_flags (
        device_id text PRIMARY KEY,
        since timestamptz NOT NULL,
        last_over timestamptz NOT NULL,
        over_count bigint NOT NULL)""",
    # One definition of "online" (see the SQLite schema): the view judges by the timeouts
    # the gateway writes here from [alerts] offline_after at every start.
    """CREATE TABLE device_timeouts (
        type text PRIMARY KEY,
        seconds double precision NOT NULL)""",
    """CREATE OR REPLACE VIEW v_devices AS
        SELECT d.device_id, d.type, d.name, d.resident_id, d.building, d.unit, d.room,
               s.last_seen, s.battery,
               (COALESCE(s.online, false) AND s.last_seen >= now() - make_interval(
                    secs => COALESCE(t.seconds, dt.seconds, 3600))) AS online
        FROM devices d
        LEFT JOIN device_state s ON s.device_id = d.device_id
        LEFT JOIN device_timeouts t ON t.type = d.type
        LEFT JOIN device_timeouts dt ON dt.type = 'default'""",
)


def migrations(timescale: bool) -> Sequence[tuple[int, Sequence[str]]]:
    """(version, statements), strictly increasing. Append new steps; never edit a released one.

    ``timescale`` only matters for a database that has no version 1 yet.
    """
    time_tables = TIMESCALE_V1 if timescale else NATIVE_V1
    return (
        (1, (*_REGISTRY_AND_STATE, *time_tables, *VIEWS_V1)),
        (2, ALERTS_V2),
        (3, USERS_V3),
        (4, AUDIT_V4),
        (5, REGISTRY_VERSION_V5),
        (7, _V7_PEOPLE_AND_INCIDENTS),
        (9, SET_ASIDE_V9),
    )


LATEST: Final = migrations(False)[-1][0]


# --- native monthly partitions -----------------------------------------------------------------
@dataclass(frozen=True, slots=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def of(cls, ts: datetime) -> Month:
        utc = ts.astimezone(UTC)
        return cls(utc.year, utc.month)

    def next(self) -> Month:
        if self.is_last:
            return self  # nothing after it; its partition is open-ended
        return Month(self.year + 1, 1) if self.month == 12 else Month(self.year, self.month + 1)

    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def is_last(self) -> bool:
        return (self.year, self.month) == (9999, 12)  # datetime's last month

    def end(self) -> datetime:
        """Exclusive upper bound (the last month ends at datetime.max, see is_last)."""
        return datetime.max.replace(tzinfo=UTC) if self.is_last else self.next().start()

    def suffix(self) -> str:
        return f"y{self.year:04d}m{self.month:02d}"


def partition_name(table: str, month: Month) -> str:
    return f"{table}_{month.suffix()}"


def create_partition_sql(table: str, month: Month) -> str:
    # Bounds are rendered with an explicit +00:00 so the session time zone cannot shift them.
    upper = "(MAXVALUE)" if month.is_last else f"('{month.end().isoformat()}')"
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(table, month)} PARTITION OF {table}"
        f" FOR VALUES FROM ('{month.start().isoformat()}') TO {upper}"
    )


PARTITION_NAME_RE: Final = r"^(readings|events)_y(\d{4})m(\d{2})$"

LIST_PARTITIONS_SQL: Final = """
SELECT p.relname, c.relname
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
WHERE p.relname = ANY(%s) AND p.relnamespace = current_schema()::regnamespace
"""

IS_NATIVE_PARTITIONED_SQL: Final = """
SELECT EXISTS (
  SELECT 1 FROM pg_partitioned_table t JOIN pg_class c ON c.oid = t.partrelid
  WHERE c.relname = 'readings' AND c.relnamespace = current_schema()::regnamespace)
"""
