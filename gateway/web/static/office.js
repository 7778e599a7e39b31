// The station staff's office page (/office): quarantine, suppressions, reports, registry,
// services and points, one tab each, all on the existing JSON API (/api/v1). Strings are in
// i18n/office.json (zh-CN first, English); every refusal of the API is shown in the page's
// language, from the `en`/`zh` the care, services and points APIs give, or from the field and
// error type of a plain validation error.
import { ApiError, del, get, post, requireSession, signOut } from "/static/api.js";
import { currentLang, fmtTime, loadI18n, setLang, t } from "/static/i18n.js";
import { barChart } from "/static/office-charts.js";

const TABS = ["quarantine", "suppressions", "reports", "registry", "services", "points"];
const QUARANTINE_REASONS = [
  "too_large", "not_utf8", "not_json", "not_object", "bad_topic", "unknown_type", "wrong_kind",
  "invalid", "unknown_device", "retired_device", "unknown_pager", "unknown_alert",
  "reply_not_paged", "wrong_topic",
];
const ORDER_STATES = [
  "applied", "agreed", "dispatched", "accepted", "in_service", "served", "feedback_given",
  "signed_off", "closed", "cancelled",
];
const SERVICE_CATEGORIES = [
  "meals", "cleaning", "bathing", "medical", "emergency", "visit", "companionship", "errand",
  "housekeeping", "haircut", "repair",
];
const $ = (sel, root = document) => root.querySelector(sel);

// --- small helpers ------------------------------------------------------------------------------

// h("td", {class: "x"}, "text", child) -> an element; text is always text (never HTML).
function h(tag, props, ...kids) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, String(v));
  }
  for (const kid of kids.flat()) {
    if (kid === undefined || kid === null || kid === false) continue;
    node.append(kid instanceof Node ? kid : String(kid));
  }
  return node;
}

// A translated label for a code ("kind.gas"), or the code itself when there is none.
function label(prefix, code) {
  if (code === null || code === undefined || code === "") return "—";
  const key = `${prefix}.${code}`;
  const s = t(key);
  return s === key ? String(code) : s;
}

// The same, but nothing when there is no translation (an optional hint).
function hint(prefix, code) {
  const key = `${prefix}.${code}`;
  const s = t(key);
  return s === key ? "" : s;
}

const en = () => currentLang() === "en";
const pick = (zh, enText) => (en() ? enText || zh : zh || enText);
const dash = (v) => (v === null || v === undefined || v === "" ? "—" : String(v));

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds);
  if (s < 60) return t("dur.s", { s });
  const m = Math.floor(s / 60), r = s % 60;
  if (m < 60) return r ? t("dur.ms", { m, s: r }) : t("dur.m", { m });
  const hr = Math.floor(m / 60), mm = m % 60;
  return t("dur.hm", { h: hr, m: mm });
}

// How long until `iso` (an expiry), in days and hours, or "ended".
function fmtLeft(iso) {
  const ms = new Date(iso).getTime() - Date.now();
  if (ms <= 0) return t("left.over");
  const hours = Math.floor(ms / 3_600_000), days = Math.floor(hours / 24);
  if (days >= 1) return t("left.dh", { d: days, h: hours % 24 });
  if (hours >= 1) return t("left.h", { h: hours });
  return t("left.m", { m: Math.max(1, Math.ceil(ms / 60_000)) });
}

const pct = (x) => (x === null || x === undefined ? "—" : `${(x * 100).toFixed(1)}%`);
const yuan = (fen) => (fen === null || fen === undefined ? "—" : `¥${(fen / 100).toFixed(2)}`);

function pad(n) { return String(n).padStart(2, "0"); }

// A Date -> RFC 3339 in this browser's time and offset (the API wants an offset on every time).
function rfc3339(d) {
  const off = -d.getTimezoneOffset(), a = Math.abs(off);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:` +
    `${pad(d.getMinutes())}:${pad(d.getSeconds())}${off >= 0 ? "+" : "-"}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}

// A datetime-local value ("2026-11-26T09:30") or a date ("2026-11-26") -> RFC 3339, or null.
function localToRfc3339(value) {
  if (!value) return null;
  const d = new Date(value.length === 10 ? `${value}T00:00` : value);
  return Number.isNaN(d.getTime()) ? null : rfc3339(d);
}

