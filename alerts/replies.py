"""Replies from the responder app: ``{prefix}/responders/{responder_id}/reply`` carrying
``{"alert_id": …, "action": "accept"|"decline"|"arrived"|"resolve"}``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError

from devices.codec import Rejected, RejectReason
from devices.models import DEVICE_ID_RE

MAX_REPLY_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Reply:
    responder_id: str
    alert_id: str
    action: Literal["accept", "decline", "arrived", "resolve"]


class _ReplyIn(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    alert_id: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    action: Literal["accept", "decline", "arrived", "resolve"]


def reply_topic_responder(topic: str, prefix: str) -> str | None:
    """The responder id when ``topic`` is a reply topic, else None."""
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == prefix and parts[1] == "responders" and parts[3] == "reply":
        return parts[2]
    return None


def parse_reply(responder_id: str, payload: bytes) -> Reply:
    if not DEVICE_ID_RE.match(responder_id):
        raise Rejected(RejectReason.BAD_DEVICE_ID, f"invalid responder id {responder_id[:80]!r}")
    if len(payload) > MAX_REPLY_BYTES:
        raise Rejected(RejectReason.OVERSIZE, f"{len(payload)} bytes > {MAX_REPLY_BYTES}")
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Rejected(RejectReason.MALFORMED_JSON, str(exc)[:160]) from None
    try:
        reply = _ReplyIn.model_validate(data)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise Rejected(RejectReason.INVALID_PAYLOAD, f"{where}: {first['msg']}") from None
    return Reply(responder_id, reply.alert_id, reply.action)
