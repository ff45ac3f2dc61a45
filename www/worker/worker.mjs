// A Cloudflare Worker that fronts an origin with HTTP caching by the
// standards: each response is cached for the phases its own headers give
// (`max-age` / `s-maxage`, `stale-while-revalidate`, `stale-if-error`;
// RFC 9111, RFC 5861), revalidated with its ETag or Last-Modified, kept
// per `Vary`, invalidated by a successful POST / PUT / PATCH / DELETE to its
// URL and by RFC 9875 cache groups, and labelled with an RFC 9211
// `Cache-Status` that swre-core renders.
//
//   /cache/<path>  SwrCache over the Workers Cache API
//   /kv/<path>     SwrCache over a KV namespace (env.KV) through a JS store
//
// Background refreshes are handed to ctx.waitUntil, so they finish after the
// response has been sent.
import { SwrCache } from "../package/src/workerd.js";

const caches_ = new Map();

function cacheFor(kind, env) {
  if (!caches_.has(kind)) {
    caches_.set(kind, SwrCache.open({
      name: `swr-${kind}`,
      storage: kind === "kv" ? env.KV : "cache",
      // For responses that say nothing of their freshness.
      fresh: 5_000,
      stale: 60_000,
      expired: 3_600_000,
      refreshTimeout: 10_000,
    }));
  }
  return caches_.get(kind);
}

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const kind = url.pathname.startsWith("/kv/") ? "kv" : "cache";
    const cache = await cacheFor(kind, env);
    const origin = new Request(`https://upstream.internal${url.pathname}${url.search}`, request);
    try {
      return await cache.fetch(origin, {
        fetch: (r) => env.UPSTREAM.fetch(r),
        waitUntil: ctx.waitUntil.bind(ctx),
      });
    } catch (error) {
      // The origin could not be reached and nothing stored stood in.
      return new Response(`upstream unavailable: ${error.message}`, {
        status: 502,
        headers: { "cache-status": "swre; fwd=miss; detail=unreachable" },
      });
    }
  },
};
