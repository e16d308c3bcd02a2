"""The bench's telemetry load generator: QoS 1 PUBLISH packets encoded ahead, written in bulk.

Why not ``scgw sim load`` (paho) or ``mosquitto_pub -l``: on the 2-core bench machine the
generator shares the CPU with the gateway, the broker and the database, so it must cost as
little per message as possible. Measured per message (publisher CPU, QoS 1, 15,000 msg/s):
paho in 3 processes ≈ 80 µs, ``mosquitto_pub -l`` ≈ 9–13 µs with 3–10 processes but ≈ 44 µs
with 100 (one process per device: its topic is fixed), this generator a few µs — and it
spreads the load over any number of devices, as a real fleet does. Each packet is encoded
once (topic, packet id, JSON payload with a unique ``ts`` per device); sending is one
``sendall`` of many packets per tick, counting the broker's PUBACKs as they come back.

Run as ``python -m bench.loadgen --port P --id-prefix X --devices N --rate R
--duration S``. It connects, prints ``ready`` and waits for a line on stdin (so several
generators start together), then prints one JSON line: ``sent``, ``acked`` (PUBACKed by the
broker), ``seconds``, ``cpu_seconds``. Exit 0 when every message was acked.
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PUBACK = 0x40
PINGRESP = 0xD0
TICK = 0.002  # seconds between sends: small bursts keep the offered rate smooth
CHUNK_SECONDS = 0.5  # packets are encoded this far ahead of sending
DRAIN_TIMEOUT = 60.0  # after the last send, wait this long for the broker's PUBACKs
PING_EVERY = 20.0  # keepalive is 60 s


class LoadError(RuntimeError):
    """The broker refused or dropped the generator's connection."""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    host: str
    port: int
    prefix: str
    id_prefix: str
    devices: int
    rate: float
    duration: float
    window: int
    base_ts: float  # epoch seconds of message 0's ts

    def device_id(self, index: int) -> str:
        return load_device_id(self.id_prefix, index)


def load_device_id(id_prefix: str, index: int) -> str:
    return f"{id_prefix}{index:05d}"


