// The package's SwrCache façade in Node: the fetcher's context, per-call
// options, close, and the JS hit table kept coherent with writes, deletes,
// eviction and concurrent callers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { SwrCache } from "swre";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
const failure = (p) => p.then(() => null, (e) => e);

test("the fetcher gets the stale value and a signal that aborts at the refresh timeout", async () => {
  const cache = await SwrCache.open({ fresh: 1, stale: 60_000, refreshTimeout: 100 });
  const seen = [];
  await cache.get("k", (ctx) => {
    seen.push(ctx.staleValue, ctx.signal.aborted);
    return { n: 1 };
  });
  await sleep(5); // stale
  let signal;
  const stale = await cache.get("k", async (ctx) => {
    seen.push(ctx.staleValue);
    signal = ctx.signal;
    await new Promise((resolve, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)));
  });
  assert.equal(stale.status, "stale");
  await cache.pending();
  assert.deepEqual(seen, [undefined, false, { n: 1 }]);
  // The engine gave up at its deadline; the signal's timer started as the
  // fetcher was called, a moment later.
  for (let i = 0; i < 50 && !signal.aborted; i++) await sleep(2);
  assert.equal(signal.aborted, true, "the signal did not abort at the refresh timeout");
  assert.equal(signal.reason.name, "TimeoutError");
  assert.equal(cache.stats().upstreamErrors + cache.stats().upstreamTimeouts, 1);
  const before = timers();
  await cache.get("quick", (ctx) => (ctx.signal.aborted ? "aborted" : "fine"));
  await sleep(0);
  assert.equal(timers(), before, "the signal's timer outlived a fetch that finished");
});

test("a caller's signal ends its own wait, never the shared fetch", async () => {
  const cache = await SwrCache.open();
  let calls = 0;
  let release;
  const slow = () => {
    calls++;
    return new Promise((r) => (release = () => r("fetched")));
  };
  const controller = new AbortController();
  const mine = failure(cache.get("k", slow, { signal: controller.signal }));
  const other = cache.get("k", slow);
  await sleep(1);
  controller.abort(new Error("user left"));
  const err = await mine;
  assert.equal(err.kind, "aborted");
  assert.equal(err.cause.message, "user left");
  release();
  assert.equal((await other).value, "fetched");
  assert.equal((await cache.get("k", slow)).status, "hit");
  assert.equal(calls, 1);
  const already = await failure(cache.get("k", slow, { signal: AbortSignal.abort() }));
  assert.equal(already.kind, "aborted");
});

test("a per-call ttl sets the fresh window of what that call fetches", async () => {
  const cache = await SwrCache.open({ fresh: 60_000 });
  const r = await cache.get("k", () => "v", { ttl: 30 });
  assert.equal(r.freshUntil - r.createdAt, 30);
  assert.equal((await cache.get("k", () => "w")).status, "hit");
  await sleep(40);
  assert.equal((await cache.get("k", () => "w")).status, "stale");
  for (const [options, needle] of [
    [{ ttl: -1 }, "`ttl`"],
    [{ ttl: "soon" }, "`ttl`"],
    [{ tll: 5 }, "`tll`"],
    [{ signal: {} }, "`signal`"],
    [42, "options must be an object"],
  ]) {
    const e = await failure(cache.get("k", () => "v", options));
    assert.equal(e?.kind, "options", JSON.stringify(options));
    assert.ok(e.message.includes(needle), e.message);
  }
});

test("values follow JSON semantics on the first answer and on hits", async () => {
  const cache = await SwrCache.open();
  const date = new Date(0);
  const first = await cache.get("k", () => ({ m: new Map([[1, 2]]), d: date, n: NaN, u: new Uint8Array([1]) }));
  const expected = { m: {}, d: date.toISOString(), n: null, u: { 0: 1 } };
  assert.deepEqual(first.value, expected);
  const hit = await cache.get("k", () => "never");
  assert.equal(hit.status, "hit");
  assert.deepEqual(hit.value, expected);
  assert.deepEqual(Object.keys(hit), Object.keys(first), "every answer has one shape");
});

