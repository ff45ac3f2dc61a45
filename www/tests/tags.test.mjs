// Tags and clear in plain Node (the same scenarios run in workerd in
// js-api.test.mjs): invalidateTag, expireTag, the `tags` option of get and
// set, ctx.setTags, clear, and tags kept in a persistent store. Entries are
// made stale or absent by tag operations, so no test waits on the clock.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SwrCache } from "../package/src/node.js";

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

/** A fetcher counting its calls per key, answering `${key}@${n}`. */
function counting() {
  const calls = new Map();
  const fetcher = (key) => () => {
    const n = (calls.get(key) ?? 0) + 1;
    calls.set(key, n);
    return `${key}@${n}`;
  };
  return { calls, fetcher };
}

/** A promise and its resolver. */
function deferred() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

const kindOf = (p) => p.then(() => "resolved", (e) => [e.name, e.kind]);

test("Node: invalidateTag makes every tagged entry refetch and leaves the others", async () => {
  const cache = await SwrCache.open({ fresh: 60_000 });
  const { calls, fetcher } = counting();
  await cache.get("a", fetcher("a"), { tags: ["users"] });
  await cache.get("b", fetcher("b"), { tags: ["users", "admins"] });
  await cache.set("c", "c@set", { tags: ["users"] });
  await cache.get("u", fetcher("u"));
  await cache.get("o", fetcher("o"), { tags: ["other"] });
  // Hits before: tagged ones through the engine, the others in JS.
  for (const k of ["a", "b", "c", "u", "o"]) assert.equal((await cache.get(k, fetcher(k))).status, "hit", k);

  await cache.invalidateTag("users");
  assert.equal(await cache.peek("a"), undefined, "invalidated entries read as absent");
  // Each caller passes its tags, as it did the first time: an invalidated
  // entry is gone, and a refetch without them stores the value untagged ("c").
  const tagsOf = { a: ["users"], b: ["users", "admins"], o: ["other"] };
  const after = {};
  for (const k of ["a", "b", "c", "u", "o"]) {
    const r = await cache.get(k, fetcher(k), tagsOf[k] && { tags: tagsOf[k] });
    after[k] = [r.value, r.status];
  }
  assert.deepEqual(after, {
    a: ["a@2", "miss"],
    b: ["b@2", "miss"],
    c: ["c@1", "miss"],
    u: ["u@1", "hit"],
    o: ["o@1", "hit"],
  });
  assert.deepEqual(Object.fromEntries(calls), { a: 2, b: 2, c: 1, u: 1, o: 1 });
  await cache.invalidateTag("admins");
  assert.deepEqual([(await cache.get("b", fetcher("b"), { tags: tagsOf.b })).value, (await cache.get("a", fetcher("a"))).status], ["b@3", "hit"]);
  assert.equal(calls.get("b"), 3);
  await cache.invalidateTag("users");
  assert.deepEqual([(await cache.get("c", fetcher("c"))).status, calls.get("c")], ["hit", 1], "refetched untagged");
  // A tag no entry has changes nothing.
  await cache.invalidateTag("nobody");
  assert.equal((await cache.get("o", fetcher("o"))).status, "hit");
  assert.equal(calls.get("o"), 1);
  cache.close();
});

test("Node: expireTag serves the tagged entries as stale, refreshes each once, and keeps them as fallbacks", async () => {
  const cache = await SwrCache.open({ fresh: 60_000, stale: 60_000, failSafeThrottle: false });
  const { calls, fetcher } = counting();
  await cache.get("a", fetcher("a"), { tags: ["t"] });
  await cache.get("u", fetcher("u"));
  await cache.expireTag("t");
  const stale = await cache.get("a", fetcher("a"));
  assert.deepEqual([stale.value, stale.status], ["a@1", "stale"]);
  assert.equal((await cache.get("u", fetcher("u"))).status, "hit");
  await cache.pending();
  const refreshed = await cache.get("a", fetcher("a"));
  assert.deepEqual([refreshed.value, refreshed.status], ["a@2", "hit"]);
  assert.deepEqual(Object.fromEntries(calls), { a: 2, u: 1 });
  // Expired again, with a failing origin: the old value is still served.
  await cache.expireTag("t");
  const failing = await cache.get("a", () => {
    throw new Error("origin down");
  });
  assert.deepEqual([failing.value, failing.status], ["a@2", "stale"]);
  await cache.pending();
  assert.equal((await cache.peek("a")).value, "a@2");
  cache.close();
});

