"""SIA DC-09 receiver: alarm panels and social-alarm units over TCP.

Per connection, frames (LF…CR, several per read or split over reads) are answered in order:

* CRC, length, header or timestamp wrong → ``NAK`` (with our time, so the panel can fix its
  clock and resend);
* an account not in ``[[sia.accounts]]``, a token we do not take, data we cannot read, an
  encrypted message we cannot decrypt, or a plain one for an account that has a key → ``DUH``;
* otherwise every report in it goes to the intake (events the event path, like any other
  source's) and the message is ``ACK``ed once all of them are durable — a panel that got no
  ACK repeats the message with the same sequence number, and the store keeps one copy.
  ``NULL`` link tests are ACKed.

Account and zone map to a registered device (``sia_account``, ``sia_zone``); a device
registered with an account and no zone takes all of that account's zones. Reports from
unregistered zones go to the pending list and are ACKed (they are kept).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from devices import dc09
from devices.codec import Rejected, RejectReason
from devices.codecs import Skipped
from gateway.config import SiaSettings
from gateway.intake.bulk_path import Room
from gateway.intake.intake import Intake
from gateway.intake.parcel import CallbackAck, JoinedAck
from gateway.metrics import Metrics

log = logging.getLogger(__name__)

LANE = "sia"
READ_SIZE = 4096
SUPPORTED_TOKENS = frozenset({"SIA-DCS", "ADM-CID", "NULL"})


@dataclass(slots=True)
class ReceiverState:
    bind: str
    listening: bool = False
    connections: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "bind": self.bind,
            "listening": self.listening,
            "connections": self.connections,
            "last_error": self.last_error,
        }


class SiaReceiver:
    def __init__(
        self,
        settings: SiaSettings,
        *,
        intake: Intake,
        metrics: Metrics,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        assert settings.bind is not None
        self._settings = settings
        host, _, port = settings.bind.rpartition(":")  # validated by the config
        self._host, self._port = host.strip("[]"), int(port)
        self._keys: dict[str, bytes | None] = {
            a.account.upper(): dc09.parse_key(a.key) if a.key else None for a in settings.accounts
        }
        self._tolerance = dc09.Tolerance(
            decimal_length=settings.tolerate_decimal_length,
            binary_crc=settings.tolerate_binary_crc,
        )
        self._intake = intake
        self._metrics = metrics
        self._clock = clock
        self._writers: set[asyncio.StreamWriter] = set()
        self.state = ReceiverState(settings.bind)
        self.port: int | None = None  # the bound port (differs from the config for port 0)

    async def run(self) -> None:
        try:
            server = await asyncio.start_server(self._connection, self._host, self._port)
        except OSError as exc:
            self.state.last_error = f"cannot listen on {self._settings.bind}: {exc.strerror}"
            raise
        self.port = server.sockets[0].getsockname()[1]
        self.state.listening = True
        self.state.last_error = None
        log.info("SIA DC-09 receiver listening on %s:%d", self._host, self.port)
        try:
            async with server:
                await server.serve_forever()
        finally:
            self.state.listening = False
            for writer in list(self._writers):
                writer.close()

    # -- connections --------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        self._writers.add(writer)
        self.state.connections += 1
        self._metrics.sia_connections.inc()
        framer = dc09.Dc09Framer(binary_crc=self._tolerance.binary_crc)
        try:
            while True:
                data = await asyncio.wait_for(reader.read(READ_SIZE), self._settings.idle_timeout)
                if not data:
                    return
                for item in framer.feed(data):
                    if isinstance(item, Skipped):
                        self._metrics.sia_skipped.labels(reason=item.reason).inc()
                        log.debug(
                            "SIA %s: skipped %d bytes (%s)", peer, len(item.data), item.reason
                        )
                        continue
                    writer.write(await self.handle(item))
                    await writer.drain()
        except TimeoutError:
            log.info("SIA connection from %s idle; closed", peer)
        except (ConnectionError, OSError) as exc:
            log.info("SIA connection from %s lost: %s", peer, exc)
        except Exception:  # the boundary of one connection: logged, and only it ends
            log.exception("SIA connection from %s failed", peer)
        finally:
            self._writers.discard(writer)
            self.state.connections -= 1
            self._metrics.sia_connections.dec()
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    # -- one message --------------------------------------------------------------------------
    async def handle(self, frame: bytes) -> bytes:
        """The answer to one frame (LF and CR stripped), once what it reports is durable."""
        now = self._clock()
        self._metrics.received.labels(lane=LANE).inc()
        style = dc09.Style()
        try:
            body, style = dc09.check_frame(frame, self._tolerance)
            header, rest = dc09.parse_header(body, style)
            if header.token not in SUPPORTED_TOKENS:
                raise dc09.Dc09Error(
                    dc09.Fault.UNSUPPORTED, f"token {header.token!r} not supported", header
                )
            if header.account not in self._keys:
                raise dc09.Dc09Error(
                    dc09.Fault.UNKNOWN_ACCOUNT, f"account {header.account!r} unknown", header
                )
            key = self._keys[header.account]
            if key is not None and not header.encrypted:
                raise dc09.Dc09Error(
                    dc09.Fault.UNSUPPORTED, "plain message for an account with a key", header
                )
            message = dc09.parse_content(header, rest, key)
            self._check_time(message, now)
            decoded = dc09.decode_reports(message, now)
        except dc09.Dc09Error as exc:
            return self._refuse(exc, now, style)
        loop = asyncio.get_running_loop()
        durable: asyncio.Future[bool] = loop.create_future()

        def answer(ok: bool) -> None:
            if not durable.done():
                durable.set_result(ok)

        joined = JoinedAck(CallbackAck(lambda: answer(True), lambda: answer(False)), len(decoded))
        where = f"sia account {header.account}"
        for index, item in enumerate(decoded):
            await self._intake.route(
                LANE,
                where,
                item,
                joined.part(),
                poison_key=f"sia#{header.account}#{header.seq}#{index}",
                room=Room.ENQUEUE,
            )
        if not await durable:
            # Not kept this time (the gateway keeps failing on it): the panel sends it again.
            self._metrics.sia_responses.labels(response="nak").inc()
            return dc09.nak(self._clock(), style)
        self._metrics.sia_responses.labels(response="ack").inc()
        return dc09.ack(header, key, self._clock())

    def _check_time(self, message: dc09.Message, now: datetime) -> None:
        mode = self._settings.check_timestamps
        if mode == "off" or (mode == "encrypted" and not message.header.encrypted):
            return
        ts = message.timestamp
        if ts is None:
            if mode == "all":
                raise dc09.Dc09Error(dc09.Fault.BAD_TIMESTAMP, "no timestamp", message.header)
            return
        if not dc09.timestamp_ok(
            ts, now, past=self._settings.timestamp_past, future=self._settings.timestamp_future
        ):
            raise dc09.Dc09Error(
                dc09.Fault.BAD_TIMESTAMP,
                f"timestamp {ts.isoformat()} outside the window around {now.isoformat()}",
                message.header,
            )

    def _refuse(self, exc: dc09.Dc09Error, now: datetime, style: dc09.Style) -> bytes:
        self._metrics.sia_refused.labels(fault=exc.fault.value).inc()
        reason = (
            RejectReason.UNKNOWN_DEVICE
            if exc.fault is dc09.Fault.UNKNOWN_ACCOUNT
            else RejectReason.INVALID_PAYLOAD
        )
        where = f"sia account {exc.header.account}" if exc.header else "sia"
        self._intake.reject(LANE, where, Rejected(reason, f"{exc.fault.value}: {exc.detail}"))
        if exc.fault in dc09.NAK_FAULTS or exc.header is None:
            self._metrics.sia_responses.labels(response="nak").inc()
            return dc09.nak(now, style)
        self._metrics.sia_responses.labels(response="duh").inc()
        return dc09.duh(exc.header)