function nowLocal() {
  const d = new Date();
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

// The points API wants a fresh Idempotency-Key per request; crypto.randomUUID needs a secure
// context, which a station's LAN address over http is not: getRandomValues works everywhere.
function newKey() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return "office-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// A problem found before asking the API: shown like the API's own refusals.
class FormProblem extends Error {
  constructor(field, type) {
    super(`${field}: ${type}`);
    this.field = field;
    this.type = type;
  }
}

// A number from an <input>, or undefined when empty (the API's "not given"). What the browser
// could not read as a number ("12,5", "abc": type=number then gives "") is refused here rather
// than sent as "not given".
function num(form, name) {
  const el = form.elements[name];
  if (el.validity && el.validity.badInput) throw new FormProblem(name, "float_parsing");
  const v = el.value.trim();
  return v === "" ? undefined : Number(v);
}
function text(form, name) {
  const v = form.elements[name].value.trim();
  return v === "" ? undefined : v;
}
function compact(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

// --- what the API refused, in the page's language ----------------------------------------------

// The field a validation error points at (its last name in `loc`), for the label and the mark.
function fieldOf(loc) {
  const names = (loc || []).filter((p) => typeof p === "string" && p !== "body" && p !== "query");
  return names.length ? names[names.length - 1] : "";
}

function fieldLabel(name) {
  if (!name) return "";
  const key = `field.${name}`;
  const s = t(key);
  return s === key ? name : s.replace(/（.*?）|\s*\(.*?\)/g, "");
}

// One item of a 422 list: {type, loc, msg, en?, zh?}.
function explainItem(item) {
  let said;
  // A check's own words come as msg "English (中文)" beside en/zh and name their subject; the
  // gateway's wording of pydantic's types (en equal to msg) gives way to this page's, with the
  // field's label, as a page that knows the form says it better.
  const key = `invalid.${item.type}`;
  const worded = (item.zh || item.en) && item.en !== item.msg;
  const ours = !worded && item.type !== "value_error" && t(key, { n: "" }) !== key;
  if (worded || ((item.zh || item.en) && !ours)) said = pick(item.zh, item.en);
  else {
    // Some domain checks (the points amount) come as "English (中文)" in `msg`.
    const both = /^(.*) \(([^()]*[\u3400-\u9fff][^()]*)\)$/.exec(item.msg || "");
    if (both) said = pick(both[2], both[1]);
    else {
      const n = (/-?\d+(?:\.\d+)?/.exec(item.msg || "") || [""])[0];
      const s = t(key, { n });
      said = s === key ? item.msg || item.type : s;
    }
  }
  const field = fieldOf(item.loc);
  // A care message names its measure already ("收缩压400mmHg不可能"); others get the field.
  return field && !worded ? t("fmt.field", { field: fieldLabel(field), text: said }) : said;
}

// Every problem of a failed call, as lines of text; and the fields they point at.
function explain(err) {
  if (err instanceof FormProblem) {
    const said = t(`invalid.${err.type}`, { n: "" });
    return { lines: [t("fmt.field", { field: fieldLabel(err.field), text: said })], fields: [err.field] };
  }
  if (!(err instanceof ApiError)) {
    // fetch() fails with a TypeError when the gateway cannot be reached; anything else is a
    // fault of this page: logged (the browser tests fail on it) and shown as such.
    if (err instanceof TypeError && /fetch|network|load/i.test(err.message)) {
      return { lines: [t("office.offline")], fields: [] };
    }
    console.error(err);
    return { lines: [t("office.fault", { detail: String(err) })], fields: [] };
  }
  const d = err.body ? err.body.detail : null;
  if (Array.isArray(d)) {
    return { lines: d.map(explainItem), fields: d.map((i) => fieldOf(i.loc)).filter(Boolean) };
  }
  if (d && typeof d === "object" && (d.zh || d.en)) return { lines: [pick(d.zh, d.en)], fields: [] };
  const key = `http.${err.status}`;
  const status = t(key) === key ? t("http.other", { status: err.status }) : t(key);
  // A string detail is English; its Chinese comes beside it (detail_zh).
  const zh = err.body.detail_zh;
  if (typeof d === "string") {
    return { lines: [en() ? `${status}: ${d}` : zh ? `${status}：${zh}` : `${status}（${d}）`], fields: [] };
  }
  return { lines: [status], fields: [] };
}

function showProblems(out, err, form) {
  const { lines, fields } = explain(err);
  out.replaceChildren(h("ul", { class: "problems" }, lines.map((l) => h("li", { class: "error" }, l))));
  if (form) {
    let first = null;
    for (const f of fields) {
      const input = form.elements[f];
      if (input && input.setAttribute) {
        input.setAttribute("aria-invalid", "true");
        first = first || input;
      }
    }
    if (first) first.focus();
  }
}

function showOk(out, ...lines) {
  out.replaceChildren(...lines.map((l) => h("p", { class: "ok" }, l)));
}

// A form's message line: inside it, or (for the filter bars) right after it.
function msgFor(form) {
  const next = form.nextElementSibling;
  return $(".form-msg", form) || (next && next.classList.contains("form-msg") ? next : null);
}

// Run a form's work: clear the old marks, keep the button from a second click, show the result.
async function submitting(form, work) {
  const out = msgFor(form);
  out.replaceChildren();
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  const button = $("button[type=submit]", form);
  if (button) button.disabled = true;
  try {
    await work(out);
  } catch (err) {
    showProblems(out, err, form);
  } finally {
    if (button) button.disabled = false;
  }
}

// A panel-level failure (loading a list): shown in the panel's message line.
function failed(panel, err) {
  const out = $(".form-msg", panel);
  if (out) showProblems(out, err);
  else console.warn(err);
}

// Names for ids, from the alarm path's lists (loaded once, when first needed).
const names = { elders: null, devices: null, responders: null };
async function lookups() {
  if (!names.elders) {
    const [els, devs, rsp] = await Promise.all([
      get("/elders?limit=5000"), get("/devices?limit=5000"), get("/responders?limit=5000"),
    ]);
    names.elders = new Map(els.map((e) => [e.id, e]));
    names.devices = new Map(devs.map((d) => [d.id, d]));
    names.responders = new Map(rsp.map((r) => [r.id, r]));
  }
  return names;
}
const elderName = (id) => (names.elders && names.elders.get(id) ? names.elders.get(id).name : id);

// "api:admin" / "user:wang" / "responder:rs_..." -> a readable name.
function who(label_) {
  if (!label_) return "—";
  const [kind, rest] = label_.includes(":") ? label_.split(/:(.*)/s) : ["", label_];
  if (kind === "responder" || label_.startsWith("rs_")) {
    const r = names.responders && names.responders.get(rest || label_);
    return r ? r.name : label_;
  }
  return rest || label_;
}

// --- tabs ---------------------------------------------------------------------------------------

const loaded = new Set();
const loaders = {};

function selectTab(name, focus) {
  if (!TABS.includes(name)) name = TABS[0];
  for (const tab of document.querySelectorAll("[role=tab]")) {
    const on = tab.dataset.tab === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    if (on && focus) tab.focus();
    $(`#${tab.getAttribute("aria-controls")}`).hidden = !on;
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  if (!loaded.has(name)) {
    loaded.add(name);
    Promise.resolve(loaders[name]()).catch((err) => failed($(`#panel-${name}`), err));
  }
}

function setupTabs() {
  const tabs = [...document.querySelectorAll("[role=tab]")];
  for (const tab of tabs) {
    tab.addEventListener("click", () => selectTab(tab.dataset.tab, true));
    // Arrow keys move between tabs (the WAI-ARIA tabs pattern), Home and End to the ends.
    tab.addEventListener("keydown", (ev) => {
      const i = tabs.indexOf(tab);
      const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[ev.key];
      if (to === undefined) return;
      ev.preventDefault();
      selectTab(tabs[(to + tabs.length) % tabs.length].dataset.tab, true);
    });
  }
  window.addEventListener("hashchange", () => selectTab(location.hash.slice(1), false));
}

// A button that asks once more before it acts (no native dialog: keyboard and tests alike).
function confirmButton(textKey, confirmKey, act) {
  const b = h("button", { type: "button" }, t(textKey));
  let armed = false;
  b.addEventListener("click", async () => {
    if (!armed) {
      armed = true;
      b.textContent = t(confirmKey);
      b.classList.add("armed");
      return;
    }
    b.disabled = true;
    try {
      await act();
    } finally {
      b.disabled = false;
    }
  });
  b.addEventListener("blur", () => {
    armed = false;
    b.textContent = t(textKey);
    b.classList.remove("armed");
  });
  return b;
}

// --- quarantine ---------------------------------------------------------------------------------

function setupQuarantine() {
  const form = $("#q-filter");
  const select = form.elements.reason;
  for (const r of QUARANTINE_REASONS) select.append(h("option", { value: r }, label("reason", r)));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    loadQuarantine().catch((err) => failed($("#panel-quarantine"), err));
  });
  loaders.quarantine = loadQuarantine;
}

async function loadQuarantine() {
  const form = $("#q-filter");
  const q = new URLSearchParams({ limit: form.elements.limit.value });
  if (form.elements.reason.value) q.set("reason", form.elements.reason.value);
  const rows = await get(`/quarantine?${q}`);
  const msg = $("#panel-quarantine .form-msg");
  msg.textContent = rows.length ? t("q.count", { n: rows.length }) : t("q.none");
  $("#q-table tbody").replaceChildren(...rows.map((r) => h("tr", {},
    h("td", { class: "nowrap" }, fmtTime(r.at)),
    h("td", {},
      h("strong", {}, label("reason", r.reason)),
      h("div", { class: "muted small" }, hint("reason_hint", r.reason))),
    h("td", { class: "small" }, r.detail),
    h("td", { class: "mono small" }, r.topic),
    h("td", {}, h("details", {},
      h("summary", {}, t("q.bytes", { n: r.size })),
      h("pre", { class: "payload" }, r.payload))),
  )));
}

// --- suppressions -------------------------------------------------------------------------------

function setupSuppressions() {
  $("#s-refresh").addEventListener("click", () =>
    loadSuppressions().catch((err) => failed($("#panel-suppressions"), err)));
  loaders.suppressions = loadSuppressions;
}

async function loadSuppressions() {
  const [data] = await Promise.all([get("/suppressions"), lookups()]);
  const msg = $("#s-msg");
  msg.textContent = t("s.count", { away: data.away.length, mutes: data.mutes.length });
  const state = (x) => (x.active ? t("s.active") : t("s.upcoming"));
  $("#s-away tbody").replaceChildren(...(data.away.length ? data.away.map((a) => h("tr", {},
    h("td", {}, elderName(a.elder_id)),
    h("td", {}, label("away", a.status), h("div", { class: "muted small" }, state(a))),
    h("td", { class: "nowrap" }, fmtTime(a.since)),
    h("td", { class: "nowrap" }, fmtTime(a.until)),
    h("td", { class: "nowrap" }, fmtLeft(a.until)),
    h("td", {}, who(a.author)),
    h("td", {}, dash(a.note)),
    h("td", {}, confirmButton("s.end_away", "s.confirm", async () => {
      try {
        await del(`/elders/${encodeURIComponent(a.elder_id)}/away`);
        await loadSuppressions();
        showOk(msg, t("s.ended_away", { name: elderName(a.elder_id) }));
      } catch (err) { showProblems(msg, err); }
    })),
  )) : [h("tr", {}, h("td", { colspan: 8, class: "muted" }, t("s.no_away")))]));

  $("#s-mutes tbody").replaceChildren(...(data.mutes.length ? data.mutes.map((m) => {
    const dev = names.devices.get(m.device_id);
    return h("tr", {},
      h("td", {}, h("span", { class: "mono" }, m.device_id),
        dev ? h("div", { class: "muted small" }, label("device", dev.kind)) : null),
      h("td", {}, dev ? elderName(dev.elder_id) : "—"),
      h("td", {}, m.reason, h("div", { class: "muted small" }, state(m))),
      h("td", { class: "nowrap" }, fmtTime(m.since)),
      h("td", { class: "nowrap" }, fmtTime(m.until)),
      h("td", { class: "nowrap" }, fmtLeft(m.until)),
      h("td", {}, who(m.author)),
      h("td", {}, confirmButton("s.end_mute", "s.confirm", async () => {
        try {
          await del(`/devices/${encodeURIComponent(m.device_id)}/mutes/${encodeURIComponent(m.id)}`);
          await loadSuppressions();
          showOk(msg, t("s.ended_mute", { device: m.device_id }));
        } catch (err) { showProblems(msg, err); }
      })),
    );
  }) : [h("tr", {}, h("td", { colspan: 8, class: "muted" }, t("s.no_mutes")))]));
}

// --- reports ------------------------------------------------------------------------------------

function setupReports() {
  const form = $("#r-filter");
  const today = new Date();
  form.elements.to.value = `${today.getFullYear()}-${pad(today.getMonth() + 1)}-${pad(today.getDate())}`;
  form.elements.period.addEventListener("change", () => {
    for (const el of form.querySelectorAll(".custom")) {
      el.classList.toggle("hidden", form.elements.period.value !== "custom");
    }
  });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    submitting(form, () => loadReport());
  });
  loaders.reports = () => submitting(form, () => loadReport());
}

