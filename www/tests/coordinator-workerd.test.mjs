// SwrCoordinator in real workerd (Miniflare runs Durable Objects): two
// Worker scripts, "a" and "b" (two isolates, each with its own SwrCache
// engine), share one coordinator namespace and one KV namespace, and call a
// counting origin. Each stampede sends its requests half to each isolate.
//
// The origin holds its first answer for a key until every request has
// arrived and the other isolate has either called the origin too or is
// waiting at the coordinator: so a run without the coordinator makes exactly
// two calls (the control tests), and one with it exactly one. With
// `kv=own` each isolate reads its own KV namespace, so nothing stored by one
// is read by the other (production KV may lag for about 60 s; Miniflare's
// does not): a waiter's value can only have come through the coordinator.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { Miniflare, Response } from "miniflare";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
/** The objects the keys are spread over by default (coordinated.js). */
const BUCKETS = 32;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The origin: counts calls and arrivals per key; `routes.get(key)` may hold
// an answer (`gate(n)`) and give its fresh window (`fresh(n)`).
const calls = new Map();
const arrived = new Map();
const routes = new Map();
/** Key → what a `linger=1` response waits for before it is sent. */
const lingers = new Map();
const count = (map, key) => map.get(key) ?? 0;

async function origin(request) {
  const key = decodeURIComponent(new URL(request.url).pathname.slice(1));
  const n = count(calls, key) + 1;
  calls.set(key, n);
  const route = routes.get(key) ?? {};
  await route.gate?.(n);
  const headers = {};
  const fresh = route.fresh?.(n);
  if (fresh !== undefined) headers["x-fresh"] = String(fresh);
  return Response.json({ version: n, by: request.headers.get("x-isolate") }, { headers });
}

let mf, isolates;
/** Settled by `after`: origin calls held "forever" end with the tests. */
let release;
const forever = new Promise((r) => (release = r));

before(async () => {
  const modulesRules = [
    { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
    { type: "CompiledWasm", include: ["**/*.wasm"] },
  ];
  const script = (name, file) => ({ name, modules: true, modulesRoot: root, scriptPath: path.join(root, file), modulesRules, compatibilityDate: "2025-06-01" });
  const isolate = (name) => ({
    ...script(name, "tests/coordinator-worker.mjs"),
    bindings: { ISOLATE: name },
    kvNamespaces: { SHARED_KV: "kv-shared", OWN_KV: `kv-own-${name}` },
    durableObjects: Object.fromEntries(
      [["SWRE_COORDINATOR", "SwrCoordinator"], ["BROKEN", "Broken"], ["MISSING", "Missing"], ["HUNG", "Hung"]]
        .map(([binding, className]) => [binding, { className, scriptName: "host" }]),
    ),
    serviceBindings: {
      ORIGIN: origin,
      ARRIVED: async (request) => {
        const url = new URL(request.url);
        const key = decodeURIComponent(url.pathname.slice(1));
        if (url.searchParams.has("linger")) await lingers.get(key)?.();
        else arrived.set(key, count(arrived, key) + 1);
        return new Response(null, { status: 204 });
      },
    },
  });
  mf = new Miniflare({ workers: [isolate("a"), isolate("b"), script("host", "tests/coordinator-host.mjs")] });
  await mf.ready;
  isolates = { a: await mf.getWorker("a"), b: await mf.getWorker("b") };
});

after(async () => {
  release();
  await mf?.dispose();
});

/** What the coordinator's objects hold now, summed: `{ flights, waiters }` (asked from inside workerd). */
async function held() {
  const res = await isolates.a.fetch(`http://worker.test/held?buckets=${BUCKETS}`);
  return res.json();
}

/** Polls `cond` (may be async) every 20 ms until it holds or `ms` pass; whether it held. */
async function until(cond, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await sleep(20);
  }
  return false;
}

/**
 * Holds the origin's first answer for `key` until `n` requests for it have
 * arrived and the other isolate has called the origin too or waits at the
 * coordinator (or 5 s pass): exact counts either way. Later answers wait
 * for the `n` requests only. `from`: the call number of the first answer
 * held.
 */
function holdFirst(key, n, { from = 1, fresh } = {}) {
  const base = count(arrived, key);
  const all = () => count(arrived, key) - base >= n;
  routes.set(key, {
    fresh,
    gate: async (call) => {
      if (call < from) return;
      // Every answer waits for every request, so none is a hit yet.
      if (call > from) await until(all, 5_000);
      else await until(async () => all() && (count(calls, key) > from || (await held()).waiters > 0), 5_000);
    },
  });
}

/** One request to isolate `name` (a or b); resolves to its JSON report. */
async function ask(name, params) {
  const res = await isolates[name].fetch(`http://worker.test/get?${new URLSearchParams(params)}`);
  return res.json();
}

