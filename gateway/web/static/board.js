// The station board: open alerts by priority and age with running timers, their escalation and
// who was paged, the elder's card, ack / assign / on site / resolve, a ring for a new P1, and the
// homes at a glance. Reads GET /api/v1/board (the snapshot) once, then listens to
// /api/v1/board/stream (Server-Sent Events): every change of an alert arrives as its fresh row,
// so nothing is polled and nothing reloads; on `resync` the snapshot is loaded again.
// Everything shown is built with textContent (never innerHTML): names and notes are data.
import { ApiError, get, post, requireSession, session, signOut } from "/static/api.js";
import { currentLang, isoOffsetMs, loadI18n, setLang, t } from "/static/i18n.js";
import { newRefused, shownRefused } from "/static/board-refused.js";

const $ = (id) => document.getElementById(id);
const CLOSED = new Set(["resolved", "cancelled"]);
const PRIO = { P1: 1, P2: 2, P3: 3 };
const HOME_KINDS = new Set(["device_offline", "low_battery", "tamper"]);
const PAGED_SHOWN = 6; // pages listed per alert on the board (the rest are counted)
const SOUND_KEY = "shouwang.board.sound";

const board = {
  alerts: new Map(), // id -> the row as the API gives it
  lastEventId: 0,
  offset: 0, // the gateway's clock minus ours, ms: timers count on the gateway's time
  es: null,
  reconnectTimer: null,
  homesTimer: null,
  tab: "alerts",
  refused: null, // GET /board/refused (or the stream's latest `refused`)
  refusedKnown: null, // quarantine ids shown so far (null: none loaded yet)
  refusedDismissed: new Set(), // dismissed here, until the next list leaves them out
};

// --- small helpers ------------------------------------------------------------------------------

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function now() { return Date.now() + board.offset; }

// The gateway writes times in the station's zone (with its offset): show the station's clock.
function hms(iso) { return iso ? iso.slice(11, 19) : "—"; }
function clock(iso) {
  if (!iso) return "—";
  // Today on the station's calendar, at the time's own offset: toISOString() alone is UTC's
  // date, before 08:00 in Beijing still yesterday's, and yesterday's 20:15 showed as today's.
  const today = new Date(now() + (isoOffsetMs(iso) ?? 0)).toISOString().slice(0, 10);
  return iso.slice(0, 10) === today ? hms(iso) : `${iso.slice(5, 10)} ${iso.slice(11, 16)}`;
}