test("close frees the cache; later calls say so clearly", async () => {
  const cache = await SwrCache.open();
  await cache.get("k", () => "v");
  cache.close();
  cache.close(); // twice is fine
  for (const p of [cache.get("k", () => "v"), cache.set("k", 1), cache.delete("k"), cache.peek("k")]) {
    const e = await failure(p);
    assert.equal(e?.kind, "closed");
    assert.match(e.message, /closed/);
  }
  assert.throws(() => cache.stats(), (e) => e.kind === "closed");
  await cache.pending();
  assert.throws(() => new SwrCache(), /SwrCache\.open/);
});

test("a delete while a fetch is in flight is not undone by the fetch's answer", async () => {
  const cache = await SwrCache.open();
  let release;
  const first = cache.get("k", () => new Promise((r) => (release = () => r("old"))));
  await sleep(1);
  await cache.delete("k");
  release();
  assert.equal((await first).value, "old", "the caller still gets its answer");
  const after = await cache.get("k", () => "new");
  assert.deepEqual([after.status, after.value], ["miss", "new"], "the deleted value came back");
});

test("a set while a slow store read is on its way wins over what the read returns", async () => {
  // A persistent store whose reads are slow: the read starts before the
  // set and returns the old value after it.
  const data = new Map();
  let gate = null;
  const store = {
    async get(key) {
      if (gate) await gate;
      return data.get(key) ?? null;
    },
    async put(key, value) {
      data.set(key, value);
    },
    async delete(key) {
      data.delete(key);
    },
  };
  const writer = await SwrCache.open({ storage: store, fresh: 60_000 });
  await writer.set("k", "old");
  const cache = await SwrCache.open({ storage: store, fresh: 60_000 });
  let open;
  gate = new Promise((r) => (open = r));
  const read = cache.get("k", () => "fetched");
  await sleep(1);
  const write = cache.set("k", "new");
  gate = null;
  open();
  await Promise.all([read, write]);
  const after = await cache.get("k", () => "fetched");
  assert.equal(after.value, "new", `served ${after.value} (${after.status}) after the set`);
});

test("an answer read while a set is landing is dropped once the set lands", async () => {
  // A persistent store whose writes are slow: a lookup made while the set is
  // on its way may still see the old value; once the set lands it must not
  // be served from the JS table.
  const data = new Map();
  let gate = null;
  const store = {
    async get(key) {
      return data.get(key) ?? null;
    },
    async put(key, value) {
      if (gate) await gate;
      data.set(key, value);
    },
    async delete(key) {
      data.delete(key);
    },
  };
  const cache = await SwrCache.open({ storage: store, fresh: 60_000 });
  await cache.get("k", () => "old");
  let open;
  gate = new Promise((r) => (open = r));
  const write = cache.set("k", "new");
  const during = await cache.get("k", () => "fetched");
  gate = null;
  open();
  await write;
  const after = await cache.get("k", () => "fetched");
  assert.equal(after.value, "new", `served ${after.value} (${after.status}) after the set landed; during it: ${during.value}`);
});

test("hits answered in JS count for eviction", async () => {
  // One shard of 100 entries; a hot tenth is read only through the JS table.
  const cache = await SwrCache.open({ maxEntries: 100, maxBytes: 1 << 20, maxValueBytes: 1 << 20, fresh: 60_000 });
  let calls = 0;
  const fetch = () => {
    calls++;
    return "v";
  };
  for (let i = 0; i < 100; i++) await cache.get(`k${i}`, fetch);
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 100; i += 10) assert.equal((await cache.get(`k${i}`, fetch)).status, "hit");
  }
  for (let i = 0; i < 50; i++) await cache.get(`w${i}`, fetch); // one-hit wonders
  assert.equal(calls, 150);
  for (let i = 0; i < 100; i += 10) await cache.get(`k${i}`, fetch);
  assert.equal(calls, 150, "hot keys hit only in JS were evicted");
});

test("a stampede of 1,000 callers on a cold key makes one upstream call and counts every caller", async () => {
  const cache = await SwrCache.open();
  let calls = 0;
  const fetch = async () => {
    calls++;
    await sleep(5);
    return { v: 1 };
  };
  const all = await Promise.all(Array.from({ length: 1_000 }, () => cache.get("cold", fetch)));
  assert.equal(calls, 1);
  assert.ok(all.every((r) => r.value.v === 1));
  const s = cache.stats();
  assert.equal(s.hits + s.misses + s.stale + s.expired + s.fallbacks, 1_000);
  assert.equal(s.upstreamCalls, 1);
});

