"""Unit tests of the pure helpers of the paging wiring: masking secrets, the effective channel
chain, the policy built from settings, the reminder text, and the notifier pool with fake
channels (threads only; no network, no database)."""

from __future__ import annotations

import threading
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from alerts.model import AlertKind, Priority, State
from alerts.policy import DEFAULT_TIMEOUTS_S, DeliveryStatus, Role
from alerts.text import message_title, reminder_text
from gateway.notify import Delivery, DeliveryResult, Dispatcher, mask_address, scrub
from gateway.paging import Paging, responder_of
from gateway.settings import Settings

TZ = ZoneInfo("Asia/Shanghai")
SECRET = "twilio://AC123:s3cr3t@15550001111/15550002222"


def test_mask_address_hides_apprise_urls_but_not_pager_ids() -> None:
    masked = mask_address("apprise", SECRET)
    assert masked.startswith("twilio://…#") and "s3cr3t" not in masked and "1555" not in masked
    assert masked == mask_address("apprise", SECRET)  # stable: two URLs can be told apart
    assert masked != mask_address("apprise", SECRET + "x")
    assert mask_address("pager", "pw-01") == "pw-01"
    assert mask_address("apprise", "no scheme at all").startswith("?://…#")


def test_scrub_removes_the_url_from_an_error_and_cuts_it_short() -> None:
    masked = mask_address("apprise", SECRET)
    text = scrub(f"cannot post to {SECRET}: refused", SECRET, masked)
    assert "s3cr3t" not in text and masked in text
    without_scheme = scrub("sent to AC123:s3cr3t@15550001111/15550002222", SECRET, masked)
    assert "s3cr3t" not in without_scheme
    assert len(scrub("x" * 2000, SECRET, masked)) == 500


def test_responder_of_reads_timeline_labels() -> None:
    assert responder_of("responder:w1") == "w1"
    assert responder_of("api:admin") is None
    assert responder_of(None) is None


def _link(channel: str, address: str, after_s: int) -> Any:
    return SimpleNamespace(channel=channel, address=address, after_s=after_s)


def test_chain_puts_the_pager_first_and_never_waits_for_a_missing_one() -> None:
    paging = Paging(TZ)
    links = [_link("apprise", "json://a", 60), _link("apprise", "json://b", 120)]
    with_pager = paging._chain("pw1", links)
    assert with_pager is not None
    assert [(x.channel, x.address, x.after_s) for x in with_pager.links] == [
        ("pager", "pw1", 0),
        ("apprise", "json://a", 60),
        ("apprise", "json://b", 120),
    ]
    without = paging._chain(None, links)
    assert without is not None
    assert [(x.channel, x.after_s) for x in without.links] == [("apprise", 0), ("apprise", 60)]
    # A stored "pager" row is ignored: the pager is the responder's own pager_id.
    only_pager = paging._chain("pw1", [_link("pager", "other", 0)])
    assert only_pager is not None and [x.address for x in only_pager.links] == ["pw1"]
    assert paging._chain(None, []) is None
    assert all(x.retry is paging.retry for x in with_pager.links)


def test_policy_from_settings_keeps_the_defaults_and_takes_changes() -> None:
    defaults = Paging.from_settings(Settings(_env_file=None), TZ)
    assert defaults.policy.timeouts_s == DEFAULT_TIMEOUTS_S
    assert defaults.reminders is not None
    assert defaults.reminders.after_ack == timedelta(minutes=10)
    assert defaults.reminders_for_explicit_plans is False
    assert (defaults.retry.max_tries, defaults.retry.first_backoff_s) == (3, 5.0)

    s = Settings(
        _env_file=None,
        p1_staff_ack_s=120,
        p2_family_ack_s=1800,
        max_nearby_volunteers=2,
        reminder_after_ack_s=0,
        reminder_after_on_site_s=0,
        delivery_max_tries=5,
    )
    changed = Paging.from_settings(s, TZ)
    assert changed.policy.timeout_s(Priority.P1, Role.STAFF) == 120
    assert changed.policy.timeout_s(Priority.P1, Role.WATCHER) == 60
    assert changed.policy.timeout_s(Priority.P2, Role.FAMILY) == 1800
    assert changed.policy.max_nearby_volunteers == 2
    assert changed.reminders is None and changed.retry.max_tries == 5
    with pytest.raises(ValueError, match="reminder interval"):
        Settings(_env_file=None, reminder_after_ack_s=3)


def test_reminder_text_says_it_is_a_reminder_and_what_is_asked() -> None:
    zh = reminder_text(
        "zh-CN", AlertKind.GAS, Priority.P1, "老人1", "幸福里1号", None, State.ACKNOWLEDGED
    )
    assert zh.startswith("【提醒 P1 燃气报警】") and "到场" in zh and "电话" not in zh
    en = reminder_text(
        "en", AlertKind.CALL_BUTTON, Priority.P1, "Li", "No. 1", "138", State.ON_SITE
    )
    assert en.startswith("REMINDER P1 CALL BUTTON") and "RESOLVED" in en and "tel 138" in en
    assert message_title("en") == "Shouwang alert" and message_title(None) == "守望告警"


def _delivery(n: int, channel: str = "apprise") -> Delivery:
    return Delivery(
        id=n,
        alert_id="al_1",
        page_id="pg_1",
        responder_id="w1",
        channel=channel,
        address=SECRET,
        address_masked=mask_address(channel, SECRET),
        link=1,
        try_no=1,
        title="t",
        body="b",
    )


def test_delivery_repr_never_shows_the_address() -> None:
    assert "s3cr3t" not in repr(_delivery(1))


def test_dispatcher_records_each_result_and_one_failing_channel_alone() -> None:
    results: dict[int, DeliveryResult] = {}
    done = threading.Event()
    calls = {"record": 0}

    class Good:
        def send(self, d: Delivery) -> DeliveryResult:
            return DeliveryResult(DeliveryStatus.SENT)

    class Broken:
        def send(self, d: Delivery) -> DeliveryResult:
            raise RuntimeError(f"boom at {d.address}")

    def record(d: Delivery, r: DeliveryResult) -> None:
        calls["record"] += 1
        if d.id == 3 and calls["record"] < 3:
            raise ConnectionError("database down")  # tried again
        results[d.id] = r
        if len(results) == 4:
            done.set()

    pool = Dispatcher({"apprise": Good(), "voice": Broken()}, record, threads=2)
    pool.start()
    pool.submit([_delivery(1), _delivery(2, "voice"), _delivery(3), _delivery(4, "fax")])
    assert done.wait(10)
    pool.stop()
    assert results[1].status == DeliveryStatus.SENT and results[3].status == DeliveryStatus.SENT
    assert results[2].status == DeliveryStatus.FAILED
    assert "boom" in (results[2].error or "") and "s3cr3t" not in (results[2].error or "")
    assert results[4].status == DeliveryStatus.FAILED and "fax" in (results[4].error or "")
    pool.submit([_delivery(5)])  # stopped: nothing is sent, nothing raised
    assert 5 not in results
