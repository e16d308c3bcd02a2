"""The codec interface: bytes from a source in, a typed message or a counted rejection out."""

from __future__ import annotations

from enum import StrEnum


class RejectReason(StrEnum):
    """Why an input was refused. Each reason is a metrics label, so keep the set small."""

    BAD_TOPIC = "bad_topic"
    BAD_DEVICE_ID = "bad_device_id"
    OVERSIZE = "oversize"
    MALFORMED_JSON = "malformed_json"
    INVALID_PAYLOAD = "invalid_payload"
    UNKNOWN_DEVICE = "unknown_device"
    RATE_LIMITED = "rate_limited"
    ID_MISMATCH = "id_mismatch"
    # The gateway itself failed on this message several times (a bug): set aside, loudly,
    # so that one message cannot hold every later one on its lane.
    POISON = "poison"
    # The database refused the content (a value it cannot store): set aside durably, acked.
    UNSTORABLE = "unstorable"


class Rejected(Exception):
    """Raised by a codec for input it refuses; carries the reason and a short detail."""

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
