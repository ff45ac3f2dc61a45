// A Cloudflare Worker that fronts a slow upstream with stale-while-revalidate.
//
//   /cache/<path>  SwrCache over the Workers Cache API
//   /kv/<path>     SwrCache over a KV namespace (env.KV) through a JS store
//
// Background refreshes are handed to ctx.waitUntil, so they finish after the
// response has been sent. Every response carries an RFC 9211 Cache-Status.
import { SwrCache } from "../package/src/workerd.js";

const caches_ = new Map();

function ms(value, fallback) {
  const n = Number(value);
  return Number.isFinite(n) ? n : fallback;
}

function cacheFor(kind, env) {
  if (!caches_.has(kind)) {
    caches_.set(kind, SwrCache.open({
      name: `swr-${kind}`,
      storage: kind === "kv" ? env.KV : "cache",
      fresh: ms(env.FRESH_MS, 5_000),
      stale: ms(env.STALE_MS, 60_000),
      expired: ms(env.EXPIRED_MS, 3_600_000),
      refreshTimeout: ms(env.REFRESH_TIMEOUT_MS, 10_000),
    }));
  }
  return caches_.get(kind);
}

// RFC 9211: hits say `hit`, everything else says why it went forward.
function cacheStatus(result) {
  const ttl = Math.round((result.freshUntil - Date.now()) / 1000);
  switch (result.status) {
    case "hit": return `swre; hit; ttl=${ttl}; detail=hit`;
    case "stale": return `swre; hit; ttl=${ttl}; detail=stale`;
    case "expired": return `swre; hit; ttl=${ttl}; detail=expired`;
    case "miss": return `swre; fwd=uri-miss; stored; detail=miss`;
    case "fallback": return `swre; fwd=stale; fwd-status=502; detail=fallback`;
    default: return `swre; detail=${result.status}`;
  }
}

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const kind = url.pathname.startsWith("/kv/") ? "kv" : "cache";
    const cache = await cacheFor(kind, env);
    try {
      const result = await cache.get(
        url.pathname,
        async () => {
          const upstream = await env.UPSTREAM.fetch(`https://upstream.internal${url.pathname}`);
          if (!upstream.ok) throw new Error(`upstream answered ${upstream.status}`);
          return await upstream.text();
        },
        { waitUntil: ctx.waitUntil.bind(ctx) },
      );
      return new Response(result.value, {
        headers: {
          "content-type": "text/plain; charset=utf-8",
          "cache-status": cacheStatus(result),
          "age": String(Math.floor(result.age / 1000)),
        },
      });
    } catch (error) {
      return new Response(`upstream unavailable: ${error.message}`, {
        status: 502,
        headers: { "cache-status": "swre; fwd=uri-miss; fwd-status=502; detail=error" },
      });
    }
  },
};
