// Translations for the pages: Chinese (zh-CN) first, English switchable.
// Strings live in /static/i18n/<name>.json as {"zh-CN": {key: text}, "en": {key: text}};
// `common` is always loaded. Markup names its strings with data-i18n="key" (text),
// data-i18n-title, data-i18n-placeholder and data-i18n-aria-label (attributes).
// The language: ?lang=en in the address, else the choice made on this device (the switch; kept
// in localStorage, "shouwang.lang"), else the signed-in account's own (GET /api/v1/session
// `language`), else Chinese.
const KEY = "shouwang.lang";
export const LANGS = ["zh-CN", "en"];
let lang = "zh-CN";
let dict = {};

// The account's language, or null (signed out, as on the sign-in page, or the server unreachable).
async function accountLang() {
  try {
    const r = await fetch("/api/v1/session", { credentials: "same-origin", cache: "no-store" });
    if (!r.ok) return null;
    const s = await r.json();
    return LANGS.includes(s?.language) ? s.language : null;
  } catch (e) {
    return null;
  }
}

async function pick() {
  const q = new URLSearchParams(location.search).get("lang");
  if (LANGS.includes(q)) { localStorage.setItem(KEY, q); return q; }
  const kept = localStorage.getItem(KEY);
  if (LANGS.includes(kept)) return kept;
  // Not kept: nobody chose on this device, so the account's setting holds (an English-speaking
  // volunteer was shown the Chinese page although their account says "en").
  return (await accountLang()) || "zh-CN";
}

export async function loadI18n(...names) {
  lang = await pick();
  document.documentElement.lang = lang;
  const all = ["common", ...names];
  const books = await Promise.all(all.map(async (n) => {
    const r = await fetch(`/static/i18n/${n}.json`, { cache: "no-cache" });
    if (!r.ok) throw new Error(`translations ${n}: ${r.status}`);
    return r.json();
  }));
  dict = Object.assign({}, ...books.map((b) => b[lang] || {}));
  applyI18n(document);
  return lang;
}

export function currentLang() { return lang; }

export function setLang(next) {
  if (!LANGS.includes(next)) return;
  localStorage.setItem(KEY, next);
  const u = new URL(location.href);
  u.searchParams.delete("lang");
  // replaceState + reload, not location.replace(u): with a #fragment in the address (a page's
  // tab), replacing it by the same address is a same-document jump and nothing would reload.
  history.replaceState(history.state, "", u.toString());
  location.reload();
}

// t("key", {n: 3}) -> the text with {n} filled in; an unknown key shows itself (and is easy to
// spot on screen and in the tests).
export function t(key, vars) {
  let s = Object.prototype.hasOwnProperty.call(dict, key) ? dict[key] : key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.split(`{${k}}`).join(String(v));
  return s;
}

export function applyI18n(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const attr of ["title", "placeholder", "aria-label"]) {
    const data = "i18n" + attr.split("-").map((p) => p[0].toUpperCase() + p.slice(1)).join("");
    for (const el of root.querySelectorAll(`[data-i18n-${attr}]`)) {
      el.setAttribute(attr, t(el.dataset[data]));
    }
  }
}

// An RFC 3339 time's offset from UTC in ms ("...+08:00" -> 8 h, "...Z" -> 0); null without one.
export function isoOffsetMs(iso) {
  const m = /(?:([+-])(\d\d):(\d\d)|Z)$/.exec(iso);
  if (!m) return null;
  return m[1] ? (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3])) * 60000 : 0;
}

// Times and durations in the page's language and the station's clock. The gateway writes every
// time with the station's offset: shown at that offset, not in the browser's zone, which may be
// another (a laptop on UTC showed 12:15:00 for a press at 20:15 in Beijing, with no offset).
export function fmtTime(iso) {
  if (!iso) return "—";
  const offset = isoOffsetMs(iso);
  if (offset === null) return new Date(iso).toLocaleString(lang, { hour12: false });
  // The station's wall clock, formatted as UTC's: Intl takes no offset for a zone everywhere.
  const wall = new Date(Date.parse(iso) + offset);
  return wall.toLocaleString(lang, { hour12: false, timeZone: "UTC" });
}

export function fmtAge(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = String(m).padStart(2, "0"), ss = String(r).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${m}:${ss}`;
}
