"""Unit tests of suppression: away marks pause no_water_use only, maintenance mutes are capped
and never silence a call button press or a gas alarm. Every `now` is passed in."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.model import AlertKind
from alerts.suppression import (
    AWAY_PAUSES,
    MAX_AWAY,
    MUTABLE,
    MUTE_CAP,
    NEVER_SUPPRESSED,
    AwayStatus,
    DeviceMute,
    ElderAway,
    SuppressionError,
    Verdict,
    verdict,
)
from devices.kinds import DeviceKind

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=CST)
H = timedelta(hours=1)
FAST = settings(max_examples=200, deadline=None, database=None)


def away(since: datetime = T0, until: datetime = T0 + 48 * H, **kw: object) -> ElderAway:
    args: dict[str, object] = {
        "elder_id": "el-1",
        "status": AwayStatus.AWAY,
        "since": since,
        "until": until,
        "author": "daughter",
    }
    args.update(kw)
    return ElderAway(**args)  # type: ignore[arg-type]


def mute(
    kind: DeviceKind = DeviceKind.WATER_SENSOR,
    since: datetime = T0,
    until: datetime = T0 + 4 * H,
    device_id: str = "wm-1",
    **kw: object,
) -> DeviceMute:
    args: dict[str, object] = {
        "device_id": device_id,
        "device_kind": kind,
        "author": "tech Li",
        "reason": "meter swap",
        "since": since,
        "until": until,
    }
    args.update(kw)
    return DeviceMute(**args)  # type: ignore[arg-type]


def v(kind: AlertKind, now: datetime, device_kind: DeviceKind, **kw: object) -> Verdict:
    return verdict(kind, now, device_id="wm-1", device_kind=device_kind, **kw)  # type: ignore[arg-type]


# --- away marks ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(AwayStatus))
def test_away_pauses_no_water_use_until_its_end(status: AwayStatus) -> None:
    mark = away(status=status)
    during = v(AlertKind.NO_WATER_USE, T0 + H, DeviceKind.WATER_SENSOR, away=[mark])
    assert during.suppressed
    assert during.why == ("elder_in_hospital" if status == AwayStatus.IN_HOSPITAL else "elder_away")
    assert during.until == mark.until and during.by == "daughter"
    after = v(AlertKind.NO_WATER_USE, mark.until, DeviceKind.WATER_SENSOR, away=[mark])
    assert not after.suppressed and after.why == "not_suppressed"
    before = v(
        AlertKind.NO_WATER_USE, T0 - timedelta(seconds=1), DeviceKind.WATER_SENSOR, away=[mark]
    )
    assert not before.suppressed


@pytest.mark.parametrize("kind", [k for k in AlertKind if k != AlertKind.NO_WATER_USE])
def test_away_pauses_nothing_else(kind: AlertKind) -> None:
    for dk in DeviceKind:
        assert not v(kind, T0 + H, dk, away=[away()]).suppressed
    assert {AlertKind.NO_WATER_USE} == AWAY_PAUSES


@pytest.mark.parametrize("kind", sorted(NEVER_SUPPRESSED))
@pytest.mark.parametrize("device_kind", list(DeviceKind))
def test_call_button_and_gas_are_never_suppressed(kind: AlertKind, device_kind: DeviceKind) -> None:
    m = mute(device_kind, until=T0 + 2 * H)
    result = v(kind, T0 + H, device_kind, away=[away()], mutes=[m])
    assert not result.suppressed
    assert result.why == "never_suppressed"
    assert {AlertKind.CALL_BUTTON, AlertKind.GAS} == NEVER_SUPPRESSED


def test_away_needs_an_end_after_its_start_within_the_cap() -> None:
    with pytest.raises(SuppressionError):
        away(until=T0)
    with pytest.raises(SuppressionError):
        away(until=T0 - H)
    with pytest.raises(SuppressionError):
        away(until=T0 + MAX_AWAY + timedelta(seconds=1))
    assert away(until=T0 + MAX_AWAY).until == T0 + MAX_AWAY
    with pytest.raises(SuppressionError):
        away(author="  ")
    with pytest.raises(SuppressionError):
        away(until=datetime(2026, 11, 25, 8, 0))  # no time zone
    with pytest.raises(TypeError):
        ElderAway("el-1", AwayStatus.AWAY, T0, author="x")  # type: ignore[call-arg]


def test_the_longest_of_several_away_marks_is_named() -> None:
    short, long_ = away(until=T0 + 2 * H), away(until=T0 + 30 * H, author="staff Wang")
    result = v(AlertKind.NO_WATER_USE, T0 + H, DeviceKind.WATER_SENSOR, away=[short, long_])
    assert result.until == T0 + 30 * H and result.by == "staff Wang"


# --- maintenance mutes -----------------------------------------------------------------------


def test_mute_caps_per_device_kind() -> None:
    assert MUTE_CAP[DeviceKind.CALL_BUTTON] == timedelta(hours=24)
    assert MUTE_CAP[DeviceKind.GAS_SENSOR] == timedelta(hours=24)
    assert MUTE_CAP[DeviceKind.WATER_SENSOR] == timedelta(days=30)
    for kind, cap in MUTE_CAP.items():
        assert mute(kind, until=T0 + cap).until == T0 + cap
        with pytest.raises(SuppressionError):
            mute(kind, until=T0 + cap + timedelta(seconds=1))


@pytest.mark.parametrize(
    "bad",
    [
        {"author": ""},
        {"reason": " "},
        {"until": T0},
        {"until": T0 - H},
        {"since": datetime(2026, 11, 23, 8, 0)},
    ],
)
def test_mute_needs_author_reason_and_a_real_expiry(bad: dict[str, object]) -> None:
    with pytest.raises(SuppressionError):
        mute(**bad)


@pytest.mark.parametrize("device_kind", list(DeviceKind))
def test_mute_silences_only_its_device_and_only_while_it_lasts(device_kind: DeviceKind) -> None:
    m = mute(device_kind, until=T0 + 3 * H)
    result = v(AlertKind.DEVICE_OFFLINE, T0 + H, device_kind, mutes=[m])
    assert result.suppressed and result.why == "device_maintenance"
    assert result.by == "tech Li" and result.detail == "meter swap" and result.until == m.until
    assert not v(AlertKind.DEVICE_OFFLINE, T0 + 3 * H, device_kind, mutes=[m]).suppressed
    other = mute(device_kind, until=T0 + 3 * H, device_id="other")
    assert not v(AlertKind.DEVICE_OFFLINE, T0 + H, device_kind, mutes=[other]).suppressed


def test_what_a_mute_silences() -> None:
    health = {AlertKind.DEVICE_OFFLINE, AlertKind.LOW_BATTERY, AlertKind.TAMPER}
    assert MUTABLE[DeviceKind.CALL_BUTTON] == health
    assert MUTABLE[DeviceKind.GAS_SENSOR] == health
    assert MUTABLE[DeviceKind.WATER_SENSOR] == health | {
        AlertKind.NO_WATER_USE,
        AlertKind.WATER_RUNNING,
        AlertKind.WATER_LEAK,
    }
    m = mute(DeviceKind.WATER_SENSOR, until=T0 + 3 * H)
    assert v(AlertKind.WATER_RUNNING, T0 + H, DeviceKind.WATER_SENSOR, mutes=[m]).suppressed


def test_verdict_needs_an_aware_now() -> None:
    with pytest.raises(SuppressionError):
        v(AlertKind.NO_WATER_USE, datetime(2026, 11, 23, 9, 0), DeviceKind.WATER_SENSOR)


@FAST
@given(
    kind=st.sampled_from(list(AlertKind)),
    device_kind=st.sampled_from(list(DeviceKind)),
    offset_h=st.floats(min_value=-100, max_value=2000, allow_nan=False),
    away_h=st.floats(min_value=0.1, max_value=MAX_AWAY.total_seconds() / 3600),
    mute_frac=st.floats(min_value=0.01, max_value=1.0),
)
def test_nothing_is_silenced_forever(
    kind: AlertKind,
    device_kind: DeviceKind,
    offset_h: float,
    away_h: float,
    mute_frac: float,
) -> None:
    marks = [away(until=T0 + timedelta(hours=away_h))]
    mutes = [mute(device_kind, until=T0 + MUTE_CAP[device_kind] * mute_frac)]
    now = T0 + timedelta(hours=offset_h)
    result = v(kind, now, device_kind, away=marks, mutes=mutes)
    if result.suppressed:
        assert result.until is not None and result.until > now
        assert result.until - T0 <= max(MAX_AWAY, MUTE_CAP[device_kind])
        assert kind not in NEVER_SUPPRESSED
    # past every end, nothing is suppressed
    later = max(marks[0].until, mutes[0].until)
    assert not v(kind, later, device_kind, away=marks, mutes=mutes).suppressed