function reportQuery(form) {
  const q = new URLSearchParams();
  const period = form.elements.period.value;
  if (period === "custom") {
    const from = form.elements.from.value, to = form.elements.to.value;
    if (from) q.set("from", localToRfc3339(from));
    if (to) {
      const end = new Date(`${to}T00:00`);
      end.setDate(end.getDate() + 1); // the day given is included: up to its end
      q.set("to", rfc3339(end));
    }
  } else {
    // The last N days including today, from midnight; up to now (the API's default end).
    const start = new Date();
    start.setHours(0, 0, 0, 0);
    start.setDate(start.getDate() - Number(period) + 1);
    q.set("from", rfc3339(start));
  }
  const station = form.elements.station.value.trim();
  if (station) q.set("station", station);
  return q;
}

// A table of the same numbers as a chart: the accessible (and printable) form.
function numbersTable(caption, head, rows) {
  return h("table", { class: "grid numbers" },
    h("caption", { class: "sr-only" }, caption),
    h("thead", {}, h("tr", {}, head.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {},
      h("th", { scope: "row" }, r[0]), r.slice(1).map((c) => h("td", {}, c))))));
}

function chartInto(id, svg, table) {
  $(`#${id} .chart-body`).replaceChildren(h("div", { class: "chart-svg" }, svg), table);
}