/** `n` concurrent requests, alternating between the isolates. */
function stampede(n, params) {
  return Promise.all(Array.from({ length: n }, (_, i) => ask(i % 2 === 0 ? "a" : "b", params)));
}

/** The last stats each isolate reported, by isolate. */
function statsOf(reports) {
  const by = {};
  for (const r of reports) by[r.isolate] = r.stats;
  return by;
}

const sum = (by, field) => Object.values(by).reduce((s, st) => s + st[field], 0);

for (const kv of ["shared", "own"]) {
  for (const [coordinator, expected] of [["SWRE_COORDINATOR", 1], ["none", 2]]) {
    const label = coordinator === "none" ? "without a coordinator (control)" : "with the coordinator";
    test(`${kv} KV, ${label}: 100 concurrent requests over two isolates for a cold key make ${expected} origin call(s)`, async () => {
      const key = `cold-${kv}-${coordinator}`;
      holdFirst(key, 100);
      const reports = await stampede(100, { key, kv, coordinator });
      assert.equal(count(calls, key), expected);
      assert.equal(new Set(reports.map((r) => r.instance)).size, 2, "two isolates answered");
      assert.deepEqual(reports.filter((r) => !r.ok), [], "no request failed");
      if (coordinator === "none") return;
      // Every request of both isolates got the one fetched value.
      assert.deepEqual(new Set(reports.map((r) => JSON.stringify(r.value))), new Set([JSON.stringify({ version: 1, by: reports.find((r) => r.stats.coordinatorLeases === 1).isolate })]));
      const stats = statsOf(reports);
      assert.equal(sum(stats, "coordinatorLeases"), 1);
      assert.equal(sum(stats, "coordinatorShared"), 1, "the other isolate was handed the result");
      assert.equal(sum(stats, "coordinatorUnavailable"), 0);
      assert.deepEqual(await held(), { flights: 0, waiters: 0 }, "the coordinator keeps nothing once the flight ends");
    });

    test(`${kv} KV, ${label}: 100 concurrent requests over two isolates for a stale key make ${expected} refresh call(s), in waitUntil`, async () => {
      const key = `stale-${kv}-${coordinator}`;
      // Warmed in each isolate (one call with shared KV, else two), fresh
      // for 1 s; refreshed values stay fresh for a minute.
      let warmed = Infinity;
      const fresh = (n) => (n > warmed ? 60_000 : undefined);
      routes.set(key, { fresh });
      const warmA = await ask("a", { key, kv, coordinator });
      assert.equal(warmA.status, "miss");
      const warm = await ask("b", { key, kv, coordinator });
      assert.equal(warm.status, kv === "shared" ? "hit" : "miss");
      warmed = count(calls, key);
      await sleep(1_300); // past the 1 s fresh window
      holdFirst(key, 100, { from: warmed + 1, fresh });
      const reports = await stampede(100, { key, kv, coordinator });
      assert.deepEqual(reports.filter((r) => !r.ok), [], "no request failed");
      assert.ok(reports.every((r) => r.status === "stale"), "every request was answered at once with the stale value");
      // The refreshes run after the responses (waitUntil); then both isolates hold the new value.
      for (const name of ["a", "b"]) {
        const fresh = await until(async () => (await ask(name, { key, kv, coordinator })).status === "hit", 5_000);
        assert.ok(fresh, `isolate ${name} holds a refreshed value`);
      }
      assert.equal(count(calls, key) - warmed, expected);
      if (coordinator === "none") return;
      const a = await ask("a", { key, kv, coordinator });
      const b = await ask("b", { key, kv, coordinator });
      assert.deepEqual(a.value, b.value, "both isolates hold the one refreshed value");
      assert.equal(a.value.version, warmed + 1);
      // The caches are the cold test's too: counted from the warm-up on.
      const before = warmA.stats.coordinatorShared + warm.stats.coordinatorShared;
      assert.equal(a.stats.coordinatorShared + b.stats.coordinatorShared - before, 1, "the other isolate was handed the refreshed value");
      assert.deepEqual(await held(), { flights: 0, waiters: 0 });
    });
  }
}

test("keys sharing a bucket (2 buckets, 8 keys, 200 requests) make one origin call each", async () => {
  const keys = Array.from({ length: 8 }, (_, i) => `shared-bucket-${i}`);
  const base = keys.reduce((s, k) => s + count(arrived, k), 0);
  const total = () => keys.reduce((s, k) => s + count(arrived, k), 0) - base;
  const gate = async (call) => {
    if (call !== 1) return;
    await until(async () => total() >= 200 && (keys.some((k) => count(calls, k) > 1) || (await held()).waiters >= keys.length), 5_000);
  };
  for (const k of keys) routes.set(k, { gate });
  const reports = await Promise.all(keys.flatMap((key) => Array.from({ length: 25 }, (_, i) => ask(i % 2 === 0 ? "a" : "b", { key, kv: "own", buckets: 2 }))));
  assert.deepEqual(reports.filter((r) => !r.ok), []);
  assert.deepEqual(keys.map((k) => count(calls, k)), keys.map(() => 1));
  assert.deepEqual(await held(), { flights: 0, waiters: 0 });
});

