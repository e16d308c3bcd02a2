"""``[alerts]`` configuration: escalation policies per priority, thresholds, timeouts.

Defaults follow the telecare answer-time targets (FIELD_NOTES: 97.5 % of calls answered within
60 s): a P1 first reaches the resident's own volunteers and the nearest ones, then after a
minute the station desk and the family, and keeps escalating until someone accepts.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alerts.models import PolicyStep, Priority
from devices.durations import Duration
from devices.models import DeviceType

_TARGET_RE = re.compile(
    r"^(assigned|contacts|nearest:[1-9][0-9]?|role:[a-z_]+|responder:[A-Za-z0-9_-]{1,64})$"
)


Seconds = Duration


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepSettings(_Section):
    targets: list[str] = Field(min_length=1)
    ack_timeout: Seconds = 60.0

    @field_validator("targets")
    @classmethod
    def _check_targets(cls, targets: list[str]) -> list[str]:
        for target in targets:
            if not _TARGET_RE.match(target):
                raise ValueError(
                    f"unknown target {target!r}: use assigned, nearest:N, role:R, contacts "
                    "or responder:ID"
                )
        return targets

    def to_step(self) -> PolicyStep:
        return PolicyStep(tuple(self.targets), self.ack_timeout)


class PolicySettings(_Section):
    steps: list[StepSettings] = Field(min_length=1)
    # How long a new P2/P3 alert waits for more of the same before the first notification
    # (grouping). P1 never waits, whatever is set here.
    group_wait: Seconds = 0.0


def _default_policies() -> dict[Priority, PolicySettings]:
    def steps(*items: tuple[list[str], float]) -> list[StepSettings]:
        return [StepSettings(targets=t, ack_timeout=s) for t, s in items]

    return {
        Priority.P1: PolicySettings(
            steps=steps(
                (["assigned", "nearest:3"], 60.0),
                (["role:duty", "contacts", "nearest:5"], 60.0),
                (["role:duty", "role:social_worker", "role:grid_worker"], 120.0),
            )
        ),
        Priority.P2: PolicySettings(
            steps=steps((["assigned", "role:duty"], 300.0), (["role:duty", "nearest:3"], 600.0)),
            group_wait=10.0,
        ),
        Priority.P3: PolicySettings(
            steps=steps(
                (["role:duty"], 4 * 3600.0),
            ),
            group_wait=60.0,
        ),
    }


class ThresholdSettings(_Section):
    """Alarm when ``value >= high`` (or ``<= low``) for ``debounce`` readings in a row; clear
    only past ``clear`` (hysteresis), so a value hovering at the limit opens one alert."""

    kind: str
    priority: Priority
    high: float | None = None
    low: float | None = None
    clear_high: float | None = None
    clear_low: float | None = None
    debounce: int = Field(default=2, ge=1, le=100)


def _default_thresholds() -> dict[str, ThresholdSettings]:
    return {
        "temperature": ThresholdSettings(
            kind="high_temp", priority=Priority.P2, high=55.0, clear_high=50.0
        ),
        "gas_ppm": ThresholdSettings(kind="gas", priority=Priority.P1, high=50.0, clear_high=20.0),
        "co_ppm": ThresholdSettings(kind="co", priority=Priority.P1, high=50.0, clear_high=25.0),
        "heart_rate": ThresholdSettings(
            kind="abnormal_heart_rate",
            priority=Priority.P2,
            high=150.0,
            clear_high=130.0,
            low=40.0,
            clear_low=45.0,
            debounce=3,
        ),
    }


def _default_offline() -> dict[str, float]:
    # An SOS button that is offline leaves its resident unprotected: noticed soonest.
    return {
        "default": 3600.0,
        DeviceType.SOS_BUTTON.value: 900.0,
        DeviceType.PENDANT.value: 900.0,
        DeviceType.SMOKE_DETECTOR.value: 1800.0,
        DeviceType.GAS_DETECTOR.value: 1800.0,
    }


class IncidentSettings(_Section):
    """Alerts of one kind from at least ``min_devices`` devices of one building (or the whole
    site, for devices with no building) within ``window`` become one incident: one page to
    the desk with the device list. Kinds in ``never`` are never grouped (a resident's own
    call). P1 members keep their own escalation; P2/P3 members wait on the incident."""

    enabled: bool = True
    min_devices: int = Field(default=5, ge=2)
    window: Seconds = 120.0
    never: list[str] = Field(default_factory=lambda: ["sos", "fall"])


class AlertsSettings(_Section):
    lang: str = Field(default="zh", pattern=r"^(zh|en)$")
    # A resident's cancel (or a P2/P3 sensor's restore) within this time cancels the alert;
    # later ones are noted on the timeline and a human closes the alert.
    cancel_grace: Seconds = 120.0
    accept_link_ttl: Seconds = 4 * 3600.0
    # A claimed escalation step that was not finished (the gateway died) runs again after this.
    claim_lease: Seconds = 30.0
    max_concurrent_per_responder: int = Field(default=2, ge=1)
    # Apprise URL templates to reach family contacts, e.g. an SMS gateway
    # "json://sms-gw.local/send?to={phone}"; empty: contacts are listed for the duty desk.
    contact_channels: list[str] = Field(default_factory=list)
    policies: dict[Priority, PolicySettings] = Field(default_factory=_default_policies)
    thresholds: dict[str, ThresholdSettings] = Field(default_factory=_default_thresholds)
    offline_after: dict[str, Seconds] = Field(default_factory=_default_offline)
    offline_check_every: Seconds = 30.0
    # Residents who live alone: no motion or door activity for this long → welfare check.
    welfare_after: Seconds = 24 * 3600.0
    welfare_check_every: Seconds = 300.0
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)

    @field_validator("policies")
    @classmethod
    def _all_priorities(
        cls, policies: dict[Priority, PolicySettings]
    ) -> dict[Priority, PolicySettings]:
        defaults = _default_policies()
        return {p: policies.get(p, defaults[p]) for p in Priority}

    @field_validator("thresholds")
    @classmethod
    def _merge_thresholds(
        cls, thresholds: dict[str, ThresholdSettings]
    ) -> dict[str, ThresholdSettings]:
        # A config that tunes one metric keeps the defaults of the others (gas, CO, …).
        return {**_default_thresholds(), **thresholds}

    @field_validator("offline_after")
    @classmethod
    def _merge_offline(cls, offline: dict[str, float]) -> dict[str, float]:
        return {**_default_offline(), **offline}

    def steps_for(self, priority: Priority) -> tuple[PolicyStep, ...]:
        return tuple(s.to_step() for s in self.policies[priority].steps)

    def group_wait(self, priority: Priority) -> float:
        return 0.0 if priority is Priority.P1 else self.policies[priority].group_wait

    def offline_timeout(self, device_type: str) -> float:
        return self.offline_after.get(device_type, self.offline_after.get("default", 3600.0))
