"""What a pager's small screen says, in the responder's language (zh-CN first, English too)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from alerts.model import AlertKind, Priority, State
from devices.kinds import DeviceKind
from devices.payloads import NOTE_CUT_MARK

LANGUAGES = ("zh-CN", "en")


class Valve(StrEnum):
    """What is known of the valve a gas alarm closes (alerts/gas.py)."""

    CLOSED = "closed"
    NOT_CLOSED = "not_closed"


# The gas rule's reasons (alerts/gas.py) and what each tells of the valve. The last one told
# wins: a close confirmed late must undo the page that said it had not closed.
VALVE_AFTER: dict[str, Valve] = {
    "valve_closed": Valve.CLOSED,
    "valve_closed_late": Valve.CLOSED,
    "valve_close_failed": Valve.NOT_CLOSED,
    "valve_close_no_answer": Valve.NOT_CLOSED,
}

# Right after the label, before anything else: a valve that did not close means the one who goes
# must shut the gas at the meter or call the gas company, and a pager's screen is cut short.
# Closed is said too: without it "closed" and "no valve, or no answer yet" read the same.
VALVE_MARK: dict[str, dict[Valve, str]] = {
    "zh-CN": {Valve.CLOSED: "（阀门已关闭）", Valve.NOT_CLOSED: "（阀门未关闭）"},
    "en": {Valve.CLOSED: " (VALVE CLOSED)", Valve.NOT_CLOSED: " (VALVE NOT CLOSED)"},
}


@dataclass(frozen=True, slots=True)
class BuildingOutage:
    """A building's mass outage paged as one device_offline alert (alerts/health.py): the alert
    names one device and its elder, but the staff must see a whole building is dark."""

    building: str
    devices: int
    homes: int


OUTAGE_LABEL = {"zh-CN": "楼栋断电/设备离线", "en": "BUILDING OUTAGE"}

KIND_LABEL: dict[str, dict[AlertKind, str]] = {
    "zh-CN": {
        AlertKind.CALL_BUTTON: "紧急呼叫",
        AlertKind.GAS: "燃气报警",
        AlertKind.WATER_LEAK: "漏水报警",
        AlertKind.NO_WATER_USE: "长时间未用水",
        AlertKind.WATER_RUNNING: "长时间用水不停",
        AlertKind.DEVICE_OFFLINE: "设备离线",
        AlertKind.LOW_BATTERY: "设备电量低",
        AlertKind.TAMPER: "设备被拆动",
    },
    "en": {
        AlertKind.CALL_BUTTON: "CALL BUTTON",
        AlertKind.GAS: "GAS ALARM",
        AlertKind.WATER_LEAK: "WATER LEAK",
        AlertKind.NO_WATER_USE: "NO WATER USE",
        AlertKind.WATER_RUNNING: "WATER RUNNING",
        AlertKind.DEVICE_OFFLINE: "DEVICE OFFLINE",
        AlertKind.LOW_BATTERY: "LOW BATTERY",
        AlertKind.TAMPER: "TAMPER",
    },
}


# Alerts about a device rather than the elder: the page says which device, so the one who goes
# knows what to look at (a gas sensor offline is not a call button offline).
ABOUT_A_DEVICE = frozenset({AlertKind.DEVICE_OFFLINE, AlertKind.LOW_BATTERY, AlertKind.TAMPER})

DEVICE_LABEL: dict[str, dict[DeviceKind, str]] = {
    "zh-CN": {
        DeviceKind.CALL_BUTTON: "呼叫器",
        DeviceKind.GAS_SENSOR: "燃气报警器",
        DeviceKind.WATER_SENSOR: "水表",
    },
    "en": {
        DeviceKind.CALL_BUTTON: "call button",
        DeviceKind.GAS_SENSOR: "gas sensor",
        DeviceKind.WATER_SENSOR: "water meter",
    },
}


def _label(lang: str, kind: AlertKind, device: DeviceKind | None) -> str:
    label = KIND_LABEL[lang][kind]
    if device is None or kind not in ABOUT_A_DEVICE:
        return label
    name = DEVICE_LABEL[lang][device]
    return f"{label}（{name}）" if lang == "zh-CN" else f"{label} ({name})"


def _what_where(
    lang: str,
    kind: AlertKind,
    device: DeviceKind | None,
    valve: Valve | None,
    outage: BuildingOutage | None,
    elder_name: str,
    address: str,
    phone: str | None,
) -> tuple[str, str, str]:
    """The label, its valve mark (or ""), and who and where. An outage names the building and
    its size instead of the one elder the alert happens to be filed under."""
    mark = VALVE_MARK[lang][valve] if valve is not None and kind == AlertKind.GAS else ""
    if outage is not None and kind == AlertKind.DEVICE_OFFLINE:
        b, n, h = outage.building, outage.devices, outage.homes
        if lang == "zh-CN":
            return OUTAGE_LABEL[lang], mark, f"{b} {n}台设备（{h}户）"
        devs, homes = f"{n} device{'' if n == 1 else 's'}", f"{h} home{'' if h == 1 else 's'}"
        return OUTAGE_LABEL[lang], mark, f"{devs} in {homes}, {b}"
    label = _label(lang, kind, device)
    if lang == "zh-CN":
        return label, mark, f"{elder_name} {address}" + (f" 电话{phone}" if phone else "")
    return label, mark, f"{elder_name}, {address}" + (f", tel {phone}" if phone else "")


def language(lang: str | None) -> str:
    """One of LANGUAGES; anything else falls back to zh-CN."""
    return lang if lang in LANGUAGES else "zh-CN"


def page_text(
    lang: str | None,
    kind: AlertKind,
    priority: Priority,
    elder_name: str,
    address: str,
    phone: str | None,
    step: int,
    repeat: bool = False,
    device: DeviceKind | None = None,
    others_declined: bool = False,
    valve: Valve | None = None,
    outage: BuildingOutage | None = None,
) -> str:
    """One line for a pager: priority, what (and which device, for an alert about one), who,
    where, phone, and what to do. `others_declined`: everyone asked before has said no (or
    taken back their ack: they cannot come either), so the one reading it knows that nobody else
    is coming (it replaces the repeat's mark); not when someone merely has not answered. `valve`
    (a gas alert): what is known of its valve. `outage` (a device_offline alert that stands for
    a building's outage): the building and its size, in place of the elder."""
    lang = language(lang)
    label, mark, who = _what_where(lang, kind, device, valve, outage, elder_name, address, phone)
    if lang == "zh-CN":
        again = "（其他人均无法前往）" if others_declined else "（再次呼叫）" if repeat else ""
        return f"【{priority} {label}】{mark}{again}{who} 请回复接单或拒绝"
    again = " (NOBODY ELSE CAN COME)" if others_declined else " (AGAIN)" if repeat else ""
    return f"{priority} {label}{mark}{again}: {who}. Reply ACK or DECLINE"


# An assigner's note on a page is cut shorter than a pager's reply note (devices/payloads.py,
# 500): the page also carries the elder's name and address twice (its `elder` and its text) and
# the assigner's name, and at the longest each of those may be (100, 300, 100 characters, three
# bytes each in UTF-8) a 500-character note took it past the 4096 bytes a pager takes.
ASSIGN_NOTE_MAX_CHARS = 300


def page_note(note: str | None) -> str:
    """A note as a page's one line carries it: its whitespace runs (newlines, tabs) one space,
    cut to ASSIGN_NOTE_MAX_CHARS, ending in NOTE_CUT_MARK when cut; "" for none."""
    flat = " ".join((note or "").split())
    if len(flat) <= ASSIGN_NOTE_MAX_CHARS:
        return flat
    return flat[: ASSIGN_NOTE_MAX_CHARS - len(NOTE_CUT_MARK)] + NOTE_CUT_MARK


def assigned_text(
    lang: str | None,
    kind: AlertKind,
    priority: Priority,
    elder_name: str,
    address: str,
    phone: str | None,
    state: State,
    by: str | None,
    note: str | None,
    again: bool = False,
    device: DeviceKind | None = None,
    valve: Valve | None = None,
    outage: BuildingOutage | None = None,
) -> str:
    """The page to a person the station sends (指派): who sent them (`by`) and their note, then
    what to reply now. On an alert someone has taken already (`state`), an ACK says that they
    go too and a DECLINE that they cannot (gateway/alerting.py `reply`): so it says it has been
    taken, or that someone is there, and asks for that. `again`: the same person sent again.
    `device`, `valve` and `outage` as for `page_text`."""
    lang = language(lang)
    label, mark, who = _what_where(lang, kind, device, valve, outage, elder_name, address, phone)
    said = page_note(note)
    if lang == "zh-CN":
        sent = f"（{by or '服务站'}{'再次' if again else ''}指派您前往）"
        words = f" 留言「{said}」" if said else ""
        ask = {
            State.ACKNOWLEDGED: "已有人接单，您前往请回复接单，不能去请回复拒绝",
            State.ON_SITE: "已有人在现场，您前往请回复接单，不能去请回复拒绝",
        }.get(state, "请回复接单或拒绝")
        return f"【{priority} {label}】{mark}{sent}{who}{words} {ask}"
    sent = f" (ASSIGNED{' AGAIN' if again else ''} to you by {by or 'the station'})"
    words = f' Note: "{said}".' if said else ""
    ask = {
        State.ACKNOWLEDGED: "Someone has taken it; reply ACK if you go, DECLINE if you cannot",
        State.ON_SITE: "Someone is there; reply ACK if you go, DECLINE if you cannot",
    }.get(state, "Reply ACK or DECLINE")
    return f"{priority} {label}{mark}{sent}: {who}.{words} {ask}"


def notice_text(lang: str | None, state: State, elder_name: str, by: str | None) -> str:
    """A notice: someone else took it, or it was cancelled or resolved (no action asked); or,
    state `open`, the one who took it (`by`) cannot go after all: those told they need not go
    learn that nobody is coming now, and that their answer to the page is still taken."""
    lang = language(lang)
    if lang == "zh-CN":
        if state == State.ACKNOWLEDGED:
            # "已由X接单": "的呼叫X已接单" read as "the call to X".
            who = f"已由{by}接单" if by else "已有人接单"
            return f"【通知】{elder_name}的呼叫{who}，您无需前往"
        if state == State.OPEN:
            who = by or "接单人"
            return f"【通知】{who}无法前往，{elder_name}的呼叫重新待接单，如您能去请回复接单"
        if state == State.CANCELLED:
            return f"【通知】{elder_name}已取消呼叫（误按），您无需前往"
        if state == State.RESOLVED:
            return f"【通知】{elder_name}的告警已处理完毕"
        return f"【通知】{elder_name}的告警状态：{state}"
    if state == State.ACKNOWLEDGED:
        who = f"was taken by {by}" if by else "was taken by someone else"
        return f"NOTICE: {elder_name}'s alert {who}; no need to go"
    if state == State.OPEN:
        who = by or "The one who took it"
        return f"NOTICE: {who} cannot go; {elder_name}'s alert is open again. Reply ACK if you can"
    if state == State.CANCELLED:
        return f"NOTICE: {elder_name} cancelled the call (pressed by mistake); no need to go"
    if state == State.RESOLVED:
        return f"NOTICE: {elder_name}'s alert is resolved"
    return f"NOTICE: {elder_name}'s alert is {state}"


def outage_elder(lang: str | None, outage: BuildingOutage, address: str) -> tuple[str, str]:
    """The name and address a page's `elder` gives for a building's outage: the alert is filed
    under one of its homes' elders, whose name and phone would read as that one home's trouble.
    The address stays that home's (`address`: the street, which a building's tag alone may not
    give), after the building's tag when it does not hold it already. The contract keeps the
    field's types (the phone goes as null). Devices silent together may be a power cut or the
    network: the label says both (`OUTAGE_LABEL`)."""
    h = outage.homes
    b = outage.building
    where = address if b in address else f"{b} · {address}"
    if language(lang) == "zh-CN":
        return f"{OUTAGE_LABEL['zh-CN']} {h}户", where
    return f"{OUTAGE_LABEL['en']}, {h} home{'' if h == 1 else 's'}", where


def valve_closed_text(lang: str | None, elder_name: str) -> str:
    """A notice to those whose page said the gas valve had not closed, once it is known closed
    (its answer came late): they need not shut the gas at the meter, but the alarm still stands,
    so nothing in it says they need not go."""
    if language(lang) == "zh-CN":
        return f"【通知】{elder_name}家燃气阀门现已关闭，燃气报警仍需处理"
    return f"NOTICE: {elder_name}'s gas valve is now CLOSED; the gas alarm still needs handling"


def cancel_pressed_text(lang: str | None, elder_name: str, phone: str | None) -> str:
    """A notice to whoever took the alert: the elder pressed cancel after that (alerts/rules.py
    `CancelPressed`). The alert is still theirs: they decide, having checked on the elder;
    it never stands them down by itself (the elder may have been made to cancel, or have
    fallen)."""
    lang = language(lang)
    if lang == "zh-CN":
        tel = f"（电话{phone}）" if phone else ""
        return (
            f"【通知】{elder_name}按了取消键，告警仍由您负责：请确认老人平安{tel}，"
            "确认后回复处理完毕；无法确认请继续前往"
        )
    tel = f" (tel {phone})" if phone else ""
    return (
        f"NOTICE: {elder_name} pressed CANCEL; the alert is still yours. Check they are safe{tel}"
        "; reply RESOLVED once sure, else keep going"
    )


def reminder_text(
    lang: str | None,
    kind: AlertKind,
    priority: Priority,
    elder_name: str,
    address: str,
    phone: str | None,
    stage: State,
    device: DeviceKind | None = None,
    valve: Valve | None = None,
    outage: BuildingOutage | None = None,
) -> str:
    """A reminder of an alert answered but not resolved: marked as such, then what is asked now
    (go there, when only acknowledged; close it, when someone is on site). `valve` and
    `outage` as for `page_text`."""
    lang = language(lang)
    label, mark, who = _what_where(lang, kind, device, valve, outage, elder_name, address, phone)
    if lang == "zh-CN":
        ask = "请回复处理完毕" if stage == State.ON_SITE else "请尽快到场并回复到达"
        return f"【提醒 {priority} {label}】{mark}仍未处理：{who} {ask}"
    ask = "Reply RESOLVED when done" if stage == State.ON_SITE else "Please go now; reply ARRIVED"
    return f"REMINDER {priority} {label}{mark}, still open: {who}. {ask}"


def message_title(lang: str | None) -> str:
    """The title of a page sent by SMS, IM or voice (apprise), where the channel has one."""
    return "守望告警" if language(lang) == "zh-CN" else "Shouwang alert"
