"""``scgw bench``: the benchmark behind the SPEC's performance figures.

It starts what it needs (mosquitto from the shipped config, PostgreSQL; SQLite is a file),
runs the gateway as a separate process, offers QoS 1 telemetry from a cheap load generator,
presses buttons and times the notifications at a local webhook, and checks its own figures:
every message the broker acknowledged must be stored once.

Modules: ``cli`` (the command), ``runner`` (the phases), ``report`` (figures, JSON, table),
``loadgen`` (the telemetry generator process), ``webhook``, ``gateway_process``, ``procstat``,
``waiting``, and ``services`` (the private PostgreSQL and mosquitto servers, shared with the
test suite through ``tests/harness``).
"""
