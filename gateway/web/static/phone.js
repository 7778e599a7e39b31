// The watchers' and volunteers' phone page: the calls sent to me the moment they are sent (a
// live stream, no polling), loud until answered, with big buttons to accept (接单), decline,
// arrive (到达) and finish (完成), and to take an acceptance back (无法前往); one tap to call the
// elder or the station; my pairings and points. Every answer goes through
// POST /api/v1/me/replies, the pager's own reply path.
import { loadI18n, t, applyI18n, setLang, currentLang, fmtTime, fmtAge } from "/static/i18n.js";
import { requireSession, get, post, ApiError } from "/static/api.js";
import {
  offered, calling, ringsAfterResync, seenCalls, replyByLine, ringsOnPage, ringingCalls, subjectOf,
  valveKey, cancelPressed,
} from "/static/phone-card.js";

const ACTIVE = new Set(["open", "acknowledged", "on_site"]);
const CLOSED_SHOWN_MS = 4000; // a call that ended stays on screen this long, saying so

const $ = (id) => document.getElementById(id);
const cards = new Map(); // alert id -> { li, page }
let stream = null;
let me = null;
let seen = seenCalls(null, null); // the calls seen (phone-card.js); per person once /me answers

// --- sound, vibration, notification ----------------------------------------------------------

let audio = null;
const ringing = ringingCalls(); // the calls that ring until answered or muted (each on its own)
let ringTimer = null;

function audioReady() {
  return audio !== null && audio.state === "running";
}

async function enableSound() {
  try {
    audio = audio || new AudioContext();
    await audio.resume();
  } catch (e) {
    audio = null;
  }
  if ("Notification" in window && Notification.permission === "default") {
    Notification.requestPermission().catch(() => {});
  }
  navigator.vibrate?.(50);
  showGate();
}

function showGate() {
  $("sound-gate").classList.toggle("hidden", audioReady());
}

function tone(freq, at, dur) {
  const osc = audio.createOscillator();
  const gain = audio.createGain();
  osc.type = "square";
  osc.frequency.value = freq;
  gain.gain.setValueAtTime(0.0001, at);
  gain.gain.exponentialRampToValueAtTime(0.9, at + 0.02);
  gain.gain.setValueAtTime(0.9, at + dur - 0.04);
  gain.gain.exponentialRampToValueAtTime(0.0001, at + dur);
  osc.connect(gain).connect(audio.destination);
  osc.start(at);
  osc.stop(at + dur + 0.01);
}

function beep() {
  if (!ringing.size) return;
  navigator.vibrate?.([400, 150, 400, 150, 400]);
  if (!audioReady()) return;
  const now = audio.currentTime;
  tone(988, now, 0.3);
  tone(740, now + 0.35, 0.3);
  tone(988, now + 0.7, 0.3);
}

function ring(alertId) {
  ringing.ring(alertId);
  if (!ringTimer) {
    beep();
    ringTimer = setInterval(beep, 1600);
  }
  showAlarm();
}

function stopRinging(alertId) {
  ringing.stop(alertId);
  quietIfNone();
}

function quietIfNone() {
  if (!ringing.size && ringTimer) {
    clearInterval(ringTimer);
    ringTimer = null;
    navigator.vibrate?.(0);
  }
  showAlarm();
}

// Per call: the calls ringing now stop, each seen; a call that comes after rings on its own.
function mute() {
  ringing.mute(seen, (id) => cards.get(id)?.page.call_event_id);
  navigator.vibrate?.(0);
  quietIfNone();
}

function showAlarm() {
  const on = ringing.size > 0;
  $("alarm-bar").classList.toggle("hidden", !on);
  document.body.dataset.ringing = on ? "1" : "0";
}

async function notify(page) {
  // A system notification when the page is not in front (another app, the screen off).
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") return;
  try {
    const reg = await navigator.serviceWorker?.getRegistration("/phone");
    const title = t("notify.title", { kind: t(`kind.${page.kind}`) });
    const who = subjectOf(page);
    const place = t("notify.body", { name: nameText(who), address: who.address });
    // The elder pressed cancel after they accepted: the notification says so, not just where.
    const body = cancelPressed(page) ? `${t("notify.cancel_pressed")} ${place}` : place;
    const opts = { body, tag: page.alert_id, renotify: true, requireInteraction: true,
      vibrate: [400, 150, 400, 150, 400], icon: "/static/phone-icon-192.png" };
    if (reg) await reg.showNotification(title, opts);
    else new Notification(title, opts);
  } catch (e) {
    // a notification is a courtesy: the page and its sound are the alarm
  }
}

// --- rendering --------------------------------------------------------------------------------

function telHref(phone) {
  return `tel:${String(phone).replace(/[^0-9+]/g, "")}`;
}

