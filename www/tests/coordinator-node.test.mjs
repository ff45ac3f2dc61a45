// The coordinator's parts in plain Node, driven exactly: the lease table of
// one SwrCoordinator object (flights.js) with real short timers, and two
// SwrCaches (two "isolates") sharing an in-process stand-in for the Durable
// Object namespace, every call's arguments and answer structured-cloned as
// RPC does. The same protocol runs in workerd in coordinator-workerd.test.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { SwrCache } from "../package/src/node.js";
import { Flights } from "../package/src/flights.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(cond, ms = 5_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await sleep(2);
  }
  return false;
}

/** Whether `p` has settled, after the pending callbacks ran. */
async function settled(p) {
  let done = false;
  p.then(() => (done = true), () => (done = true));
  await sleep(0);
  return done;
}

test("Flights: one lease per key; its result reaches every waiter; nothing is kept after", async () => {
  const f = new Flights();
  assert.equal(f.acquire("k", "h", 1_000), "lease");
  assert.equal(f.acquire("k", "w1", 1_000), "wait");
  assert.equal(f.acquire("k", "w2", 1_000), "wait");
  // Another key in the same object has its own lease.
  assert.equal(f.acquire("other", "h2", 1_000), "lease");
  assert.deepEqual(f.inspect(), { flights: 2, waiters: 2 });
  const w1 = f.wait("w1");
  assert.equal(await settled(w1), false);
  assert.equal(f.publish("k", "w1", "not the holder"), false);
  assert.equal(f.publish("k", "h", { v: 1 }), true);
  assert.deepEqual(await w1, { result: { v: 1 } });
  // w2 collects after the result came.
  assert.deepEqual(await f.wait("w2"), { result: { v: 1 } });
  assert.deepEqual(await f.wait("w2"), { gone: true }, "collected once, then forgotten");
  assert.equal(f.acquire("k", "next", 1_000), "lease", "the flight ended with its result");
  f.release("k", "next");
  f.release("other", "h2");
  assert.deepEqual(f.inspect(), { flights: 0, waiters: 0 });
});

/** Runs `body` with `setTimeout` and `Date` mocked from 0: time moves only by `t.mock.timers.tick`. */
function mocked(t) {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 0 });
  return (ms) => t.mock.timers.tick(ms);
}

