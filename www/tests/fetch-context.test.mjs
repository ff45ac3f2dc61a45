// The fetcher's context in plain Node (the same scenarios run in workerd in
// js-api.test.mjs): what it is told (staleValue, staleCreatedAt) and what it
// may say (setTtl, noStore, notModified), through the engine's singleflight.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SwrCache } from "../package/src/node.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A Workers-KV-like store over a Map, for a persistent tier behind the memory one. */
function objectStore() {
  const map = new Map();
  return {
    map,
    get: (k) => map.get(k),
    put: (k, v) => void map.set(k, v),
    delete: (k) => void map.delete(k),
  };
}

test("Node: a conditional refresh that answers notModified keeps the value and starts its phases again", async () => {
  const cache = await SwrCache.open({ fresh: 1, stale: 1, expired: 60_000 });
  const first = await cache.get("k", () => ({ body: "v1", etag: "e1" }));
  await sleep(10); // expired: the next get waits for the revalidation
  const seen = [];
  const r = await cache.get("k", (ctx) => {
    seen.push([ctx.staleValue, ctx.staleCreatedAt]);
    return ctx.staleValue.etag === "e1" ? ctx.notModified() : "never";
  });
  assert.deepEqual(seen, [[first.value, first.createdAt]], "told the value held and when it was fetched");
  assert.equal(r.status, "miss");
  assert.equal(r.value, seen[0][0], "the held object itself, not a copy");
  assert.ok(r.createdAt > first.createdAt, "its phases start again");
  assert.equal(r.freshUntil - r.createdAt, 1, "with the TTL it had");
  assert.equal(r.expiresAt - r.createdAt, 60_002);
  const peeked = await cache.peek("k");
  assert.deepEqual([peeked.value, peeked.createdAt, peeked.freshUntil], [r.value, r.createdAt, r.freshUntil]);

  // notModified with setTtl: the window moves, and hits are answered in JS.
  await sleep(10);
  const longer = await cache.get("k", (ctx) => {
    ctx.setTtl(60_000);
    return ctx.notModified();
  });
  assert.equal(longer.value, r.value);
  assert.equal(longer.freshUntil - longer.createdAt, 60_000);
  const hit = await cache.get("k", () => "never");
  assert.deepEqual([hit.status, hit.value, hit.freshUntil], ["hit", r.value, longer.freshUntil]);
  assert.equal(cache.stats().upstreamCalls, 3);
  cache.close();
});

test("Node: notModified over a persistent store writes the held value back with its new times", async () => {
  const store = objectStore();
  const cache = await SwrCache.open({ storage: store, fresh: 1, stale: 1, expired: 60_000 });
  const first = await cache.get("k", () => "body");
  await sleep(10);
  const r = await cache.get("k", (ctx) => {
    ctx.setTtl(30_000);
    return ctx.notModified();
  });
  assert.deepEqual([r.value, r.status, r.freshUntil - r.createdAt], ["body", "miss", 30_000]);
  assert.ok(r.createdAt > first.createdAt);
  cache.close();
  // Another instance over the same store (a new isolate) reads it back.
  const other = await SwrCache.open({ storage: store, fresh: 1, stale: 1, expired: 60_000 });
  const read = await other.get("k", () => "never");
  assert.deepEqual([read.value, read.status, read.createdAt, read.freshUntil], ["body", "hit", r.createdAt, r.freshUntil]);
  other.close();
});

test("Node: a stale refresh is told the value held and may answer notModified in the background", async () => {
  const cache = await SwrCache.open({ fresh: 1, stale: 60_000, expired: 60_000 });
  await cache.set("k", "old");
  const written = await cache.peek("k");
  await sleep(10);
  let told;
  const r = await cache.get("k", (ctx) => {
    told = [ctx.staleValue, ctx.staleCreatedAt];
    return ctx.notModified();
  });
  assert.deepEqual([r.value, r.status], ["old", "stale"]);
  await cache.pending();
  assert.deepEqual(told, ["old", written.createdAt]);
  const after = await cache.peek("k");
  assert.ok(after.createdAt > written.createdAt);
  assert.equal(after.value, "old");
  cache.close();
});

test("Node: setTtl sets this entry's fresh window exactly, instead of the ttl option's", async () => {
  const cache = await SwrCache.open({ fresh: 5_000, stale: 10_000, expired: 20_000 });
  const r = await cache.get("k", (ctx) => {
    ctx.setTtl(12_345);
    return "v";
  });
  assert.deepEqual([r.status, r.freshUntil - r.createdAt, r.staleUntil - r.freshUntil, r.expiresAt - r.staleUntil], ["miss", 12_345, 10_000, 20_000]);
  const hit = await cache.get("k", () => "never");
  assert.deepEqual([hit.status, hit.freshUntil], ["hit", r.freshUntil]);
  // The fetcher's window wins over the caller's `ttl`; zero is a window too.
  const o = await cache.get("o", async (ctx) => {
    await sleep(1);
    ctx.setTtl(0);
    return "v";
  }, { ttl: 60_000 });
  assert.equal(o.freshUntil, o.createdAt);
  assert.equal((await cache.peek("o")).status, "stale");
  cache.close();
});