function whatText(page) {
  const w = page.what || {};
  const parts = [w.event === "button.pressed" ? t("page.button_pressed") : t(`kind.${page.kind}`)];
  const valve = valveKey(page); // right after the label, as the pages say it
  if (valve) parts.push(t(valve));
  if (w.press === "long") parts.push(t("page.press_long"));
  if (typeof w.lel_pct === "number") parts.push(t("page.gas_lel", { v: w.lel_pct }));
  if (typeof w.co_ppm === "number") parts.push(t("page.gas_co", { v: w.co_ppm }));
  if (typeof w.battery_pct === "number") parts.push(t("page.battery", { v: w.battery_pct }));
  return parts.join(" · ");
}

function metaText(page) {
  const age = (Date.now() - new Date(page.paged_at).getTime()) / 1000;
  const lines = [t("page.paged_at", { time: fmtTime(page.paged_at), step: page.step, age: fmtAge(age) })];
  if (!ACTIVE.has(page.state)) lines.push(t("page.closed"));
  else if (page.acknowledged_by?.me) lines.push(t("page.acked_by_me"));
  else if (page.acknowledged_by) {
    lines.push(page.acknowledged_by.name
      ? t("page.acked_by", { name: page.acknowledged_by.name }) : t("page.acked_by_someone"));
  } else if (page.reopened) lines.push(t("page.reopened"));
  else if (page.my_last_reply === "declined") lines.push(t("page.declined"));
  if (page.reminder && ACTIVE.has(page.state)) lines.push(t("page.reminder"));
  if (cancelPressed(page) && ACTIVE.has(page.state)) {
    lines.push(t("page.cancel_pressed", { time: fmtTime(page.cancel_pressed_at) }));
  }
  const due = replyByLine(page, Date.now());
  if (due) lines.push(t(due.key, { time: fmtTime(due.time) }));
  return lines.join(" · ");
}

function nameText(who) {
  return who.who ? t(who.who.key, { homes: who.who.homes }) : who.name;
}

function render(li, page) {
  li.dataset.alertId = page.alert_id;
  li.dataset.state = page.state;
  // prio-*, not base.css's p1/p2/p3 (which colour all the text): the card stays black on white
  li.className = `page prio-${page.priority.toLowerCase()} state-${page.state}`;
  li.querySelector(".prio").textContent = page.priority;
  li.querySelector(".kind").textContent = t(`kind.${page.kind}`);
  li.querySelector(".state").textContent = t(`state.${page.state}`);
  li.dataset.valve = page.valve || "";
  const who = subjectOf(page);
  li.querySelector(".who").textContent = t(who.label);
  li.querySelector(".elder").textContent = nameText(who);
  li.querySelector(".address").textContent = who.address;
  li.querySelector(".what").textContent = whatText(page);
  li.querySelector(".meta").textContent = metaText(page);
  const offer = offered(page);
  for (const b of li.querySelectorAll(".act")) {
    b.classList.toggle("hidden", !offer.includes(b.dataset.action));
  }
  // A question still open for an answer the alert no longer takes (someone arrived meanwhile)
  // is put away: its "yes" would not do what it says.
  const asking = { outcomes: "resolved", withdrawal: "withdraw" };
  for (const [panel, action] of Object.entries(asking)) {
    const open = !li.querySelector(`.${panel}`).classList.contains("hidden");
    if (open && !offer.includes(action)) showPanel(li, "actions");
  }
  const elderCall = li.querySelector(".elder-call");
  elderCall.classList.toggle("hidden", who.who !== null); // a building: no one elder to call
  if (who.phone) {
    elderCall.href = telHref(who.phone);
    elderCall.textContent = t("call.elder", { phone: who.phone });
    elderCall.classList.remove("disabled");
  } else {
    elderCall.removeAttribute("href");
    elderCall.textContent = t("call.elder_none");
    elderCall.classList.add("disabled");
  }
  const stationCall = li.querySelector(".station-call");
  stationCall.classList.toggle("hidden", !page.station_phone);
  if (page.station_phone) {
    stationCall.href = telHref(page.station_phone);
    stationCall.textContent = t("call.station", { phone: page.station_phone });
  }
}

function say(li, text, isError = false) {
  const msg = li.querySelector(".msg");
  msg.textContent = text || "";
  msg.classList.toggle("hidden", !text);
  msg.classList.toggle("error", isError);
}

function newCard(page) {
  const li = $("page-tpl").content.firstElementChild.cloneNode(true);
  applyI18n(li); // a template's content is not in the document the translations were applied to
  li.addEventListener("click", (ev) => onCardClick(ev, li));
  return li;
}

