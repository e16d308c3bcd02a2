"""Generate the example community in ``config/community/`` (residents, devices, responders).

Deterministic (seeded): running it again rewrites the same three files byte for byte.

    python scripts/make_example_community.py [OUT_DIR]

The community: 3 buildings (1号楼…3号楼) × 2 units × 5 floors × 2 flats = 60 households, two
grids (buildings 1–2 → g1, building 3 → g2). Every household has an SOS button; most have a
smoke detector; the rest of the device types are spread over the households and the stairwells.
Building 3 unit 1's buttons hang on an RS-485 bus (``bus1``, addresses 0x0001…); some sensors
are Zigbee (zigbee2mqtt friendly names); the activity room's two smoke detectors report through
an alarm panel over SIA DC-09. Phone numbers are fake (1380000xxxx / 1390000xxxx).
"""

from __future__ import annotations

import csv
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

SEED = 20240615
BUILDINGS = (1, 2, 3)
UNITS = (1, 2)
FLOORS = (1, 2, 3, 4, 5)
FLATS = (1, 2)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余于杜叶"


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


ELDER_GIVEN_F = _words(
    "秀英 桂英 玉兰 淑珍 凤英 桂兰 秀兰 玉珍 淑华 桂芳 素珍 凤兰 玉梅 秀珍 翠兰 金凤 兰英 淑英"
)
ELDER_GIVEN_M = _words(
    "建国 国强 志明 德福 长林 永福 振华 国华 文华 福生 德明 建华 保国 树林 有才 金生 立新 卫东"
)
YOUNG_GIVEN = _words("伟 芳 磊 静 敏 强 丽 军 洋 勇 艳 杰 娟 涛 明 超 霞 刚 平 慧 鹏 燕 斌 婷")
ADULT_GIVEN = _words(
    "晓东 海燕 红梅 建军 丽娟 志刚 春燕 卫国 雪梅 永刚 秀丽 海涛 晓峰 美玲 俊杰 文静"
)
RELATIONS_CHILD = ("儿子", "女儿")
MEDICAL = (
    "高血压",
    "糖尿病",
    "心脏起搏器",
    "冠心病",
    "脑梗后遗症",
    "阿尔茨海默病早期",
    "慢阻肺",
    "骨质疏松",
    "帕金森病",
    "行动不便（轮椅）",
    "听力下降",
    "青霉素过敏",
    "房颤，服用华法林",
)
SKILLS = ("急救", "心肺复苏", "护理", "电工", "开锁", "心理疏导", "驾车送医", "手语")


@dataclass
class Household:
    building: int
    unit: int
    room: str
    resident_id: str
    name: str
    elderly: bool
    lives_alone: bool
    grid: str
    responders: list[str] = field(default_factory=list)

    @property
    def tag(self) -> str:
        return f"{self.building}-{self.unit}-{self.room}"

    @property
    def address(self) -> str:
        return f"{self.building}号楼{self.unit}单元{self.room}"


