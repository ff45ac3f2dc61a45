// The Worker of tests/coordinator.workerd.test.mjs, run as two scripts (two
// isolates, `ISOLATE` "a" and "b"): one SwrCache per setting, its upstream
// calls going to the test's counting origin (env.ORIGIN). Each request tells
// the test it arrived (env.ARRIVED) once its lookup has started.
//
//   /get?key=K&coordinator=SWRE_COORDINATOR|BROKEN|MISSING|HUNG|none
//       &kv=shared|own&timeout=ms&wait=0&buckets=n&linger=1
//   /held?buckets=n   what the coordinator's objects hold, summed
//
// `kv=own` reads and writes a KV namespace of this isolate's own: nothing one
// isolate stores is seen by the other, as in production while KV propagates
// (up to about 60 s). `wait=0` gives the lookup no `waitUntil`, so workerd
// cancels its background refresh once the response is sent; `linger=1`
// holds the response until the test says (env.ARRIVED answers).
import { SwrCache } from "../package/src/workerd.js";

/** Tells this module instance (isolate) from another (made on the first request: no randomness at global scope). */
let instance;
const caches = new Map();

function cacheFor(env, coordinator, kv, timeout, buckets) {
  const name = `t-${coordinator}-${kv}-${timeout}-${buckets}`;
  const namespace = env[coordinator];
  if (!caches.has(name)) {
    caches.set(name, SwrCache.open({
      name,
      storage: kv === "own" ? env.OWN_KV : env.SHARED_KV,
      fresh: 1_000,
      stale: 600_000,
      expired: 3_600_000,
      refreshTimeout: timeout,
      coordinator: coordinator === "none" ? undefined : buckets === undefined ? namespace : { namespace, buckets },
    }));
  }
  return caches.get(name);
}

/** The flights and waiters of the `n` objects of `namespace`, summed. */
async function held(namespace, n) {
  const all = await Promise.all(Array.from({ length: n }, (_, i) => namespace.get(namespace.idFromName(`swre-${i}`)).inspect()));
  return all.reduce((s, h) => ({ flights: s.flights + h.flights, waiters: s.waiters + h.waiters }), { flights: 0, waiters: 0 });
}

export default {
  async fetch(request, env, ctx) {
    instance ??= crypto.randomUUID();
    const url = new URL(request.url);
    const q = url.searchParams;
    if (url.pathname === "/held") return Response.json(await held(env.SWRE_COORDINATOR, Number(q.get("buckets"))));
    const key = q.get("key");
    const buckets = q.has("buckets") ? Number(q.get("buckets")) : undefined;
    const cache = await cacheFor(env, q.get("coordinator") ?? "SWRE_COORDINATOR", q.get("kv") ?? "shared", Number(q.get("timeout") ?? 10_000), buckets);
    const options = q.get("wait") === "0" ? undefined : { waitUntil: ctx.waitUntil.bind(ctx) };
    const lookup = cache.get(key, async (fc) => {
      const res = await env.ORIGIN.fetch(`http://origin.test/${encodeURIComponent(key)}`, {
        headers: { "x-isolate": env.ISOLATE },
        signal: fc.signal,
      });
      if (!res.ok) throw new Error(`origin answered ${res.status}`);
      const fresh = res.headers.get("x-fresh");
      if (fresh !== null) fc.setTtl(Number(fresh));
      return res.json();
    }, options);
    await env.ARRIVED.fetch(`http://arrived.test/${encodeURIComponent(key)}`);
    const body = { isolate: env.ISOLATE, instance };
    try {
      const r = await lookup;
      Object.assign(body, { ok: true, value: r.value, status: r.status });
    } catch (e) {
      Object.assign(body, { ok: false, kind: e?.kind, message: String(e?.message ?? e) });
    }
    if (q.get("linger") === "1") await env.ARRIVED.fetch(`http://arrived.test/${encodeURIComponent(key)}?linger=1`);
    const s = cache.stats();
    body.stats = Object.fromEntries(Object.entries(s).filter(([k]) => k.startsWith("coordinator") || k === "upstreamCalls"));
    return Response.json(body);
  },
};