test("Node: a bad setTtl rejects with kind options, stores nothing and never opens the breaker", async () => {
  const cache = await SwrCache.open({ fresh: 1_000, stale: 1_000, expired: 3_000, breaker: { failureThreshold: 2 } });
  for (const bad of [-1, Number.NaN, "5000", Infinity, undefined]) {
    let thrown;
    const e = await cache.get("k", (ctx) => {
      try {
        ctx.setTtl(bad);
      } catch (err) {
        thrown = err; // caught: the call fails all the same
      }
      return "v";
    }).then(() => assert.fail(`setTtl(${String(bad)}) accepted`), (err) => err);
    assert.deepEqual([e.name, e.kind], ["SwrError", "options"], String(bad));
    assert.match(e.message, /ctx\.setTtl/);
    assert.deepEqual([thrown?.name, thrown?.kind], ["SwrError", "options"], "thrown at the call too");
  }
  // Uncaught, from an async fetcher.
  const e = await cache.get("k", async (ctx) => ctx.setTtl(-5)).catch((err) => err);
  assert.deepEqual([e.kind, /got -5/.test(e.message)], ["options", true]);
  assert.equal(await cache.peek("k"), undefined, "nothing stored");
  assert.equal(cache.stats().breakerOpened, 0);
  const ok = await cache.get("k", () => "v");
  assert.deepEqual([ok.value, ok.status], ["v", "miss"]);
  cache.close();
});

test("Node: setTtl takes a window shorter than the 5 s a configured TTL needs (an HTTP max-age=1, say)", async () => {
  const cache = await SwrCache.open({ fresh: 60_000, stale: 1_000, expired: 3_000 });
  const r = await cache.get("k", (ctx) => {
    ctx.setTtl(500);
    return "v";
  });
  assert.deepEqual([r.value, r.status, r.freshUntil - r.createdAt], ["v", "miss", 500]);
  assert.equal((await cache.peek("k")).value, "v", "stored");
  // Zero in all: handed out, not stored.
  const none = await SwrCache.open({ fresh: 60_000, stale: 0, expired: 0 });
  const z = await none.get("z", (ctx) => {
    ctx.setTtl(0);
    return "z";
  });
  assert.equal(z.value, "z");
  assert.equal(await none.peek("z"), undefined, "nothing stored");
  none.close();
  cache.close();
});

test("Node: noStore returns the value, stores nothing, removes the older entry, and the next get fetches again", async () => {
  const cache = await SwrCache.open({ fresh: 1, stale: 1, expired: 60_000 });
  let calls = 0;
  const secret = (ctx) => {
    calls++;
    ctx.noStore();
    return { secret: calls };
  };
  const a = await cache.get("k", secret);
  assert.deepEqual([a.value, a.status], [{ secret: 1 }, "miss"]);
  assert.equal(await cache.peek("k"), undefined);
  const b = await cache.get("k", secret);
  assert.deepEqual([b.value, b.status, calls], [{ secret: 2 }, "miss", 2]);
  await cache.set("old", "held");
  await sleep(10);
  const c = await cache.get("old", secret);
  assert.deepEqual([c.value, c.status], [{ secret: 3 }, "miss"]);
  assert.equal(await cache.peek("old"), undefined, "the older entry went");
  cache.close();
});

test("Node: notModified with nothing held rejects with kind upstream and stores nothing", async () => {
  const cache = await SwrCache.open();
  let told;
  const e = await cache.get("cold", (ctx) => {
    told = [ctx.staleValue, ctx.staleCreatedAt];
    return ctx.notModified();
  }).catch((err) => err);
  assert.deepEqual(told, [undefined, undefined]);
  assert.deepEqual([e.name, e.kind], ["SwrError", "upstream"]);
  assert.match(e.message, /not modified/);
  assert.equal(await cache.peek("cold"), undefined);
  cache.close();
});

test("Node: concurrent gets share one fetcher call, context and all", async () => {
  const cache = await SwrCache.open({ fresh: 1, stale: 1, expired: 60_000 });
  let calls = 0;
  const fetcher = async (ctx) => {
    calls++;
    await sleep(20);
    if (ctx.staleValue === undefined) return "v1";
    ctx.setTtl(60_000);
    return ctx.notModified();
  };
  const cold = await Promise.all(Array.from({ length: 50 }, (_, i) => cache.get("k", fetcher, i % 2 ? { ttl: 1 } : undefined)));
  assert.equal(calls, 1);
  assert.ok(cold.every((r) => r.value === "v1" && r.status === "miss"));
  await sleep(10);
  const again = await Promise.all(Array.from({ length: 50 }, () => cache.get("k", fetcher)));
  assert.equal(calls, 2);
  assert.ok(again.every((r) => r.value === "v1" && r.freshUntil - r.createdAt === 60_000));
  cache.close();
});