def remaining_length(n: int) -> bytes:
    """MQTT variable-length integer."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def encode_publish_qos1(topic: bytes, packet_id: int, payload: bytes) -> bytes:
    variable = len(topic).to_bytes(2, "big") + topic + packet_id.to_bytes(2, "big")
    return b"\x32" + remaining_length(len(variable) + len(payload)) + variable + payload


def encode_connect(client_id: str, keepalive: int = 60) -> bytes:
    cid = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02" + keepalive.to_bytes(2, "big")  # 3.1.1, clean session
    body = variable + len(cid).to_bytes(2, "big") + cid
    return b"\x10" + remaining_length(len(body)) + body


def packets(spec: LoadSpec, start: int, count: int) -> list[bytes]:
    """Messages ``start .. start+count-1``: message i goes to device ``i % devices`` with a ts
    of ``base_ts + i`` microseconds, so (device, metric, ts) is unique and every message is
    one stored reading."""
    topics = [f"{spec.prefix}/{spec.device_id(d)}/telemetry".encode() for d in range(spec.devices)]
    base = datetime.fromtimestamp(spec.base_ts, UTC)
    out = []
    for i in range(start, start + count):
        ts = (base + timedelta(microseconds=i)).isoformat()
        payload = (
            f'{{"ts":"{ts}","seq":{i // spec.devices},'
            f'"metrics":{{"temperature":{20 + i % 100 / 10:.1f}}}}}'
        ).encode()
        out.append(encode_publish_qos1(topics[i % spec.devices], i % 65535 + 1, payload))
    return out


def _chunks(spec: LoadSpec) -> Iterator[list[bytes]]:
    total = int(spec.rate * spec.duration)
    size = max(1, int(spec.rate * CHUNK_SECONDS))
    for start in range(0, total, size):
        yield packets(spec, start, min(size, total - start))


class _Acks:
    """Counts PUBACKs in the byte stream from the broker (nothing else is expected but
    PINGRESP: the generator subscribes to nothing)."""

    def __init__(self) -> None:
        self.count = 0
        self._buf = b""

    def feed(self, data: bytes) -> None:
        buf = self._buf + data
        whole = len(buf) // 4 * 4
        # Fast path, in C: a run of 4-byte PUBACKs (40 02 id id), the usual case.
        if buf[0:whole:4] == b"\x40" * (whole // 4) and buf[1:whole:4] == b"\x02" * (whole // 4):
            self.count += whole // 4
            buf = buf[whole:]
        pos = 0
        while len(buf) - pos >= 2:
            kind = buf[pos]
            length = buf[pos + 1]  # PUBACK and PINGRESP are short: one length byte
            if len(buf) - pos < 2 + length:
                break
            if kind == PUBACK:
                self.count += 1
            elif kind != PINGRESP:
                raise LoadError(f"unexpected packet type 0x{kind:02x} from the broker")
            pos += 2 + length
        self._buf = buf[pos:]


def _connect(spec: LoadSpec, client_id: str) -> socket.socket:
    sock = socket.create_connection((spec.host, spec.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(encode_connect(client_id))
    connack = b""
    while len(connack) < 4:
        chunk = sock.recv(4 - len(connack))
        if not chunk:
            raise LoadError("broker closed the connection before CONNACK")
        connack += chunk
    if connack[0] != 0x20 or connack[3] != 0:
        raise LoadError(f"broker refused the connection: CONNACK {connack.hex()}")
    sock.settimeout(None)
    return sock


def _read_acks(sock: socket.socket, acks: _Acks, wait: float) -> None:
    """Whatever PUBACKs arrived within ``wait`` seconds."""
    readable, _, _ = select.select([sock], [], [], wait)
    if readable:
        data = sock.recv(1 << 20)
        if not data:
            raise LoadError("broker closed the connection")
        acks.feed(data)


def run(spec: LoadSpec, client_id: str) -> dict[str, float]:
    sock = _connect(spec, client_id)
    chunks = _chunks(spec)
    pending = next(chunks, [])  # encoded before the start: no burst at the beginning
    print("ready", flush=True)
    sys.stdin.readline()  # the go signal: every generator starts at the same moment
    acks = _Acks()
    taken = 0  # how much of ``pending`` is sent
    sent = 0
    start = time.monotonic()
    last_ping = start
    while True:
        now = time.monotonic()
        due = int((now - start) * spec.rate)
        room = spec.window - (sent - acks.count)  # a bounded in-flight window, like a device
        want = min(due - sent, room)
        if want > 0:
            batch: list[bytes] = []
            while len(batch) < want:
                if taken == len(pending):
                    pending, taken = next(chunks, []), 0
                    if not pending:
                        break
                end = min(len(pending), taken + want - len(batch))
                batch.extend(pending[taken:end])
                taken = end
            if not batch:
                break  # everything sent
            sock.sendall(b"".join(batch))
            sent += len(batch)
        if now - last_ping >= PING_EVERY:
            sock.sendall(b"\xc0\x00")
            last_ping = now
        # Sleep a tick, then take every PUBACK that came meanwhile in one read: waking for
        # each PUBACK as it arrives would cost more than the sending.
        time.sleep(TICK)
        _read_acks(sock, acks, 0)
    seconds = time.monotonic() - start
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while acks.count < sent and time.monotonic() < deadline:
        _read_acks(sock, acks, 0.05)
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "sent": sent,
        "acked": acks.count,
        "seconds": round(seconds, 3),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", default="scgw")
    parser.add_argument("--id-prefix", required=True)
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--window", type=int, default=1000)
    parser.add_argument("--base-ts", type=float, default=None)
    parser.add_argument("--client-id", default="")
    args = parser.parse_args(argv)
    spec = LoadSpec(
        host=args.host,
        port=args.port,
        prefix=args.prefix,
        id_prefix=args.id_prefix,
        devices=args.devices,
        rate=args.rate,
        duration=args.duration,
        window=min(args.window, 65000),  # packet ids must stay unique while in flight
        base_ts=args.base_ts if args.base_ts is not None else time.time() - 60,
    )
    try:
        result = run(spec, args.client_id or f"scgw-bench-load-{args.id_prefix}")
    except (OSError, LoadError) as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0 if result["acked"] == result["sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