async function loadReport() {
  const form = $("#r-filter");
  const r = await get(`/reports/alerts?${reportQuery(form)}`);
  $("#r-out").classList.remove("hidden");
  $("#r-span").textContent = t("r.span", {
    from: fmtTime(r.start), to: fmtTime(r.end), station: r.station || t("r.all_stations"),
  });
  const met = r.standards_met === null ? t("r.no_data") : r.standards_met ? t("r.met") : t("r.not_met");
  $("#r-summary").replaceChildren(
    ...[
      [t("r.total"), String(r.total)],
      [t("r.false_alarms"), pct(r.false_alarm_rate)],
      [t("r.unpaged"), String(r.unpaged)],
      [t("r.standards"), met],
    ].flatMap(([k, v]) => [h("div", {}, h("dt", {}, k), h("dd", {}, v))]),
  );

  // Response times: the median and the 90th percentile of each stage, in seconds.
  const stages = ["to_first_page", "to_ack", "to_on_site", "to_resolution"];
  const times = stages.map((s) => ({ key: s, ...r[s] }));
  chartInto("r-times",
    barChart({
      title: t("r.times_title"),
      desc: t("r.times_desc"),
      series: [{ name: t("r.p50"), cls: "s1" }, { name: t("r.p90"), cls: "s2" }],
      rows: times.map((x) => ({
        label: t(`stage.${x.key}`),
        bars: [
          { value: x.p50_s, text: fmtDuration(x.p50_s), cls: "s1" },
          { value: x.p90_s, text: fmtDuration(x.p90_s), cls: "s2" },
        ],
      })),
    }),
    numbersTable(t("r.times_title"), [t("r.stage"), t("r.count"), t("r.p50"), t("r.p90"), t("r.max")],
      times.map((x) => [t(`stage.${x.key}`), String(x.count), fmtDuration(x.p50_s), fmtDuration(x.p90_s), fmtDuration(x.max_s)])));

  // The share of P1 alerts answered within 60 s and 180 s, against the standard's target.
  chartInto("r-share",
    barChart({
      title: t("r.share_title"),
      desc: t("r.share_desc"),
      max: 1,
      valueW: 250,
      rows: r.answered_within.map((s) => ({
        label: t("r.within", { s: s.within_s }),
        bars: [{
          value: s.share,
          text: s.share === null ? t("r.no_data")
            : t("r.share_value", { p: pct(s.share), n: s.within, of: s.total, target: pct(s.target) }),
          cls: s.met === false ? "bad" : "good",
        }],
      })),
      markers: r.answered_within.map((s, i) => ({ row: i, value: s.target })),
    }),
    numbersTable(t("r.share_title"), [t("r.standard"), t("r.answered"), t("r.share"), t("r.target_col"), t("r.result")],
      r.answered_within.map((s) => [
        t("r.within", { s: s.within_s }), `${s.within}/${s.total}`, pct(s.share), pct(s.target),
        s.met === null ? t("r.no_data") : s.met ? t("r.met") : t("r.not_met"),
      ])));

  // Counts by kind and by outcome, the largest first.
  const counts = (id, obj, prefix, cls, titleKey, headKey) => {
    const sorted = Object.entries(obj).sort((a, b) => b[1] - a[1]);
    chartInto(id,
      sorted.length
        ? barChart({
          title: t(titleKey),
          rows: sorted.map(([k, n]) => ({ label: label(prefix, k), bars: [{ value: n, text: String(n), cls }] })),
        })
        : h("p", { class: "muted" }, t("r.no_alerts")),
      numbersTable(t(titleKey), [t(headKey), t("r.count")], sorted.map(([k, n]) => [label(prefix, k), String(n)])));
  };
  counts("r-kinds", r.by_kind, "kind", "s1", "r.kinds_title", "r.kind");
  counts("r-outcomes", r.by_outcome, "outcome", "s2", "r.outcomes_title", "r.outcome");
}

// --- registry -----------------------------------------------------------------------------------

let currentElder = null;

function setupRegistry() {
  const form = $("#g-search");
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    submitting(form, (out) => searchElders(form, out));
  });
  $("#g-vitals-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const vf = ev.currentTarget;
    submitting(vf, (out) => saveVitals(vf, out));
  });
  $("#g-apply").addEventListener("click", () => {
    if (!currentElder) return;
    servicesFor(currentElder);
    selectTab("services", true);
  });
  loaders.registry = () => $("#g-search input[name=q]").focus();
}

async function searchElders(form, out) {
  const q = new URLSearchParams({ limit: "200" });
  const name = form.elements.q.value.trim();
  if (name) q.set("q", name);
  if (form.elements.all.checked) {
    for (const s of ["active", "away", "in_hospital", "moved", "deceased"]) q.append("status", s);
  }
  const found = await get(`/care/elders?${q}`);
  out.textContent = found.length ? t("g.found", { n: found.length }) : t("g.none");
  const table = $("#g-results");
  table.classList.toggle("hidden", !found.length);
  $("tbody", table).replaceChildren(...found.map((e) => h("tr", {},
    h("td", {}, h("strong", {}, e.name)),
    h("td", { class: "nowrap" }, `${label("gender", e.gender)} ${t("g.age", { n: e.age })}`),
    h("td", {}, e.address_line),
    h("td", {}, label("living", e.living_situation)),
    h("td", {}, label("status", e.status && e.status.status ? e.status.status : e.status)),
    h("td", {}, h("button", {
      type: "button", onclick: () => openElder(e.id).catch((err) => showProblems(out, err)),
      "aria-label": t("g.open_named", { name: e.name }),
    }, t("g.open"))),
  )));
}

function fact(k, v) {
  return h("div", {}, h("dt", {}, k), h("dd", {}, v === null || v === undefined || v === "" ? "—" : v));
}

