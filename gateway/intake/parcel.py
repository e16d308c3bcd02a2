"""What travels through the intake: a codec's output with its acknowledgement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

from alerts.replies import Reply
from devices.codecs import Decoded


class Ack(Protocol):
    """How one input is acknowledged to its source."""

    def done(self) -> None:
        """The input is durable (stored, spooled, or set aside for good): acknowledge it
        (PUBACK, serial ``81``, DC-09 ``ACK``). Called at most once."""

    def later(self) -> None:
        """Not now: leave it unacknowledged so the source sends it again (the broker after a
        reconnect, a panel after its retry timer)."""

    def current(self) -> bool:
        """Still acknowledgeable (an MQTT ack belongs to the connection it came on); an input
        whose ack is stale is not worth retrying here: the source resends it anyway."""


class NoAck:
    """For inputs nobody waits for (serial readings, $SYS statistics)."""

    def done(self) -> None:
        pass

    def later(self) -> None:
        pass

    def current(self) -> bool:
        return True


NO_ACK: Final = NoAck()


class CallbackAck:
    """``done``/``later`` call the given functions once; the first call wins."""

    def __init__(
        self, done: Callable[[], object], later: Callable[[], object] | None = None
    ) -> None:
        self._done = done
        self._later = later
        self._answered = False

    def done(self) -> None:
        if not self._answered:
            self._answered = True
            self._done()

    def later(self) -> None:
        if not self._answered:
            self._answered = True
            if self._later is not None:
                self._later()

    def current(self) -> bool:
        return not self._answered


class JoinedAck:
    """One acknowledgement for several parts (a DC-09 message reporting several zones):
    done once every part is done; ``later`` as soon as any part is."""

    def __init__(self, ack: Ack, parts: int) -> None:
        self._ack = ack
        self._left = parts
        if parts == 0:
            ack.done()

    def part(self) -> Ack:
        return _Part(self)

    def _done(self) -> None:
        self._left -= 1
        if self._left == 0:
            self._ack.done()

    def _later(self) -> None:
        self._ack.later()


class _Part:
    def __init__(self, joined: JoinedAck) -> None:
        self._joined = joined
        self._answered = False

    def done(self) -> None:
        if not self._answered:
            self._answered = True
            self._joined._done()

    def later(self) -> None:
        if not self._answered:
            self._answered = True
            self._joined._later()

    def current(self) -> bool:
        return not self._answered


@dataclass(frozen=True, slots=True)
class Parcel:
    """One input for the event path: a device's messages (at least one event), or a
    responder's reply from the app."""

    lane: str  # the source, as metrics label it: "event", "zigbee2mqtt", "serial", "sia", …
    where: str  # for logs: topic, port/address, SIA account
    body: Decoded | Reply
    ack: Ack
    poison_key: str  # stable across redeliveries of the same input
    received_mono: float  # when it arrived (time.monotonic)

    @property
    def fair_key(self) -> str:
        """Whose turn it is: one queue per device address; replies share one."""
        body = self.body
        if isinstance(body, Reply):
            return "\x00replies"
        return f"{body.address.source}\x00{'/'.join(body.address.key)}"

    @property
    def alarm(self) -> bool:
        body = self.body
        return not isinstance(body, Reply) and body.alarm
