// The board's banner of refused alarms: a device's alarm event the gateway refused as invalid
// (quarantined, no alert opened) that is most likely an elder's press, to be called back.
// Apart from board.js, which draws it, so that the tests can run this very code
// (tests/unit/test_pages_static.py). `list` is GET /api/v1/board/refused (or the stream's
// `refused` message): its alarms newest first, not dismissed, of the last `window_h` hours.

const HOUR_MS = 3600 * 1000;

// The alarms the banner shows at `nowMs` (the gateway's clock): those of the window (the list
// may be a minute old: a day-old one leaves at once) that this page has not dismissed since
// (`dismissed`: quarantine ids, until the stream's next list confirms it), newest first.
export function shownRefused(list, nowMs, dismissed = new Set()) {
  if (!list || !Array.isArray(list.alarms)) return [];
  const cut = nowMs - (Number(list.window_h) || 24) * HOUR_MS;
  return list.alarms
    .filter((a) => !dismissed.has(a.quarantine_id) && Date.parse(a.at) >= cut)
    .sort((a, b) => b.quarantine_id - a.quarantine_id);
}

// The ids among `shown` that the page had not shown before (`known`; null: the first list,
// which rings nothing: it was there before the page opened).
export function newRefused(shown, known) {
  if (known === null || known === undefined) return [];
  return shown.map((a) => a.quarantine_id).filter((id) => !known.has(id));
}