test("Node: a tag invalidated while a fetch runs keeps that fetch's value out of the cache", async () => {
  const cache = await SwrCache.open({ fresh: 60_000 });
  const gate = deferred();
  let calls = 0;
  const slow = async () => {
    calls++;
    await gate.promise;
    return `v${calls}`;
  };
  const first = cache.get("k", slow, { tags: ["t"] });
  await new Promise((r) => setImmediate(r)); // the fetch has started
  await cache.invalidateTag("t");
  gate.resolve();
  const r = await first;
  assert.deepEqual([r.value, r.status], ["v1", "miss"], "its own caller still gets it");
  assert.equal(await cache.peek("k"), undefined, "not stored");
  const next = await cache.get("k", async () => `v${++calls}`, { tags: ["t"] });
  assert.deepEqual([next.value, next.status, calls], ["v2", "miss", 2]);
  assert.equal(cache.stats().tagFenced, 1);
  // The same for a tag the fetcher sets itself.
  const gate2 = deferred();
  const own = cache.get("s", async (ctx) => {
    await gate2.promise;
    ctx.setTags(["mine"]);
    return "old";
  });
  await new Promise((r) => setImmediate(r));
  await cache.invalidateTag("mine");
  gate2.resolve();
  assert.equal((await own).value, "old");
  assert.equal(await cache.peek("s"), undefined);
  cache.close();
});

test("Node: ctx.setTags wins over the tags option; an empty list stores untagged", async () => {
  const cache = await SwrCache.open({ fresh: 60_000 });
  const { calls, fetcher } = counting();
  const tagged = (key, tags) => (ctx) => {
    ctx.setTags(tags);
    return fetcher(key)();
  };
  await cache.get("own", tagged("own", ["fetcher"]), { tags: ["caller"] });
  await cache.get("none", tagged("none", []), { tags: ["caller"] });
  await cache.get("plain", fetcher("plain"), { tags: ["caller"] });
  await cache.invalidateTag("caller");
  const statuses = {};
  for (const k of ["own", "none", "plain"]) statuses[k] = (await cache.get(k, fetcher(k))).status;
  assert.deepEqual(statuses, { own: "hit", none: "hit", plain: "miss" });
  await cache.invalidateTag("fetcher");
  assert.equal((await cache.get("own", fetcher("own"))).value, "own@2");
  assert.deepEqual(Object.fromEntries(calls), { own: 2, none: 1, plain: 2 });
  cache.close();
});

test("Node: bad tags reject with kind invalidTag or options and change nothing", async () => {
  const cache = await SwrCache.open({ fresh: 60_000, stale: 1_000, expired: 1_000 });
  await cache.set("k", "old");
  let calls = 0;
  const fetcher = () => {
    calls++;
    return "new";
  };
  const tooMany = Array.from({ length: 33 }, (_, i) => `t${i}`);
  const long = "x".repeat(257);
  for (const tags of [[""], [long], tooMany]) {
    assert.deepEqual(await kindOf(cache.get("g", fetcher, { tags })), ["SwrError", "invalidTag"]);
    assert.deepEqual(await kindOf(cache.set("k", "new", { tags })), ["SwrError", "invalidTag"]);
    assert.deepEqual(await kindOf(cache.getMany(["g"], fetcher, { tags })), ["SwrError", "invalidTag"]);
  }
  // Limits: 32 tags of 256 bytes are fine; duplicates count once.
  await cache.get("ok", fetcher, { tags: [...tooMany.slice(0, 31), "t0", "y".repeat(256)] });
  for (const tags of ["users", [1], [null], {}]) {
    assert.deepEqual(await kindOf(cache.get("g", fetcher, { tags })), ["SwrError", "options"], String(tags));
    assert.deepEqual(await kindOf(cache.set("k", "new", { tags })), ["SwrError", "options"]);
  }
  assert.deepEqual(await kindOf(cache.set("k", "new", { ttl: -1 })), ["SwrError", "options"]);
  assert.deepEqual(await kindOf(cache.set("k", "new", { ttl: 1 })), ["SwrError", "options"], "a window too short in all");
  assert.deepEqual(await kindOf(cache.getMany(["g"], fetcher, { ttl: 1 })), ["SwrError", "options"]);
  assert.deepEqual(await kindOf(cache.set("k", "new", { fresh: 1 })), ["SwrError", "options"]);
  for (const tag of ["", long, 5, undefined]) {
    assert.deepEqual(await kindOf(cache.invalidateTag(tag)), ["SwrError", "invalidTag"], String(tag));
    assert.deepEqual(await kindOf(cache.expireTag(tag)), ["SwrError", "invalidTag"]);
  }
  const fromFetcher = await cache.get("f", (ctx) => {
    ctx.setTags([""]);
    return "v";
  }).catch((e) => e);
  assert.deepEqual([fromFetcher.name, fromFetcher.kind], ["SwrError", "invalidTag"]);
  let thrown;
  const badType = await cache.get("f", (ctx) => {
    try {
      ctx.setTags("users");
    } catch (e) {
      thrown = e;
    }
    return "v";
  }).catch((e) => e);
  assert.deepEqual([badType.kind, thrown?.kind], ["options", "options"]);
  assert.match(badType.message, /ctx\.setTags/);
  assert.equal(await cache.peek("f"), undefined);
  // Nothing changed: the old value is still a hit, nothing was fetched but "ok".
  const r = await cache.get("k", fetcher);
  assert.deepEqual([r.value, r.status, calls], ["old", "hit", 1]);
  assert.equal(cache.stats().breakerOpened, 0);
  cache.close();
});