async function openElder(id) {
  const e = await get(`/care/elders/${encodeURIComponent(id)}`);
  currentElder = e;
  const art = $("#g-record");
  art.classList.remove("hidden");
  $("#g-record-name").textContent = t("g.record_title", {
    name: e.name, gender: label("gender", e.gender), age: t("g.age", { n: e.age }),
  });
  const list = (xs, prefix) => (xs && xs.length ? xs.map((x) => (prefix ? label(prefix, x) : x)).join(t("fmt.sep")) : "—");
  const st = e.status || {};
  $("#g-profile").replaceChildren(
    fact(t("g.status"), `${label("status", st.status)}${st.until ? ` → ${st.until}` : ""}${e.status_overdue ? ` ${t("g.overdue")}` : ""}`),
    fact(t("g.birth"), e.birth_date),
    fact(t("g.id_card"), e.id_card_masked),
    fact(t("g.phone"), e.phone),
    fact(t("g.address"), e.address_line),
    fact(t("g.station"), e.station),
    fact(t("g.living"), label("living", e.living_situation)),
    fact(t("g.self_care"), label("self_care", e.self_care)),
    fact(t("g.tier"), label("tier", e.service_tier)),
    fact(t("g.categories"), list(e.categories, "category")),
    fact(t("g.conditions"), list(e.conditions)),
    fact(t("g.allergies"), list(e.allergies)),
    fact(t("g.doctor"), e.doctor ? [e.doctor.name, e.doctor.clinic, e.doctor.phone].filter(Boolean).join(" · ") : null),
    fact(t("g.notes"), e.notes),
  );
  $("#g-contacts").replaceChildren(...(e.emergency_contacts.length ? e.emergency_contacts.map((c) => h("li", {},
    h("strong", {}, c.name), ` ${label("relation", c.relation)} `,
    h("a", { href: `tel:${c.phone}` }, c.phone),
    c.holds_key ? h("span", { class: "tag" }, t("g.holds_key")) : null,
    c.note ? h("div", { class: "muted small" }, c.note) : null,
  )) : [h("li", { class: "muted" }, t("g.no_contacts"))]));
  const vf = $("#g-vitals-form");
  vf.reset();
  vf.elements.measured_at.value = nowLocal();
  $(".form-msg", vf).replaceChildren();
  await Promise.all([loadVitals(id), loadAssessment(id), loadEncounters(id)]);
  $("#g-record-name").focus();
}

async function loadVitals(id) {
  const rows = await get(`/care/elders/${encodeURIComponent(id)}/vitals?limit=20`);
  const flags = (v) => (v.flags.length ? h("ul", { class: "plain" }, v.flags.map((f) => h("li", {
    class: f.severity === "urgent" ? "error" : "warn",
  }, t("fmt.field", { field: label("severity", f.severity), text: pick(f.reason_zh, f.reason_en) })))) : "—");
  $("#g-vitals tbody").replaceChildren(...(rows.length ? rows.map((v) => h("tr", {},
    h("td", { class: "nowrap" }, fmtTime(v.measured_at)),
    h("td", {}, v.systolic !== null ? `${v.systolic}/${v.diastolic}` : "—"),
    h("td", {}, dash(v.pulse)),
    h("td", {}, v.temperature_c !== null ? `${v.temperature_c} ℃` : "—"),
    h("td", {}, v.glucose_mmol_l !== null
      ? t("g.glucose_value", { v: v.glucose_mmol_l, timing: label("glucose", v.glucose_timing) }) : "—"),
    h("td", {}, v.weight_kg !== null ? `${v.weight_kg} kg` : "—"),
    h("td", {}, flags(v)),
  )) : [h("tr", {}, h("td", { colspan: 7, class: "muted" }, t("g.no_vitals")))]));
}

async function loadAssessment(id) {
  const box = $("#g-assessment");
  const cur = await get(`/care/elders/${encodeURIComponent(id)}/assessments/current`);
  if (!cur.assessment) {
    box.replaceChildren(h("p", { class: "muted" }, t("g.never_assessed")));
    return;
  }
  const a = cur.assessment;
  box.replaceChildren(h("dl", { class: "facts" },
    fact(t("g.assessed_on"), a.assessed_on),
    fact(t("g.level"), pick(a.level_zh, label("level", a.level))),
    fact(t("g.care_level"), String(a.care_level)),
    fact(t("g.total"), String(a.total)),
    fact(t("g.reason"), label("areason", a.reason)),
    fact(t("g.due"), cur.reassessment_due ? t("common.yes") : t("common.no")),
  ));
}

async function loadEncounters(id) {
  const rows = await get(`/care/elders/${encodeURIComponent(id)}/encounters`);
  $("#g-encounters").replaceChildren(...(rows.length ? rows.slice(0, 10).map((x) => h("li", {},
    h("strong", {}, fmtTime(x.occurred_at)), ` ${label("encounter", x.kind)} `,
    x.seen_by ? `· ${x.seen_by} ` : "", h("div", { class: "small" }, x.notes),
  )) : [h("li", { class: "muted" }, t("g.no_encounters"))]));
}

async function saveVitals(form, out) {
  if (!currentElder) return;
  const body = compact({
    measured_at: localToRfc3339(form.elements.measured_at.value) || undefined,
    systolic: num(form, "systolic"),
    diastolic: num(form, "diastolic"),
    pulse: num(form, "pulse"),
    temperature_c: num(form, "temperature_c"),
    glucose_mmol_l: num(form, "glucose_mmol_l"),
    glucose_timing: text(form, "glucose_timing"),
    weight_kg: num(form, "weight_kg"),
    note: text(form, "note"),
  });
  const v = await post(`/care/elders/${encodeURIComponent(currentElder.id)}/vitals`, body);
  const lines = [t("g.vitals_saved", { at: fmtTime(v.measured_at) })];
  for (const f of v.flags) {
    lines.push(t("fmt.field", { field: label("severity", f.severity), text: pick(f.reason_zh, f.reason_en) }));
  }
  showOk(out, ...lines);
  const keep = form.elements.measured_at.value;
  form.reset();
  form.elements.measured_at.value = keep;
  await loadVitals(currentElder.id);
}

// --- services -----------------------------------------------------------------------------------

const svc = {
  catalogue: [], providers: [], sources: [], agreements: new Map(), workers: new Map(), order: null,
};

function setupServices() {
  const apply = $("#v-apply");
  for (const c of SERVICE_CATEGORIES) apply.elements.category.append(h("option", { value: c }, label("scat", c)));
  const filter = $("#v-filter");
  for (const s of ORDER_STATES) filter.elements.state.append(h("option", { value: s }, label("ostate", s)));
  $("#v-find").addEventListener("click", () => findElderFor(apply).catch((err) => showProblems($(".form-msg", apply), err)));
  apply.elements.elder_q.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); $("#v-find").click(); }
  });
  apply.elements.elder_id.addEventListener("change", () => prefillHome(apply));
  apply.addEventListener("submit", (ev) => {
    ev.preventDefault();
    submitting(apply, (out) => applyForService(apply, out));
  });
  filter.addEventListener("submit", (ev) => {
    ev.preventDefault();
    loadOrders().catch((err) => failed($("#v-filter").parentElement, err));
  });
  $("#v-agree").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    submitting(form, () => agreeOrder(form));
  });
  $("#v-dispatch").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    submitting(form, () => dispatchOrder(form));
  });
  $("#v-dispatch").elements.provider_id.addEventListener("change", () =>
    loadWorkers().catch((err) => showProblems($("#v-dispatch .form-msg"), err)));
  $("#v-cancel").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    submitting(form, () => cancelOrder(form));
  });
  loaders.services = loadServices;
}

