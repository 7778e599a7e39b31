// The family page: how a relative's elder is doing, read-only. Reads
// GET /api/v1/family/elders (which elders) and /api/v1/family/elders/{id} (the status), and
// listens to /api/v1/family/elders/{id}/live (Server-Sent Events) to load the status again
// when one of the elder's alerts changes; the Refresh button does the same by hand.
// Times are shown on the station's clock (the `timezone` the API names), in plain words.
import { ApiError, get, requireSession, signOut } from "/static/api.js";
import { currentLang, loadI18n, setLang, t } from "/static/i18n.js";

const $ = (id) => document.getElementById(id);
let current = null; // the status last shown
let elderId = null;
let live = null; // the EventSource of the elder shown
let reloadTimer = null;

// --- words for times and durations ---------------------------------------------------------

function ymd(date, tz) {
  // en-CA formats as YYYY-MM-DD: the station's calendar day of an instant.
  return new Intl.DateTimeFormat("en-CA", {
    timeZone: tz, year: "numeric", month: "2-digit", day: "2-digit",
  }).format(date);
}

function hm(date, tz) {
  return new Intl.DateTimeFormat("en-GB", {
    timeZone: tz, hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  }).format(date);
}

function daysBetween(a, b) {
  const ms = (s) => Date.UTC(+s.slice(0, 4), +s.slice(5, 7) - 1, +s.slice(8, 10));
  return Math.round((ms(a) - ms(b)) / 86400000);
}

// "今天 08:12", "昨天 19:40", "11月2日 10:05" (or in English).
function when(iso) {
  if (!iso) return "—";
  const tz = current.timezone;
  const d = new Date(iso);
  const time = hm(d, tz);
  const diff = daysBetween(ymd(d, tz), current.today);
  if (diff === 0) return t("time.today", { time });
  if (diff === -1) return t("time.yesterday", { time });
  if (diff === 1) return t("time.tomorrow", { time });
  const date = new Intl.DateTimeFormat(currentLang(), {
    timeZone: tz, month: "long", day: "numeric",
  }).format(d);
  return t("time.other", { date, time });
}

function dayWords(isoDate) {
  // A calendar date (YYYY-MM-DD) as "11月20日" / "20 November".
  const d = new Date(`${isoDate}T12:00:00Z`);
  return new Intl.DateTimeFormat(currentLang(), { timeZone: "UTC", month: "long", day: "numeric" })
    .format(d);
}

function ago(iso) {
  const s = Math.max(0, (new Date(current.as_of) - new Date(iso)) / 1000);
  if (s < 90) return t("ago.now");
  if (s < 3600) return t("ago.min", { n: Math.round(s / 60) });
  if (s < 48 * 3600) return t("ago.hour", { n: Math.round(s / 3600) });
  return t("ago.day", { n: Math.round(s / 86400) });
}

function dur(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return t("dur.s", { s });
  if (s < 600) return t("dur.ms", { m: Math.floor(s / 60), s: s % 60 });
  if (s < 3600) return t("dur.m", { m: Math.round(s / 60) });
  return t("dur.hm", { h: Math.floor(s / 3600), m: Math.round((s % 3600) / 60) });
}

function person(p) {
  if (!p) return t("role.unknown");
  const role = t(`role.${p.role}`);
  return p.name ? t("person.named", { name: p.name, role }) : role;
}

function serviceName(v) {
  const name = currentLang() === "en" ? (v.service_en || v.service_zh) : (v.service_zh || v.service_en);
  return name || t("visit.service_unknown");
}

// --- drawing -------------------------------------------------------------------------------

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = text;
  return e;
}

function row(cls, main, ...more) {
  const li = el("li", `row ${cls || ""}`.trim());
  li.append(el("span", "main", main));
  for (const m of more.filter(Boolean)) li.append(el("span", "more muted", m));
  return li;
}

function fill(list, items, emptyKey) {
  list.replaceChildren(...items);
  if (!items.length && emptyKey) list.append(row("empty", t(emptyKey)));
}

