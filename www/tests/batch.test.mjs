// getMany in plain Node (the same scenarios run in workerd in
// js-api.test.mjs): one fetcher call for every stale or missing key, fresh
// keys answered without it, per-key results in input order. Entries are
// made stale by `expire`, so no test waits on the clock.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SwrCache } from "../package/src/node.js";

/** A promise and its resolver. */
function deferred() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

/** What each answer says, in order: [key, ok, value or error kind, status]. */
const shown = (results) => results.map((r) => (r.ok ? [r.key, true, r.value, r.status] : [r.key, false, r.error.kind]));

test("Node: getMany sends exactly the stale and missing keys in one call and answers in input order", async () => {
  const cache = await SwrCache.open({ fresh: 60_000, stale: 60_000 });
  await cache.set("fresh", "f0");
  await cache.set("stale", "s0");
  await cache.expire("stale");
  const asked = [];
  const results = await cache.getMany(["stale", "missing", "fresh", "missing2"], (keys) => {
    asked.push(keys);
    return new Map(keys.map((k) => [k, `${k}@new`]));
  });
  assert.deepEqual(asked, [["stale", "missing", "missing2"]]);
  assert.deepEqual(shown(results), [
    ["stale", true, "s0", "stale"],
    ["missing", true, "missing@new", "miss"],
    ["fresh", true, "f0", "hit"],
    ["missing2", true, "missing2@new", "miss"],
  ]);
  const r = results[1];
  assert.deepEqual(Object.keys(r), ["key", "ok", "value", "status", "detail", "age", "createdAt", "freshUntil", "staleUntil", "expiresAt"]);
  assert.equal(r.freshUntil - r.createdAt, 60_000);
  await cache.pending();
  assert.equal((await cache.get("stale", () => "never")).value, "stale@new", "refreshed in background");
  // All fresh now: no call at all.
  const again = await cache.getMany(["fresh", "missing", "stale"], () => assert.fail("called"));
  assert.deepEqual(again.map((x) => x.status), ["hit", "hit", "hit"]);
  assert.equal(asked.length, 1);
  // No keys: no call; a key given twice is fetched once and answered twice.
  assert.deepEqual(await cache.getMany([], () => assert.fail("called")), []);
  const twice = await cache.getMany(["d", "d"], (keys) => {
    asked.push(keys);
    return { d: 1 };
  });
  assert.deepEqual([asked[1], shown(twice)], [["d"], [["d", true, 1, "miss"], ["d", true, 1, "miss"]]]);
  const s = cache.stats();
  assert.deepEqual([s.batchCalls, s.upstreamCalls], [2, 2]);
  cache.close();
});

test("Node: the fetcher may answer a Map, an object or [key, value] pairs; a key it leaves out fails alone", async () => {
  const cache = await SwrCache.open({ fresh: 60_000 });
  const forms = {
    map: (keys) => new Map(keys.slice(1).map((k) => [k, { k }])),
    object: async (keys) => Object.fromEntries(keys.slice(1).map((k) => [k, { k }])),
    pairs: (keys) => [...keys.slice(1).map((k) => [k, { k }]), ["not-asked", "ignored"]],
  };
  for (const [form, fetcher] of Object.entries(forms)) {
    const results = await cache.getMany([`${form}:a`, `${form}:b`], fetcher);
    assert.equal(results[0].ok, false, form);
    assert.equal(results[0].error.kind, "upstream");
    assert.match(results[0].error.message, /no value for this key/);
    assert.deepEqual([results[1].ok, results[1].value, results[1].status], [true, { k: `${form}:b` }, "miss"], form);
  }
  assert.equal(await cache.peek("not-asked"), undefined);
  // The missing key is asked for again next time, alone.
  let asked;
  await cache.getMany(["map:a", "map:b"], (keys) => {
    asked = keys;
    return { "map:a": "now" };
  });
  assert.deepEqual(asked, ["map:a"]);
  assert.equal(cache.stats().breakerOpened, 0);
  cache.close();
});

test("Node: a failing or misbehaving batch fetcher fails every key it was asked for, with a clear kind", async () => {
  const cache = await SwrCache.open({ fresh: 60_000 });
  await cache.set("held", "h");
  const thrown = await cache.getMany(["held", "x", "y"], () => {
    throw new Error("origin down");
  });
  assert.deepEqual(shown(thrown), [["held", true, "h", "hit"], ["x", false, "upstream"], ["y", false, "upstream"]]);
  assert.equal(thrown[1].error.cause.message, "origin down");
  const rejected = await cache.getMany(["x"], async () => Promise.reject(new TypeError("async boom")));
  assert.equal(rejected[0].error.cause.message, "async boom");
  const shape = await cache.getMany(["x"], () => "nope");
  assert.deepEqual([shape[0].error.kind, /Map, an object or an array/.test(shape[0].error.message)], ["fetcher", true]);
  const codec = await cache.getMany(["x", "z"], () => ({ x: 1n, z: "ok" }));
  assert.deepEqual(shown(codec), [["x", false, "codec"], ["z", false, "codec"]]);
  assert.match(codec[0].error.message, /`x`/);
  const s = cache.stats();
  assert.equal(s.breakerOpened, 0);
  // Argument errors reject the whole call.
  const kind = (p) => p.then(() => "resolved", (e) => e.kind);
  assert.equal(await kind(cache.getMany("x", () => ({}))), "invalidKey");
  assert.equal(await kind(cache.getMany(["x", 5], () => ({}))), "invalidKey");
  assert.equal(await kind(cache.getMany(["x"], 5)), "fetcher");
  assert.equal(await kind(cache.getMany(["x"], () => ({}), { nope: 1 })), "options");
  assert.equal(await kind(cache.getMany(["x"], () => ({}), { signal: AbortSignal.abort() })), "aborted");
  // An empty key fails alone.
  const empty = await cache.getMany(["", "held"], () => ({}));
  assert.deepEqual(shown(empty), [["", false, "invalidKey"], ["held", true, "h", "hit"]]);
  cache.close();
  assert.equal(await kind(cache.getMany(["x"], () => ({}))), "closed");
});