// Show `page` (a GET /me/pages item): a new card on top, or the card brought up to date.
function upsert(page) {
  let entry = cards.get(page.alert_id);
  if (!entry) {
    if (!ACTIVE.has(page.state)) return; // an ended call we never showed: nothing to show
    entry = { li: newCard(page), page };
    cards.set(page.alert_id, entry);
    $("pages").prepend(entry.li);
  }
  entry.page = page;
  render(entry.li, page);
  if (!ACTIVE.has(page.state)) {
    stopRinging(page.alert_id);
    setTimeout(() => dropIfClosed(page.alert_id), CLOSED_SHOWN_MS);
  } else if (!calling(page)) {
    // someone took it (it needs nobody else now), or the person answered it (their pager)
    stopRinging(page.alert_id);
  }
  showEmpty();
}

function dropIfClosed(alertId) {
  const entry = cards.get(alertId);
  if (entry && !ACTIVE.has(entry.page.state)) {
    entry.li.remove();
    cards.delete(alertId);
    showEmpty();
  }
}

function showEmpty() {
  $("no-pages").classList.toggle("hidden", cards.size > 0);
}

function tick() {
  for (const { li, page } of cards.values()) li.querySelector(".meta").textContent = metaText(page);
}

// --- answering --------------------------------------------------------------------------------

function detailText(err) {
  const d = err?.body?.detail;
  if (Array.isArray(d) && d[0]) return currentLang() === "en" ? d[0].en || d[0].msg : d[0].zh || d[0].msg;
  // A string detail is English, its Chinese beside it; a {code, en, zh} carries both.
  if (typeof d === "string") return (currentLang() !== "en" && err.body.detail_zh) || d;
  if (d && (d.zh || d.en)) return currentLang() === "en" ? d.en || d.zh : d.zh || d.en;
  return err?.message || String(err);
}

// The answers' panels on a card: the buttons, or one of the questions a button asks first.
function showPanel(li, panel) {
  for (const name of ["actions", "outcomes", "withdrawal"]) {
    li.querySelector(`.${name}`).classList.toggle("hidden", name !== panel);
  }
}

async function reply(li, action, outcome) {
  const alertId = li.dataset.alertId;
  stopRinging(alertId); // any answer is an answer: the sound has done its work
  seen.mark(alertId, cards.get(alertId)?.page.call_event_id);
  const buttons = li.querySelectorAll("button");
  buttons.forEach((b) => { b.disabled = true; });
  say(li, "");
  try {
    // 无法前往 is the pager's own `decline`: from the acknowledger it withdraws the acceptance.
    const body = { alert_id: alertId, action: action === "withdraw" ? "decline" : action };
    if (outcome) body.outcome = outcome;
    const out = await post("/me/replies", body);
    upsert(out.page);
    // Still acknowledged after a withdrawal: someone else had accepted too, and it is theirs.
    const done = action === "withdraw" && out.page.state !== "open" ? "withdraw_passed" : action;
    say(li, t(`action.done.${done}`));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      say(li, t("error.not_paged"), true);
      setTimeout(() => { li.remove(); cards.delete(alertId); showEmpty(); }, CLOSED_SHOWN_MS);
    } else {
      say(li, t("error.generic", { detail: detailText(err) }), true);
      if (err instanceof ApiError && err.status === 409) loadPages().catch(showError);
    }
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
    showPanel(li, "actions");
  }
}

function onCardClick(ev, li) {
  const b = ev.target.closest("button");
  if (!b || b.disabled) return;
  if (b.dataset.action === "resolved") {
    // 完成 asks how it ended first (the station's reports count false alarms and tests apart)
    showPanel(li, "outcomes");
  } else if (b.dataset.action === "withdraw") {
    // Asked first: it pages others at once, and a slip of the thumb must not do that.
    showPanel(li, "withdrawal");
  } else if (b.dataset.action) {
    reply(li, b.dataset.action);
  } else if (b.dataset.outcome) {
    reply(li, "resolved", b.dataset.outcome);
  } else if (b.classList.contains("withdraw-yes")) {
    reply(li, "withdraw");
  } else if (b.classList.contains("outcome-cancel") || b.classList.contains("withdraw-no")) {
    showPanel(li, "actions");
  }
}

// --- loading and the live stream --------------------------------------------------------------

function showError(err) {
  const el = $("error");
  if (!err) { el.classList.add("hidden"); return; }
  el.textContent = err instanceof ApiError && err.status === 403
    ? t("error.no_person") : t("error.generic", { detail: detailText(err) });
  el.classList.remove("hidden");
}

function setLive(on) {
  const el = $("live");
  el.textContent = t(on ? "live.connected" : "live.reconnecting");
  el.classList.toggle("off", !on);
  document.body.dataset.live = on ? "1" : "0";
}

