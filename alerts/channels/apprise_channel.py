"""Any Apprise URL as a channel: webhooks (``json://``), DingTalk, WeCom bots, Feishu, e-mail,
SMS gateways.

Apprise 2.x (checked on 2.3.0): ``await Apprise.async_notify(...)`` returns an
``AppriseResult``, not a bool. Its ``status`` is an ``AppriseResultStatus``: SUCCESS, FAILURE,
NOMATCH (nothing loaded), PARTIAL, TIMEOUT (the ``timeout=`` deadline passed); ``results``
holds one ``NotifyResult`` per service with a privacy-masked ``url``. Plugins are synchronous
and run in Apprise's own thread pool; Apprise catches what a plugin raises and reports it as a
FAILURE, so the only exception left to this boundary is ``AppriseException`` (a bad call).

One Apprise object per URL, kept: building one parses the URL and loads the plugin, and a
plugin keeps per-endpoint state (its throttle clock) that only works if it is reused.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict

import apprise
from apprise.exception import AppriseException

from alerts.channels.base import Delivery, Notice, Recipient
from alerts.models import Priority

log = logging.getLogger(__name__)

_URL = re.compile(r"\A[A-Za-z][A-Za-z0-9+.\-]*://")
# Services that show no title and cut bodies short are SMS-like: they get ``Message.short``,
# whose accept link is never cut, instead of a body Apprise would truncate mid-link.
SMS_BODY_MAXLEN = 1000

# Red for life, amber for urgent, plain for maintenance (chat cards colour by type).
_NOTIFY_TYPE: dict[Priority, apprise.NotifyType] = {
    Priority.P1: apprise.NotifyType.FAILURE,
    Priority.P2: apprise.NotifyType.WARNING,
    Priority.P3: apprise.NotifyType.INFO,
}


class AppriseChannel:
    """Sends to any ``scheme://…`` spec Apprise knows (``mqtt`` alone is the app channel)."""

    def __init__(self, *, timeout: float = 10.0, cache_size: int = 512) -> None:
        self._timeout = timeout
        self._cache_size = cache_size
        # spec → (Apprise object, whether it is SMS-like); None: Apprise does not support it.
        self._cache: OrderedDict[str, tuple[apprise.Apprise, bool] | None] = OrderedDict()

    def handles(self, spec: str) -> bool:
        return _URL.match(spec.strip()) is not None

    def _service(self, spec: str) -> tuple[apprise.Apprise, bool] | None:
        if spec in self._cache:
            self._cache.move_to_end(spec)
            return self._cache[spec]
        entry: tuple[apprise.Apprise, bool] | None = None
        plugin = apprise.Apprise.instantiate(spec)
        if plugin is not None:
            apobj = apprise.Apprise()
            if apobj.add(plugin):
                sms_like = plugin.title_maxlen <= 0 and plugin.body_maxlen <= SMS_BODY_MAXLEN
                entry = (apobj, sms_like)
        self._cache[spec] = entry
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return entry

    async def send(self, spec: str, recipient: Recipient, notice: Notice) -> Delivery:
        # ``channel`` is filled in by the notifier with the redacted spec; never put the
        # spec itself into a Delivery or a log line.
        service = self._service(spec.strip())
        if service is None:
            return Delivery(False, "apprise", "not a URL Apprise supports", 1, False)
        apobj, sms_like = service
        message = notice.message
        body, title = (message.short, "") if sms_like else (message.body, message.title)
        try:
            result = await apobj.async_notify(
                body=body,
                title=title,
                notify_type=_NOTIFY_TYPE[notice.priority],
                timeout=self._timeout,
            )
        except AppriseException as exc:  # a call Apprise rejects (e.g. a bad timeout value)
            log.error("apprise refused the call: %s", type(exc).__name__)
            return Delivery(False, "apprise", f"apprise error: {type(exc).__name__}", 1, False)
        status = result.status
        services = ", ".join(r.name for r in result.results) or "no service"
        ok = status == apprise.AppriseResultStatus.SUCCESS
        detail = f"{services}: {status.name.lower()}"
        if status == apprise.AppriseResultStatus.TIMEOUT:
            detail += f" (no answer within {self._timeout:g}s)"
        # NOMATCH cannot be fixed by trying again; FAILURE and TIMEOUT may be passing trouble.
        return Delivery(ok, "apprise", detail, 1, status != apprise.AppriseResultStatus.NOMATCH)
