// The resilience options in plain Node (the same scenarios run in workerd in
// js-api.test.mjs): detail, expire, the fail-safe throttle, the soft timeout
// and the early refresh.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SwrCache } from "../package/src/node.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test("Node: a failed refresh is throttled and says so; failSafeThrottle: false calls every time", async () => {
  const cache = await SwrCache.open({ fresh: 1, stale: 60_000, expired: 60_000, failSafeThrottle: { base: 60_000 } });
  await cache.set("k", "old");
  await sleep(5);
  let calls = 0;
  const failing = async () => { calls++; throw new Error("origin down"); };
  const first = await cache.get("k", failing);
  assert.deepEqual([first.value, first.status, first.detail], ["old", "stale", "none"]);
  await cache.pending();
  for (let i = 0; i < 5; i++) {
    const r = await cache.get("k", failing);
    assert.deepEqual([r.value, r.status, r.detail], ["old", "stale", "throttled"]);
  }
  assert.equal(calls, 1);
  assert.equal(cache.stats().throttled, 5);
  cache.close();
});

test("Node: expire serves the old value as stale and refreshes it", async () => {
  const cache = await SwrCache.open({ fresh: 60_000 });
  await cache.set("k", "old");
  assert.equal((await cache.get("k", () => "never")).status, "hit");
  const expiring = cache.expire("k");
  // Not answered as fresh while the expiry is under way.
  const during = await cache.get("k", () => "new");
  assert.equal(during.status, "stale");
  await expiring;
  await cache.pending();
  await cache.set("k", "old");
  await cache.expire("k");
  const r = await cache.get("k", () => "new");
  assert.deepEqual([r.value, r.status], ["old", "stale"]);
  await cache.pending();
  assert.deepEqual([(await cache.get("k", () => "never")).value], ["new"]);
  await assert.rejects(cache.expire(42), (e) => e.kind === "invalidKey");
  cache.close();
});

test("Node: past the soft timeout the old value comes back and the slow fetch stores later", async () => {
  const cache = await SwrCache.open({ fresh: 0, stale: 0, expired: 60_000, softTimeout: 30 });
  await cache.set("k", "old");
  const r = await cache.get("k", () => new Promise((res) => setTimeout(() => res("new"), 200)));
  assert.deepEqual([r.value, r.status, r.detail], ["old", "fallback", "soft-timeout"]);
  await cache.pending();
  assert.equal((await cache.peek("k")).value, "new");
  await assert.rejects(SwrCache.open({ softTimeout: 0 }), (e) => e.kind === "options" && /softTimeout/.test(e.message));
  cache.close();
});

test("Node: an XFetch early refresh happens before expiry, never stale", async () => {
  // A 1 s fresh window and a fetch that takes 30 ms (δ, measured by the
  // engine): only hits within 37 δ of expiry may refresh, each with chance
  // e^(−left/δ); hits in a tight loop from 200 ms before expiry start one
  // well before it.
  const cache = await SwrCache.open({ fresh: 1_000, stale: 60_000, expired: 60_000, earlyRefresh: { beta: 1 } });
  let calls = 0;
  const fetcher = async () => {
    await sleep(30);
    return `v${++calls}`;
  };
  const first = await cache.get("k", fetcher);
  for (let i = 0; i < 1_000; i++) assert.equal((await cache.get("k", fetcher)).detail, "none", "far from expiry");
  await sleep(Math.max(0, first.freshUntil - 200 - Date.now()));
  let early;
  while (early === undefined && Date.now() < first.freshUntil + 100) {
    const r = await cache.get("k", fetcher);
    if (r.detail === "early-refresh") early = r;
  }
  assert.ok(early, "no early refresh near expiry");
  assert.equal(early.status, "hit");
  await cache.pending();
  assert.equal(calls, 2);
  assert.equal(cache.stats().stale, 0);
  assert.equal(cache.stats().earlyRefreshes, 1);
  cache.close();
});