function drawDevices(devices) {
  fill($("devices"), devices.map((d) => {
    const kind = t(`device.${d.kind}`);
    const pct = d.battery_pct === null ? null : Math.round(d.battery_pct);
    let main;
    if (d.condition === "battery_low") {
      main = pct === null ? t("device.battery_low_nopct", { kind }) : t("device.battery_low", { kind, pct });
    } else {
      main = t(`device.${d.condition}`, { kind });
    }
    const heard = d.last_heard_at
      ? t("device.last_heard", { when: when(d.last_heard_at), ago: ago(d.last_heard_at) })
      : null;
    const battery = d.condition !== "battery_low" && pct !== null ? t("device.battery", { pct }) : null;
    const li = row(`cond-${d.condition}`, main, heard, battery);
    li.dataset.device = d.id;
    return li;
  }), "devices.none");
}

function drawWater(w) {
  const line = $("water");
  const more = [];
  line.className = `big-line water-${w.status}`;
  if (w.status === "used") {
    if (w.last_use_at) {
      line.textContent = t("water.used", { when: when(w.last_use_at) });
    } else {
      const from = new Date(w.last_use_hour);
      const to = new Date(from.getTime() + 3600 * 1000);
      line.textContent = t("water.used_hour", {
        from: hm(from, current.timezone), to: hm(to, current.timezone),
      });
    }
    if (w.litres_today !== null) more.push(t("water.litres", { litres: w.litres_today }));
  } else if (w.status === "not_used_yet") {
    line.textContent = t("water.not_used_yet");
    more.push(t("water.not_used_hint"));
  } else if (w.status === "unknown") {
    line.textContent = t("water.unknown");
    more.push(t("water.unknown_hint"));
  } else {
    line.textContent = t("water.no_sensor");
  }
  if (w.last_report_at && w.status !== "no_sensor") {
    more.push(t("water.last_report", { when: when(w.last_report_at) }));
  }
  $("water-more").textContent = more.join(" ");
}

function alertRow(a) {
  const head = `${t(`kind.${a.kind}`)} · ${when(a.created_at)}`;
  const lines = [];
  if (a.ended === "open") lines.push(t(`state.${a.state}`));
  else if (a.ended === "resolved") {
    lines.push(a.outcome
      ? t("ended.resolved_as", { outcome: t(`outcome.${a.outcome}`) })
      : t("ended.resolved"));
  } else lines.push(t(`ended.${a.ended}`));
  if (a.taken_by && a.answered_after_s !== null) {
    lines.push(t("alert.taken", { who: person(a.taken_by), dur: dur(a.answered_after_s) }));
  }
  if (a.came.length && a.arrived_after_s !== null) {
    lines.push(t("alert.came", { who: a.came.map(person).join(t("regular.sep")), dur: dur(a.arrived_after_s) }));
  }
  if (a.ended === "resolved" && a.closed_after_s !== null) {
    lines.push(t("alert.closed", { dur: dur(a.closed_after_s) }));
  }
  const li = row(`${a.priority.toLowerCase()} ended-${a.ended}`, head, ...lines);
  li.dataset.alert = a.id;
  return li;
}

function visitRow(v, past) {
  let timeLine;
  if (past) {
    timeLine = v.ended_at
      ? t("visit.done", { when: when(v.started_at), end: hm(new Date(v.ended_at), current.timezone), minutes: v.minutes })
      : t("visit.ongoing", { when: when(v.started_at) });
  } else {
    timeLine = v.scheduled_at ? when(v.scheduled_at) : t("visit.not_scheduled");
  }
  let by = null;
  if (v.worker) by = v.provider ? t("visit.by", { worker: v.worker, provider: v.provider }) : v.worker;
  const li = row(`visit-${v.state}`, `${serviceName(v)} · ${timeLine}`, t(`visit.state.${v.state}`), by);
  li.dataset.order = v.order_id;
  return li;
}

function regularRow(r) {
  const days = r.weekdays.map((d) => t(`weekday.${d}`)).join(t("regular.sep"));
  let text = `${serviceName(r)} · ${t("regular.every", { days, at: r.at })}`;
  if (r.end) text += t("regular.until", { date: dayWords(r.end) });
  return row("regular", text);
}

