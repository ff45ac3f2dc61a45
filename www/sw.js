// A service worker that answers the page's API requests from swre's HTTP
// cache: each response is kept for the phases its own Cache-Control gives
// (max-age, stale-while-revalidate, stale-if-error), persisted in the Cache
// API, revalidated in the background, and labelled with an RFC 9211
// Cache-Status. Register it as a module: see sw.html.
import { SwrCache } from "./package/src/web.js";

// A private cache: one user's (RFC 9111 §3: `private` responses are kept).
const cache = SwrCache.open({ name: "swre-sw", storage: "cache" });

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin || !url.pathname.startsWith("/api/")) return;
  event.respondWith(
    cache.then((c) => c.fetch(event.request, { mode: "private", waitUntil: (p) => event.waitUntil(p) })),
  );
});