/** Whether `p` has settled, after the pending callbacks ran (mocked timers do not delay it). */
async function settledNow(p) {
  let done = false;
  p.then(() => (done = true), () => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
}

test("Flights: a holder that stops renewing loses its lease a lease's time later, whatever its deadline; a waiter takes it over", async (t) => {
  const tick = mocked(t);
  const f = new Flights(100);
  assert.equal(f.acquire("k", "dead", 60_000), "lease");
  f.acquire("k", "short", 5_000);
  f.acquire("k", "long", 6_000);
  const short = f.wait("short");
  const long = f.wait("long");
  // Renewed while alive: the lease outlives many lease times.
  for (let i = 0; i < 10; i++) {
    tick(90);
    assert.equal(f.renew("k", "dead"), true);
  }
  assert.equal(await settledNow(long), false);
  // Then no renewal: gone 100 ms after the last one, not at its deadline a minute away.
  tick(99);
  assert.equal(await settledNow(long), false);
  tick(1);
  assert.deepEqual(await long, { lease: true }, "taken over by the waiter with the most time left");
  assert.equal(await settledNow(short), false, "the other keeps waiting, now on the new holder");
  assert.equal(f.renew("k", "dead"), false, "the former holder is told it lost the lease");
  assert.equal(f.publish("k", "dead", "late"), false, "the former holder can no longer publish");
  assert.equal(f.publish("k", "long", "v2"), true);
  assert.deepEqual(await short, { result: "v2" });
  assert.deepEqual(f.inspect(), { flights: 0, waiters: 0 });
});

test("Flights: a lease goes to a waiter waiting now over one that never called wait, whatever their deadlines", async (t) => {
  const tick = mocked(t);
  const f = new Flights(100);
  f.acquire("k", "h", 10_000);
  f.acquire("k", "absent", 9_000); // the most time left, but it never waits
  f.acquire("k", "live", 1_000);
  const live = f.wait("live");
  tick(100);
  assert.deepEqual(await live, { lease: true });
  // The live holder dies too: now only the absent one is left, granted a
  // lease it must renew; it never collects it, so the lease ends again.
  tick(100);
  assert.deepEqual(f.inspect(), { flights: 1, waiters: 1 }, "absent holds the lease, its grant not yet collected");
  tick(100);
  assert.deepEqual(f.inspect(), { flights: 0, waiters: 1 }, "the flight ended; the uncollected grant waits for its deadline");
  tick(9_000);
  assert.deepEqual(f.inspect(), { flights: 0, waiters: 0 });
  assert.equal(f.acquire("k", "y", 1_000), "lease");
  f.release("k", "y");
});

test("Flights: a waiter whose time runs out is told so and forgotten, and is never handed a lease past its deadline", async (t) => {
  const tick = mocked(t);
  const f = new Flights(300);
  f.acquire("k", "h", 10_000);
  f.acquire("k", "w", 40);
  const w = f.wait("w");
  tick(39);
  assert.equal(await settledNow(w), false);
  tick(1);
  assert.deepEqual(await w, { late: true });
  assert.deepEqual(f.inspect(), { flights: 1, waiters: 0 });
  // A waiter whose deadline falls with the lease's end (the lease's timer
  // runs first) is late, not the new holder.
  f.release("k", "h");
  f.acquire("k", "h2", 10_000);
  f.acquire("k", "due", 300);
  const due = f.wait("due");
  tick(300);
  assert.deepEqual(await due, { late: true });
  assert.deepEqual(f.inspect(), { flights: 0, waiters: 0 });
});

test("Flights: a caller that wrote the key joins only a flight whose holder started after its write", (t) => {
  const tick = mocked(t);
  const f = new Flights(1_000);
  f.acquire("k", "h", 10_000);
  tick(50);
  assert.equal(f.acquire("k", "w1", 10_000, 40), "alone", "the holder started 50 ms ago, before a write 40 ms ago");
  assert.equal(f.acquire("k", "w3", 10_000, 50), "alone", "started with the write: not joined");
  assert.equal(f.acquire("k", "w2", 10_000, 60), "wait", "started after the write 60 ms ago: joined");
  assert.equal(f.acquire("k", "w0", 10_000), "wait", "no write: joined");
  assert.deepEqual(f.inspect(), { flights: 1, waiters: 2 }, "nothing kept for the callers that go alone");
  assert.throws(() => f.acquire("k", "w4", 10_000, -1), TypeError);
  // A takeover starts the flight again: a write before it is respected.
  f.release("k", "h");
  tick(10);
  assert.equal(f.acquire("k", "w5", 10_000, 20), "wait", "the new holder started 10 ms ago, after the write");
  for (const id of ["w0", "w2", "w5"]) f.release("k", id);
  tick(10_000); // the outcomes nobody collected, kept to their deadlines
  assert.deepEqual(f.inspect(), { flights: 0, waiters: 0 });
});

test("Flights: a waiter that leaves is forgotten; a holder that leaves hands over at once; bad input throws and changes nothing", async () => {
  const f = new Flights();
  f.acquire("k", "h", 1_000);
  f.acquire("k", "w1", 1_000);
  f.acquire("k", "w2", 900);
  f.release("k", "w1");
  assert.deepEqual(await f.wait("w1"), { gone: true });
  const w2 = f.wait("w2");
  f.release("k", "h");
  assert.deepEqual(await w2, { lease: true });
  f.release("k", "w2");
  assert.deepEqual(f.inspect(), { flights: 0, waiters: 0 });
  for (const [key, id, ms] of [[7, "i", 1], ["", "i", 1], ["k", "", 1], ["k", "x".repeat(129), 1], ["k", "i", Number.NaN], ["k", "i", "1"]]) {
    assert.throws(() => f.acquire(key, id, ms), TypeError);
  }
  f.acquire("k", "h", 1_000);
  assert.throws(() => f.acquire("k", "h", 1_000), TypeError);
  f.acquire("k", "w", 1_000);
  assert.throws(() => f.acquire("k", "w", 1_000), TypeError);
  f.release("k", "w");
  f.release("k", "h");
  assert.deepEqual(f.inspect(), { flights: 0, waiters: 0 });
});

test("Flights: memory stays bounded by what is in flight (10 000 keys come and go)", () => {
  const f = new Flights();
  for (let i = 0; i < 10_000; i++) {
    f.acquire(`k${i}`, `h${i}`, 60_000);
    f.acquire(`k${i}`, `w${i}`, 60_000);
    f.publish(`k${i}`, `h${i}`, i);
    f.wait(`w${i}`);
  }
  assert.deepEqual(f.inspect(), { flights: 0, waiters: 0 });
});

/**
 * A stand-in for a Durable Object namespace bound to SwrCoordinator: one
 * `Flights` per object name, arguments and answers structured-cloned (RPC).
 * `broken`: every stub method rejects; `refuse(result)`: `publish` of that result rejects.
 */
function namespace({ broken = false, leaseMs, refuse } = {}) {
  const objects = new Map();
  const clone = (v) => (v === undefined ? undefined : structuredClone(v));
  const ns = {
    stubs: 0,
    idFromName: (name) => ({ name }),
    get(id) {
      ns.stubs++;
      let f = objects.get(id.name);
      if (f === undefined) objects.set(id.name, (f = new Flights(leaseMs)));
      const method = (m) => async (...args) => {
        await null;
        if (broken) throw new Error("the coordinator is down");
        if (m === "publish" && refuse?.(args[2])) throw new RangeError("the RPC message is too large");
        return clone(await f[m](...args.map(clone)));
      };
      return { acquire: method("acquire"), wait: method("wait"), renew: method("renew"), publish: method("publish"), release: method("release") };
    },
    held() {
      let flights = 0;
      let waiters = 0;
      for (const f of objects.values()) {
        const h = f.inspect();
        flights += h.flights;
        waiters += h.waiters;
      }
      return { flights, waiters };
    },
  };
  return ns;
}

/** Two caches ("isolates") over one namespace, with their own memory. */
async function pair(ns, options = {}) {
  const open = () => SwrCache.open({ name: "pair", fresh: 60_000, coordinator: ns, ...options });
  return [await open(), await open()];
}

/**
 * A fetcher counting its calls whose answer waits until the other cache
 * waits on the coordinator: so both caches' calls overlap.
 */
function fetcherOf(ns, answer) {
  const f = async (ctx) => {
    f.calls++;
    await until(() => ns.held().waiters > 0, 2_000);
    return answer(ctx);
  };
  f.calls = 0;
  return f;
}

test("two caches: 50 callers each on a cold key make one fetch; strings, bytes and JSON travel intact", async () => {
  const ns = namespace();
  const [a, b] = await pair(ns);
  const values = {
    text: "héllo \u{1F600}",
    lone: "a\uD800b",
    bytes: new Uint8Array([0, 1, 2, 255]),
    view: new Uint8Array(new ArrayBuffer(16), 4, 3).fill(7),
    json: { n: 1, list: [1, "two", null], nested: { ok: true }, when: new Date(0) },
  };
  for (const [name, value] of Object.entries(values)) {
    const fetch = fetcherOf(ns, () => value);
    const all = await Promise.all(Array.from({ length: 100 }, (_, i) => (i % 2 ? a : b).get(name, fetch)));
    assert.equal(fetch.calls, 1, name);
    const expected = (await a.peek(name)).value;
    for (const r of all) assert.deepEqual(r.value, expected, name);
    assert.deepEqual((await b.peek(name)).value, expected, `${name}: stored in both`);
  }
  assert.equal((await a.peek("json")).value.when, "1970-01-01T00:00:00.000Z");
  const sa = a.stats();
  const sb = b.stats();
  assert.equal(sa.coordinatorLeases + sb.coordinatorLeases, 5);
  assert.equal(sa.coordinatorShared + sb.coordinatorShared, 5);
  assert.equal(sa.coordinatorUnavailable + sb.coordinatorUnavailable, 0);
  assert.deepEqual(ns.held(), { flights: 0, waiters: 0 });
});

test("two caches: the holder's fetch context (setTtl, setTags, noStore) holds in the waiter too", async () => {
  const ns = namespace();
  const [a, b] = await pair(ns);
  const fetch = fetcherOf(ns, (ctx) => {
    ctx.setTtl(5_000, { stale: 7_000 });
    ctx.setTags(["group"]);
    return "tagged";
  });
  const [ra, rb] = await Promise.all([a.get("t", fetch), b.get("t", fetch)]);
  assert.equal(fetch.calls, 1);
  for (const r of [ra, rb]) {
    assert.equal(r.freshUntil - r.createdAt, 5_000);
    assert.equal(r.staleUntil - r.freshUntil, 7_000);
  }
  await b.invalidateTag("group");
  assert.equal(await b.peek("t"), undefined, "the waiter stored it with the holder's tags");

  const unstored = fetcherOf(ns, (ctx) => {
    ctx.noStore();
    return "once";
  });
  const both = await Promise.all([a.get("n", unstored), b.get("n", unstored)]);
  assert.deepEqual(both.map((r) => r.value), ["once", "once"]);
  assert.equal(unstored.calls, 1);
  assert.equal(await a.peek("n"), undefined);
  assert.equal(await b.peek("n"), undefined);
});

test("two caches: an error of the holder's own (no origin response) is not shared: the waiter takes the lease over and calls the origin itself", async () => {
  const ns = namespace();
  const [a, b] = await pair(ns);
  let calls = 0;
  // The holder's call fails once the other waits on it; the waiter's own call fails at once.
  const fetch = async () => {
    if (++calls === 1) await until(() => ns.held().waiters > 0, 2_000);
    throw new TypeError(`subrequest limit ${calls}`);
  };
  const outcomes = await Promise.allSettled([a.get("e", fetch), b.get("e", fetch)]);
  assert.equal(calls, 2);
  assert.deepEqual(outcomes.map((o) => o.reason?.kind), ["upstream", "upstream"]);
  assert.deepEqual(outcomes.map((o) => o.reason.message.match(/subrequest limit \d/)[0]).sort(), ["subrequest limit 1", "subrequest limit 2"], "each failed with its own error");
  assert.equal(a.stats().coordinatorTakeovers + b.stats().coordinatorTakeovers, 1);
  assert.equal(a.stats().coordinatorShared + b.stats().coordinatorShared, 0);
  // A value JSON cannot hold fails both the same way, never the origin's fault.
  const bad = fetcherOf(ns, () => 10n);
  const codec = await Promise.allSettled([a.get("c", bad), b.get("c", bad)]);
  assert.equal(bad.calls, 1);
  assert.deepEqual(codec.map((o) => o.reason?.kind), ["codec", "codec"]);
  assert.deepEqual(ns.held(), { flights: 0, waiters: 0 });
});

test("two caches: \"not modified\" of no held value is not shared: the waiter asks the origin with its own", async () => {
  const ns = namespace();
  const [a, b] = await pair(ns, { fresh: 1, stale: 60_000 });
  await b.set("k", "b's");
  await sleep(5); // stale in b; a holds nothing
  const seen = [];
  const fetch = async (ctx) => {
    seen.push(ctx.staleValue);
    if (seen.length === 1) await until(() => ns.held().waiters > 0, 2_000);
    return ctx.notModified();
  };
  const first = a.get("k", fetch).catch((e) => e);
  assert.ok(await until(() => ns.held().flights === 1, 2_000), "a holds the lease");
  const r = await b.get("k", fetch);
  await first;
  await b.pending();
  assert.equal(r.status, "stale");
  assert.deepEqual(seen, [undefined, "b's"], "b asked the origin with its own value");
  assert.equal(b.stats().coordinatorUnshared, 1);
  assert.equal((await b.peek("k")).value, "b's");
});

test("three caches: a result the object cannot take is published unshared: each waiter calls the origin once, none takes the lease over", async () => {
  const ns = namespace({ refuse: (result) => result?.value === "too large for RPC" });
  const [a, b] = await pair(ns);
  const c = await SwrCache.open({ name: "pair", fresh: 60_000, coordinator: ns });
  let calls = 0;
  const fetch = async () => {
    if (++calls === 1) await until(() => ns.held().waiters === 2, 2_000);
    return "too large for RPC";
  };
  const all = await Promise.all([a, b, c].map((x) => x.get("big", fetch)));
  assert.deepEqual(all.map((r) => r.value), Array(3).fill("too large for RPC"));
  assert.equal(calls, 3);
  const total = (f) => [a, b, c].reduce((n, x) => n + x.stats()[f], 0);
  assert.deepEqual([total("coordinatorLeases"), total("coordinatorUnshared"), total("coordinatorTakeovers")], [1, 2, 0]);
  assert.deepEqual(ns.held(), { flights: 0, waiters: 0 });
});

test("two caches: a refresh answered notModified hands the waiter the holder's value, not its own", async () => {
  const ns = namespace();
  const [a, b] = await pair(ns, { fresh: 1, stale: 60_000 });
  await a.set("k", "new");
  await b.set("k", "old");
  await sleep(5); // stale in both
  let held;
  const fetch = fetcherOf(ns, (ctx) => {
    held = ctx.staleValue;
    return ctx.notModified();
  });
  const served = await Promise.all([a.get("k", fetch), b.get("k", fetch)]);
  assert.deepEqual(served.map((r) => r.status), ["stale", "stale"]);
  await Promise.all([a.pending(), b.pending()]);
  assert.equal(fetch.calls, 1);
  assert.ok(held === "new" || held === "old");
  assert.equal((await a.peek("k")).value, held);
  assert.equal((await b.peek("k")).value, held, "the holder's value, which the waiter did not have");
});

test("two caches: a value over maxValueBytes is not handed through; the waiter fetches it itself", async () => {
  const ns = namespace();
  const [a, b] = await pair(ns, { coordinator: { namespace: ns, maxValueBytes: 8 } });
  const fetch = fetcherOf(ns, () => "more than eight bytes");
  const all = await Promise.all([a.get("big", fetch), b.get("big", fetch)]);
  assert.deepEqual(all.map((r) => r.value), ["more than eight bytes", "more than eight bytes"]);
  assert.equal(fetch.calls, 2);
  assert.equal(a.stats().coordinatorUnshared + b.stats().coordinatorUnshared, 1);
});

test("a write here is respected across isolates: after delete, expire, invalidateTag or clear, a get never joins a fetch that started before", async () => {
  const ns = namespace();
  const [a, b] = await pair(ns);
  for (const write of [(k) => b.delete(k), (k) => b.expire(k), () => b.invalidateTag("t"), () => b.clear()]) {
    const key = `w${Math.random()}`;
    // a's fetch holds the lease, answering the pre-write value once b has fetched by itself or waits on it.
    let newCalls = 0;
    const old = a.get(key, async () => {
      await until(() => newCalls > 0 || ns.held().waiters > 0, 2_000);
      return "old";
    });
    assert.ok(await until(() => ns.held().flights === 1, 2_000));
    await write(key);
    const r = await b.get(key, async () => {
      newCalls++;
      return "new";
    });
    assert.deepEqual([r.value, newCalls], ["new", 1], String(write));
    assert.equal((await old).value, "old");
  }
  assert.equal(b.stats().coordinatorShared, 0);
  assert.deepEqual(ns.held(), { flights: 0, waiters: 0 });
});

test("a hit never touches the coordinator; caches of other names never share a fetch", async () => {
  const ns = namespace();
  const [a] = await pair(ns);
  await a.get("h", () => "v");
  const stubs = ns.stubs;
  for (let i = 0; i < 100; i++) assert.equal((await a.get("h", () => "never")).status, "hit");
  assert.equal(ns.stubs, stubs);

  const other = await SwrCache.open({ name: "other", coordinator: ns });
  let calls = 0;
  const fetch = async () => {
    calls++;
    await sleep(20);
    return calls;
  };
  await Promise.all([a.get("same", fetch), other.get("same", fetch)]);
  assert.equal(calls, 2, "one fetch per name");
});

test("caches coordinate under their scope: names (or scopes) that differ, even as pairs that join alike, never share", async () => {
  const ns = namespace();
  const open = (name, scope) => SwrCache.open({ name, coordinator: scope === undefined ? ns : { namespace: ns, scope } });
  // Each fetch answers once both were called, or once one waits on the other's.
  let calls = 0;
  const fetcher = (value) => async () => {
    calls++;
    await until(() => calls === 2 || ns.held().waiters > 0, 2_000);
    return value;
  };
  for (const [[nameA, scopeA, keyA], [nameB, scopeB, keyB]] of [
    [["one", undefined, "k"], ["two", undefined, "k"]],
    [["x", "a\nb", "c"], ["y", "a", "b\nc"]],
    [["x", "a:", "b"], ["y", "a", ":b"]],
  ]) {
    calls = 0;
    const [a, b] = [await open(nameA, scopeA), await open(nameB, scopeB)];
    const [ra, rb] = await Promise.all([a.get(keyA, fetcher("of a")), b.get(keyB, fetcher("of b"))]);
    assert.deepEqual([ra.value, rb.value, calls], ["of a", "of b", 2], `${nameA}/${scopeA} vs ${nameB}/${scopeB}`);
    assert.equal(a.stats().coordinatorShared + b.stats().coordinatorShared, 0);
  }
});

test("an unreachable coordinator: each cache fetches once, nothing fails, and it is counted", async () => {
  for (const ns of [namespace({ broken: true }), { idFromName() { throw new Error("no"); }, get() {} }, { idFromName: () => 1, get: () => ({}) }]) {
    const [a, b] = await pair(ns);
    let calls = 0;
    const fetch = async () => {
      calls++;
      await sleep(10);
      return "direct";
    };
    const all = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).get("u", fetch)));
    assert.ok(all.every((r) => r.value === "direct"));
    assert.equal(calls, 2);
    assert.equal(a.stats().coordinatorUnavailable + b.stats().coordinatorUnavailable, 2);
  }
});