test("stats() has exactly the fields its TypeScript type lists, both from swre-core's Stats", async () => {
  const cache = await SwrCache.open();
  const types = readFileSync(new URL("../package/wasm/stats.d.ts", import.meta.url), "utf8");
  const typed = [...types.matchAll(/^  (\w+): number;$/gm)].map((m) => m[1]);
  const s = cache.stats();
  assert.deepEqual(Object.keys(s), typed);
  assert.ok(typed.includes("upstreamCalls") && typed.includes("flightsTakenOver") && typed.includes("inFlight"));
  assert.ok(Object.values(s).every((v) => typeof v === "number"));
});

test("rules that relate options come from the engine's builder, named as JS options", async () => {
  for (const [options, needle] of [
    [{ fresh: 1, stale: 1, expired: 1 }, "`fresh` + `stale` + `expired` must total at least 5 s"],
    [{ breaker: { successThreshold: 5, maxHalfOpen: 2 } }, "`breaker.maxHalfOpen` must be at least"],
  ]) {
    const e = await failure(SwrCache.open(options));
    assert.equal(e?.kind, "options", JSON.stringify(options));
    assert.ok(e.message.startsWith("SwrCache.open: ") && e.message.includes(needle), e.message);
  }
});

test("maxEntries and maxBytes are the limits, exactly", async () => {
  const present = async (cache, keys) => {
    let n = 0;
    for (const k of keys) if ((await cache.peek(k)) !== undefined) n++;
    return n;
  };
  const cache = await SwrCache.open({ maxEntries: 1_000 });
  const keys = Array.from({ length: 1_001 }, (_, i) => `k${i}`);
  for (const k of keys.slice(0, 1_000)) await cache.set(k, "v");
  assert.equal(await present(cache, keys), 1_000, "1,000 entries into maxEntries 1,000");
  await cache.set(keys[1_000], "v");
  assert.equal(await present(cache, keys), 1_000, "one more evicts exactly one");

  // 40,000 values of 2 KB: all kept when the byte bound allows them.
  const big = await SwrCache.open({ maxEntries: 100_000, maxBytes: 200 << 20 });
  const value = "x".repeat(2_000);
  const many = Array.from({ length: 40_000 }, (_, i) => `b${i}`);
  for (const k of many) await big.set(k, value);
  assert.equal(await present(big, many), 40_000);

  // The byte bound: each entry is charged its key, its stored size and 96 bytes.
  const bounded = await SwrCache.open({ maxBytes: 100 * (2 + 2_001 + 96), maxValueBytes: 4_000 });
  const hundred = Array.from({ length: 150 }, (_, i) => `c${i}`);
  for (const k of hundred) await bounded.set(k, value);
  const kept = await present(bounded, hundred);
  assert.ok(kept <= 100 && kept >= 95, `${kept} entries kept under a 100-entry byte bound`);
});

/** A JS-object store over a Map of bytes, like a KV namespace. */
function mapStore() {
  const m = new Map();
  const puts = [];
  return {
    m,
    puts,
    async get(key) {
      return m.get(key) ?? null;
    },
    async put(key, value, options) {
      puts.push(options);
      m.set(key, new Uint8Array(value));
    },
    async delete(key) {
      m.delete(key);
    },
  };
}

test("a get right after an un-awaited set or delete sees it", async () => {
  const cache = await SwrCache.open({ fresh: 60_000 });
  await cache.get("k", () => "v1");
  const set = cache.set("k", "v2");
  assert.equal((await cache.get("k", () => "fetched")).value, "v2");
  await set;
  const del = cache.delete("k");
  const after = await cache.get("k", () => "fetched");
  assert.deepEqual([after.value, after.status], ["fetched", "miss"]);
  await del;
});

test("a fallback whose entry was evicted while it waited still gets its old value", async () => {
  const cache = await SwrCache.open({ fresh: 1, stale: 1, expired: 60_000, maxEntries: 1 });
  await cache.set("a", "old");
  await sleep(10); // expired: a lookup waits for the refresh
  const waiting = cache.get("a", async () => {
    await sleep(30);
    throw new Error("origin down");
  });
  await sleep(5);
  await cache.set("b", "b"); // evicts "a"
  const r = await waiting;
  assert.deepEqual([r.value, r.status], ["old", "fallback"]);
});