function draw(s) {
  current = s;
  $("elder-name").textContent = s.elder.name;
  const away = $("elder-away");
  const st = s.elder.status;
  if (st && st !== "active") {
    const until = s.elder.status_until && (st === "away" || st === "in_hospital");
    away.textContent = until
      ? t(`elder.status.${st}_until`, { date: dayWords(s.elder.status_until) })
      : t(`elder.status.${st}`);
    away.classList.remove("hidden");
  } else {
    away.classList.add("hidden");
  }
  $("updated").textContent = t("family.updated", { time: when(s.as_of) });
  drawDevices(s.devices);
  drawWater(s.water);
  fill($("open-alerts"), s.open_alerts.map(alertRow), "alerts.open_none");
  fill($("recent-alerts"), s.recent_alerts.map(alertRow), "alerts.recent_none");
  fill($("upcoming"), s.upcoming_visits.map((v) => visitRow(v, false)), "visits.upcoming_none");
  fill($("visits"), s.recent_visits.map((v) => visitRow(v, true)), "visits.recent_none");
  fill($("regular"), s.regular_services.map(regularRow));
  $("regular-box").classList.toggle("hidden", !s.regular_services.length);
  $("status").classList.remove("hidden");
}

// --- loading -------------------------------------------------------------------------------

function notice(key) {
  $("notice").textContent = t(key);
  $("notice").classList.toggle("hidden", !key);
}

function showError(err) {
  const box = $("error");
  if (!err) { box.classList.add("hidden"); return; }
  const detail = err instanceof ApiError ? `HTTP ${err.status}` : t("error.network");
  box.textContent = t("family.error", { detail });
  box.classList.remove("hidden");
}

async function refresh() {
  if (!elderId) return;
  const id = elderId;
  $("reload").disabled = true;
  try {
    const s = await get(`/family/elders/${encodeURIComponent(id)}`);
    if (id !== elderId) return; // another elder was chosen meanwhile
    showError(null);
    notice("");
    draw(s);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      // Not (or no longer) theirs: show nothing of it.
      $("status").classList.add("hidden");
      closeLive();
      notice("family.not_found");
    } else {
      showError(err);
    }
  } finally {
    $("reload").disabled = false;
  }
}

function soon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(refresh, 300); // one reload for a burst of events
}

function closeLive() {
  if (live) live.close();
  live = null;
}

function openLive(id) {
  closeLive();
  const es = new EventSource(`/api/v1/family/elders/${encodeURIComponent(id)}/live`);
  live = es;
  const state = $("live");
  es.onopen = () => { state.textContent = t("live.connected"); state.className = "live on"; };
  es.addEventListener("changed", soon);
  es.addEventListener("resync", soon);
  es.onerror = () => {
    if (es !== live) return;
    if (es.readyState === EventSource.CLOSED) {
      state.textContent = t("live.off");
      state.className = "live off";
      live = null;
      refresh(); // the link may have ended: the snapshot says so
    } else {
      state.textContent = t("live.reconnecting");
      state.className = "live off";
    }
  };
}

function choose(id, elders) {
  elderId = id;
  const u = new URL(location.href);
  u.searchParams.set("elder", id);
  history.replaceState(null, "", u);
  for (const b of $("chooser").querySelectorAll("button")) {
    b.setAttribute("aria-pressed", String(b.dataset.elder === id));
  }
  const name = (elders.find((e) => e.id === id) || {}).name;
  if (name) document.title = `${name} · ${t("family.title")}`;
  $("status").classList.add("hidden");
  refresh();
  openLive(id);
}

async function main() {
  await loadI18n("family");
  $("lang").addEventListener("click", () => setLang(currentLang() === "en" ? "zh-CN" : "en"));
  $("signout").addEventListener("click", () => signOut());
  $("reload").addEventListener("click", refresh);
  await requireSession();
  notice("family.loading");
  let elders;
  try {
    elders = await get("/family/elders");
  } catch (err) {
    notice("");
    showError(err);
    return;
  }
  if (!elders.length) { notice("family.none"); return; }
  notice("");
  const chooser = $("chooser");
  if (elders.length > 1) {
    for (const e of elders) {
      const b = el("button", "tab", e.name);
      b.type = "button";
      b.dataset.elder = e.id;
      b.addEventListener("click", () => choose(e.id, elders));
      chooser.append(b);
    }
    chooser.classList.remove("hidden");
  }
  const wanted = new URLSearchParams(location.search).get("elder");
  choose(elders.some((e) => e.id === wanted) ? wanted : elders[0].id, elders);
}

main();
