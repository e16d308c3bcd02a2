"""A broken device flooding the broker, as its own process (it must not share the test's CPU
time slice or GIL with the webhook that times the press):

    python -m tests.faults.flooder mqtt://127.0.0.1:PORT DEVICE COUNT [--valid-events]

Publishes ``COUNT`` QoS 1 messages as fast as the broker takes them, on the device's
telemetry and event topics: malformed JSON, wrong types, unknown event types, binary garbage,
oversize payloads, and well-formed telemetry far over any sane rate. ``--valid-events`` makes
the event-topic share well-formed ``door_open`` events instead (a stuck contact). Prints
"flooding" once connected, "press now" when three quarters of the flood are
published (the test's cue), then one JSON line: what was sent, per kind, and the seconds taken.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from datetime import UTC, datetime

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

OVERSIZE = b'{"metrics": {"temperature": 21.5}, "pad": "' + b"x" * 70_000 + b'"}'
CYCLE = 20  # one cycle: 4 event-topic messages, 16 telemetry-topic messages


def message(n: int, device: str, valid_events: bool) -> tuple[str, str, bytes]:
    """(kind, topic, payload) of the flood's n-th message."""
    k = n % CYCLE
    tele, event = f"scgw/{device}/telemetry", f"scgw/{device}/event"
    if k == 0 and (n // CYCLE) % 20 == 0:  # 1 in 400: oversize, on both topics in turn
        return "oversize", (tele if (n // 400) % 2 else event), OVERSIZE
    if k == 1:
        return "malformed_json", tele, b'{"metrics": {"temperature": 2'
    if k == 2:
        return "wrong_types", tele, b'{"metrics": "hot"}'
    if k == 3:
        return "garbage", tele, b"\xff\xfe\x00garbage\x01"
    if k in (0, 4, 5, 6):
        if valid_events:
            return "valid_event", event, orjson.dumps({"id": f"flood-{n}", "type": "door_open"})
        bad = {
            0: b'{"type": "sos", "ts": ',
            4: b'{"type": 42, "battery": "full"}',
            5: b'{"type": "explode"}',
            6: b"[1, 2, 3]",
        }
        return "event_junk", event, bad[k]
    stamp = datetime.now(UTC).isoformat()
    body = {"ts": stamp, "seq": n, "metrics": {"temperature": 22.0 + (n % 7)}}
    return "over_rate", tele, orjson.dumps(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("device")
    parser.add_argument("count", type=int)
    parser.add_argument("--valid-events", action="store_true")
    args = parser.parse_args(argv)
    host, _, port = args.url.removeprefix("mqtt://").partition(":")

    acked = 0
    lock = threading.Lock()
    done = threading.Event()

    def on_publish(*_: object) -> None:
        nonlocal acked
        with lock:
            acked += 1
            if acked >= args.count:
                done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-{args.device}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect(host, int(port))
    client.loop_start()
    if not connected.wait(10):
        print("cannot connect", file=sys.stderr)
        return 2
    print("flooding", flush=True)
    kinds: dict[str, int] = {}
    start = time.monotonic()
    cue = args.count * 3 // 4
    for n in range(args.count):
        if n == cue:
            print("press now", flush=True)
        kind, topic, payload = message(n, args.device, args.valid_events)
        kinds[kind] = kinds.get(kind, 0) + 1
        client.publish(topic, payload, qos=1)
    ok = done.wait(120)
    seconds = time.monotonic() - start
    client.disconnect()
    client.loop_stop()
    result = {"sent": args.count, "acked": acked, "kinds": kinds, "seconds": seconds}
    print(orjson.dumps(result).decode(), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
