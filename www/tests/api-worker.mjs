// Runs SwrCache scenarios inside workerd and reports what it saw as JSON;
// tests/js-api.test.mjs asserts on the report.
import { SwrCache } from "../package/src/workerd.js";

async function outcome(promise) {
  try {
    return { ok: true, value: await promise };
  } catch (e) {
    return { ok: false, name: e?.name, kind: e?.kind, message: String(e?.message ?? e), cause: e?.cause?.message ?? null, isError: e instanceof Error };
  }
}

// One cache across requests, as a Worker keeps it per isolate.
let wedge;

const scenarios = {
  // A stale hit whose refresh hangs, with no waitUntil: workerd cancels the
  // refresh once the response is sent, so its task is never polled again.
  async wedgeStart() {
    wedge = await SwrCache.open({ fresh: 1, stale: 1_500, expired: 60_000, refreshTimeout: 1_000 });
    await wedge.set("k", "old");
    await new Promise((r) => setTimeout(r, 20));
    const r = await outcome(wedge.get("k", () => new Promise(() => {})));
    return { r, stats: wedge.stats() };
  },

  // Later, in the expired window: the abandoned refresh is taken over.
  async wedgeLater() {
    const r = await outcome(wedge.get("k", async () => { throw new Error("origin down"); }));
    return { r, stats: wedge.stats() };
  },

  async badOptions() {
    const cases = {
      negative: { fresh: -1 },
      nan: { stale: "soon" },
      storage: { storage: "bogus" },
      unknown: { fersh: 1000 },
      breaker: { breaker: { failureThreshold: 0 } },
      total: { fresh: 1000, stale: 1000, expired: 1000 },
      name: { storage: "cache", name: "" },
      waitUntil: { waitUntil: 5 },
      storeObject: { storage: { get() {} } },
      notObject: 42,
      throttle: { failSafeThrottle: 5 },
      throttleBase: { failSafeThrottle: { base: 0 } },
      throttleUnknown: { failSafeThrottle: { bse: 10 } },
    };
    const out = {};
    for (const [k, v] of Object.entries(cases)) out[k] = await outcome(SwrCache.open(v));
    return out;
  },

  async fetcherFailures() {
    const cache = await SwrCache.open({ fresh: 60_000 });
    const thrown = await outcome(cache.get("a", () => { throw new Error("sync boom"); }));
    const rejected = await outcome(cache.get("b", () => Promise.reject(new TypeError("async boom"))));
    const undef = await outcome(cache.get("c", async () => undefined));
    const bigint = await outcome(cache.get("d", async () => 10n));
    const notFn = await outcome(cache.get("e", 42));
    const badKey = await outcome(cache.get(7, async () => "x"));
    // The instance still works after every failure above.
    const after = await outcome(cache.get("f", async () => ({ still: "working" })));
    return { thrown, rejected, undef, bigint, notFn, badKey, after, stats: cache.stats() };
  },

  async fallback() {
    const cache = await SwrCache.open({ fresh: 0, stale: 0, expired: 60_000 });
    await cache.set("k", { version: 1 });
    const r = await outcome(cache.get("k", async () => { throw new Error("upstream 503"); }));
    return { r, stats: cache.stats() };
  },

  // expire: stale at once, kept as a fallback; in memory and over the Cache API.
  async expire() {
    const out = {};
    for (const storage of ["memory", "cache"]) {
      const cache = await SwrCache.open({ storage, name: `expire-${Date.now()}`, fresh: 60_000 });
      await cache.set("k", "old");
      const before = await outcome(cache.get("k", async () => "never"));
      await cache.expire("k");
      const after = await outcome(cache.get("k", async () => "new"));
      await cache.pending();
      const refreshed = await outcome(cache.get("k", async () => "never"));
      await cache.expire("k");
      const failing = await outcome(cache.get("k", async () => { throw new Error("origin down"); }));
      await cache.pending();
      const missing = await outcome(cache.expire("nothing"));
      const badKey = await outcome(cache.expire(5));
      out[storage] = { before, after, refreshed, failing, missing, badKey };
    }
    return out;
  },

  // Early refresh from 50 % of a 400 ms fresh window: one refresh, no stale.
  async earlyRefresh() {
    const cache = await SwrCache.open({ fresh: 400, stale: 60_000, expired: 60_000, earlyRefresh: { threshold: 0.5 } });
    let calls = 0;
    const fetcher = async () => `v${++calls}`;
    const first = await outcome(cache.get("k", fetcher));
    const before = await outcome(cache.get("k", fetcher));
    await new Promise((r) => setTimeout(r, 250));
    const due = [];
    for (let i = 0; i < 5; i++) due.push(await outcome(cache.get("k", fetcher)));
    await cache.pending();
    const after = await outcome(cache.get("k", fetcher));
    const bad = await outcome(SwrCache.open({ earlyRefresh: { threshold: 1 } }));
    return { first, before, due, after, calls, stats: cache.stats(), bad };
  },

  // The soft timeout: the old value after 50 ms, the slow fetch stores later.
  async softTimeout() {
    const cache = await SwrCache.open({ fresh: 0, stale: 0, expired: 60_000, softTimeout: 50 });
    await cache.set("k", "old");
    const slow = () => new Promise((r) => setTimeout(() => r("new"), 300));
    const started = Date.now();
    const first = await outcome(cache.get("k", slow));
    const waited = Date.now() - started;
    await cache.pending();
    const peeked = await outcome(cache.peek("k"));
    const bad = await outcome(SwrCache.open({ softTimeout: 40_000 }));
    return { first, waited, peeked, stats: cache.stats(), bad };
  },

  // A failed refresh holds the next ones back (the fail-safe throttle).
  async throttle() {
    const cache = await SwrCache.open({ fresh: 1, stale: 60_000, expired: 60_000, failSafeThrottle: { base: 60_000 } });
    await cache.set("k", "old");
    await new Promise((r) => setTimeout(r, 10));
    let calls = 0;
    const failing = async () => { calls++; throw new Error("origin down"); };
    const first = await outcome(cache.get("k", failing));
    await cache.pending();
    const later = [];
    for (let i = 0; i < 5; i++) later.push(await outcome(cache.get("k", failing)));
    await cache.pending();
    const off = await SwrCache.open({ fresh: 1, stale: 60_000, expired: 60_000, failSafeThrottle: false });
    await off.set("k", "old");
    await new Promise((r) => setTimeout(r, 10));
    let offCalls = 0;
    for (let i = 0; i < 3; i++) {
      await off.get("k", async () => { offCalls++; throw new Error("origin down"); });
      await off.pending();
    }
    return { first, later, calls, stats: cache.stats(), offCalls };
  },

  // The fetcher's context: a conditional refresh answering notModified (in
  // memory and over the Cache API), setTtl, noStore, notModified with
  // nothing held, a bad setTtl, and one fetcher call for concurrent gets.
  async fetchContext() {
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const conditional = {};
    for (const storage of ["memory", "cache"]) {
      const options = { storage, name: `ctx-${Date.now()}`, fresh: 1, stale: 1, expired: 60_000 };
      const cache = await SwrCache.open(options);
      const first = await cache.get("k", () => ({ body: "v1", etag: "e1" }));
      await sleep(10);
      let told;
      const revalidated = await outcome(cache.get("k", (ctx) => {
        told = { value: ctx.staleValue, createdAt: ctx.staleCreatedAt };
        ctx.setTtl(60_000);
        return ctx.staleValue?.etag === "e1" ? ctx.notModified() : "changed";
      }));
      const hit = await outcome(cache.get("k", () => "never"));
      const same = revalidated.value?.value === hit.value?.value;
      cache.close();
      // A new instance over the same store (a new isolate) reads the
      // extended entry back.
      const reopened = await SwrCache.open(options);
      const persisted = await outcome(reopened.peek("k"));
      reopened.close();
      conditional[storage] = { first, told, revalidated, hit, same, persisted };
    }
    const cache = await SwrCache.open({ fresh: 5_000, stale: 10_000, expired: 20_000 });
    const ttl = await outcome(cache.get("ttl", (ctx) => {
      ctx.setTtl(12_345);
      return "v";
    }));
    let noStoreCalls = 0;
    const secret = (ctx) => {
      ctx.noStore();
      return `secret ${++noStoreCalls}`;
    };
    const noStore = [await outcome(cache.get("private", secret)), await outcome(cache.peek("private")), await outcome(cache.get("private", secret))];
    const nothingHeld = await outcome(cache.get("cold", (ctx) => ctx.notModified()));
    const badTtl = await outcome(cache.get("bad", (ctx) => {
      ctx.setTtl(-1);
      return "v";
    }));
    let calls = 0;
    const concurrent = (await Promise.all(Array.from({ length: 50 }, () => outcome(cache.get("shared", async (ctx) => {
      calls++;
      await sleep(20);
      ctx.setTtl(30_000);
      return "one";
    }))))).map((o) => [o.ok, o.value?.value, o.value && o.value.freshUntil - o.value.createdAt]);
    const stats = cache.stats();
    cache.close();
    return { conditional, ttl, noStore, noStoreCalls, nothingHeld, badTtl, concurrent, calls, stats };
  },

  // Tags and clear, in memory and over the Cache API (tag records in the
  // store: a new instance over it sees an invalidation made by the first).
  async tags() {
    const out = {};
    for (const storage of ["memory", "cache"]) {
      const options = { storage, name: `tags-${Date.now()}`, fresh: 60_000, stale: 60_000 };
      const cache = await SwrCache.open(options);
      const calls = {};
      const fetcher = (k) => () => `${k}@${(calls[k] = (calls[k] ?? 0) + 1)}`;
      await cache.get("a", fetcher("a"), { tags: ["t"] });
      await cache.set("b", "b@set", { tags: ["t"] });
      await cache.get("u", fetcher("u"));
      await cache.get("own", (ctx) => {
        ctx.setTags(["mine"]);
        return "own@1";
      }, { tags: ["t"] });
      await cache.invalidateTag("t");
      const invalidated = {};
      for (const k of ["a", "b", "u", "own"]) {
        const r = await cache.get(k, fetcher(k), k === "u" || k === "own" ? undefined : { tags: ["t"] });
        invalidated[k] = [r.value, r.status];
      }
      await cache.expireTag("t");
      const expired = await outcome(cache.get("a", fetcher("a")));
      await cache.pending();
      const refreshed = await outcome(cache.get("a", fetcher("a")));
      await cache.invalidateTag("t");
      // A new instance over the same store (a new isolate).
      const other = await SwrCache.open(options);
      const seen = await outcome(other.get("a", fetcher("a")));
      const untagged = await outcome(other.get("u", fetcher("u")));
      other.close();
      const bad = {
        empty: await outcome(cache.get("x", fetcher("x"), { tags: [""] })),
        tooMany: await outcome(cache.set("u", "never", { tags: Array.from({ length: 33 }, (_, i) => `t${i}`) })),
        notArray: await outcome(cache.get("x", fetcher("x"), { tags: "t" })),
        tagOp: await outcome(cache.invalidateTag("")),
        setTags: await outcome(cache.get("x", (ctx) => {
          ctx.setTags([""]);
          return "x";
        })),
      };
      const kept = await outcome(cache.get("u", fetcher("u")));
      if (storage === "cache") {
        // clear over the Cache API is `caches.delete(name)`, which never
        // settles in workerd (a hung request): not run here.
        cache.close();
        out[storage] = { invalidated, expired, refreshed, seen, untagged, bad, kept, calls };
        continue;
      }
      const cleared = await outcome(cache.clear());
      const afterClear = await outcome(cache.peek("u"));
      const refetched = await outcome(cache.get("u", fetcher("u")));
      cache.close();
      out[storage] = { invalidated, expired, refreshed, seen, untagged, bad, kept, cleared, afterClear, refetched, calls };
    }
    return out;
  },

  // getMany: one call for the stale and missing keys, waitUntil for the
  // stale keys' refresh, a missing key failing alone, overlapping calls.
  async getMany() {
    const cache = await SwrCache.open({ fresh: 60_000, stale: 60_000 });
    await cache.set("fresh", "f0");
    await cache.set("stale", "s0");
    await cache.expire("stale");
    const asked = [];
    const handed = [];
    const first = await outcome(cache.getMany(["stale", "missing", "fresh", "gone"], async (keys) => {
      asked.push(keys);
      return keys.filter((k) => k !== "gone").map((k) => [k, `${k}@new`]);
    }, { waitUntil: (p) => handed.push(p), tags: ["batch"] }));
    const waitedFor = handed.length;
    // Only stale keys: answered at once, their refresh handed to waitUntil.
    await cache.expire("fresh");
    const staleOnly = await outcome(cache.getMany(["fresh"], async (keys) => {
      asked.push(keys);
      return { fresh: "f1" };
    }, { waitUntil: (p) => handed.push(p) }));
    const waitUntilCalls = handed.length - waitedFor;
    await Promise.all(handed);
    const refreshed = await outcome(cache.peek("fresh"));
    await cache.invalidateTag("batch");
    let singles = 0;
    let release;
    const gate = new Promise((r) => (release = r));
    const overlapping = cache.getMany(["missing", "stale", "c"], async (keys) => {
      asked.push(keys);
      await gate;
      return Object.fromEntries(keys.map((k) => [k, `${k}@2`]));
    });
    await new Promise((r) => setTimeout(r, 5));
    const single = cache.get("missing", () => `single ${++singles}`);
    release();
    const [many, one] = await Promise.all([outcome(overlapping), outcome(single)]);
    return { first, asked, waitedFor, staleOnly, waitUntilCalls, refreshed, many, one, singles, stats: cache.stats() };
  },

  async passThrough() {
    const cache = await SwrCache.open({ fresh: 60_000 });
    const bytes = new Uint8Array([0, 1, 2, 250, 255]);
    const s = await cache.get("s", async () => "plain text, not JSON");
    const b = await cache.get("b", async () => bytes);
    const j = await cache.get("j", async () => ({ n: 1, list: [true, null, "x"] }));
    const s2 = await cache.get("s", async () => "never");
    const b2 = await cache.get("b", async () => "never");
    const j2 = await cache.get("j", async () => "never");
    return {
      s: [typeof s2.value, s2.value, s.status, s2.status],
      b: [b2.value instanceof Uint8Array, Array.from(b2.value), b.status, b2.status],
      j: [j2.value, j.status, j2.status],
    };
  },

  async peekSetDelete() {
    const cache = await SwrCache.open({ fresh: 60_000 });
    const before = await cache.peek("k");
    await cache.set("k", "v");
    const peeked = await cache.peek("k");
    await cache.delete("k");
    const gone = await cache.peek("k");
    const calls = [];
    const r = await cache.get("k", async () => { calls.push(1); return "fetched"; });
    return { before: before === undefined, peeked: [peeked.value, peeked.status], gone: gone === undefined, r: [r.value, r.status], calls: calls.length, stats: cache.stats() };
  },
};

export default {
  async fetch(request) {
    const name = new URL(request.url).pathname.slice(1);
    const run = scenarios[name];
    if (!run) return new Response("no such scenario", { status: 404 });
    return Response.json(await run());
  },
};