test("Node: set with ttl and tags", async () => {
  const cache = await SwrCache.open({ fresh: 5_000, stale: 10_000, expired: 20_000 });
  await cache.set("k", { v: 1 }, { ttl: 60_000, tags: ["t"] });
  const p = await cache.peek("k");
  assert.deepEqual([p.value, p.status, p.freshUntil - p.createdAt, p.staleUntil - p.freshUntil], [{ v: 1 }, "hit", 60_000, 10_000]);
  await cache.set("plain", "v", {});
  assert.equal((await cache.peek("plain")).freshUntil - (await cache.peek("plain")).createdAt, 5_000);
  await cache.invalidateTag("t");
  assert.equal(await cache.peek("k"), undefined);
  assert.equal((await cache.peek("plain")).value, "v");
  cache.close();
});

test("Node: clear removes every entry, and no lookup after it joins one from before", async () => {
  const cache = await SwrCache.open({ fresh: 60_000 });
  const { calls, fetcher } = counting();
  for (const k of ["a", "b"]) await cache.get(k, fetcher(k));
  await cache.get("t", fetcher("t"), { tags: ["x"] });
  await cache.clear();
  for (const k of ["a", "b", "t"]) assert.equal(await cache.peek(k), undefined, k);
  for (const k of ["a", "b", "t"]) assert.equal((await cache.get(k, fetcher(k))).value, `${k}@2`);
  assert.deepEqual(Object.fromEntries(calls), { a: 2, b: 2, t: 2 });

  // A lookup in flight across a clear: its own callers get its value, later
  // callers a new fetch, and the old value is not stored.
  const gate = deferred();
  let n = 0;
  const slow = async () => {
    const mine = ++n;
    if (mine === 1) await gate.promise;
    return `v${mine}`;
  };
  const before = cache.get("k", slow);
  const joined = cache.get("k", slow);
  await new Promise((r) => setImmediate(r));
  const cleared = cache.clear();
  const afterClear = cache.get("k", slow);
  await cleared;
  gate.resolve();
  assert.deepEqual([(await before).value, (await joined).value, (await afterClear).value], ["v1", "v1", "v2"]);
  assert.equal(n, 2);
  assert.equal((await cache.get("k", slow)).value, "v2", "the value fetched after the clear is the one kept");
  cache.close();
  assert.deepEqual(await kindOf(cache.clear()), ["SwrError", "closed"]);
  assert.deepEqual(await kindOf(cache.invalidateTag("t")), ["SwrError", "closed"]);
});

test("Node: tags live in the persistent store: another instance sees them and an invalidation", async () => {
  const store = objectStore();
  const options = { storage: store, fresh: 60_000 };
  const first = await SwrCache.open(options);
  const { calls, fetcher } = counting();
  await first.get("a", fetcher("a"), { tags: ["t"] });
  await first.set("b", "b@set", { tags: ["t"] });
  await first.get("u", fetcher("u"));
  assert.ok([...store.map.keys()].some((k) => k.startsWith("\0swre:")), "tag records are in the store");

  // A new instance (a new isolate, a restart) reads the tagged entries back.
  const second = await SwrCache.open(options);
  const read = {};
  for (const k of ["a", "b", "u"]) {
    const r = await second.get(k, fetcher(k));
    read[k] = [r.value, r.status];
  }
  assert.deepEqual(read, { a: ["a@1", "hit"], b: ["b@set", "hit"], u: ["u@1", "hit"] });
  second.close();

  // Invalidated by the first; a third instance opened after sees it.
  await first.invalidateTag("t");
  const third = await SwrCache.open(options);
  const after = {};
  for (const k of ["a", "b", "u"]) {
    const r = await third.get(k, fetcher(k), k === "u" ? undefined : { tags: ["t"] });
    after[k] = [r.value, r.status];
  }
  assert.deepEqual(after, { a: ["a@2", "miss"], b: ["b@1", "miss"], u: ["u@1", "hit"] });
  assert.deepEqual(Object.fromEntries(calls), { a: 2, u: 1, b: 1 });
  // expireTag through the store too.
  await third.expireTag("t");
  const fourth = await SwrCache.open(options);
  const stale = await fourth.get("a", fetcher("a"));
  assert.deepEqual([stale.value, stale.status], ["a@2", "stale"]);
  await fourth.pending();
  assert.equal(calls.get("a"), 3);
  // A store without `clear`: clear rejects with kind storage (the memory tier is emptied).
  assert.deepEqual(await kindOf(first.clear()), ["SwrError", "storage"]);
  for (const c of [first, third, fourth]) c.close();
});
