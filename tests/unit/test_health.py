"""Unit tests of device health: silence and Last Will, low battery with hysteresis, a building's
mass outage as one incident, and the state's JSON form. Every time is a datetime built here."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts import health
from alerts.decisions import Clear, Raise
from alerts.health import OutageChanged, OutageClosed, OutageOpened
from alerts.model import AlertKind
from devices.kinds import DeviceKind

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=CST)
MIN = timedelta(minutes=1)
CFG = health.HealthConfig()
FAST = settings(max_examples=150, deadline=None, database=None)

GAS, WATER, BUTTON = DeviceKind.GAS_SENSOR, DeviceKind.WATER_SENSOR, DeviceKind.CALL_BUTTON


def building(devices: dict[str, DeviceKind], at: datetime = T0) -> health.BuildingHealth:
    s = health.new_state("b1")
    for dev, kind in devices.items():
        s = health.add_device(s, dev, kind, at)
    return s


def tick(
    s: health.BuildingHealth, start: datetime, end: datetime, every: timedelta = MIN
) -> tuple[health.BuildingHealth, list[tuple[datetime, object]]]:
    out = []
    t = start
    while t <= end:
        s, ds = health.check(s, t, CFG)
        out.extend((t, d) for d in ds)
        t += every
    return s, out


FOREVER = datetime(2100, 1, 1, tzinfo=CST)


def world(
    s: health.BuildingHealth,
    start: datetime,
    end: datetime,
    down: dict[str, tuple[datetime, datetime]] | None = None,
    last_will: dict[str, datetime] | None = None,
) -> tuple[health.BuildingHealth, list[tuple[datetime, object]]]:
    """Every minute from `start` to `end`: each device reports on its own schedule (staggered)
    unless it is `down` (from, until); a Last Will comes at its time; then the tick."""
    down = down or {}
    pending = dict(last_will or {})
    out: list[tuple[datetime, object]] = []
    phase = {k: (7 * i) % 60 for i, k in enumerate(sorted(s.devices))}
    t = start
    while t <= end:
        minute = int((t - T0).total_seconds() // 60)
        for k in sorted(s.devices):
            ds: list[object] = []
            if k in pending and pending[k] <= t:
                del pending[k]
                s, ds = health.heard(s, k, t, CFG, online=False)
                out.extend((t, d) for d in ds)
            every = int(s.devices[k].interval(CFG).total_seconds() // 60)
            off = down.get(k)
            if (minute - phase[k]) % every == 0 and not (off and off[0] <= t < off[1]):
                s, ds = health.heard(s, k, t, CFG)
                out.extend((t, d) for d in ds)
        s, ds = health.check(s, t, CFG)
        out.extend((t, d) for d in ds)
        t += MIN
    return s, out


def of(out: list[tuple[datetime, object]], kind: type) -> list[object]:
    return [d for _, d in out if isinstance(d, kind)]


def test_default_intervals() -> None:
    assert health.DEFAULT_INTERVALS[BUTTON] == timedelta(hours=1)
    assert health.DEFAULT_INTERVALS[GAS] == timedelta(minutes=5)
    assert health.DEFAULT_INTERVALS[WATER] == timedelta(minutes=15)
    assert CFG.missed == 3 and CFG.hold == timedelta(minutes=20)


# --- one device ------------------------------------------------------------------------------


def test_silent_device_is_raised_after_missed_intervals_and_the_hold() -> None:
    s = building({"wm-1": WATER})
    s, _ = health.heard(s, "wm-1", T0, CFG)
    s, out = tick(s, T0, T0 + timedelta(hours=2))
    raises = [(t, d) for t, d in out if isinstance(d, Raise)]
    assert len(raises) == 1
    t, d = raises[0]
    assert t == T0 + 45 * MIN + CFG.hold  # 3 x 15 min, then the hold
    assert (d.kind, d.reason, d.device_id) == (AlertKind.DEVICE_OFFLINE, "silent", "wm-1")
    assert "15 min" in d.detail
    s, ds = health.heard(s, "wm-1", T0 + timedelta(hours=3), CFG)
    assert ds == [Clear("wm-1", AlertKind.DEVICE_OFFLINE, "back_online", ds[0].detail)]


@pytest.mark.parametrize("kind", list(DeviceKind))
def test_each_kind_has_its_own_interval(kind: DeviceKind) -> None:
    s = building({"d": kind})
    limit = CFG.missed * health.DEFAULT_INTERVALS[kind] + CFG.hold
    _, out = tick(s, T0 + limit - MIN, T0 + limit)
    assert [t for t, d in out if isinstance(d, Raise)] == [T0 + limit]
    custom = health.add_device(health.new_state("b"), "d", kind, T0, interval_s=60)
    _, out = tick(custom, T0, T0 + 3 * MIN + CFG.hold)
    assert [t for t, d in out if isinstance(d, Raise)] == [T0 + 3 * MIN + CFG.hold]


def test_a_missed_report_or_two_is_nothing() -> None:
    s = building({"gs-1": GAS})
    t = T0
    out: list[object] = []
    for gap in [5, 5, 14, 5, 10, 5]:  # at most two reports missed
        t += gap * MIN
        s, ds = health.heard(s, "gs-1", t, CFG)
        out.extend(ds)
        s, ds = health.check(s, t, CFG)
        out.extend(ds)
    assert out == []


def test_last_will_is_offline_at_once_and_not_a_sign_of_life() -> None:
    s = building({"gs-1": GAS})
    s, _ = health.heard(s, "gs-1", T0, CFG)
    s, ds = health.heard(s, "gs-1", T0 + MIN, CFG, online=False)
    assert ds == []  # held, for a possible outage
    assert s.devices["gs-1"].last_heard == T0
    s, ds = health.heard(s, "gs-1", T0 + 2 * MIN, CFG, online=False)  # retained again
    assert ds == []
    s, out = tick(s, T0 + MIN, T0 + MIN + CFG.hold)
    assert [(t, d.reason) for t, d in out if isinstance(d, Raise)] == [  # type: ignore[attr-defined]
        (T0 + MIN + CFG.hold, "last_will")
    ]


def test_a_replayed_status_is_no_sign_of_life_but_its_offline_counts() -> None:
    s = building({"gs-1": GAS})
    s, _ = health.heard(s, "gs-1", T0, CFG, battery_pct=15.0)  # its last real message
    assert s.devices["gs-1"].battery_low
    for t in (T0 + 4 * MIN, T0 + 9 * MIN, T0 + 14 * MIN):  # replayed at each reconnect
        s, ds = health.heard(s, "gs-1", t, CFG, online=True, battery_pct=90.0, replayed=True)
        assert ds == []
    d = s.devices["gs-1"]
    assert (d.last_heard, d.battery_low, d.battery_ok_run) == (T0, True, 0)
    s, out = tick(s, T0 + 14 * MIN, T0 + 15 * MIN + CFG.hold)
    assert [(t, d.reason) for t, d in out if isinstance(d, Raise)] == [  # type: ignore[attr-defined]
        (T0 + 15 * MIN + CFG.hold, "silent")  # 3 x 5 min after T0, as if never replayed
    ]
    # offline and raised: a replayed online does not bring it back, a real message does
    s, ds = health.heard(s, "gs-1", T0 + 40 * MIN, CFG, online=True, replayed=True)
    assert ds == [] and not s.devices["gs-1"].online
    s, ds = health.heard(s, "gs-1", T0 + 41 * MIN, CFG, online=True)
    assert [d.why for d in ds] == ["back_online"]  # type: ignore[union-attr]
    # a replayed Last Will (one the gateway missed) takes it offline, as a live one does
    s, _ = health.heard(s, "gs-1", T0 + 42 * MIN, CFG, online=False, replayed=True)
    d = s.devices["gs-1"]
    assert (d.online, d.offline_reason, d.last_heard) == (False, "last_will", T0 + 41 * MIN)


def test_back_within_the_hold_pages_nobody() -> None:
    s = building({"gs-1": GAS})
    _, out = world(
        s,
        T0,
        T0 + timedelta(hours=1),
        down={"gs-1": (T0, T0 + 11 * MIN)},
        last_will={"gs-1": T0 + MIN},
    )
    assert out == []


def test_unknown_device_and_removal() -> None:
    s = building({"a": GAS})
    with pytest.raises(health.UnknownDevice):
        health.heard(s, "b", T0, CFG)
    assert "a" not in health.remove_device(s, "a").devices
    assert health.remove_device(s, "zz") == s
    with pytest.raises(ValueError):
        health.add_device(s, "c", GAS, T0, interval_s=0)


def test_resume_after_the_gateway_was_down() -> None:
    s = building({f"d{i}": GAS for i in range(8)})
    back = T0 + timedelta(hours=3)
    _, out = health.check(health.resume(s, back), back, CFG)
    assert out == []
    _, out = tick(s, back, back + 25 * MIN)
    assert out  # without resume, the gateway's own silence looks like the devices'


# --- battery ---------------------------------------------------------------------------------


def test_a_rebuilt_state_keeps_who_was_offline_and_the_outage() -> None:
    """`rebuild` (a stored state that cannot be read): the devices known offline stay so, the
    alerted ones are not raised again, the online ones are watched from `now`."""
    now = T0 + timedelta(hours=2)
    heard = T0 + timedelta(hours=1)
    k = health.KnownDevice
    s = health.rebuild(
        "b1",
        [
            k("alerted", GAS, offline=True, alerted=True, last_heard=T0),
            k("will", GAS, offline=True, last_will=True, last_heard=heard),
            k("fine", GAS, last_heard=heard),
        ],
        now,
        CFG,
    )
    a, w, f = (s.devices[x] for x in ("alerted", "will", "fine"))
    assert (a.online, a.alerted, a.offline_reason) == (False, True, "silent")
    assert a.offline_at == T0 + CFG.missed * CFG.intervals[GAS]  # the deadline it missed
    assert (w.online, w.alerted, w.offline_at, w.offline_reason) == (
        False,
        False,
        heard,
        "last_will",
    )
    assert (f.online, f.last_heard, f.since) == (True, None, now)  # its real silence is unknown
    s, out = health.check(s, now, CFG)
    assert [(d.device_id, d.reason) for d in out if isinstance(d, Raise)] == [("will", "last_will")]
    s, out = tick(s, now + MIN, now + 36 * MIN)  # 3 reports missed from now, and the hold
    assert [d.device_id for d in of(out, Raise)] == ["fine"]  # type: ignore[attr-defined]
    s, out = health.heard(s, "alerted", now + 37 * MIN, CFG)
    assert [(type(d), d.why) for d in out] == [(Clear, "back_online")]  # type: ignore[union-attr]


def test_a_rebuilt_state_restores_the_outage_in_progress() -> None:
    now = T0 + timedelta(hours=2)
    outage = health.Outage("o1", T0, ("m1", "m2", "m3", "gone"), back=("m3",))
    k = health.KnownDevice
    s = health.rebuild(
        "b1",
        [k("m1", GAS, last_heard=T0), k("m2", GAS, alerted=True, offline=True), k("m3", GAS)],
        now,
        CFG,
        outage,
    )
    assert s.outage is not None and s.outage.open_members() == {"m1", "m2"}
    assert s.outage.left == ("gone",)  # no longer in the building: as `remove_device`
    m1, m2, m3 = (s.devices[x] for x in ("m1", "m2", "m3"))
    assert (m1.online, m1.outage, m1.alerted) == (False, "o1", False)
    assert (m2.online, m2.outage, m2.alerted) == (False, "o1", True)
    assert (m3.online, m3.outage) == (True, None)
    s, out = health.check(s, now, CFG)
    assert not [d for d in out if isinstance(d, Raise)]  # members wait in the outage
    s, out = health.heard(s, "m1", now + MIN, CFG)
    assert out == [OutageChanged("b1", "o1", "m1", "back_online")]
    s, out = health.heard(s, "m2", now + 2 * MIN, CFG)
    assert [type(d) for d in out] == [Clear, OutageChanged, OutageClosed]
    assert s.outage is None


def test_low_battery_with_hysteresis() -> None:
    s = building({"btn": BUTTON})
    seen = []
    for i, pct in enumerate([40, 21, 19.5, 21, 19, 24.9, 25, 22, 25, 26, 18]):
        s, ds = health.heard(s, "btn", T0 + i * MIN, CFG, battery_pct=pct)
        seen.append([(type(d).__name__, d.kind) for d in ds])  # type: ignore[attr-defined]
    low = ("Raise", AlertKind.LOW_BATTERY)
    ok = ("Clear", AlertKind.LOW_BATTERY)
    assert seen == [[], [], [low], [], [], [], [], [], [], [ok], [low]]


@FAST
@given(
    st.lists(
        st.floats(min_value=0, max_value=CFG.battery_low_pct + CFG.battery_band_pct - 0.01),
        min_size=1,
        max_size=60,
    )
)
def test_a_battery_hovering_under_the_clearing_line_never_flaps(values: list[float]) -> None:
    s = building({"btn": BUTTON})
    s, first = health.heard(s, "btn", T0, CFG, battery_pct=10)
    assert len(first) == 1
    for i, pct in enumerate(values, 1):
        s, ds = health.heard(s, "btn", T0 + i * MIN, CFG, battery_pct=pct)
        assert ds == []


def test_a_battery_low_event_is_low_until_readings_say_it_is_fine() -> None:
    s = building({"btn": BUTTON})
    s, _ = health.heard(s, "btn", T0, CFG, battery_pct=60)  # fine by its last reading
    said = health.battery_said_low(s, "btn")  # then the button's own battery.low
    assert said.devices["btn"].battery_low and not s.devices["btn"].battery_low
    assert health.battery_said_low(said, "btn") is said
    seen = []
    s = said
    for i, pct in enumerate([12, 30, 22, 30, 31], 1):  # no second alert; two fine in a row
        s, ds = health.heard(s, "btn", T0 + i * MIN, CFG, battery_pct=pct)
        seen.append([(type(d).__name__, d.why) for d in ds])  # type: ignore[attr-defined]
        assert s.devices["btn"].battery_low == (i < 5)
    assert seen == [[], [], [], [], [("Clear", "battery_ok")]]
    with pytest.raises(health.UnknownDevice):
        health.battery_said_low(s, "nobody")


# --- mass outage -----------------------------------------------------------------------------


def flats(n: int) -> dict[str, DeviceKind]:
    """n flats: a gas sensor, a water meter and a call button each."""
    devices: dict[str, DeviceKind] = {}
    for i in range(n):
        devices[f"gs-{i}"] = GAS
        devices[f"wm-{i}"] = WATER
        devices[f"btn-{i}"] = BUTTON
    return devices


def test_power_cut_is_one_outage_and_no_single_pages() -> None:
    s = building(flats(8))  # 24 devices
    cut, back = T0 + timedelta(hours=1), T0 + timedelta(hours=5)
    s, out = world(
        s,
        T0,
        back + timedelta(minutes=61),  # every hourly button has spoken again
        down={k: (cut, back) for k in s.devices},
        # gas sensors are mains-powered: their Last Will comes 90 s after the cut
        last_will={f"gs-{i}": cut + timedelta(seconds=90) for i in range(8)},
    )
    opened = of(out, OutageOpened)
    assert len(opened) == 1
    o = opened[0]
    assert isinstance(o, OutageOpened) and o.building == "b1" and o.already_alerted == ()
    assert {f"gs-{i}" for i in range(8)} <= set(o.device_ids)
    assert sum(k.startswith("wm-") for k in o.device_ids) >= 5  # late meters count
    t_open = next(t for t, d in out if isinstance(d, OutageOpened))
    assert t_open <= cut + timedelta(seconds=90) + CFG.hold + MIN
    assert of(out, Raise) == []  # nobody paged one by one
    joined = {d.device_id for d in of(out, OutageChanged) if d.change == "joined"}  # type: ignore[attr-defined]
    assert joined | set(o.device_ids) == set(s.devices)  # buttons found later join too
    closed = of(out, OutageClosed)
    assert len(closed) == 1 and closed[0].why == "all_back_online"  # type: ignore[attr-defined]
    assert s.outage is None
    assert all(d.online and d.outage is None for d in s.devices.values())


def test_stragglers_leave_the_outage_and_are_raised() -> None:
    s = building(flats(3))
    cut, back = T0 + timedelta(hours=1), T0 + timedelta(hours=5)
    down = {k: (cut, back) for k in s.devices}
    down["btn-2"] = (cut, FOREVER)  # its battery died in the dark
    s, out = world(
        s,
        T0,
        back + timedelta(hours=4),
        down=down,
        last_will={f"gs-{i}": cut + MIN for i in range(3)},
    )
    assert len(of(out, OutageOpened)) == 1
    assert [(d.change, d.device_id) for d in of(out, OutageChanged) if d.change != "joined"][
        -1
    ] == (  # type: ignore[attr-defined]
        "still_offline",
        "btn-2",
    )
    raised = of(out, Raise)
    assert [d.device_id for d in raised] == ["btn-2"]  # type: ignore[attr-defined]
    t_raise = next(t for t, d in out if isinstance(d, Raise))
    due = back + CFG.missed * health.DEFAULT_INTERVALS[BUTTON]  # its own reports were due
    assert due <= t_raise <= due + 10 * MIN
    assert [d.why for d in of(out, OutageClosed)] == ["back_but_some_still_offline"]  # type: ignore[attr-defined]


def test_removing_a_member_does_not_keep_the_outage_open() -> None:
    s = building({f"gs-{i}": GAS for i in range(4)})
    cut = T0 + timedelta(hours=1)
    s, out = world(
        s, T0, cut + timedelta(hours=1), down={f"gs-{i}": (cut, FOREVER) for i in range(4)}
    )
    assert s.outage is not None and len(of(out, OutageOpened)) == 1
    s = health.remove_device(s, "gs-3")
    s, out = world(s, cut + timedelta(hours=1, minutes=1), cut + timedelta(hours=2))
    assert len(of(out, OutageClosed)) == 1
    assert s.outage is None


def test_share_rule_for_small_buildings_and_its_floor() -> None:
    # 4 devices, 3 go at once: 75 % and at least 3 -> one outage
    s = building({f"gs-{i}": GAS for i in range(4)})
    cut = T0 + timedelta(hours=1)
    _, out = world(
        s, T0, cut + timedelta(hours=1), down={f"gs-{i}": (cut, FOREVER) for i in range(3)}
    )
    assert len(of(out, OutageOpened)) == 1
    assert of(out, Raise) == []
    # 4 devices, 2 go: under the floor of 3 -> each on its own
    s = building({f"gs-{i}": GAS for i in range(4)})
    _, out = world(
        s, T0, cut + timedelta(hours=1), down={f"gs-{i}": (cut, FOREVER) for i in range(2)}
    )
    assert of(out, OutageOpened) == []
    assert sorted(d.device_id for d in of(out, Raise)) == ["gs-0", "gs-1"]  # type: ignore[attr-defined]


def test_devices_failing_hours_apart_are_not_an_outage() -> None:
    s = building({f"gs-{i}": GAS for i in range(6)})
    down = {f"gs-{i}": (T0 + timedelta(hours=1 + i), FOREVER) for i in range(6)}
    _, out = world(s, T0, T0 + timedelta(hours=8), down=down)
    assert of(out, OutageOpened) == []
    assert len(of(out, Raise)) == 6


# --- state as JSON ---------------------------------------------------------------------------


@FAST
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=5),
            st.integers(min_value=0, max_value=600),
            st.sampled_from([None, True, False]),
            st.one_of(st.none(), st.floats(min_value=0, max_value=100)),
        ),
        max_size=40,
    )
)
def test_state_json_round_trip(
    events: list[tuple[int, int, bool | None, float | None]],
) -> None:
    s = building({**{f"gs-{i}": GAS for i in range(4)}, "wm-0": WATER, "btn-0": BUTTON})
    ids = sorted(s.devices)
    t = T0
    for dev, minutes, online, pct in events:
        t += timedelta(minutes=minutes)
        s, _ = health.heard(s, ids[dev], t, CFG, online=online, battery_pct=pct)
        s, _ = health.check(s, t, CFG)
    data = json.loads(json.dumps(s.to_json()))
    assert health.BuildingHealth.from_json(data) == s


def test_state_json_refuses_what_it_cannot_read() -> None:
    data = building({"a": GAS}).to_json()
    with pytest.raises(ValueError):
        health.BuildingHealth.from_json({**data, "v": 9})
    bad = json.loads(json.dumps(data))
    bad["devices"][0]["kind"] = "toaster"
    with pytest.raises(ValueError):
        health.BuildingHealth.from_json(bad)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        health.HealthConfig(missed=0)
    with pytest.raises(ValueError):
        health.HealthConfig(intervals={GAS: timedelta(minutes=5)})
    with pytest.raises(ValueError):
        health.HealthConfig(outage_min_share=0)


def test_times_in_the_alerts_text_are_the_stations_local_times() -> None:
    """The gateway's clock is UTC; staff read the text on a Chinese screen."""
    utc = T0.astimezone(UTC)  # 00:00 UTC = 08:00 in Shanghai
    s = health.new_state("b1")
    s = health.add_device(s, "gs-1", GAS, utc)
    s, _ = health.heard(s, "gs-1", utc, CFG)
    s, ds = health.check(s, utc + timedelta(hours=1), CFG)
    [raised] = [d for d in ds if isinstance(d, Raise)]
    assert "last heard 2026-11-23T08:00+08:00" in raised.detail
    s, ds = health.heard(s, "gs-1", utc + timedelta(hours=2), CFG)
    [back] = [d for d in ds if isinstance(d, Clear)]
    assert "offline since 2026-11-23T08:" in back.detail and "+08:00" in back.detail
    berlin = health.HealthConfig(tz="Europe/Berlin", hold=timedelta(0))
    s = health.add_device(health.new_state("b1"), "gs-1", GAS, utc)
    s, ds = health.check(s, utc + timedelta(hours=1), berlin)
    [raised] = [d for d in ds if isinstance(d, Raise)]
    assert "never heard" in raised.detail
    assert health._hm(utc, berlin) == "2026-11-23T01:00+01:00"