test("a coordinator that grants a wait and then never answers it: the call goes to the origin before its deadline, and succeeds", async () => {
  const never = new Promise(() => {});
  const ns = { idFromName: (name) => name, get: () => ({ acquire: async () => "wait", wait: () => never, release: async () => {} }) };
  const c = await SwrCache.open({ name: "hung", refreshTimeout: 5_000, coordinator: ns });
  const started = Date.now();
  let calledAfter;
  const r = await c.get("k", () => {
    calledAfter = Date.now() - started;
    return "direct";
  });
  assert.equal(r.value, "direct");
  // A tenth of the call's time (at most 1 s) is kept for the origin.
  assert.ok(calledAfter >= 4_400 && calledAfter < 5_000, `called after ${calledAfter} ms`);
  assert.equal(c.stats().coordinatorUnavailable, 1);
});

test("a bad coordinator option rejects with kind options and names it", async () => {
  const ns = namespace();
  const cases = [
    [null, "`coordinator` must be a Durable Object namespace"],
    [42, "`coordinator` must be a Durable Object namespace"],
    [{ idFromName() {} }, "`coordinator` must be a Durable Object namespace"],
    [{ namespace: ns, bukets: 2 }, "unknown option `coordinator.bukets`"],
    [{ namespace: ns, buckets: 0 }, "`coordinator.buckets` must be an integer from 1 to 1024"],
    [{ namespace: ns, buckets: 1.5 }, "`coordinator.buckets`"],
    [{ namespace: ns, maxValueBytes: -1 }, "`coordinator.maxValueBytes`"],
    [{ namespace: ns, maxValueBytes: 16 * 1024 * 1024 + 1 }, "`coordinator.maxValueBytes` must be a number of bytes from 0 to 16777216"],
    [{ namespace: ns, scope: "" }, "`coordinator.scope` must be a non-empty string"],
    // No name: caches coordinate under it, and two unnamed caches would share values.
    [ns, "`coordinator` needs the cache's `name` (or `coordinator.scope`)"],
    [{ namespace: ns }, "`coordinator` needs the cache's `name`"],
  ];
  for (const [coordinator, needle] of cases) {
    const e = await SwrCache.open({ coordinator }).then(() => undefined, (err) => err);
    assert.equal(e?.kind, "options", String(needle));
    assert.ok(e.message.startsWith("SwrCache.open: ") && e.message.includes(needle), e.message);
  }
  // No coordinator (a missing binding): a plain cache.
  const plain = await SwrCache.open({ coordinator: undefined });
  assert.equal(plain.stats().coordinatorLeases, undefined);
  // An unknown option's message lists `coordinator` among the known ones.
  const unknown = await SwrCache.open({ coordinater: ns }).then(() => undefined, (err) => err);
  assert.match(unknown.message, /unknown option `coordinater` \(known: .*coordinator/);
});

test("cache.fetch through the coordinator: one origin call for both caches, an origin 500 answered to both", async () => {
  const ns = namespace();
  const [a, b] = await pair(ns);
  let calls = 0;
  const origin = (status, headers) => async () => {
    calls++;
    await until(() => ns.held().waiters > 0, 2_000);
    return new Response(status === 200 ? "the page" : "boom", { status, headers });
  };
  const ok = origin(200, { "cache-control": "max-age=60" });
  const pages = await Promise.all([a.fetch("https://origin.test/page", { fetch: ok }), b.fetch("https://origin.test/page", { fetch: ok })]);
  assert.equal(calls, 1);
  assert.deepEqual(await Promise.all(pages.map((r) => r.text())), ["the page", "the page"]);
  assert.ok(pages.some((r) => /collapsed/.test(r.headers.get("cache-status"))), pages.map((r) => r.headers.get("cache-status")).join(" | "));
  calls = 0;
  const failing = origin(500, {});
  const errors = await Promise.all([a.fetch("https://origin.test/down", { fetch: failing }), b.fetch("https://origin.test/down", { fetch: failing })]);
  assert.equal(calls, 1);
  assert.deepEqual(errors.map((r) => r.status), [500, 500]);
  assert.deepEqual(await Promise.all(errors.map((r) => r.text())), ["boom", "boom"]);
});