class Phones:
    """Unique fake mobile numbers: 1380000xxxx for residents, 1390000xxxx for staff."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def new(self, prefix: str = "1380000") -> str:
        while True:
            number = f"{prefix}{self.rng.randrange(10_000):04d}"
            if number not in self.used:
                self.used.add(number)
                return number


def grid_of(building: int) -> str:
    return "g1" if building in (1, 2) else "g2"


def make_households(rng: random.Random) -> list[Household]:
    names: set[str] = set()
    out: list[Household] = []
    for b in BUILDINGS:
        for u in UNITS:
            for floor in FLOORS:
                for flat in FLATS:
                    room = f"{floor}0{flat}"
                    elderly = rng.random() < 0.75
                    female = rng.random() < 0.6
                    while True:
                        if elderly:
                            given = rng.choice(ELDER_GIVEN_F if female else ELDER_GIVEN_M)
                        else:
                            given = rng.choice(ADULT_GIVEN)
                        name = rng.choice(SURNAMES) + given
                        if name not in names:
                            names.add(name)
                            break
                    out.append(
                        Household(
                            building=b,
                            unit=u,
                            room=room,
                            resident_id=f"r-{b}-{u}-{room}",
                            name=name,
                            elderly=elderly,
                            lives_alone=elderly and rng.random() < 0.6,
                            grid=grid_of(b),
                        )
                    )
    return out


def make_responders(rng: random.Random, phones: Phones) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    used: set[str] = set()

    def person() -> str:
        while True:
            name = rng.choice(SURNAMES) + rng.choice(ADULT_GIVEN + YOUNG_GIVEN)
            if name not in used:
                used.add(name)
                return name

    # 15 volunteers: 5 per building, mostly neighbours who live there.
    n = 0
    for b in BUILDINGS:
        for _ in range(5):
            n += 1
            skills = rng.sample(SKILLS, k=rng.choice((1, 1, 2)))
            rows.append(
                {
                    "responder_id": f"vol-{n:02d}",
                    "name": person(),
                    "role": "volunteer",
                    "phone": phones.new("1390000"),
                    "building": str(b),
                    "grid": grid_of(b),
                    "channels": "mqtt",
                    "skills": ";".join(skills),
                    "on_duty": "no" if n in (4, 11) else "yes",
                }
            )
    for i, (b, grid) in enumerate(((1, "g1"), (2, "g1"), (3, "g2")), start=1):
        rows.append(
            {
                "responder_id": f"sw-{i:02d}",
                "name": person(),
                "role": "social_worker",
                "phone": phones.new("1390000"),
                "building": str(b),
                "grid": grid,
                "channels": "mqtt",
                "skills": "心理疏导;护理" if i == 1 else "护理",
                "on_duty": "yes",
            }
        )
    for i, grid in enumerate(("g1", "g2"), start=1):
        rows.append(
            {
                "responder_id": f"grid-{i:02d}",
                "name": person(),
                "role": "grid_worker",
                "phone": phones.new("1390000"),
                "building": "",
                "grid": grid,
                "channels": "mqtt",
                "skills": "",
                "on_duty": "yes",
            }
        )
    rows.append(
        {
            "responder_id": "duty-desk",
            "name": "社区服务站值班台",
            "role": "duty",
            "phone": "010-66660000",
            "building": "",
            "grid": "",
            "channels": "mqtt",
            "skills": "",
            "on_duty": "yes",
        }
    )
    return rows


def assign_responders(
    rng: random.Random, homes: list[Household], responders: list[dict[str, str]]
) -> None:
    volunteers = {
        b: [
            r["responder_id"]
            for r in responders
            if r["role"] == "volunteer" and r["building"] == str(b)
        ]
        for b in BUILDINGS
    }
    social = {
        b: next(
            r["responder_id"]
            for r in responders
            if r["role"] == "social_worker" and r["building"] == str(b)
        )
        for b in BUILDINGS
    }
    for home in homes:
        chosen = rng.sample(volunteers[home.building], k=2 if home.lives_alone else 1)
        if home.lives_alone:
            chosen.append(social[home.building])
        home.responders = chosen


def resident_rows(
    rng: random.Random, homes: list[Household], phones: Phones
) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for home in homes:
        surname = home.name[0]
        contacts: list[str] = []
        if home.elderly:
            for _ in range(rng.choice((1, 2, 2))):
                relation = rng.choice(RELATIONS_CHILD)
                child_surname = (
                    surname if relation == "儿子" or rng.random() < 0.5 else rng.choice(SURNAMES)
                )
                contacts.append(
                    f"{child_surname}{rng.choice(YOUNG_GIVEN)}({relation}):{phones.new()}"
                )
        else:
            contacts.append(f"{rng.choice(SURNAMES)}{rng.choice(YOUNG_GIVEN)}(配偶):{phones.new()}")
        notes = ""
        if home.elderly and rng.random() < 0.7:
            notes = "、".join(rng.sample(MEDICAL, k=rng.choice((1, 1, 2, 3))))
        rows.append(
            {
                "resident_id": home.resident_id,
                "name": home.name,
                "phone": phones.new() if rng.random() < 0.85 else "",
                "building": str(home.building),
                "unit": str(home.unit),
                "room": home.room,
                "grid": home.grid,
                "lives_alone": "是" if home.lives_alone else "否",
                "medical_notes": notes,
                "contacts": ";".join(contacts),
                "responders": ";".join(home.responders),
            }
        )
    return rows


def device_rows(rng: random.Random, homes: list[Household]) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []

    def add(device_id: str, dtype: str, name: str, home: Household | None, **extra: str) -> None:
        row = {
            "device_id": device_id,
            "type": dtype,
            "name": name,
            "resident_id": home.resident_id if home else "",
            "building": str(home.building) if home else extra.pop("building", ""),
            "unit": str(home.unit) if home else extra.pop("unit", ""),
            "room": home.room if home else extra.pop("room", ""),
            "serial_port": "",
            "serial_addr": "",
            "zigbee_name": "",
            "sia_account": "",
            "sia_zone": "",
        }
        row.update(extra)
        rows.append(row)

    bus_addr = 0
    for home in homes:
        # Every household: a one-button caller. Building 3 unit 1 is wired to an RS-485 bus.
        if home.building == 3 and home.unit == 1:
            bus_addr += 1
            add(
                f"btn-{home.tag}",
                "sos_button",
                f"{home.address} 一键呼叫器",
                home,
                serial_port="bus1",
                serial_addr=f"0x{bus_addr:04X}",
            )
        else:
            add(f"btn-{home.tag}", "sos_button", f"{home.address} 一键呼叫器", home)
    for home in homes:
        if rng.random() < 0.67:
            add(f"smoke-{home.tag}", "smoke_detector", f"{home.address} 烟感", home)
    elderly_alone = [h for h in homes if h.lives_alone]
    for home in rng.sample(homes, k=10):
        add(f"gas-{home.tag}", "gas_detector", f"{home.address} 燃气报警器", home)
    for home in rng.sample(homes, k=5):
        add(f"co-{home.tag}", "co_detector", f"{home.address} 一氧化碳报警器", home)
    for home in rng.sample(homes, k=5):
        add(
            f"water-{home.tag}",
            "water_sensor",
            f"{home.address} 水浸传感器",
            home,
            zigbee_name=f"water_{home.tag}",
        )
    for home in rng.sample(elderly_alone, k=min(7, len(elderly_alone))):
        add(
            f"door-{home.tag}",
            "door_contact",
            f"{home.address} 门磁",
            home,
            zigbee_name=f"door_{home.tag}",
        )
    for home in rng.sample(elderly_alone, k=min(6, len(elderly_alone))):
        add(
            f"motion-{home.tag}",
            "motion_sensor",
            f"{home.address} 人体感应",
            home,
            zigbee_name=f"motion_{home.tag}",
        )
    for home in rng.sample(elderly_alone, k=min(5, len(elderly_alone))):
        add(f"th-{home.tag}", "temp_humidity", f"{home.address} 温湿度计", home)
    for home in rng.sample(elderly_alone, k=min(5, len(elderly_alone))):
        add(f"pendant-{home.tag}", "pendant", f"{home.address} 跌倒报警挂件", home)
    for home in rng.sample(elderly_alone, k=min(4, len(elderly_alone))):
        add(f"band-{home.tag}", "health_band", f"{home.address} 健康手环", home)
    # Shared spaces: a smoke detector in every stairwell, the activity room on an alarm panel.
    for b in BUILDINGS:
        for u in UNITS:
            add(
                f"smoke-{b}-{u}-stair",
                "smoke_detector",
                f"{b}号楼{u}单元 楼道烟感",
                None,
                building=str(b),
                unit=str(u),
            )
    for zone in (1, 2):
        add(
            f"smoke-activity-{zone}",
            "smoke_detector",
            f"老年活动室 烟感{zone}",
            None,
            building="1",
            room="活动室",
            sia_account="1234",
            sia_zone=f"{zone:03d}",
        )
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(argv: list[str]) -> int:
    out = (
        Path(argv[1])
        if len(argv) > 1
        else Path(__file__).resolve().parent.parent / "config" / "community"
    )
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    phones = Phones(rng)
    homes = make_households(rng)
    responders = make_responders(rng, phones)
    assign_responders(rng, homes, responders)
    residents = resident_rows(rng, homes, phones)
    devices = device_rows(rng, homes)
    write_csv(out / "residents.csv", residents)
    write_csv(out / "devices.csv", devices)
    write_csv(out / "responders.csv", responders)
    print(
        f"{out}: {len(residents)} residents, {len(devices)} devices, {len(responders)} responders"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
