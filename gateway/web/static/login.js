// The sign-in page: user name and password to POST /api/v1/session (which sets the session
// cookie), then on to `?next=` (only ever a path on this site) or to `/`, which sends each role
// to its page. `?signout=1` signs out first. Chinese first; the button switches to English.
import { loadI18n, t, setLang, currentLang } from "/static/i18n.js";
import { api, session } from "/static/api.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// A path on this site, or null: never another origin (`//host`, `/\host`, `https:`), never
// the sign-in page itself.
export function safeNext(raw) {
  if (!raw || raw.length > 500) return null;
  if (!raw.startsWith("/") || raw.startsWith("//") || raw.startsWith("/\\")) return null;
  let u;
  try { u = new URL(raw, location.origin); } catch { return null; }
  if (u.origin !== location.origin || u.pathname === "/login") return null;
  return u.pathname + u.search + u.hash;
}

function destination() {
  return safeNext(params.get("next")) || "/";
}

function showError(key, vars) {
  $("error").textContent = key ? t(key, vars) : "";
}

async function signIn(event) {
  event.preventDefault();
  const username = $("username").value.trim();
  const password = $("password").value;
  if (!username || !password) { showError("login.error.missing"); return; }
  const button = $("submit");
  button.disabled = true;
  button.textContent = t("login.submitting");
  showError(null);
  let r;
  try {
    r = await fetch("/api/v1/session", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      credentials: "same-origin",
      cache: "no-store",
      body: JSON.stringify({ username, password }),
    });
  } catch {
    r = null;
  }
  button.disabled = false;
  button.textContent = t("login.submit");
  if (r === null) { showError("login.error.network"); return; }
  if (r.ok) { location.assign(destination()); return; }
  const body = await r.json().catch(() => ({}));
  if (r.status === 401) {
    showError("login.error.bad_credentials");
    $("password").value = "";
    $("password").focus();
  } else if (r.status === 429) {
    const s = Number(r.headers.get("Retry-After")) || body.retry_after_s || 60;
    showError("login.error.locked", { s });
  } else if (r.status === 403) {
    showError("login.error.forbidden");
  } else if (r.status === 422) {
    showError("login.error.missing");
  } else {
    showError("login.error.server", { status: r.status });
  }
}

async function main() {
  await loadI18n("login");
  $("lang").addEventListener("click", () => setLang(currentLang() === "zh-CN" ? "en" : "zh-CN"));
  $("show").addEventListener("change", (e) => {
    $("password").type = e.target.checked ? "text" : "password";
  });
  $("form").addEventListener("submit", signIn);
  document.body.dataset.ready = "true"; // for the browser tests: the form is live
  let who = null;
  try { who = await session(); } catch { who = null; }
  if (params.get("signout") === "1") {
    if (who && who.via === "session") {
      try { await api("DELETE", "/session"); } catch { /* ended already */ }
    }
    history.replaceState(null, "", "/login");
    const notice = $("notice");
    notice.textContent = t("login.signed_out");
    notice.classList.remove("hidden");
    return;
  }
  if (who && who.via === "session") location.replace(destination());
}

main();
