// The coordinator's parts in plain Node, driven exactly: the lease table of
// one SwrCoordinator object (flights.js) with real short timers.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Flights } from "../package/src/flights.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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

test("Flights: a holder that never answers loses the lease when it expires; the waiter with the most time left takes it over", async () => {
  const f = new Flights();
  f.acquire("k", "dead", 60);
  f.acquire("k", "short", 150);
  f.acquire("k", "long", 400);
  const short = f.wait("short");
  const long = f.wait("long");
  await sleep(90);
  assert.deepEqual(await long, { lease: true }, "taken over by the waiter with the most time left");
  assert.equal(await settled(short), false, "the other keeps waiting, now on the new holder");
  assert.equal(f.publish("k", "dead", "late"), false, "the former holder can no longer publish");
  assert.equal(f.publish("k", "long", "v2"), true);
  assert.deepEqual(await short, { result: "v2" });
  assert.deepEqual(f.inspect(), { flights: 0, waiters: 0 });
});

test("Flights: a waiter whose time runs out first is told so and forgotten; a lease taken over ends at the new holder's deadline", async () => {
  const f = new Flights();
  f.acquire("k", "h", 300);
  f.acquire("k", "w", 40);
  const started = Date.now();
  assert.deepEqual(await f.wait("w"), { late: true });
  assert.ok(Date.now() - started >= 30);
  assert.deepEqual(f.inspect(), { flights: 1, waiters: 0 });
  // A waiter granted the lease that never collects it: the lease ends with its time.
  f.acquire("k", "x", 60);
  f.release("k", "h");
  assert.deepEqual(f.inspect(), { flights: 1, waiters: 1 }, "x holds the lease, its grant not yet collected");
  await sleep(100);
  assert.deepEqual(f.inspect(), { flights: 0, waiters: 0 });
  assert.equal(f.acquire("k", "y", 1_000), "lease");
  f.release("k", "y");
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