async function loadServices() {
  const [catalogue, providers, sources] = await Promise.all([
    get("/services"), get("/providers?active=true"), get("/voucher-sources"), lookups(),
  ]);
  svc.catalogue = catalogue; svc.providers = providers; svc.sources = sources;
  // Each provider's agreements: dispatch offers those contracted for the order's service.
  const [agreed, staffed] = await Promise.all([
    Promise.all(providers.map((p) => get(`/providers/${encodeURIComponent(p.id)}/agreements`))),
    Promise.all(providers.map((p) => get(`/providers/${encodeURIComponent(p.id)}/workers`))),
  ]);
  svc.agreements = new Map(providers.map((p, i) => [p.id, agreed[i]]));
  svc.workers = new Map(staffed.flat().map((w) => [w.id, w]));
  $("#v-catalogue tbody").replaceChildren(...catalogue.map((s) => h("tr", { class: s.active ? "" : "muted" },
    h("td", { class: "mono" }, s.code),
    h("td", {}, pick(s.name_zh, s.name_en)),
    h("td", {}, label("scat", s.category)),
    h("td", { class: "nowrap" }, `${yuan(s.unit_price_fen)} / ${label("unit", s.unit)}`),
    h("td", { class: "nowrap" }, [s.share_fen.free, s.share_fen.low_cost, s.share_fen.paid].map(yuan).join(" / ")),
  )));
  const fs = $("#v-agree").elements.funding_source;
  fs.replaceChildren(fs.options[0], ...sources.map((s) => h("option", { value: s.id }, pick(s.name_zh, s.name_en))));
  await loadOrders();
}

const SHOWN_ORDERS = 200;

// The desk's queue by default (new applications, then what waits for dispatch, the next visit
// first); one state when chosen (the latest first). The API lists by scheduled time, oldest
// first, one state per call: the page asks per state and sorts.
async function loadOrders() {
  const state = $("#v-filter").elements.state.value;
  const states = state ? [state] : ["applied", "agreed"];
  const lists = await Promise.all(states.map((s) => get(`/service-orders?state=${s}&limit=1000`)));
  const when = (o) => o.scheduled_at || o.created_at;
  const rows = lists.flat().sort(state
    ? (a, b) => (when(a) < when(b) ? 1 : -1)
    : (a, b) => states.indexOf(a.state) - states.indexOf(b.state) ||
      (a.state === "applied" ? (a.created_at < b.created_at ? 1 : -1) : (when(a) > when(b) ? 1 : -1)));
  const msg = msgFor($("#v-filter"));
  msg.textContent = rows.length > SHOWN_ORDERS ? t("v.shown", { n: SHOWN_ORDERS, of: rows.length }) : "";
  $("#v-orders tbody").replaceChildren(...(rows.length ? rows.slice(0, SHOWN_ORDERS).map((o) => h("tr", {},
    h("td", {}, elderName(o.elder_id)),
    h("td", {}, label("scat", o.category)),
    h("td", {}, label("ostate", o.state), o.recurrence ? h("div", { class: "muted small" }, t("v.recurring_short")) : null),
    h("td", { class: "nowrap" }, fmtTime(when(o))),
    h("td", {}, h("button", {
      type: "button", onclick: () => openOrder(o.id).catch((err) => showProblems(msg, err)),
      "aria-label": t("v.open_named", { name: elderName(o.elder_id), what: label("scat", o.category) }),
    }, t("g.open"))),
  )) : [h("tr", {}, h("td", { colspan: 5, class: "muted" }, t("v.no_orders")))]));
}

async function findElderFor(form) {
  const q = new URLSearchParams({ limit: "50" });
  const name = form.elements.elder_q.value.trim();
  if (name) q.set("q", name);
  const found = await get(`/care/elders?${q}`);
  const sel = form.elements.elder_id;
  sel.replaceChildren(
    h("option", { value: "" }, found.length ? t("v.pick_one", { n: found.length }) : t("g.none")),
    ...found.map((e) => h("option", { value: e.id, "data-lat": e.address?.coordinates?.lat ?? "", "data-lon": e.address?.coordinates?.lon ?? "" },
      `${e.name} · ${e.address_line}`)),
  );
  if (found.length === 1) { sel.value = found[0].id; prefillHome(form); }
  sel.focus();
}

function prefillHome(form) {
  const opt = form.elements.elder_id.selectedOptions[0];
  if (opt && opt.dataset.lat) {
    form.elements.lat.value = opt.dataset.lat;
    form.elements.lon.value = opt.dataset.lon;
  }
}

// From the registry's "apply for a service": the elder chosen, the home filled in.
function servicesFor(e) {
  const form = $("#v-apply");
  form.elements.elder_q.value = e.name;
  form.elements.elder_id.replaceChildren(h("option", {
    value: e.id, "data-lat": e.address?.coordinates?.lat ?? "", "data-lon": e.address?.coordinates?.lon ?? "",
  }, `${e.name} · ${e.address_line}`));
  form.elements.elder_id.value = e.id;
  prefillHome(form);
}

async function applyForService(form, out) {
  const lat = num(form, "lat"), lon = num(form, "lon");
  const body = {
    elder_id: form.elements.elder_id.value || undefined,
    category: form.elements.category.value,
    request: text(form, "request"),
    applied_by: compact({ role: form.elements.applied_role.value, id: text(form, "applied_id") }),
    home: lat === undefined && lon === undefined ? undefined : compact({ lat, lon }),
  };
  const o = await post("/service-orders", compact(body));
  showOk(out, t("v.applied", { name: elderName(o.elder_id) }));
  form.elements.request.value = "";
  await loadOrders();
  await openOrder(o.id);
}

