"""Prometheus metrics of one gateway instance.

Each instance has its own registry, so tests and an embedded demo never mix their counts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from devices.codec import RejectReason


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.received = Counter(
            "scgw_messages_received", "Messages taken from a source", ["lane"], registry=r
        )
        self.stored = Counter(
            "scgw_messages_stored", "Messages durably stored", ["kind"], registry=r
        )
        self.duplicates = Counter(
            "scgw_duplicates", "Redelivered or repeated messages absorbed", ["kind"], registry=r
        )
        self.rejected = Counter(
            "scgw_messages_rejected", "Inputs refused, by reason", ["lane", "reason"], registry=r
        )
        self.flagged = Counter(
            "scgw_inputs_flagged",
            "Inputs kept after a correction (clock_ahead: receive time used; nul_removed)",
            ["lane", "flag"],
            registry=r,
        )
        self.readings_stored = Counter(
            "scgw_readings_stored", "Telemetry data points stored", registry=r
        )
        self.pending = Counter(
            "scgw_pending_sightings", "Messages from devices not in the registry", registry=r
        )
        self.batch_size = Histogram(
            "scgw_batch_size",
            "Telemetry messages per committed batch",
            buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000),
            registry=r,
        )
        self.ack_lag = Histogram(
            "scgw_ack_lag_seconds",
            "From receipt to PUBACK (after the durable write)",
            ["lane"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=r,
        )
        self.queue_depth = Gauge(
            "scgw_queue_depth", "Messages received but not yet acked", ["lane"], registry=r
        )
        self.connected = Gauge(
            "scgw_mqtt_connected",
            "1 while the lane's broker connection is up",
            ["lane"],
            registry=r,
        )
        self.store_errors = Counter(
            "scgw_store_errors",
            "Failed durable writes (retried; nothing acked)",
            ["lane"],
            registry=r,
        )
        self.broker_dropped = Gauge(
            "scgw_broker_dropped_messages",
            "Broker-reported dropped publishes ($SYS/broker/publish/messages/dropped)",
            registry=r,
        )
        self.handler_errors = Counter(
            "scgw_event_handler_errors",
            "Stored events a handler failed on",
            ["handler"],
            registry=r,
        )
        self.alert_steps = Counter(
            "scgw_alert_steps",
            "Escalation steps run, by whether anyone was reached",
            ["reached"],
            registry=r,
        )
        self.step_seconds = Histogram(
            "scgw_alert_step_seconds",
            "Time to run one escalation step (targets, links, all channels)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.task_restarts = Counter(
            "scgw_task_restarts", "Supervised background task restarts", ["task"], registry=r
        )
        # -- serial lines, SIA DC-09, zigbee2mqtt ------------------------------------------
        self.readings_dropped = Counter(
            "scgw_readings_dropped",
            "Readings of a source without redelivery dropped while the database was away",
            ["lane"],
            registry=r,
        )
        self.serial_open = Gauge(
            "scgw_serial_port_open", "1 while the serial port is open", ["port"], registry=r
        )
        self.serial_reopens = Counter(
            "scgw_serial_port_reopens",
            "Times a serial port was lost or could not be opened (then retried)",
            ["port"],
            registry=r,
        )
        self.serial_frames = Counter(
            "scgw_serial_frames", "Valid frames read, by type", ["port", "type"], registry=r
        )
        self.serial_skipped = Counter(
            "scgw_serial_skipped",
            "Serial input thrown away (garbage, bad CRC, bad length, ...), in chunks",
            ["port", "reason"],
            registry=r,
        )
        self.serial_skipped_bytes = Counter(
            "scgw_serial_skipped_bytes", "Bytes thrown away", ["port"], registry=r
        )
        self.serial_acks = Counter(
            "scgw_serial_acks_sent", "81 frames written, by status", ["port", "status"], registry=r
        )
        self.sia_connections = Gauge(
            "scgw_sia_connections", "Open DC-09 connections from panels", registry=r
        )
        self.sia_responses = Counter(
            "scgw_sia_responses", "DC-09 answers sent (ack, nak, duh)", ["response"], registry=r
        )
        self.sia_refused = Counter(
            "scgw_sia_refused", "DC-09 messages refused, by fault", ["fault"], registry=r
        )
        self.sia_skipped = Counter(
            "scgw_sia_skipped", "Bytes outside DC-09 frames, in chunks", ["reason"], registry=r
        )
        # -- the database-outage spool ------------------------------------------------------
        self.spooled = Counter(
            "scgw_spooled",
            "Records written to the spool while the database was away, by kind",
            ["kind"],
            registry=r,
        )
        self.drained = Counter(
            "scgw_spool_drained",
            "Spool records replayed into the database, by kind",
            ["kind"],
            registry=r,
        )
        self.spool_refused = Counter(
            "scgw_spool_refused",
            "Batches a full spool refused (left unacked for the broker to keep)",
            ["kind"],
            registry=r,
        )
        self.spool_errors = Counter(
            "scgw_spool_write_errors", "Spool appends the disk refused (retried)", registry=r
        )
        self.spool_set_aside = Counter(
            "scgw_spool_set_aside",
            "Spool records that could not be replayed and were kept aside (see the log)",
            registry=r,
        )
        self.spool_records = Gauge(
            "scgw_spool_records", "Records in the spool waiting for the database", registry=r
        )
        self.spool_bytes = Gauge("scgw_spool_bytes", "Bytes of spool segments on disk", registry=r)
        self.spool_full = Gauge(
            "scgw_spool_full", "1 while the spool is full (readings refused)", registry=r
        )
        # Flooding devices: no device label (thousands of ids); the API names them.
        self.devices_rate_limited = Gauge(
            "scgw_devices_rate_limited",
            "Devices flagged for exceeding their telemetry rate limit (until quiet again)",
            registry=r,
        )
        self.rate_limit_flags = Counter(
            "scgw_rate_limit_flags",
            "Times a device was newly flagged for exceeding its telemetry rate limit",
            registry=r,
        )
        for kind in ("event", "readings", "pending", "reply", "notice"):
            self.spooled.labels(kind=kind)
            self.drained.labels(kind=kind)
        for reason in RejectReason:
            for lane in ("event", "telemetry", "serial", "sia", "zigbee2mqtt"):
                self.rejected.labels(lane=lane, reason=reason.value)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """Current value of one sample (for /readyz detail and tests); 0 when absent."""
        got = self.registry.get_sample_value(name, labels)
        return got if got is not None else 0.0
