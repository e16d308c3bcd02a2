"""Notification channels: the responder app over MQTT, and anything Apprise reaches.

The engine builds a ``Notifier`` with both channels, turns each step's targets into
``Recipient``s, renders a ``Notice`` per recipient (their language, their own accept link) and
records every ``Delivery`` on the alert's timeline.
"""

from alerts.channels.base import (
    Channel,
    Delivery,
    JsonValue,
    Notice,
    Notifier,
    NotifyOutcome,
    Recipient,
    RetryPolicy,
    make_notice,
    redact_spec,
    resident_summary,
)

__all__ = [
    "Channel",
    "Delivery",
    "JsonValue",
    "Notice",
    "Notifier",
    "NotifyOutcome",
    "Recipient",
    "RetryPolicy",
    "make_notice",
    "redact_spec",
    "resident_summary",
]
