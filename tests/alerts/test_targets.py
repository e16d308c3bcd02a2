"""Policy targets → people: assigned, nearest by room → unit → building → grid, roles,
contacts; off-duty, busy and declined responders are skipped."""

from __future__ import annotations

from datetime import UTC, datetime

from alerts.models import Alert, AlertState, PolicyStep, Priority
from alerts.targets import Resolver
from devices.records import Contact, ResidentRecord, ResponderRecord

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)  # a Friday
ALERT = Alert("a1", "sos", Priority.P1, AlertState.OPEN, NOW, NOW, device_id="btn-1")
RESIDENT = ResidentRecord(
    "r1",
    "张秀英",
    building="3",
    unit="1",
    room="201",
    grid="g1",
    contacts=(Contact("儿子", "13900000000"),),
    responders=("v-assigned", "v-missing"),
)
RESPONDERS = {
    r.responder_id: r
    for r in [
        ResponderRecord("v-assigned", "甲", "volunteer", building="1", grid="g2"),
        ResponderRecord(
            "v-room", "乙", "volunteer", building="3", attributes=(("unit", "1"), ("room", "201"))
        ),
        ResponderRecord("v-unit", "丙", "volunteer", building="3", attributes=(("unit", "1"),)),
        ResponderRecord("v-building", "丁", "volunteer", building="3"),
        ResponderRecord("v-grid", "戊", "grid_worker", building="9", grid="g1"),
        ResponderRecord("v-far", "己", "volunteer", building="9", grid="g9"),
        ResponderRecord("v-off", "庚", "volunteer", building="3", on_duty="no"),
        ResponderRecord("duty", "值班台", "duty"),
        ResponderRecord("sw-1", "社工", "social_worker", building="7"),
    ]
}
RESOLVER = Resolver(RESPONDERS, local_time=lambda t: t, max_concurrent=2)


def names(targets: list) -> list[str]:  # type: ignore[type-arg]
    return [t.key for t in targets]


def resolve(
    *targets: str, load: dict[str, int] | None = None, declined: frozenset[str] = frozenset()
) -> list[str]:
    step = PolicyStep(tuple(targets), 60)
    return names(
        RESOLVER.resolve(step, ALERT, RESIDENT, None, now=NOW, load=load or {}, declined=declined)
    )


def test_assigned_in_order_skipping_unknown_ids() -> None:
    assert resolve("assigned") == ["responder:v-assigned"]


def test_nearest_ranks_room_unit_building_grid_and_skips_off_duty_and_far() -> None:
    assert resolve("nearest:10") == [
        "responder:v-room",
        "responder:v-unit",
        "responder:v-building",
        "responder:v-grid",
    ]
    assert resolve("nearest:2") == ["responder:v-room", "responder:v-unit"]


def test_roles_contacts_and_named_responder_each_once() -> None:
    assert resolve("role:duty", "contacts", "responder:sw-1", "responder:sw-1") == [
        "responder:duty",
        "contact:r1:0",
        "responder:sw-1",
    ]


def test_busy_and_declined_are_skipped_but_the_desk_always_takes_it() -> None:
    got = resolve(
        "nearest:2", "role:duty", load={"v-room": 2, "duty": 9}, declined=frozenset({"v-unit"})
    )
    assert got == ["responder:v-building", "responder:v-grid", "responder:duty"]
