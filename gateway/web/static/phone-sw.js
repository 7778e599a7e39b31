// The phone page's service worker (served as /phone/sw.js, scope /phone): it makes the page
// installable and lets it open from the home screen while the network is slow to come back.
// Network first, always: a call must never be shown from a stale copy. What it keeps is the
// page's own shell (its HTML, scripts, styles, translations, icons), for when the network is
// down; the API, and above all the live stream, is never touched.
const CACHE = "shouwang-phone-v1";

self.addEventListener("install", () => self.skipWaiting());

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const key of await caches.keys()) if (key !== CACHE) await caches.delete(key);
    await self.clients.claim();
  })());
});

function shell(url) {
  return url.origin === self.location.origin
    && (url.pathname === "/phone" || url.pathname.startsWith("/static/"));
}

self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== "GET" || !shell(url)) return; // the API and the stream go straight through
  event.respondWith((async () => {
    try {
      const res = await fetch(req);
      // Only a real page: a redirect (to the sign-in) or an error is not kept.
      if (res.ok && !res.redirected && res.type === "basic") {
        const copy = res.clone();
        caches.open(CACHE).then((c) => c.put(req, copy)).catch(() => {});
      }
      return res;
    } catch (err) {
      const kept = await caches.match(req);
      if (kept) return kept;
      throw err;
    }
  })());
});

// A tap on a call's notification brings the page to the front (or opens it).
self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil((async () => {
    const open = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const page = open.find((c) => new URL(c.url).pathname === "/phone");
    if (page) return page.focus();
    return self.clients.openWindow("/phone");
  })());
});