async function openOrder(id, said) {
  const o = await get(`/service-orders/${encodeURIComponent(id)}`);
  svc.order = o;
  const art = $("#v-order");
  art.classList.remove("hidden");
  if (said) showOk($("#v-order-msg"), said);
  else $("#v-order-msg").replaceChildren();
  $("#v-order-title").textContent = t("v.order_title", { name: elderName(o.elder_id), what: label("scat", o.category), state: label("ostate", o.state) });
  const service = svc.catalogue.find((s) => s.code === o.service_code);
  const provider = svc.providers.find((p) => p.id === o.provider_id);
  $("#v-order-facts").replaceChildren(
    fact(t("v.order_id"), h("span", { class: "mono" }, o.id)),
    fact(t("v.elder"), elderName(o.elder_id)),
    fact(t("field.request"), o.request),
    fact(t("v.applied_by"), applicant(o.applied_by)),
    fact(t("v.service"), service ? pick(service.name_zh, service.name_en) : o.service_code),
    fact(t("field.tier"), o.tier ? label("tier", o.tier) : null),
    fact(t("v.price"), o.total_fen !== null ? t("v.price_value", {
      total: yuan(o.total_fen), subsidy: yuan(o.subsidy_fen), own: yuan(o.elder_share_fen),
    }) : null),
    fact(t("field.scheduled_at"), o.scheduled_at ? fmtTime(o.scheduled_at) : o.recurrence ? t("v.recurring") : null),
    fact(t("field.provider_id"), provider ? provider.name : o.provider_id),
    fact(t("field.worker_id"), o.worker_id ? svcName(o.worker_id) : null),
    fact(t("v.check_in"), o.check_in_at ? `${fmtTime(o.check_in_at)}${o.check_in_far ? ` ${t("v.far")}` : ""}` : null),
    fact(t("v.check_out"), o.check_out_at ? fmtTime(o.check_out_at) : null),
  );
  $("#v-order-log").replaceChildren(...o.log.map((s) => h("li", {},
    h("strong", {}, label("oaction", s.action)), " ",
    h("span", { class: "muted" }, `${fmtTime(s.at)} · ${label("applicant", s.actor_role)} ${svcName(who(s.actor_id))}`),
    s.detail ? h("div", { class: "small" }, s.detail.replace(/\b(?:pv|wk)_[A-Za-z0-9]+/g, svcName)) : null,
  )));
  // The forms for the next step: agree when applied, dispatch when agreed (a recurring order is
  // dispatched visit by visit), cancel before the visit began.
  const agree = $("#v-agree"), dispatch = $("#v-dispatch"), cancel = $("#v-cancel");
  agree.classList.toggle("hidden", o.state !== "applied");
  dispatch.classList.toggle("hidden", o.state !== "agreed" || !!o.recurrence);
  cancel.classList.toggle("hidden", !["applied", "agreed", "dispatched", "accepted"].includes(o.state));
  for (const f of [agree, dispatch, cancel]) {
    f.reset();
    $(".form-msg", f).replaceChildren();
  }
  if (o.state === "applied") {
    const fitting = svc.catalogue.filter((s) => s.active && s.category === o.category);
    agree.elements.service_code.replaceChildren(...(fitting.length ? fitting : svc.catalogue.filter((s) => s.active))
      .map((s) => h("option", { value: s.code }, `${pick(s.name_zh, s.name_en)}（${yuan(s.unit_price_fen)}/${label("unit", s.unit)}）`)));
  }
  if (o.state === "agreed" && !o.recurrence) {
    offerProviders(o);
    await loadWorkers();
  }
  $("#v-order-title").focus();
}

// A provider's or worker's name for its id (the id itself when unknown).
function svcName(id) {
  const p = svc.providers.find((x) => x.id === id);
  if (p) return p.name;
  const w = svc.workers.get(id);
  return w ? w.name : id;
}

// "family:女儿" (role:who, as the API gives it) -> "家属 女儿".
function applicant(text_) {
  const i = text_.indexOf(":");
  return i < 0 ? text_ : `${label("applicant", text_.slice(0, i))} ${who(text_.slice(i + 1))}`;
}

// The providers with an agreement in force for the order's service on the visit's day first;
// the others shown but not to be chosen (the API would refuse them).
function offerProviders(o) {
  const d = o.scheduled_at ? new Date(o.scheduled_at) : new Date();
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const fits = (p) => (svc.agreements.get(p.id) || []).some((a) => a.service_code === o.service_code &&
    a.valid_from <= day && (!a.valid_until || a.valid_until >= day));
  const yes = svc.providers.filter(fits), no = svc.providers.filter((p) => !fits(p));
  const select = $("#v-dispatch").elements.provider_id;
  select.replaceChildren(
    ...yes.map((p) => h("option", { value: p.id }, p.name)),
    ...no.map((p) => h("option", { value: p.id, disabled: true }, t("v.no_agreement", { name: p.name }))),
  );
  if (!yes.length) showOk($("#v-order-msg"), t("v.nobody_contracted"));
}

async function loadWorkers() {
  const form = $("#v-dispatch");
  const pid = form.elements.provider_id.value;
  const workers = pid ? await get(`/providers/${encodeURIComponent(pid)}/workers`) : [];
  form.elements.worker_id.replaceChildren(...workers.filter((w) => w.active).map((w) => h("option", { value: w.id }, w.name)));
}

// One step on the open order; a refusal stays on the step's form (see `submitting`).
async function orderStep(step, body, okKey) {
  $("#v-order-msg").replaceChildren();
  const o = await post(`/service-orders/${encodeURIComponent(svc.order.id)}/${step}`, body);
  await openOrder(o.id, t(okKey));
  await loadOrders();
}

function agreeOrder(form) {
  return orderStep("agree", compact({
    service_code: form.elements.service_code.value || undefined,
    quantity: num(form, "quantity"),
    funding_source: text(form, "funding_source"),
    tier: text(form, "tier"),
    scheduled_at: localToRfc3339(form.elements.scheduled_at.value) || undefined,
  }), "v.agreed");
}

function dispatchOrder(form) {
  return orderStep("dispatch", compact({
    provider_id: form.elements.provider_id.value || undefined,
    worker_id: form.elements.worker_id.value || undefined,
  }), "v.dispatched");
}

function cancelOrder(form) {
  return orderStep("cancel", compact({ reason: text(form, "reason") }), "v.cancelled");
}

// --- points -------------------------------------------------------------------------------------

const pts = { members: [] };

function setupPoints() {
  const claim = $("#p-claim");
  for (const r of claim.querySelectorAll("input[name=kind]")) {
    r.addEventListener("change", () => {
      const award = claim.elements.kind.value === "award";
      for (const el of claim.querySelectorAll(".k-service")) el.classList.toggle("hidden", award);
      for (const el of claim.querySelectorAll(".k-award")) el.classList.toggle("hidden", !award);
    });
  }
  claim.addEventListener("submit", (ev) => {
    ev.preventDefault();
    submitting(claim, (out) => enterPoints(claim, out));
  });
  $("#p-balance").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    submitting(form, (out) => showBalance(form, out));
  });
  $("#p-queue-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    loadQueue().catch((err) => showProblems($("#p-queue-filter + .form-msg"), err));
  });
  loaders.points = loadPoints;
}

