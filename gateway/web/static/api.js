// The pages' one way to the JSON API: same-origin fetch with the session cookie, the CSRF
// token on every change, and a sign-in when the session has ended.
let csrf = null;

export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail_zh || body.detail)) ? JSON.stringify(body.detail_zh || body.detail) : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

function toLogin() {
  const next = encodeURIComponent(location.pathname + location.search);
  location.assign(`/login?next=${next}`);
}

// The signed-in user ({username, role, person_id, csrf_token, ...}); null when signed out.
export async function session() {
  const r = await fetch("/api/v1/session", { credentials: "same-origin", cache: "no-store" });
  if (r.status === 401) return null;
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
  const s = await r.json();
  csrf = s.csrf_token;
  return s;
}

export async function requireSession() {
  const s = await session();
  if (!s) { toLogin(); throw new Error("signed out"); }
  return s;
}

// `extra`: more request headers (e.g. the Idempotency-Key the points API asks for).
export async function api(method, path, body, extra) {
  const headers = { Accept: "application/json", ...(extra || {}) };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD") {
    if (!csrf) await session();
    headers["X-CSRF-Token"] = csrf;
  }
  const r = await fetch(`/api/v1${path}`, {
    method, headers, credentials: "same-origin", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401) { toLogin(); throw new ApiError(401, null); }
  const data = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body, extra) =>
  api("POST", path, body === undefined ? {} : body, extra);
export const put = (path, body) => api("PUT", path, body);
export const del = (path) => api("DELETE", path);

export async function signOut() {
  await api("DELETE", "/session");
  location.assign("/login");
}
