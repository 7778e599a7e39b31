// Which answers a call's card on the phone page offers. Apart from phone.js, which runs the
// page, so that the tests can run this very code (tests/unit/test_pages_static.py).

// The person's own last answers that mean "I am coming" or "I am there".
const COMING = new Set(["acknowledged", "ack_again", "on_site", "arrive_again"]);

// `page` is a GET /api/v1/me/pages item. The answers, in the order shown; "withdraw" is the
// acknowledger's 无法前往: a `decline` from them, which withdraws their acceptance (the alert is
// open again and the next step paged at once, gateway/alerting.py `decline`).
export function offered(page) {
  if (page.state === "open") return ["ack", "decline"];
  if (page.state !== "acknowledged" && page.state !== "on_site") return [];
  const acceptedByMe = page.acknowledged_by?.me === true;
  // The card tells the others "someone accepted, you need not go": no button pushes them to go
  // after all, unless a reminder has asked them since (the call is still not done).
  if (!acceptedByMe && !COMING.has(page.my_last_reply) && !page.reminder) return [];
  if (page.state === "on_site") return ["resolved"]; // someone is with the elder: no going back
  return acceptedByMe ? ["arrived", "resolved", "withdraw"] : ["arrived", "resolved"];
}

// --- ringing after a resync -------------------------------------------------------------------
// A page that was away (no network, a stream cut off, a reload) loads its list again
// (GET /me/pages) instead of the stream's `page` events it missed. A card from that list rings
// when it is a call to the person they have not seen yet: its `call_event_id` (the id of the
// stream's `page` event for it) is newer than the last one seen on this phone, they have not
// answered since, and it still asks for someone. "Seen" is the person stopping the sound (mute)
// or answering, not the sound starting: a call that rang unheard in a pocket rings again.

const STILL_ON = new Set(["acknowledged", "on_site"]);

// Whether the card's newest call is the page saying the elder pressed cancel (sent to those
// coming, gateway/alerting.py `_tell_cancel_pressed`): it asks them to act while they hold the
// alert (check the elder is safe), so it rings like a reminder.
export function cancelPressed(page) {
  const id = page.cancel_pressed_event_id;
  return typeof id === "number" && id === page.call_event_id;
}

// Whether the card's call still asks the person: the alert open (or a reminder of one still
// going, or the elder's cancel told to those coming, as the stream rings for), and no answer
// from them since the call.
export function calling(page) {
  const asksAgain = page.reminder || cancelPressed(page);
  if (page.state !== "open" && !(asksAgain && STILL_ON.has(page.state))) return false;
  const answered = page.my_last_reply_event_id;
  return !(typeof answered === "number" && answered > (page.call_event_id ?? 0));
}

// Whether a card of a resynced list rings, `seen` being the last call id seen for its alert
// (undefined: none).
export function ringsAfterResync(page, seen) {
  if (!calling(page)) return false;
  return typeof seen !== "number" || (page.call_event_id ?? 0) > seen;
}

// The calls seen, per alert: in `storage` (localStorage) under the person's own key, so that a
// reload does not ring again what was seen, and another person signed in on the same phone is
// not kept from hearing the calls meant for them. `storage` null: kept in memory only.
export function seenCalls(storage, personId) {
  const key = personId ? `shouwang.phone.seen.${personId}` : null;
  let seen = {};
  try {
    const kept = key && storage ? JSON.parse(storage.getItem(key) || "{}") : {};
    if (kept && typeof kept === "object" && !Array.isArray(kept)) {
      for (const [id, n] of Object.entries(kept)) if (Number.isSafeInteger(n)) seen[id] = n;
    }
  } catch (e) {
    seen = {}; // unreadable: ringing once more is the safe side
  }
  const save = () => {
    try {
      if (key && storage) storage.setItem(key, JSON.stringify(seen));
    } catch (e) {
      // full or refused: still kept for as long as the page is open
    }
  };
  return {
    get: (alertId) => seen[alertId],
    mark(alertId, callId) {
      const n = callId ?? 0;
      if (!(seen[alertId] >= n)) { seen[alertId] = n; save(); }
    },
    // Only the alerts of the list just loaded: an ended one is rung for by no list again.
    keep(alertIds) {
      const keep = new Set(alertIds);
      const before = Object.keys(seen).length;
      seen = Object.fromEntries(Object.entries(seen).filter(([id]) => keep.has(id)));
      if (Object.keys(seen).length !== before) save();
    },
  };
}

// --- the time to answer -----------------------------------------------------------------------

// What an open card says of the time to answer, as { key, time } (null: nothing to say). The
// person's own page's reply_by is only true until the alert moves on: then it says so
// (`passed_on_at`, from the server), and that the person can still accept.
export function replyByLine(page, nowMs) {
  if (page.state !== "open") return null;
  if (page.passed_on_at) return { key: "page.passed_on", time: page.passed_on_at };
  if (!page.reply_by) return null;
  const due = Date.parse(page.reply_by);
  if (Number.isFinite(due) && due <= nowMs) return { key: "page.reply_by_passed", time: page.reply_by };
  return { key: "page.reply_by", time: page.reply_by };
}

// --- ringing on the live stream ---------------------------------------------------------------

// Whether a live `page` event (`eventId`) rings, `page` being the card as it stands now (the
// event's item) and `seen` the last call id seen for its alert: only while the call still asks
// the person (`calling`: a page replayed, or one they answered since, e.g. accepted with no
// reminder due, does not), and unless that call was seen already.
export function ringsOnPage(page, eventId, seen) {
  return calling(page) && !(typeof seen === "number" && seen >= eventId);
}

// The calls ringing now. The mute button stops these calls, each seen (`seenCalls`), not the
// sound for good: a call that comes after rings on its own, without the muted ones.
export function ringingCalls() {
  const calls = new Set();
  return {
    ring: (alertId) => { calls.add(alertId); },
    stop: (alertId) => { calls.delete(alertId); },
    has: (alertId) => calls.has(alertId),
    get size() { return calls.size; },
    // `seen` a seenCalls(); `callOf(alertId)` the call id on its card. Returns those muted.
    mute(seen, callOf) {
      const muted = [...calls];
      for (const id of muted) seen.mark(id, callOf(id));
      calls.clear();
      return muted;
    },
  };
}

// --- what a card names ------------------------------------------------------------------------

// Who and where: the elder, or for a building's outage the building and its homes, as its pages
// say (楼栋断电 N户): the alert is filed under one of its homes' elders, whose name and phone would
// read as that one home's trouble. `who` is a phone.json key with its values, or null (the name).
export function subjectOf(page) {
  const o = page.outage;
  if (o && typeof o.building === "string") {
    return { label: "page.who_outage", who: { key: "page.outage_homes", homes: o.homes },
      name: null, address: o.building, phone: null };
  }
  const e = page.elder || {};
  return { label: "page.who", who: null, name: e.name, address: e.address, phone: e.phone };
}

// What a gas alarm's card says of its valve (a phone.json key), as its pages do: null when
// nothing is known (no valve, no answer yet).
export function valveKey(page) {
  if (page.valve === "closed") return "page.valve_closed";
  if (page.valve === "not_closed") return "page.valve_not_closed";
  return null;
}