test("a persisted entry the package cannot read back is a miss, then overwritten", async () => {
  const store = mapStore();
  const writer = await SwrCache.open({ storage: store });
  await writer.set("k", { a: 1 });
  // Break the JSON inside a valid envelope: the checksum is recomputed.
  const bytes = store.m.get("k");
  // The value starts after the 50-byte header (envelope version 2) and the
  // 1-byte key, with its JSON tag byte "j"; searching for "{" could hit a
  // time in the header, whose bytes depend on the clock.
  const at = 50 + 1 + 1;
  assert.deepEqual([bytes[4], bytes[at - 1], bytes[at]], [2, "j".charCodeAt(0), "{".charCodeAt(0)]);
  bytes[at] = "!".charCodeAt(0);
  let c = ~0;
  for (const x of bytes.subarray(0, bytes.length - 4)) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  new DataView(bytes.buffer).setUint32(bytes.length - 4, ~c >>> 0, true);
  const cache = await SwrCache.open({ storage: store });
  let calls = 0;
  const first = await cache.get("k", () => (calls++, "refetched"));
  const second = await cache.get("k", () => (calls++, "again"));
  assert.deepEqual([first.status, first.value, second.status, calls], ["miss", "refetched", "hit", 1]);
});

test("the fetcher's signal runs from the call's admission, not from when the fetcher starts", async () => {
  // Each store read takes 50 ms, and a cold lookup reads twice before it
  // calls the fetcher: about 100 ms of the 300 ms are gone by then.
  const slow = mapStore();
  const get = slow.get;
  slow.get = async (k) => {
    await sleep(50);
    return get(k);
  };
  const cache = await SwrCache.open({ storage: slow, refreshTimeout: 300 });
  let calledAfter;
  let abortedAfter;
  const started = Date.now();
  await failure(
    cache.get("k", ({ signal }) => {
      calledAfter = Date.now() - started;
      return new Promise((_, reject) =>
        signal.addEventListener("abort", () => {
          abortedAfter = Date.now() - started;
          reject(signal.reason);
        }),
      );
    }),
  );
  assert.ok(calledAfter >= 80, `the fetcher was called after ${calledAfter} ms`);
  assert.ok(abortedAfter !== undefined && abortedAfter < 370, `the signal aborted after ${abortedAfter} ms (deadline 300 ms from admission)`);
});

test("a per-call ttl the engine's rules reject is an options error; codec errors say what is wrong", async () => {
  const cache = await SwrCache.open({ fresh: 1_000, stale: 1_000, expired: 3_000 });
  const e = await failure(cache.get("k", () => "v", { ttl: 100 }));
  assert.equal(e.kind, "options");
  assert.match(e.message, /`fresh` \+ `stale` \+ `expired` must total at least 5 s/);
  const codec = await failure(cache.get("c", () => 10n));
  assert.equal(codec.kind, "codec");
  assert.doesNotMatch(codec.message, /upstream/);
});

test("KV entries always get an expirationTtl of at least 60 s", async () => {
  const store = mapStore();
  const cache = await SwrCache.open({ storage: store, fresh: 1_000, stale: 2_000, expired: 3_000 });
  await cache.set("k", "v");
  assert.deepEqual(store.puts, [{ expirationTtl: 60 }]);
});

test("a delete while a slow persistent read is on its way is not undone by the read", async () => {
  const store = mapStore();
  const writer = await SwrCache.open({ storage: store, fresh: 60_000 });
  await writer.set("k", "old");
  const cache = await SwrCache.open({ storage: store, fresh: 60_000 });
  const get = store.get;
  let open;
  const gate = new Promise((r) => (open = r));
  store.get = async (k) => {
    const found = await get(k);
    await gate;
    return found;
  };
  const read = cache.get("k", () => "fetched");
  await sleep(1);
  store.get = get;
  await cache.delete("k");
  open();
  await read;
  const after = await cache.get("k", () => "refetched");
  assert.deepEqual([after.value, after.status], ["refetched", "miss"], "the deleted value came back");
});