function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = String(m).padStart(2, "0"), ss = String(r).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${m}:${ss}`;
}

function ago(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return t("ago.s", { n: s });
  if (s < 3600) return t("ago.m", { n: Math.floor(s / 60) });
  if (s < 86400) return t("ago.h", { n: Math.floor(s / 3600) });
  return t("ago.d", { n: Math.floor(s / 86400) });
}

// A translated word for a code, or the code itself when this page has no word for it.
function word(prefix, code) {
  const key = `${prefix}.${code}`;
  const w = t(key);
  return w === key ? String(code) : w;
}

function errorText(err) {
  if (err instanceof ApiError) {
    const d = err.body && err.body.detail;
    const en = currentLang() === "en";
    // A string detail is English; its Chinese is beside it (detail_zh), a {code, en, zh} has both.
    let detail = typeof d === "string" ? (!en && err.body.detail_zh) || d
      : Array.isArray(d) ? d.map((x) => (en ? x.en : x.zh) || x.msg).join("; ")
        : d && (d.zh || d.en) ? (en ? d.en || d.zh : d.zh || d.en)
          : `HTTP ${err.status}`;
    if (err.status === 404) return t("error.gone");
    if (err.status === 409) return t("error.conflict", { detail });
    return t("error.action", { detail });
  }
  return t("error.network");
}

let toastTimer = null;
function toast(text, bad = false) {
  const box = $("toast");
  box.textContent = text;
  box.classList.toggle("bad", bad);
  box.classList.remove("hidden");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => box.classList.add("hidden"), bad ? 8000 : 4000);
}

// --- the ring for a new P1 (WebAudio: no sound file; the browser wants a click first) ---------

const sound = { ctx: null, wanted: localStorage.getItem(SOUND_KEY) !== "off", rings: 0 };

function audio() {
  if (!sound.ctx) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    sound.ctx = new Ctx();
    sound.ctx.addEventListener("statechange", renderSound);
  }
  return sound.ctx;
}

function soundState() {
  if (!sound.wanted) return "off";
  const ctx = audio();
  return ctx && ctx.state === "running" ? "on" : "blocked";
}

function renderSound() {
  const s = soundState();
  const btn = $("sound");
  btn.dataset.state = s;
  btn.textContent = t(`sound.${s}`);
  btn.setAttribute("aria-pressed", String(s === "on"));
}

function tone(ctx, at, freq) {
  const osc = ctx.createOscillator();
  const gain = ctx.createGain();
  osc.type = "square";
  osc.frequency.value = freq;
  gain.gain.setValueAtTime(0.0001, at);
  gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
  gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.22);
  osc.connect(gain).connect(ctx.destination);
  osc.start(at);
  osc.stop(at + 0.25);
}

// Three rising pairs: unlike any phone's ring, heard across the room.
function ring(pairs = 3) {
  if (!sound.wanted) return;
  const ctx = audio();
  if (!ctx) return;
  if (ctx.state !== "running") {
    ctx.resume().catch(() => {});
    renderSound();
    if (ctx.state !== "running") return; // blocked until someone clicks the sound button
  }
  const start = ctx.currentTime + 0.03;
  for (let i = 0; i < pairs; i += 1) {
    tone(ctx, start + i * 0.6, 880);
    tone(ctx, start + i * 0.6 + 0.28, 1175);
  }
  sound.rings += 1;
  document.body.dataset.rings = String(sound.rings); // what was rung, for the browser tests
}

async function toggleSound() {
  if (soundState() === "on") {
    sound.wanted = false;
    localStorage.setItem(SOUND_KEY, "off");
  } else {
    sound.wanted = true;
    localStorage.setItem(SOUND_KEY, "on");
    const ctx = audio();
    if (ctx) {
      await ctx.resume().catch(() => {});
      if (ctx.state === "running") ring(1);
    }
  }
  renderSound();
}

// --- the live connection ------------------------------------------------------------------------

function setLive(state) {
  const box = $("live");
  box.dataset.state = state;
  $("live-text").textContent = t(
    state === "open" ? "live.connected" : state === "offline" ? "live.offline" : "live.connecting",
  );
}

function connect() {
  if (board.es) board.es.close();
  clearTimeout(board.reconnectTimer);
  setLive("connecting");
  const es = new EventSource(`/api/v1/board/stream?since=${board.lastEventId}`);
  board.es = es;
  es.addEventListener("open", () => setLive("open"));
  es.addEventListener("alert", (ev) => {
    const id = Number(ev.lastEventId);
    if (id > board.lastEventId) board.lastEventId = id;
    onAlert(JSON.parse(ev.data));
  });
  es.addEventListener("refused", (ev) => onRefused(JSON.parse(ev.data)));
  es.addEventListener("resync", () => {
    es.close();
    resync();
  });
  es.addEventListener("error", () => {
    // CONNECTING: the browser retries by itself (with Last-Event-ID). CLOSED: it gave up (the
    // session ended, or the gateway answered an error): start again from the snapshot.
    if (es.readyState === EventSource.CLOSED) {
      setLive("offline");
      board.reconnectTimer = setTimeout(restart, 3000);
    } else {
      setLive("connecting");
    }
  });
}

async function restart() {
  try {
    if (!(await session())) {
      await requireSession(); // signed out: to the sign-in page
      return;
    }
    await resync();
  } catch {
    setLive("offline");
    board.reconnectTimer = setTimeout(restart, 5000);
  }
}

async function resync() {
  await loadSnapshot(true);
  connect();
  if (board.tab === "homes") loadHomes();
}

// --- alerts -------------------------------------------------------------------------------------

function order(a, b) {
  return (PRIO[a.priority] || 9) - (PRIO[b.priority] || 9)
    || a.created_at.localeCompare(b.created_at) || a.id.localeCompare(b.id);
}

async function loadSnapshot(ringNew = false) {
  const snap = await get("/board");
  board.offset = new Date(snap.now).getTime() - Date.now();
  const known = new Set(board.alerts.keys());
  board.alerts = new Map(snap.alerts.map((a) => [a.id, a]));
  board.lastEventId = snap.last_event_id;
  $("station").textContent = snap.station ? t("board.station", { station: snap.station }) : "";
  const more = $("more");
  more.classList.toggle("hidden", !snap.more);
  more.textContent = snap.more ? t("board.more", { n: snap.more, shown: snap.alerts.length }) : "";
  $("alerts").replaceChildren();
  for (const a of snap.alerts) upsertRow(a, ringNew && !known.has(a.id));
  if (ringNew && snap.alerts.some((a) => !known.has(a.id) && isNewP1(a))) ring();
  $("loading").classList.add("hidden");
  arrange();
}

function isNewP1(a) { return a.priority === "P1" && a.state === "open"; }

function onAlert(data) {
  const row = data.alert;
  const known = board.alerts.has(row.id);
  if (CLOSED.has(row.state)) {
    board.alerts.delete(row.id);
    const li = $(`alert-${row.id}`);
    if (li) li.remove();
  } else {
    board.alerts.set(row.id, row);
    upsertRow(row, !known);
    if (!known && isNewP1(row)) ring();
  }
  arrange();
  if (board.tab === "homes" && HOME_KINDS.has(row.kind)) {
    clearTimeout(board.homesTimer);
    board.homesTimer = setTimeout(loadHomes, 800);
  }
}

// The rows in board order (moving nodes, not rebuilding them), the counts and the title.
function arrange() {
  const list = $("alerts");
  const rows = [...board.alerts.values()].sort(order);
  for (const a of rows) {
    const li = $(`alert-${a.id}`);
    if (li) list.appendChild(li);
  }
  const n = rows.length;
  $("empty").classList.toggle("hidden", n > 0 || !$("loading").classList.contains("hidden"));
  const count = $("open-count");
  count.textContent = String(n);
  count.classList.toggle("zero", n === 0);
  document.title = n ? t("board.doc_title", { n }) : t("board.title");
  tick();
}

function personName(p) { return p.name || t("alert.unknown_person"); }

// A timeline label ("user:<name>", "api:<name>", "responder:<id>") as a person reads it.
function actorName(label) { return String(label || "").replace(/^(user|api|responder):/, ""); }

function upsertRow(a, fresh) {
  const old = $(`alert-${a.id}`);
  const li = document.getElementById("tpl-alert").content.firstElementChild.cloneNode(true);
  li.id = `alert-${a.id}`;
  li.dataset.id = a.id;
  li.classList.add(a.priority, a.state);
  if (fresh || (old && old.classList.contains("fresh"))) li.classList.add("fresh");
  const q = (sel) => li.querySelector(sel);

  q(".prio").textContent = a.priority;
  q(".kind").textContent = word("kind", a.kind);
  const st = q(".state");
  st.textContent = word("state", a.state);
  st.classList.add(a.state);
  q(".timer-label").textContent = t("alert.waiting");
  const timer = q(".timer-value");
  timer.dataset.since = a.created_at;
  timer.title = t("alert.created", { time: clock(a.created_at) });

  const name = q(".elder-name");
  name.textContent = a.elder.name;
  name.addEventListener("click", () => openCard(a.elder.id, a.elder.name));
  q(".address").textContent = a.elder.address;
  const phone = q(".phone");
  if (a.elder.phone) {
    phone.textContent = `☎ ${a.elder.phone}`;
    phone.href = `tel:${a.elder.phone.replace(/[^0-9+]/g, "")}`;
  } else {
    phone.remove();
  }
  q(".device").textContent = `${word("device", a.device.kind)} · ${t("alert.device", { id: a.device.id })}`;
  if (a.incident) {
    const inc = q(".incident");
    inc.textContent = t("alert.incident", { building: a.incident.building, n: a.incident.devices });
    inc.classList.remove("hidden");
  }

  // escalation
  q(".step").textContent = a.step > 0 && a.steps > 0
    ? t("alert.step", { step: a.step, steps: a.steps }) : t("alert.step_none");
  const next = q(".next");
  if (a.state === "open" && a.next_escalation_at) {
    next.dataset.until = a.next_escalation_at;
    next.dataset.repeat = a.step >= a.steps ? "1" : "";
  }
  if (a.acknowledged_at) {
    const who = a.acknowledged_by_name || actorName(a.acknowledged_by);
    q(".acked").textContent = t("alert.acked_by", { name: who, time: clock(a.acknowledged_at) })
      + (a.on_site_at ? ` · ${t("alert.on_site_at", { time: clock(a.on_site_at) })}` : "");
  }
  if (a.assigned) {
    const box = q(".assigned");
    box.append(el("span", null, t("alert.assigned", { name: a.assigned.name || a.assigned.responder_id })));
    if (a.assigned.phone) {
      const call = el("a", "phone", ` ☎ ${a.assigned.phone}`);
      call.href = `tel:${a.assigned.phone.replace(/[^0-9+]/g, "")}`;
      box.append(call);
    }
    box.append(el("span", "muted", ` ${t("alert.assigned_by", { by: actorName(a.assigned.by), time: clock(a.assigned.at) })}`));
  }
  const steps = q(".plan-steps");
  for (const s of a.plan) {
    const names = s.responders.map(personName).join("、");
    const item = el("li", null, `${names} (${s.ack_timeout_s}s)`);
    if (s.step === a.step) item.classList.add("current");
    steps.append(item);
  }
  if (old && old.querySelector(".plan").open) q(".plan").open = true;
  if (!a.plan.length) q(".plan").remove();

  // who was paged and how each page went
  const paged = q(".paged");
  if (!a.paged.length) paged.append(el("li", "muted", t("alert.nobody_paged")));
  for (const p of a.paged.slice(-PAGED_SHOWN)) {
    const item = el("li");
    item.append(el("span", "t", hms(p.at)));
    item.append(el("strong", null, p.name || p.responder_id));
    const why = [word("reason", p.reason)];
    if (p.step) why.unshift(t("alert.step_of", { step: p.step }));
    item.append(el("span", "muted", ` · ${why.join(" · ")}`));
    for (const v of p.via) {
      item.append(el("span", `via ${v.status}`, `${word("channel", v.channel)} ${word("status", v.status)}`));
    }
    paged.append(item);
  }
  const shown = Math.min(PAGED_SHOWN, a.paged.length);
  if (a.paged_total > shown) {
    q(".paged-more").textContent = t("alert.paged_total", { n: a.paged_total, shown });
  }
  if (a.last_event) {
    q(".last").textContent = t("alert.last", {
      what: `${word("event", a.last_event.type)} ${hms(a.last_event.at)}`,
    });
  }

  // what can be done now
  q(".act-ack").disabled = a.state !== "open";
  q(".act-arrive").disabled = !(a.state === "open" || a.state === "acknowledged");
  q(".act-ack").addEventListener("click", (e) => act(a.id, "ack", undefined, e.currentTarget));
  q(".act-arrive").addEventListener("click", (e) => act(a.id, "arrive", undefined, e.currentTarget));
  q(".act-resolve").addEventListener("click", () => openResolve(a.id));
  q(".act-assign").addEventListener("click", () => openAssign(a));
  q(".act-card").addEventListener("click", () => openCard(a.elder.id, a.elder.name));

  // applyI18n for the template's own labels (data-i18n inside the clone)
  for (const node of li.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  if (old) old.replaceWith(li);
  else $("alerts").append(li);
  if (li.classList.contains("fresh")) setTimeout(() => li.classList.remove("fresh"), 3500);
}

async function act(id, action, body, button) {
  if (button) button.disabled = true;
  try {
    const out = await post(`/alerts/${encodeURIComponent(id)}/${action}`, body);
    // The stream brings the whole row in a moment; show the new state at once meanwhile.
    const row = board.alerts.get(id);
    if (row && out && out.state) {
      const merged = { ...row, ...pick(out) };
      if (CLOSED.has(merged.state)) onAlert({ alert: merged });
      else { board.alerts.set(id, merged); upsertRow(merged, false); arrange(); }
    }
    return out;
  } catch (err) {
    if (button) button.disabled = false;
    toast(errorText(err), true);
    throw err;
  }
}

function pick(out) {
  const keys = ["state", "acknowledged_at", "acknowledged_by", "on_site_at", "closed_at",
    "outcome", "note", "step", "next_escalation_at", "updated_at"];
  return Object.fromEntries(keys.filter((k) => k in out).map((k) => [k, out[k]]));
}

// --- timers: one tick a second for every running clock on the page ------------------------------

function tick() {
  const n = now();
  for (const e of document.querySelectorAll("[data-since]")) {
    e.textContent = duration(n - new Date(e.dataset.since).getTime());
  }
  for (const e of document.querySelectorAll("[data-until]")) {
    const left = new Date(e.dataset.until).getTime() - n;
    e.classList.toggle("soon", left < 15000);
    e.textContent = left <= 0 ? t("alert.overdue")
      : t(e.dataset.repeat ? "alert.next_repeat" : "alert.next_step", { time: duration(left) });
  }
  for (const e of document.querySelectorAll("[data-heard]")) {
    e.textContent = t("homes.last_heard", { ago: ago(n - new Date(e.dataset.heard).getTime()) });
  }
}

// --- dialogs ------------------------------------------------------------------------------------

function wireDialog(dialog) {
  for (const b of dialog.querySelectorAll("[data-close]")) {
    b.addEventListener("click", () => dialog.close());
  }
}

function section(title, ...children) {
  const s = el("section");
  s.append(el("h3", null, title), ...children);
  return s;
}

function telLink(number, label) {
  const a = el("a", "phone", label || number);
  a.href = `tel:${number.replace(/[^0-9+]/g, "")}`;
  return a;
}

function labelOf(l) { return l ? (currentLang() === "en" ? l.en : l.zh) : "—"; }

async function openCard(elderId, name) {
  const dialog = $("card-dialog");
  $("card-name").textContent = name || "";
  const body = $("card-body");
  body.replaceChildren(el("p", "muted", t("card.loading")));
  if (!dialog.open) dialog.showModal();
  let c;
  try {
    c = await get(`/board/elders/${encodeURIComponent(elderId)}/card`);
  } catch (err) {
    body.replaceChildren(el("p", "error", errorText(err)));
    return;
  }
  $("card-name").textContent = c.age !== null ? `${c.name}（${t("card.age", { n: c.age })}）` : c.name;
  const grid = el("div", "card-grid");
  const first = el("div");
  first.append(el("div", "card-big", c.address));
  if (c.phone) first.append(telLink(c.phone, `☎ ${c.phone}`));
  const facts = el("ul");
  if (!c.registered) facts.append(el("li", "muted", t("card.not_registered")));
  if (c.status) facts.append(el("li", null, `${t("card.status")}：${labelOf(c.status)}`));
  if (c.living_situation) facts.append(el("li", null, `${t("card.living")}：${labelOf(c.living_situation)}`));
  if (c.self_care) facts.append(el("li", null, `${t("card.self_care")}：${labelOf(c.self_care)}`));
  if (c.station) facts.append(el("li", null, `${t("card.station")}：${c.station}`));
  first.append(facts);
  grid.append(section(t("card.address"), first));

  const keys = el("ul", "card-keys");
  for (const k of c.key_holders) {
    const li = el("li", null, `${k.name}（${labelOf(k.relation)}） `);
    li.append(telLink(k.phone));
    keys.append(li);
  }
  if (!c.key_holders.length) keys.append(el("li", "muted", t("card.no_key_holders")));
  grid.append(section(t("card.key_holders"), keys));

  const contacts = el("ul");
  for (const k of c.emergency_contacts) {
    const li = el("li", null, `${k.name}（${labelOf(k.relation)}） `);
    li.append(telLink(k.phone));
    if (k.note) li.append(el("span", "muted", ` ${k.note}`));
    contacts.append(li);
  }
  if (!c.emergency_contacts.length) contacts.append(el("li", "muted", t("card.no_contacts")));
  grid.append(section(t("card.contacts"), contacts));

  const health = el("div");
  const tags = (list) => {
    const box = el("div");
    for (const x of list) box.append(el("span", "tag", x));
    if (!list.length) box.append(el("span", "muted", t("card.none")));
    return box;
  };
  health.append(el("strong", null, t("card.conditions")), tags(c.conditions));
  health.append(el("strong", null, t("card.allergies")), tags(c.allergies));
  if (c.doctor) {
    const d = el("div", null, `${t("card.doctor")}：${[c.doctor.name, c.doctor.clinic].filter(Boolean).join(" · ")} `);
    if (c.doctor.phone) d.append(telLink(c.doctor.phone));
    health.append(d);
  }
  if (c.notes) health.append(el("div", null, `${t("card.notes")}：${c.notes}`));
  grid.append(section(t("card.health"), health));

  const paired = el("ul");
  for (const p of c.paired) {
    const li = el("li", null, `${p.name}（${word("role", p.kind)}） `);
    if (p.phone) li.append(telLink(p.phone));
    paired.append(li);
  }
  if (!c.paired.length) paired.append(el("li", "muted", t("card.no_paired")));
  grid.append(section(t("card.paired"), paired));

  const devs = el("ul");
  for (const d of c.devices) {
    const state = d.online === false ? t("health.offline") : d.last_seen_at ? t("health.ok") : t("health.unknown");
    const bat = d.battery_pct !== null ? ` · ${t("homes.battery", { pct: Math.round(d.battery_pct) })}` : "";
    devs.append(el("li", null, `${word("device", d.kind)} ${d.id} · ${state}${bat}`));
  }
  grid.append(section(t("card.devices"), devs));

  const recent = el("ul");
  for (const r of c.recent_alerts) {
    const out = r.outcome ? ` · ${word("outcome", r.outcome)}` : "";
    recent.append(el("li", null, `${clock(r.created_at)} ${r.priority} ${word("kind", r.kind)} · ${word("state", r.state)}${out}`));
  }
  if (!c.recent_alerts.length) recent.append(el("li", "muted", t("card.none")));
  grid.append(section(t("card.recent"), recent));
  body.replaceChildren(grid);
}

let assigning = null;

async function openAssign(a) {
  assigning = a.id;
  const dialog = $("assign-dialog");
  const select = $("assign-who");
  $("assign-error").textContent = "";
  $("assign-note").value = "";
  select.replaceChildren(el("option", null, t("assign.loading")));
  select.disabled = true;
  dialog.showModal();
  try {
    const [card, people] = await Promise.all([
      get(`/board/elders/${encodeURIComponent(a.elder.id)}/card`),
      get("/responders?limit=5000"),
    ]);
    const pairedIds = new Set(card.paired.map((p) => p.responder_id));
    const blank = el("option", null, t("assign.pick"));
    blank.value = "";
    const mine = el("optgroup");
    mine.label = t("assign.paired");
    for (const p of card.paired) {
      const o = el("option", null, `${p.name}（${word("role", p.kind)}）${p.phone ? " " + p.phone : ""}`);
      o.value = p.responder_id;
      mine.append(o);
    }
    const others = el("optgroup");
    others.label = t("assign.others");
    for (const p of people) {
      if (pairedIds.has(p.id)) continue;
      const o = el("option", null, `${p.name}（${word("role", p.role)}）${p.phone ? " " + p.phone : ""}`);
      o.value = p.id;
      others.append(o);
    }
    select.replaceChildren(blank, ...(mine.children.length ? [mine] : []), others);
    if (a.assigned) select.value = a.assigned.responder_id;
    select.disabled = false;
    select.focus();
  } catch (err) {
    $("assign-error").textContent = errorText(err);
  }
}

async function submitAssign(ev) {
  ev.preventDefault();
  const who = $("assign-who").value;
  if (!who) {
    $("assign-error").textContent = t("assign.pick");
    return;
  }
  const note = $("assign-note").value.trim();
  const button = $("assign-ok");
  button.disabled = true;
  try {
    const row = await post(`/alerts/${encodeURIComponent(assigning)}/assign`,
      note ? { responder_id: who, note } : { responder_id: who });
    $("assign-dialog").close();
    board.alerts.set(row.id, row);
    upsertRow(row, false);
    arrange();
    toast(t("assign.done", { name: row.assigned ? row.assigned.name : who }));
  } catch (err) {
    $("assign-error").textContent = errorText(err);
  } finally {
    button.disabled = false;
  }
}

let resolving = null;

function openResolve(id) {
  resolving = id;
  $("resolve-form").reset();
  $("resolve-error").textContent = "";
  $("resolve-dialog").showModal();
}

async function submitResolve(ev) {
  ev.preventDefault();
  const chosen = $("resolve-form").querySelector("input[name=outcome]:checked");
  if (!chosen) {
    $("resolve-error").textContent = t("resolve.pick");
    return;
  }
  const note = $("resolve-note").value.trim();
  const button = $("resolve-ok");
  button.disabled = true;
  try {
    await act(resolving, "resolve", note ? { outcome: chosen.value, note } : { outcome: chosen.value });
    $("resolve-dialog").close();
  } catch (err) {
    $("resolve-error").textContent = errorText(err);
  } finally {
    button.disabled = false;
  }
}

// --- homes at a glance --------------------------------------------------------------------------

async function loadHomes() {
  let homes;
  try {
    homes = await get("/board/homes");
  } catch (err) {
    toast(errorText(err), true);
    return;
  }
  board.offset = new Date(homes.now).getTime() - Date.now();
  $("homes-updated").textContent = t("homes.updated", { time: hms(homes.now) });
  $("homes-empty").classList.toggle("hidden", homes.buildings.length > 0);
  const box = $("homes");
  box.replaceChildren(...homes.buildings.map(renderBuilding));
  tick();
}

function devChip(d) {
  const chip = el("span", `dev ${d.health}`);
  chip.dataset.device = d.id;
  chip.append(el("span", null, `${word("device", d.kind)} `), el("span", "h", word("health", d.health)));
  if (d.battery_pct !== null) chip.append(el("span", null, ` · ${t("homes.battery", { pct: Math.round(d.battery_pct) })}`));
  const heard = el("span", "muted", ` · ${t("homes.never")}`);
  if (d.last_seen_at) {
    heard.textContent = "";
    const when = el("span");
    when.dataset.heard = d.last_seen_at;
    heard.append(" · ", when);
  }
  chip.append(heard);
  chip.title = d.id;
  for (const a of d.alerts) chip.append(el("span", `tag ${a.priority}`, `${a.priority} ${word("kind", a.kind)}`));
  return chip;
}

function renderHomesOf(devices) {
  const out = [];
  const byElder = new Map();
  for (const d of devices) {
    if (!byElder.has(d.elder.id)) byElder.set(d.elder.id, { elder: d.elder, devices: [] });
    byElder.get(d.elder.id).devices.push(d);
  }
  for (const { elder, devices: devs } of byElder.values()) {
    const row = el("div", "home");
    const who = el("div");
    const name = el("button", "linkish elder", elder.name);
    name.type = "button";
    name.addEventListener("click", () => openCard(elder.id, elder.name));
    who.append(name, el("div", "muted", elder.address));
    const chips = el("div", "devs");
    chips.append(...devs.map(devChip));
    row.append(who, chips);
    out.push(row);
  }
  return out;
}

function renderBuilding(b) {
  const box = el("section", "building");
  box.dataset.building = b.building || "";
  if (b.counts.offline || b.counts.low_battery || b.incidents.length) box.classList.add("trouble");
  const h = el("h2");
  h.append(el("span", null, b.building || t("homes.unplaced")), el("span", "counts", t("homes.counts", b.counts)));
  box.append(h);
  const inIncident = new Set();
  for (const i of b.incidents) {
    const line = el("div", "incident-line");
    line.dataset.incident = i.id;
    line.append(el("div", null, t("homes.incident", { n: i.devices, time: clock(i.opened_at) })
      + (i.alert_state ? ` · ${t("homes.incident_alert", { state: word("state", i.alert_state) })}` : "")));
    const members = b.devices.filter((d) => d.incident_id === i.id);
    for (const d of members) inIncident.add(d.id);
    const more = el("details");
    more.append(el("summary", null, t("homes.incident_devices", { n: members.length })), ...renderHomesOf(members));
    line.append(more);
    box.append(line);
  }
  box.append(...renderHomesOf(b.devices.filter((d) => !inIncident.has(d.id))));
  return box;
}

// --- refused alarms: no alert was opened, staff call the elder (gateway/refused_alarms.py) -----

async function loadRefused() {
  onRefused(await get("/board/refused"));
}

function onRefused(list) {
  board.refused = list;
  const listed = new Set((list.alarms || []).map((a) => a.quarantine_id));
  for (const id of [...board.refusedDismissed]) if (!listed.has(id)) board.refusedDismissed.delete(id);
  renderRefused();
}

function renderRefused() {
  const shown = shownRefused(board.refused, now(), board.refusedDismissed);
  const fresh = new Set(newRefused(shown, board.refusedKnown));
  board.refusedKnown = new Set([...(board.refusedKnown || []), ...shown.map((a) => a.quarantine_id)]);
  $("refused").classList.toggle("hidden", shown.length === 0);
  $("refused-count").textContent = String(shown.length);
  $("refused-list").replaceChildren(...shown.map((a) => refusedItem(a, fresh.has(a.quarantine_id))));
  if (fresh.size) ring(1); // likely a press nobody was paged for
}

function refusedItem(a, fresh) {
  const li = el("li", "refused-item");
  li.id = `refused-${a.quarantine_id}`;
  if (fresh) {
    li.classList.add("fresh");
    setTimeout(() => li.classList.remove("fresh"), 3500);
  }
  const when = el("div");
  when.append(
    el("div", "what", word("refused.type", a.type)),
    el("div", "muted", t("refused.at", { time: clock(a.at), ago: ago(now() - Date.parse(a.at)) })),
  );
  const who = el("div");
  const name = el("button", "linkish elder", a.elder.name);
  name.type = "button";
  name.addEventListener("click", () => openCard(a.elder.id, a.elder.name));
  who.append(name, el("div", "address", a.elder.address));
  if (a.elder.phone) who.append(telLink(a.elder.phone, `☎ ${a.elder.phone}`));
  const dev = el("div");
  const retired = a.device.status === "retired" ? t("refused.retired") : "";
  dev.append(
    el("div", null, t("refused.device", { device: word("device", a.device.kind), id: a.device.id }) + retired),
    el("div", "why", t("refused.why", { reason: word("refused.reason", a.reason), detail: a.detail })),
  );
  const btn = el("button", "act-dismiss", t("refused.dismiss"));
  btn.type = "button";
  btn.addEventListener("click", () => dismissRefused(a, btn));
  li.append(when, who, dev, btn);
  return li;
}

async function dismissRefused(a, button) {
  if (!window.confirm(t("refused.dismiss_confirm", { name: a.elder.name }))) return;
  button.disabled = true;
  try {
    await post(`/board/refused/${a.quarantine_id}/dismiss`, {});
    toast(t("refused.dismissed"));
  } catch (err) {
    // 409: someone else dismissed it meanwhile; 404: no longer ours to see. Gone either way.
    if (!(err instanceof ApiError && (err.status === 409 || err.status === 404))) {
      button.disabled = false;
      toast(errorText(err), true);
      return;
    }
  }
  board.refusedDismissed.add(a.quarantine_id);
  renderRefused();
}

function showTab(tab) {
  board.tab = tab;
  for (const name of ["alerts", "homes"]) {
    $(`tab-${name}`).setAttribute("aria-selected", String(name === tab));
    $(`view-${name}`).classList.toggle("hidden", name !== tab);
  }
  if (tab === "homes") loadHomes();
}

// --- start --------------------------------------------------------------------------------------

async function main() {
  await loadI18n("board");
  const me = await requireSession();
  $("who").textContent = me.display_name || me.username || "";
  $("lang").addEventListener("click", () => setLang(currentLang() === "en" ? "zh-CN" : "en"));
  $("signout").addEventListener("click", () => signOut());
  $("sound").addEventListener("click", toggleSound);
  $("tab-alerts").addEventListener("click", () => showTab("alerts"));
  $("tab-homes").addEventListener("click", () => showTab("homes"));
  $("homes-refresh").addEventListener("click", loadHomes);
  $("assign-form").addEventListener("submit", submitAssign);
  $("resolve-form").addEventListener("submit", submitResolve);
  for (const d of document.querySelectorAll("dialog")) wireDialog(d);
  renderSound();
  setLive("connecting");
  try {
    await loadSnapshot(false);
  } catch (err) {
    toast(errorText(err), true);
  }
  loadRefused().catch((err) => toast(errorText(err), true));
  connect();
  setInterval(tick, 1000);
  setInterval(renderRefused, 60000); // the "ago", and a day-old one leaves
}

main();
