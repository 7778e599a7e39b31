"""Notifier channels behind one small interface, and the pool of threads that calls them.

A channel is anything with `send(delivery) -> DeliveryResult` (the `Notifier` protocol): it makes
one attempt and says how it went; retries, fallbacks and the record are the caller's
(gateway/paging.py, after alerts.policy.chain_schedule). Channels here:

- `apprise`: SMS, IM, voice, e-mail ... through an apprise URL configured per person
  (`twilio://...`, `dingtalk://...`, `json://host/path` ...), so any provider apprise supports
  can be used, and a second URL in the person's chain is the fallback.
- `web`: the person's phone page (gateway/phone.py): sent when they have it open right now,
  failed otherwise, so that their chain goes on to the next link (an SMS ...). Its address is
  the page's path (`/phone`), nothing secret.

The MQTT pager is not one of them: its page is written to the outbox in the alert's own
transaction and published after the commit, at least once (gateway/outbox.py); paging.py records
it as the first attempt of the person's chain.

Provider calls block on the network, so they run on the `Dispatcher`'s few threads: never on the
ingest worker, never inside a database transaction. Each result is handed to a callback that
writes it back in its own short transaction. An apprise URL holds credentials: it is only ever
logged, stored beside the attempt and returned masked (`mask_address`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from alerts.policy import DeliveryStatus

log = logging.getLogger(__name__)

APPRISE = "apprise"
PAGER = "pager"
WEB = "web"  # the phone page (gateway/phone.py)
WEB_ADDRESS = "/phone"  # a web link's address: where the page is
MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt to send a page to a person on one link of their channel chain."""

    id: int  # the `deliveries` row
    alert_id: str
    page_id: str
    responder_id: str
    channel: str
    address: str = field(repr=False)  # a secret for apprise: never logged; see address_masked
    address_masked: str
    link: int
    try_no: int
    title: str
    body: str


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    status: DeliveryStatus
    error: str | None = None


class Notifier(Protocol):
    """A channel: one attempt, no retries, no exceptions for a provider's refusal."""

    def send(self, delivery: Delivery) -> DeliveryResult: ...


def mask_address(channel: str, address: str) -> str:
    """What may be shown of an address: a pager id or the phone page's path as it is; of an
    apprise URL only its scheme and a short fingerprint (to tell two URLs apart), e.g.
    `twilio://…#3f2a9c`."""
    if channel in (PAGER, WEB):
        return address
    scheme = address.split("://", 1)[0] if "://" in address else "?"
    digest = hashlib.sha256(address.encode("utf-8")).hexdigest()[:6]
    return f"{scheme[:20]}://…#{digest}"


def scrub(text: str, address: str, masked: str) -> str:
    """`text` (an error message) without the secret address, cut to what a record holds."""
    if address:
        text = text.replace(address, masked)
        rest = address.split("://", 1)[-1]
        if len(rest) >= 8:  # a provider may quote the URL without its scheme
            text = text.replace(rest, "…")
    return text[:MAX_ERROR_CHARS]


def apprise_accepts(url: str) -> bool:
    """Whether apprise knows what to do with `url` (parsing only: no network)."""
    import apprise  # imported on use: a gateway without apprise channels never loads it

    return apprise.Apprise.instantiate(url) is not None


class AppriseNotifier:
    """SMS / IM / voice through apprise: one URL, one try (apprise's own retries are off)."""

    def __init__(self) -> None:
        # apprise masks URLs in what it logs at INFO and above; its DEBUG lines show request
        # URLs in full, so they stay off even when the gateway logs at DEBUG.
        apprise_log = logging.getLogger("apprise")
        if apprise_log.getEffectiveLevel() < logging.INFO:
            apprise_log.setLevel(logging.INFO)

    def send(self, delivery: Delivery) -> DeliveryResult:
        import apprise

        ap = apprise.Apprise()
        if not ap.add(delivery.address):
            return DeliveryResult(DeliveryStatus.FAILED, "apprise does not accept this URL")
        result = ap.notify(body=delivery.body, title=delivery.title)
        if result:
            return DeliveryResult(DeliveryStatus.SENT)
        return DeliveryResult(
            DeliveryStatus.FAILED,
            scrub(_why(result), delivery.address, delivery.address_masked),
        )


def _why(result: object) -> str:
    """The provider's complaint, from apprise's per-call log (apprise 1.9+); else a summary."""
    logs = getattr(result, "logs", None)
    if callable(logs):
        try:
            lines = [e.message for e in logs() if getattr(e, "level", "") in ("WARNING", "ERROR")]
        except Exception:  # a log we cannot read is no reason to lose the result
            lines = []
        if lines:
            return " ".join(lines)
    return "the provider refused the message or could not be reached"


class Dispatcher:
    """A small pool of threads that sends deliveries and hands each result to `record`.

    `record` writes the result back (its own transaction) and may raise when the database is
    down: it is tried a few times, then left to the row's lease (the scheduler marks the
    attempt failed when its lease ends, and the retry policy sends it again).
    """

    def __init__(
        self,
        notifiers: Mapping[str, Notifier],
        record: Callable[[Delivery, DeliveryResult], None],
        threads: int = 4,
        record_tries: int = 5,
    ) -> None:
        self.notifiers = dict(notifiers)
        self.record = record
        self.threads = threads
        self.record_tries = record_tries
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def start(self) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="shouwang-notify")

    def stop(self) -> None:
        """Finish the sends in hand; those not begun stay `sending` and are retried later."""
        self._stopping.set()
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, deliveries: list[Delivery]) -> None:
        """Send these on the pool (any thread; returns at once)."""
        with self._lock:
            pool = self._pool
        if pool is None:
            if deliveries:
                log.warning("notifier pool not running: %d deliveries wait", len(deliveries))
            return
        for d in deliveries:
            pool.submit(self._run, d)

    def _run(self, d: Delivery) -> None:
        notifier = self.notifiers.get(d.channel)
        if notifier is None:
            result = DeliveryResult(DeliveryStatus.FAILED, f"no notifier for channel {d.channel!r}")
        else:
            try:
                result = notifier.send(d)
            except Exception as exc:  # one channel's failure is its own: record it, go on
                log.warning(
                    "delivery %s (%s %s) raised %s", d.id, d.channel, d.address_masked, type(exc)
                )
                text = scrub(f"{type(exc).__name__}: {exc}", d.address, d.address_masked)
                result = DeliveryResult(DeliveryStatus.FAILED, text)
        for n in range(self.record_tries):
            try:
                self.record(d, result)
                return
            except Exception:
                log.warning("could not record delivery %s (try %d)", d.id, n + 1, exc_info=True)
                if self._stopping.wait(0.2 * 2**n):
                    break
        log.error("delivery %s %s: result not recorded; its lease will expire", d.id, result)


__all__ = [
    "APPRISE",
    "PAGER",
    "WEB",
    "WEB_ADDRESS",
    "AppriseNotifier",
    "Delivery",
    "DeliveryResult",
    "Dispatcher",
    "Notifier",
    "apprise_accepts",
    "mask_address",
    "scrub",
]
