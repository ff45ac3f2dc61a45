// The JavaScript API (SwrCache) in workerd: option validation, fetcher
// failures as clear rejections (never a trap), fallback, value pass-through,
// peek/set/delete/stats.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { Miniflare } from "miniflare";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
let mf;

before(async () => {
  mf = new Miniflare({
    modulesRoot: root,
    modules: true,
    scriptPath: path.join(root, "tests/api-worker.mjs"),
    modulesRules: [
      { type: "ESModule", include: ["**/*.js"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    compatibilityDate: "2025-06-01",
  });
  await mf.ready;
});

after(async () => mf?.dispose());

async function scenario(name) {
  const res = await mf.dispatchFetch(`http://api.test/${name}`);
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

test("bad options reject with a message naming the option", async () => {
  const r = await scenario("badOptions");
  const expect = {
    negative: "`fresh`",
    nan: "`stale`",
    storage: "`storage`",
    unknown: "`fersh`",
    breaker: "`breaker.failureThreshold`",
    total: "at least 5 s",
    name: "`name`",
    waitUntil: "`waitUntil`",
    storeObject: "`put`",
    notObject: "options must be an object",
    throttle: "`failSafeThrottle`",
    throttleBase: "`failSafeThrottle.base`",
    throttleUnknown: "`failSafeThrottle.bse`",
  };
  for (const [k, needle] of Object.entries(expect)) {
    assert.equal(r[k].ok, false, `${k} was accepted`);
    assert.equal(r[k].isError, true, `${k}: not an Error`);
    assert.equal(r[k].name, "SwrError");
    assert.ok(r[k].message.includes(needle), `${k}: ${r[k].message}`);
  }
});

test("a throwing or rejecting fetcher is a clear rejection, and the instance keeps working", async () => {
  const r = await scenario("fetcherFailures");
  assert.deepEqual([r.thrown.ok, r.thrown.kind, r.thrown.cause], [false, "upstream", "sync boom"]);
  assert.match(r.thrown.message, /sync boom/);
  assert.deepEqual([r.rejected.ok, r.rejected.kind, r.rejected.cause], [false, "upstream", "async boom"]);
  assert.match(r.undef.message, /not JSON-serialisable/);
  assert.match(r.bigint.message, /not JSON-serialisable/);
  assert.deepEqual([r.notFn.ok, r.notFn.kind], [false, "fetcher"]);
  assert.deepEqual([r.badKey.ok, r.badKey.kind], [false, "invalidKey"]);
  assert.equal(r.after.ok, true);
  assert.deepEqual(r.after.value.value, { still: "working" });
  assert.equal(r.after.value.status, "miss");
  assert.equal(r.stats.upstreamErrors, 4);
});

test("an old value is served as a fallback when the fetcher fails", async () => {
  const { r, stats } = await scenario("fallback");
  assert.equal(r.ok, true);
  assert.equal(r.value.status, "fallback");
  assert.equal(r.value.detail, "upstream-error");
  assert.deepEqual(r.value.value, { version: 1 });
  assert.equal(stats.fallbacks, 1);
});

test("expire makes an entry stale at once and keeps it as a fallback, in memory and over the Cache API", async () => {
  const r = await scenario("expire");
  for (const storage of ["memory", "cache"]) {
    const s = r[storage];
    const got = (o) => [o.ok, o.value?.value, o.value?.status];
    assert.deepEqual(got(s.before), [true, "old", "hit"], storage);
    assert.deepEqual(got(s.after), [true, "old", "stale"], storage);
    assert.deepEqual(got(s.refreshed), [true, "new", "hit"], storage);
    assert.deepEqual(got(s.failing), [true, "new", "stale"], `${storage}: the fallback after expire`);
    assert.equal(s.missing.ok, true, storage);
    assert.deepEqual([s.badKey.ok, s.badKey.kind], [false, "invalidKey"], storage);
  }
});

test("an early refresh starts once past its threshold and the next hit has the new value", async () => {
  const r = await scenario("earlyRefresh");
  const got = (o) => [o.ok, o.value?.value, o.value?.status, o.value?.detail];
  assert.deepEqual(got(r.first), [true, "v1", "miss", "none"]);
  assert.deepEqual(got(r.before), [true, "v1", "hit", "none"]);
  assert.deepEqual(got(r.due[0]), [true, "v1", "hit", "early-refresh"]);
  for (const d of r.due.slice(1)) assert.deepEqual([d.value.status, d.value.detail], ["hit", "none"]);
  assert.deepEqual(got(r.after), [true, "v2", "hit", "none"]);
  assert.equal(r.calls, 2, "one early refresh");
  assert.equal(r.stats.earlyRefreshes, 1);
  assert.equal(r.stats.stale, 0);
  assert.equal(r.bad.ok, false);
  assert.match(r.bad.message, /`earlyRefresh`/);
});

test("past the soft timeout a get resolves with the old value and the fetch stores later", async () => {
  const r = await scenario("softTimeout");
  assert.deepEqual([r.first.ok, r.first.value.value, r.first.value.status, r.first.value.detail], [true, "old", "fallback", "soft-timeout"]);
  assert.ok(r.waited < 250, `waited ${r.waited} ms`);
  assert.equal(r.peeked.value.value, "new", "the slow fetch stored its value");
  assert.equal(r.stats.softTimeouts, 1);
  assert.equal(r.bad.ok, false);
  assert.match(r.bad.message, /`softTimeout` must be shorter than the refresh timeout/);
});

test("a failed refresh holds the next ones back for the throttle window, each saying so", async () => {
  const r = await scenario("throttle");
  assert.deepEqual([r.first.ok, r.first.value.status, r.first.value.detail], [true, "stale", "none"]);
  for (const l of r.later) {
    assert.deepEqual([l.ok, l.value.value, l.value.status, l.value.detail], [true, "old", "stale", "throttled"]);
  }
  assert.equal(r.calls, 1, "one call, then the throttle");
  assert.equal(r.stats.throttled, 5);
  assert.equal(r.offCalls, 3, "failSafeThrottle: false calls on every stale hit");
});

test("the fetcher's context: notModified, setTtl, noStore, and one call for concurrent gets", async () => {
  const r = await scenario("fetchContext");
  for (const storage of ["memory", "cache"]) {
    const { first, told, revalidated, hit, same, persisted } = r.conditional[storage];
    assert.deepEqual(told, { value: { body: "v1", etag: "e1" }, createdAt: first.createdAt }, storage);
    const v = revalidated.value;
    assert.deepEqual([revalidated.ok, v.value, v.status], [true, { body: "v1", etag: "e1" }, "miss"], storage);
    assert.ok(v.createdAt > first.createdAt, `${storage}: the phases start again`);
    assert.equal(v.freshUntil - v.createdAt, 60_000, `${storage}: with the fetcher's fresh window`);
    assert.deepEqual([hit.value.status, hit.value.freshUntil], ["hit", v.freshUntil], storage);
    assert.equal(same, true, `${storage}: the held value itself`);
    if (storage === "cache") {
      assert.deepEqual([persisted.value.value, persisted.value.createdAt, persisted.value.freshUntil], [{ body: "v1", etag: "e1" }, v.createdAt, v.freshUntil], "written back to the Cache API");
    }
  }
  const t = r.ttl.value;
  assert.deepEqual([t.freshUntil - t.createdAt, t.staleUntil - t.freshUntil, t.expiresAt - t.staleUntil], [12_345, 10_000, 20_000]);
  const [a, peeked, b] = r.noStore;
  assert.deepEqual([a.value.value, a.value.status, peeked.value, b.value.value, b.value.status, r.noStoreCalls], ["secret 1", "miss", undefined, "secret 2", "miss", 2]);
  assert.deepEqual([r.nothingHeld.ok, r.nothingHeld.kind], [false, "upstream"]);
  assert.match(r.nothingHeld.message, /not modified/);
  assert.deepEqual([r.badTtl.ok, r.badTtl.kind], [false, "options"]);
  assert.match(r.badTtl.message, /ctx\.setTtl/);
  assert.equal(r.calls, 1, "one fetcher call for 50 concurrent gets");
  for (const c of r.concurrent) assert.deepEqual(c, [true, "one", 30_000]);
  assert.equal(r.stats.breakerOpened, 0);
});

test("strings and Uint8Arrays pass through untouched; other values as JSON", async () => {
  const r = await scenario("passThrough");
  assert.deepEqual(r.s, ["string", "plain text, not JSON", "miss", "hit"]);
  assert.deepEqual(r.b, [true, [0, 1, 2, 250, 255], "miss", "hit"]);
  assert.deepEqual(r.j, [{ n: 1, list: [true, null, "x"] }, "miss", "hit"]);
});

test("peek, set, delete and stats", async () => {
  const r = await scenario("peekSetDelete");
  assert.equal(r.before, true);
  assert.deepEqual(r.peeked, ["v", "hit"]);
  assert.equal(r.gone, true);
  assert.deepEqual(r.r, ["fetched", "miss"]);
  assert.equal(r.calls, 1);
  assert.equal(r.stats.misses, 1);
  assert.equal(r.stats.upstreamCalls, 1);
});

test("a refresh workerd cancels (no waitUntil) does not wedge its key", async () => {
  const a = await scenario("wedgeStart");
  assert.equal(a.r.ok, true, JSON.stringify(a.r));
  assert.equal(a.r.value.status, "stale");
  // Past the refresh's deadline (1 s) and into the expired window (1.5 s).
  await new Promise((r) => setTimeout(r, 1_700));
  const b = await scenario("wedgeLater");
  assert.equal(b.r.ok, true, `a wedged key: ${JSON.stringify(b.r)}`);
  assert.equal(b.r.value.status, "fallback");
  assert.equal(b.r.value.value, "old");
  assert.deepEqual([b.stats.inFlight, b.stats.refreshesRunning], [0, 0]);
});

test("tags and clear, in memory and over the Cache API, seen by a new instance over the same store", async () => {
  const r = await scenario("tags");
  for (const storage of ["memory", "cache"]) {
    const o = r[storage];
    assert.deepEqual(o.invalidated, { a: ["a@2", "miss"], b: ["b@1", "miss"], u: ["u@1", "hit"], own: ["own@1", "hit"] }, storage);
    assert.deepEqual([o.expired.value.value, o.expired.value.status], ["a@2", "stale"], storage);
    assert.deepEqual([o.refreshed.value.value, o.refreshed.value.status], ["a@3", "hit"], storage);
    if (storage === "cache") {
      assert.deepEqual([o.seen.value.value, o.seen.value.status], ["a@4", "miss"], "the new instance sees the invalidation");
      assert.deepEqual([o.untagged.value.value, o.untagged.value.status], ["u@1", "hit"], "and reads untagged entries");
    } else {
      assert.deepEqual([o.seen.value.status, o.untagged.value.status], ["miss", "miss"], "memory is per instance");
    }
    for (const [k, kind] of Object.entries({ empty: "invalidTag", tooMany: "invalidTag", notArray: "options", tagOp: "invalidTag", setTags: "invalidTag" })) {
      assert.deepEqual([o.bad[k].ok, o.bad[k].name, o.bad[k].kind], [false, "SwrError", kind], `${storage} ${k}`);
    }
    assert.deepEqual([o.kept.value.value, o.kept.value.status], ["u@1", "hit"], "a bad set changed nothing");
    if (storage === "cache") continue; // clear: see the scenario
    assert.equal(o.cleared.ok, true, storage);
    assert.deepEqual([o.afterClear.ok, o.afterClear.value], [true, undefined], "peek after clear: undefined");
    assert.deepEqual([o.refetched.value.value, o.refetched.value.status], ["u@3", "miss"], "u@2 went to the other instance");
  }
});

test("getMany: one call for the stale and missing keys, waitUntil for the refresh, a key left out failing alone", async () => {
  const r = await scenario("getMany");
  assert.equal(r.first.ok, true);
  const shown = (rs) => rs.map((x) => (x.ok ? [x.key, x.value, x.status] : [x.key, x.error.kind]));
  assert.deepEqual(shown(r.first.value), [["stale", "s0", "stale"], ["missing", "missing@new", "miss"], ["fresh", "f0", "hit"], ["gone", "upstream"]]);
  assert.deepEqual(r.asked, [["stale", "missing", "gone"], ["fresh"], ["missing", "stale", "c"]]);
  assert.deepEqual([r.waitedFor, r.waitUntilCalls], [0, 1], "nothing left running after the first call; the stale-only call's refresh handed over");
  assert.deepEqual(shown(r.staleOnly.value), [["fresh", "f0", "stale"]]);
  assert.equal(r.refreshed.value.value, "f1");
  assert.deepEqual(shown(r.many.value), [["missing", "missing@2", "miss"], ["stale", "stale@2", "miss"], ["c", "c@2", "miss"]]);
  assert.deepEqual([r.one.value.value, r.singles], ["missing@2", 0], "the get joined the batch's call");
  assert.equal(r.stats.batchCalls, 3);
});
