// The JS benchmarks' workloads, run the same way in Node and in Chromium:
// swre's SwrCache beside npm lru-cache's fetch() (allowStale) and a plain
// Map-based stale-while-revalidate. Each returns nanoseconds or milliseconds
// measured here; nothing is asserted (this is not a test).

/** A minimal SWR over a Map: what a user would write by hand. */
export function mapSwr(freshMs) {
  const m = new Map();
  const inflight = new Map();
  const load = (k, f) => {
    let p = inflight.get(k);
    if (p === undefined) {
      p = Promise.resolve(f()).then((v) => {
        m.set(k, { v, until: Date.now() + freshMs });
        inflight.delete(k);
        return v;
      });
      inflight.set(k, p);
    }
    return p;
  };
  return async (k, f) => {
    const e = m.get(k);
    if (e !== undefined) {
      if (Date.now() >= e.until) load(k, f);
      return e.v;
    }
    return load(k, f);
  };
}

const now = () => performance.now();

/** ns per awaited warm hit over `n` calls (after a warm-up). */
export async function warmHit(get, n) {
  for (let i = 0; i < 100_000; i++) await get();
  const t = now();
  for (let i = 0; i < n; i++) await get();
  return ((now() - t) * 1e6) / n;
}

/** ms for `callers` concurrent gets of one cold key with a 5 ms fetcher (median of `rounds`). */
export async function stampede(get, callers, rounds) {
  const times = [];
  for (let r = 0; r < rounds; r++) {
    const key = `cold-${r}-${Math.random()}`;
    const fetcher = () => new Promise((resolve) => setTimeout(() => resolve({ r }), 5));
    const t = now();
    await Promise.all(Array.from({ length: callers }, () => get(key, fetcher)));
    times.push(now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** The three contenders over one set of settings. */
export async function contenders({ SwrCache, LRUCache }) {
  const fresh = 3_600_000;
  const swre = await SwrCache.open({ fresh, maxEntries: 200_000, maxBytes: 1 << 30 });
  const lru = new LRUCache({ max: 200_000, ttl: fresh, allowStale: true, fetchMethod: async (k, _stale, { context }) => context() });
  const map = mapSwr(fresh);
  return {
    swre: { cache: swre, get: (k, f) => swre.get(k, f) },
    "lru-cache": { cache: lru, get: (k, f) => lru.fetch(k, { context: f }) },
    "Map SWR": { cache: null, get: map },
  };
}

/** Warm hit and stampede for every contender. */
export async function timings(libs, { hits, callers = 1_000, rounds = 15 }) {
  const all = await contenders(libs);
  const out = {};
  for (const [name, { get }] of Object.entries(all)) {
    const f = () => ({ id: 1, name: "Ada" });
    await get("warm", f);
    const hit = () => get("warm", f);
    out[name] = { hitNs: await warmHit(hit, hits), stampedeMs: await stampede(get, callers, rounds) };
  }
  for (const [name, { get }] of Object.entries(all)) {
    const hit = () => get("warm", () => 0);
    out[name].hitNs = Math.min(out[name].hitNs, await warmHit(hit, hits)); // second pass: best of two
  }
  return out;
}