for (const broken of ["BROKEN", "MISSING", "HUNG"]) {
  const how = { BROKEN: "throws", MISSING: "lacks the methods", HUNG: "does not answer within 1 s" }[broken];
  test(`a coordinator that ${how}: 100 requests are all answered, with one origin call per isolate at most`, async () => {
    const key = `unreachable-${broken}`;
    routes.set(key, {
      gate: async (call) => {
        if (call === 1) await until(() => count(arrived, key) >= 100 && count(calls, key) >= 2, 5_000);
      },
    });
    const reports = await stampede(100, { key, kv: "own", coordinator: broken });
    assert.deepEqual(reports.filter((r) => !r.ok), [], "no request failed");
    // The first call is held until the other isolate has called too; each isolate's engine makes one.
    const n = count(calls, key);
    assert.equal(n, 2, `${n} origin calls`);
    const stats = statsOf(reports);
    assert.equal(sum(stats, "coordinatorUnavailable"), n, "each call made without the coordinator was counted");
    assert.equal(sum(stats, "coordinatorLeases") + sum(stats, "coordinatorShared"), 0);
  });
}

test("a holder whose origin hangs loses the lease at its deadline, and a waiter takes over", async () => {
  const key = "hung-holder";
  routes.set(key, { gate: (call) => (call === 1 ? forever : undefined) });
  const params = { key, kv: "own", timeout: 3_000 };
  // From before the holder's request: its lookup's deadline is at least 3 s after this.
  const started = Date.now();
  const first = ask("a", params);
  assert.ok(await until(() => count(calls, key) === 1, 5_000));
  await sleep(1_000); // b's deadline is a second after a's
  const second = await ask("b", params);
  const tookMs = Date.now() - started;
  const holder = await first;
  assert.equal(holder.ok, false);
  assert.match(holder.message, /timeout/, "the holder's own lookup timed out");
  assert.equal(second.ok, true, JSON.stringify(second));
  assert.deepEqual(second.value, { version: 2, by: "b" }, "the waiter called the origin once the lease was free");
  assert.equal(second.stats.coordinatorTakeovers, 1);
  assert.equal(count(calls, key), 2);
  assert.ok(tookMs >= 3_000, `the waiter waited for the holder's deadline, 3 s after its start (${tookMs} ms)`);
  assert.deepEqual(await held(), { flights: 0, waiters: 0 });
});

test("a holder that dies (its refresh cancelled by workerd mid-fetch) loses the lease when it expires, and a waiter takes over", async () => {
  const key = "dead-holder";
  const params = { key, kv: "own", timeout: 3_000 };
  const fresh = (n) => (n > 2 ? 60_000 : undefined);
  routes.set(key, { fresh });
  await ask("a", params);
  await ask("b", params);
  assert.equal(count(calls, key), 2);
  await sleep(1_300); // past the 1 s fresh window
  // a's refresh takes the lease and calls the origin, which never answers.
  // It has no waitUntil: a's response is held until the origin has the
  // call, then sent, and workerd cancels the refresh (its timers too).
  routes.set(key, { fresh, gate: (call) => (call === 3 ? forever : undefined) });
  lingers.set(key, () => until(() => count(calls, key) === 3, 5_000));
  const stale = await ask("a", { ...params, wait: 0, linger: 1 });
  assert.equal(stale.status, "stale");
  assert.equal(count(calls, key), 3, "a's refresh called the origin, holding the lease");
  assert.deepEqual(await held(), { flights: 1, waiters: 0 });
  await sleep(1_000); // b's deadline is a second after a's: time to fetch once it takes over
  const waiting = await ask("b", params);
  assert.equal(waiting.status, "stale");
  assert.equal(count(calls, key), 3, "b's refresh waits on the coordinator");
  // a's lease ends at a's deadline; then b's refresh takes it over and fetches.
  assert.ok(await until(async () => (await ask("b", params)).status === "hit", 6_000), "b refreshed");
  const b = await ask("b", params);
  assert.deepEqual(b.value, { version: 4, by: "b" });
  assert.equal(b.stats.coordinatorTakeovers, waiting.stats.coordinatorTakeovers + 1);
  assert.equal(count(calls, key), 4);
  assert.deepEqual(await held(), { flights: 0, waiters: 0 });
});