function memberName(id) {
  const r = names.responders && names.responders.get(id);
  if (r) return r.name;
  return elderName(id);
}

async function loadPoints() {
  const [policy, accounts] = await Promise.all([
    get("/points/policy"), get("/points/accounts?kind=member"), lookups(),
  ]);
  pts.members = accounts.filter((a) => a.member_id)
    .sort((a, b) => memberName(a.member_id).localeCompare(memberName(b.member_id), "zh-CN"));
  const options = () => pts.members.map((a) => h("option", { value: a.member_id },
    `${memberName(a.member_id)} · ${label("rrole", names.responders.get(a.member_id)?.role || a.member_type)} · ${t("p.balance_short", { n: a.balance })}`));
  $("#p-claim").elements.member_id.replaceChildren(...options());
  $("#p-balance").elements.member.replaceChildren(...options());
  $("#p-claim").elements.category.replaceChildren(...policy.service_categories.map((c) => h("option", { value: c }, label("scat", c))));
  const now = nowLocal();
  $("#p-claim").elements.ended_at.value = now;
  await loadQueue();
}

async function enterPoints(form, out) {
  const award = form.elements.kind.value === "award";
  const member = form.elements.member_id.value || undefined;
  let res;
  if (award) {
    res = await post("/points/claims/award", compact({
      member_id: member, points: text(form, "points"), reason: text(form, "reason"),
    }), { "Idempotency-Key": newKey() });
  } else {
    res = await post("/points/claims/service", compact({
      member_id: member,
      category: form.elements.category.value,
      started_at: localToRfc3339(form.elements.started_at.value) || undefined,
      ended_at: localToRfc3339(form.elements.ended_at.value) || undefined,
      service_ref: text(form, "service_ref"),
      reason: text(form, "reason"),
    }), { "Idempotency-Key": newKey() });
  }
  const c = res.claim;
  const lines = [t("p.claimed", { name: memberName(c.member_id), n: c.points })];
  if (c.rounding && c.minutes !== null) {
    lines.push(t("p.rounded", { m: c.minutes, rule: pick(c.rounding.name_zh, c.rounding.name_en) }));
  }
  showOk(out, ...lines);
  for (const n of ["points", "reason", "service_ref"]) form.elements[n].value = "";
  await loadQueue();
}

async function showBalance(form, out) {
  const id = form.elements.member.value;
  if (!id) return;
  const s = await get(`/points/accounts/${encodeURIComponent(id)}/statement`);
  out.replaceChildren();
  $("#p-statement").classList.remove("hidden");
  $("#p-sum").replaceChildren(
    h("div", {}, h("dt", {}, t("p.member")), h("dd", {}, memberName(id))),
    h("div", {}, h("dt", {}, t("p.balance")), h("dd", {}, s.closing_balance)),
    h("div", {}, h("dt", {}, t("p.pending_points")), h("dd", {}, s.pending_points)),
  );
  $("#p-lines tbody").replaceChildren(...(s.lines.length ? s.lines.slice().reverse().map((l) => h("tr", {},
    h("td", { class: "nowrap" }, fmtTime(l.at)),
    h("td", {}, `${label("txn", l.kind)} · ${label("scat", l.category)}`, h("div", { class: "muted small" }, l.reason)),
    h("td", { class: l.units < 0 ? "neg" : "pos" }, l.units > 0 ? `+${l.points}` : l.points),
    h("td", {}, l.balance_after),
  )) : [h("tr", {}, h("td", { colspan: 4, class: "muted" }, t("p.no_lines")))]));
}

async function loadQueue() {
  const status = $("#p-queue-filter").elements.status.value;
  const rows = await get(`/points/claims?status=${encodeURIComponent(status)}&limit=200`);
  const out = $("#p-queue-filter + .form-msg");
  out.textContent = rows.length ? t("p.queue_count", { n: rows.length }) : t("p.queue_empty");
  const act = async (c, step, body, keyed) => {
    try {
      await post(`/points/claims/${encodeURIComponent(c.id)}/${step}`, body, keyed ? { "Idempotency-Key": newKey() } : undefined);
      await loadQueue();
      showOk(out, t(`p.done_${step}`, { name: memberName(c.member_id), n: c.points }));
    } catch (err) { showProblems(out, err); }
  };
  $("#p-queue tbody").replaceChildren(...rows.map((c) => {
    const reason = h("input", { type: "text", maxlength: 500, class: "hidden", "aria-label": t("p.refuse_reason") });
    const refuse = h("button", { type: "button" }, t("p.refuse"));
    refuse.addEventListener("click", () => {
      if (reason.classList.contains("hidden")) {
        reason.classList.remove("hidden");
        refuse.textContent = t("p.refuse_confirm");
        reason.focus();
        return;
      }
      act(c, "refuse", { reason: reason.value.trim() }, false);
    });
    const next = c.status === "pending"
      ? h("button", { type: "button", onclick: () => act(c, "verify", {}, true) }, t("p.verify"))
      : h("button", { type: "button", onclick: () => act(c, "post", {}, true) }, t("p.post"));
    return h("tr", {},
      h("td", {}, memberName(c.member_id)),
      h("td", {}, c.category === c.source ? label("csource", c.source)
        : `${label("csource", c.source)} · ${label("scat", c.category)}`,
        h("div", { class: "muted small" }, c.reason || c.ref || "")),
      h("td", {}, c.points),
      h("td", { class: "small" }, `${who(c.requested_by)} · ${fmtTime(c.requested_at)}`),
      h("td", {}, h("div", { class: "row-actions" }, next, refuse, reason)),
    );
  }));
}

// --- start --------------------------------------------------------------------------------------

async function main() {
  const me = await requireSession();
  await loadI18n("office");
  $("#who").textContent = t("office.who", { name: me.username, role: label("role", me.role) });
  $("#lang").addEventListener("click", () => setLang(en() ? "zh-CN" : "en"));
  $("#signout").addEventListener("click", () => signOut());
  setupTabs();
  setupQuarantine();
  setupSuppressions();
  setupReports();
  setupRegistry();
  setupServices();
  setupPoints();
  selectTab(location.hash.slice(1) || TABS[0], false);
  document.body.dataset.ready = "true"; // for the browser tests: the page has started
}

main().catch((err) => {
  if (err && err.message === "signed out") return; // on the way to /login
  const out = document.getElementById("page-msg");
  if (out) out.textContent = err instanceof ApiError ? explain(err).lines.join(" ") : String(err);
});