test("Node: overlapping getMany and get calls fetch each key once", async () => {
  const cache = await SwrCache.open({ fresh: 60_000 });
  const gate = deferred();
  const batches = [];
  let singles = 0;
  const batch = async (keys) => {
    batches.push(keys);
    await gate.promise;
    return Object.fromEntries(keys.map((k) => [k, `${k}@batch${batches.length}`]));
  };
  const first = cache.getMany(["a", "b"], batch);
  await new Promise((r) => setImmediate(r));
  const single = cache.get("a", () => {
    singles++;
    return "a@single";
  });
  const second = cache.getMany(["b", "c"], batch);
  await new Promise((r) => setImmediate(r));
  gate.resolve();
  const [r1, rs, r2] = await Promise.all([first, single, second]);
  assert.deepEqual(batches, [["a", "b"], ["c"]]);
  assert.equal(singles, 0);
  // Both calls read `batches.length` once the gate opens.
  assert.deepEqual(shown(r1), [["a", true, "a@batch2", "miss"], ["b", true, "b@batch2", "miss"]]);
  assert.equal(rs.value, r1[0].value, "the get joined the batch's call for a");
  assert.equal(r2[0].value, r1[1].value, "the second batch joined the first's call for b");
  assert.deepEqual(shown(r2), [["b", true, "b@batch2", "miss"], ["c", true, "c@batch2", "miss"]]);

  // And a get in flight first: the batch joins it for that key.
  const gate2 = deferred();
  const slow = cache.get("d", async () => {
    await gate2.promise;
    return "d@single";
  });
  await new Promise((r) => setImmediate(r));
  let asked;
  const joined = cache.getMany(["d", "e"], (keys) => {
    asked = keys;
    return { e: "e@batch" };
  });
  await new Promise((r) => setImmediate(r));
  gate2.resolve();
  const [rd, rj] = await Promise.all([slow, joined]);
  assert.deepEqual(asked, ["e"]);
  assert.deepEqual(shown(rj), [["d", true, "d@single", "miss"], ["e", true, "e@batch", "miss"]]);
  assert.equal(rd.value, "d@single");
  cache.close();
});

test("Node: getMany options: ttl, tags, waitUntil for the stale keys' refresh, signal", async () => {
  const cache = await SwrCache.open({ fresh: 5_000, stale: 60_000, expired: 60_000 });
  let calls = 0;
  const fetcher = (keys) => {
    calls++;
    return keys.map((k) => [k, `${k}@${calls}`]);
  };
  const r = await cache.getMany(["a", "b"], fetcher, { ttl: 30_000, tags: ["group"] });
  assert.deepEqual(r.map((x) => x.freshUntil - x.createdAt), [30_000, 30_000]);
  await cache.invalidateTag("group");
  const again = await cache.getMany(["a", "b"], fetcher, { tags: ["group"] });
  assert.deepEqual(shown(again), [["a", true, "a@2", "miss"], ["b", true, "b@2", "miss"]]);
  assert.equal(calls, 2);

  // Stale keys refresh in background: that work goes to waitUntil.
  await cache.expireTag("group");
  const handed = [];
  const stale = await cache.getMany(["a", "b"], fetcher, { waitUntil: (p) => handed.push(p) });
  assert.deepEqual(shown(stale), [["a", true, "a@2", "stale"], ["b", true, "b@2", "stale"]]);
  assert.equal(handed.length, 1);
  await handed[0];
  assert.equal(calls, 3);
  assert.equal((await cache.peek("a")).value, "a@3");
  // Nothing in the background: waitUntil is not called.
  await cache.getMany(["a"], fetcher, { waitUntil: (p) => handed.push(p) });
  assert.equal(handed.length, 1);

  // The caller's signal stops its wait, never the call.
  const gate = deferred();
  const controller = new AbortController();
  const waiting = cache.getMany(["slow"], async (keys) => {
    await gate.promise;
    return { [keys[0]]: "done" };
  }, { signal: controller.signal });
  controller.abort(new Error("gave up"));
  const e = await waiting.catch((err) => err);
  assert.deepEqual([e.kind, e.cause.message], ["aborted", "gave up"]);
  gate.resolve();
  await cache.pending();
  assert.equal((await cache.get("slow", () => "never")).value, "done");
  cache.close();
});