async function loadPages() {
  const snap = await get("/me/pages");
  const listed = new Set(snap.pages.map((p) => p.alert_id));
  for (const [id, entry] of cards) {
    if (!listed.has(id)) { entry.li.remove(); cards.delete(id); stopRinging(id); }
  }
  // Oldest first, each on top: the newest ends up first.
  for (const page of [...snap.pages].reverse()) {
    upsert(page);
    // A call sent while the page was away (or reloaded) came in this list, not as a `page`
    // event: it rings as one would have, unless seen or answered already.
    if (ringsAfterResync(page, seen.get(page.alert_id))) {
      ring(page.alert_id);
      notify(page);
    }
  }
  seen.keep(listed);
  showEmpty();
  return snap.last_event_id;
}

function connect(since) {
  if (stream) stream.close();
  const es = new EventSource(`/api/v1/me/stream?since=${encodeURIComponent(since)}`);
  stream = es;
  es.onopen = () => setLive(true);
  es.addEventListener("page", (ev) => {
    const { page, event } = JSON.parse(ev.data);
    const isNew = !cards.has(page.alert_id);
    upsert(page);
    // Only a call that still asks them (not one they accepted since, with no reminder due), and
    // not one already seen (the list loaded at the connection had it, and it was muted).
    if (ringsOnPage(page, event.id, seen.get(page.alert_id))) {
      ring(page.alert_id);
      // Open again (the one who accepted cannot go): those told they need not go are needed.
      if (isNew || page.reminder || page.reopened || cancelPressed(page)) notify(page);
    }
  });
  es.addEventListener("update", (ev) => upsert(JSON.parse(ev.data).page));
  es.addEventListener("resync", () => { es.close(); restart(); });
  es.onerror = () => {
    setLive(false);
    if (es.readyState === EventSource.CLOSED) {
      // The server said no (a session that ended, a restart): check, then start again.
      setTimeout(restart, 3000);
    }
  };
}

async function restart() {
  try {
    await requireSession();
    const since = await loadPages();
    showError(null);
    connect(since);
  } catch (err) {
    showError(err);
    setTimeout(restart, 5000);
  }
}

function renderMe(data) {
  $("me-name").textContent = `${data.person.name} · ${t(`role.${data.person.role}`)}`;
  const list = $("pairings");
  list.replaceChildren();
  for (const p of data.pairings) {
    const li = document.createElement("li");
    const name = document.createElement("strong");
    name.textContent = p.elder.name;
    const kind = document.createElement("span");
    kind.className = "muted";
    kind.textContent = ` · ${t(`pairing.kind.${p.kind}`)}`;
    const addr = document.createElement("div");
    addr.textContent = p.elder.address;
    li.append(name, kind, addr);
    if (p.elder.phone) {
      const a = document.createElement("a");
      a.className = "call small";
      a.href = telHref(p.elder.phone);
      a.textContent = t("call.elder", { phone: p.elder.phone });
      li.append(a);
    }
    list.append(li);
  }
  $("no-pairings").classList.toggle("hidden", data.pairings.length > 0);
  const pts = $("points");
  if (data.points) {
    pts.textContent = t("points.balance", { points: data.points.balance });
    if (data.points.pending_units > 0) {
      const more = document.createElement("span");
      more.className = "muted pending";
      more.textContent = ` ${t("points.pending", { points: data.points.pending })}`;
      pts.append(more);
    }
  } else {
    pts.textContent = t("points.none");
  }
  const station = $("station");
  station.classList.toggle("hidden", !data.station_phone);
  if (data.station_phone) {
    $("call-station").href = telHref(data.station_phone);
    $("call-station").textContent = t("call.station", { phone: data.station_phone });
  }
}

function registerWorker() {
  if (!("serviceWorker" in navigator)) return;
  // Scope /phone (the server allows it with Service-Worker-Allowed): the page installs to the
  // home screen and opens from there even while the network is slow to come back.
  navigator.serviceWorker.register("/phone/sw.js", { scope: "/phone" }).catch(() => {});
}

async function main() {
  await loadI18n("phone");
  $("lang").addEventListener("click", () => setLang(currentLang() === "en" ? "zh-CN" : "en"));
  $("enable-sound").addEventListener("click", enableSound);
  $("mute").addEventListener("click", mute);
  document.addEventListener("visibilitychange", showGate);
  setLive(false);
  showAlarm();
  showGate();
  await requireSession();
  try {
    me = await get("/me");
    seen = seenCalls(localStorage, me.person.id);
    renderMe(me);
  } catch (err) {
    showError(err);
    if (err instanceof ApiError && err.status === 403) return; // nobody to page here
  }
  await restart();
  setInterval(tick, 1000);
  registerWorker();
}

main().catch(showError);
