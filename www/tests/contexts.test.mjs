// Singleflight across the browsing contexts of one origin (issue 20, item
// 2), in headless Chromium: three pages, a module worker and a service
// worker, each with its own SwrCache over one IndexedDB database. Their
// refresh leases are Web Locks, so a cold key is fetched by one context
// while the others wait for the value it stores; their changes go out on a
// BroadcastChannel, so no context keeps serving a memory copy another one
// deleted. Each property is checked against a counting origin on the same
// server, and once more with the browser feature taken away (the
// degradation the README describes, and proof that the test can fail).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { CHROMIUM } from "./chromium.mjs";
import { startServer } from "./contexts/server.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let unique = 0;
const fresh = (what) => `${what}-${Date.now()}-${++unique}`;

let server, context, profile, pages, contexts;
const errors = [];

/** Calls `self.agent[method](...args)` in a page or worker. */
const call = (target, method, ...args) => target.evaluate(([m, a]) => self.agent[m](...a), [method, args]);
/** The same call in every context, at once. */
const everywhere = (method, ...args) => Promise.all(contexts.map((c) => call(c.target, method, ...args)));

async function agentIn(target) {
  for (let i = 0; i < 200; i++) {
    if (await target.evaluate(() => typeof self.agent === "object").catch(() => false)) return target;
    await sleep(50);
  }
  throw new Error("the agent did not load");
}

async function openPage() {
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${server.url}/tests/contexts/page.html`);
  await page.waitForSelector("body[data-ready=true]", { state: "attached" });
  return agentIn(page);
}

before(async () => {
  server = await startServer();
  profile = await mkdtemp(path.join(os.tmpdir(), "swre-contexts-"));
  context = await chromium.launchPersistentContext(profile, { ...CHROMIUM });
  pages = [await openPage(), await openPage(), await openPage()];
  const workerStarted = pages[2].waitForEvent("worker");
  await pages[2].evaluate(() => window.startWorker());
  const worker = await agentIn(await workerStarted);
  const swStarted = context.waitForEvent("serviceworker");
  swStarted.catch(() => {});
  await pages[0].evaluate(() => window.startServiceWorker());
  const sw = await agentIn(context.serviceWorkers()[0] ?? (await swStarted));
  contexts = [
    ...pages.map((target, i) => ({ name: `page ${i + 1}`, target })),
    { name: "module worker", target: worker },
    { name: "service worker", target: sw },
  ];
  assert.deepEqual(await everywhere("open", "swre-contexts-warmup"), ["page", "page", "page", "worker", "service worker"]);
});

after(async () => {
  await context?.close();
  await server?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
  assert.deepEqual(errors, []);
});

/** Every context's stats for cache `name`, summed. */
async function summed(name) {
  const all = await everywhere("stats", name);
  const sum = {};
  for (const s of all) for (const [k, v] of Object.entries(s)) sum[k] = (sum[k] ?? 0) + v;
  return sum;
}

/** A cold read of one key in all five contexts at once: what each got. */
async function coldRead(name, id) {
  server.route(id, { delay: 300 });
  await everywhere("open", name);
  return everywhere("get", name, "k", `/origin/${id}`);
}

test("a cold key read at once in three pages, a module worker and a service worker makes 1 origin call", async () => {
  const name = fresh("cold");
  const id = fresh("k");
  const results = await coldRead(name, id);
  const t0 = Math.min(...results.map((r) => r.start));
  const shown = results.map((r, i) => `${contexts[i].name}: ${r.value ?? r.error} ${r.status} +${(r.start - t0).toFixed(0)}..${(r.end - t0).toFixed(0)} ms`).join("; ");
  assert.equal(server.hits(id), 1, `origin calls (${shown})`);
  for (const [i, r] of results.entries()) assert.equal(r.value, `${id}#1`, contexts[i].name);
  // One fetched; the others answer with the value it stored.
  assert.deepEqual(results.map((r) => r.status).sort(), ["hit", "hit", "hit", "hit", "miss"], shown);
  const s = await summed(name);
  // At least one lease granted: a waiter granted the lock just after the
  // holder stored and let go finds the value on its re-read and fetches
  // nothing (so the count of origin calls, asserted above and below, is
  // the exact one).
  assert.ok(s.leaseGrants >= 1, `lease grants ${s.leaseGrants}`);
  // Every other context waited for it (one delayed past the fetch by a busy
  // machine would find the value stored, and wait for nothing).
  const waited = (await everywhere("stats", name)).map((c) => c.leaseWaits);
  assert.ok(waited.every((n) => n <= 1) && s.leaseWaits >= 1, `lease waits ${waited} (${shown})`);
  assert.equal(s.upstreamCalls, 1);
  assert.equal(s.leaseErrors, 0);
  // Now each context answers from its memory.
  const again = await everywhere("get", name, "k", `/origin/${id}`);
  assert.deepEqual(again.map((r) => r.status), ["hit", "hit", "hit", "hit", "hit"]);
  assert.equal(server.hits(id), 1);
  const slowest = Math.max(...results.map((r) => r.end - r.start));
  console.log(`# cold read in 5 contexts, origin 300 ms: 1 origin call, ${s.leaseWaits} contexts waited for the lease holder; slowest context answered in ${slowest.toFixed(0)} ms`);
});

test("without navigator.locks (an insecure context) each context fetches for itself: 5 origin calls", async () => {
  await everywhere("without", { locks: true });
  try {
    const id = fresh("k");
    const name = fresh("nolocks");
    const results = await coldRead(name, id);
    assert.equal(server.hits(id), 5, "origin calls");
    assert.deepEqual(results.map((r) => r.status), ["miss", "miss", "miss", "miss", "miss"]);
    const s = await summed(name);
    assert.deepEqual([s.leaseGrants, s.leaseWaits, s.leaseErrors, s.upstreamCalls], [0, 0, 5, 5]);
  } finally {
    await everywhere("without", {});
  }
});

/**
 * Warms `key` in every context (each then holds it in memory), deletes it
 * in page 1 at a planned moment while every context looks it up every
 * millisecond: what each context saw, and when the delete started.
 */
async function deleteWhileProbing(name) {
  const id = fresh("k");
  const [warm] = await coldRead(name, id);
  const old = warm.value;
  const hits = await everywhere("get", name, "k", `/origin/${id}`);
  assert.deepEqual(hits.map((r) => [r.value, r.status]), Array(5).fill([old, "hit"]), "every context holds it");
  const at = Date.now() + 300;
  const until = at + 600;
  const probes = Promise.all(contexts.map((c) => call(c.target, "probe", name, "k", old, at + 100, until)));
  await sleep(at - Date.now());
  const deleted = await call(pages[0], "delete", name, "k");
  const seen = await probes;
  assert.equal(server.hits(id), 1);
  return { deleted, seen };
}

test("a delete in one page: 100 ms later no other context serves the old value", async () => {
  const name = fresh("delete");
  const { deleted, seen } = await deleteWhileProbing(name);
  const lags = seen.slice(1).map((s, i) => {
    const who = contexts[i + 1].name;
    assert.ok(s.olds > 0, `${who} served the value before the delete`);
    assert.equal(s.oldsAfter, 0, `${who} served the old value 100 ms after the delete`);
    assert.ok(s.othersAfter > 0, `${who} kept looking`);
    return [who, Math.max(0, s.lastOld - deleted.start)];
  });
  const worst = Math.max(...lags.map(([, lag]) => lag));
  assert.ok(worst <= 100, `the old value was served ${worst} ms after the delete`);
  const s = await summed(name);
  assert.ok(s.broadcastsReceived >= 4, "every other context heard of the delete");
  assert.equal(s.broadcastsUnsent, 0);
  const ms = (t) => `${t.toFixed(1)} ms`;
  console.log(`# delete in page 1 (took ${ms(deleted.end - deleted.start)}): old value last served ${lags.map(([w, l]) => `${w} +${ms(l)}`).join(", ")}; worst ${ms(worst)}`);
});

test("without BroadcastChannel the other contexts serve their memory copy until it stops being fresh", async () => {
  await everywhere("without", { channel: true });
  const name = fresh("nochannel");
  try {
    await everywhere("open", name);
  } finally {
    await everywhere("without", {});
  }
  const { deleted, seen } = await deleteWhileProbing(name);
  for (const [i, s] of seen.slice(1).entries()) {
    assert.ok(s.oldsAfter > 0, `${contexts[i + 1].name} stopped serving the old value`);
    assert.ok(s.lastOld - deleted.start > 400, `${contexts[i + 1].name}: ${s.lastOld - deleted.start} ms`);
  }
  const s = await summed(name);
  assert.equal(s.broadcastsReceived, 0);
  assert.ok(s.broadcastsUnsent >= 2, "the fill and the delete went unannounced");
});

test("a set, an expire, a tag invalidation and a clear in one page reach the other contexts", async () => {
  const name = fresh("ops");
  const id = fresh("k");
  await coldRead(name, id);
  const others = contexts.slice(1);
  const inOthers = (key, url = `/origin/${id}`) => Promise.all(others.map((c) => call(c.target, "get", name, key, url)));
  const shown = (rs) => rs.map((r) => `${r.value} ${r.status}`);

  await call(pages[0], "run", name, "set", "k", "set-by-page-1");
  await sleep(100);
  assert.deepEqual(shown(await inOthers("k")), Array(4).fill("set-by-page-1 hit"));

  await call(pages[0], "run", name, "expire", "k");
  await sleep(100);
  assert.deepEqual(shown(await inOthers("k")), Array(4).fill("set-by-page-1 stale"));
  // Their background refreshes: one origin call, for the four of them.
  for (let i = 0; i < 100 && (await inOthers("k")).some((r) => r.value !== `${id}#2`); i++) await sleep(20);
  assert.equal(server.hits(id), 2);

  await call(pages[0], "run", name, "set", "t", "tagged", { tags: ["g"] });
  assert.deepEqual(shown(await inOthers("t")), Array(4).fill("tagged hit"));
  await call(pages[0], "run", name, "invalidateTag", "g");
  await sleep(100);
  const refetched = await inOthers("t");
  assert.deepEqual(refetched.map((r) => r.value), Array(4).fill(`${id}#3`));
  assert.equal(server.hits(id), 3);

  await call(pages[0], "run", name, "clear");
  await sleep(100);
  const cleared = await inOthers("k");
  assert.deepEqual(cleared.map((r) => r.value), Array(4).fill(`${id}#4`));
  assert.equal(server.hits(id), 4);
});

test("a page or a worker closed while holding a key's lock releases it: another context fetches at once", async () => {
  const name = fresh("closed");
  for (const closing of ["page", "worker"]) {
    const id = fresh("k");
    // The first request never answers: its context holds the lock until it closes.
    server.route(id, { hangFirst: true });
    let holder, close;
    if (closing === "page") {
      holder = await openPage();
      close = () => holder.close();
    } else {
      const started = pages[2].waitForEvent("worker");
      await pages[2].evaluate(() => (window.doomed = new Worker("./worker.js", { type: "module" })));
      holder = await agentIn(await started);
      close = () => pages[2].evaluate(() => window.doomed.terminate());
    }
    await call(holder, "open", name);
    await call(holder, "start", name, closing, `/origin/${id}`);
    for (let i = 0; i < 500 && server.hits(id) === 0; i++) await sleep(10);
    assert.equal(server.hits(id), 1, "the holder is fetching");
    const waiting = call(pages[1], "get", name, closing, `/origin/${id}`);
    await sleep(400);
    assert.equal(server.hits(id), 1, "page 2 waits while the lock is held");
    const closedAt = Date.now();
    await close();
    const r = await waiting;
    const after = r.end - closedAt;
    assert.deepEqual([r.value, r.status], [`${id}#2`, "miss"], closing);
    assert.equal(server.hits(id), 2, `origin calls (${closing})`);
    // Well before the lease's TTL (the refresh timeout, 15 s) would free it.
    assert.ok(after < 2_000, `page 2 fetched ${after} ms after the ${closing} closed`);
    console.log(`# ${closing} closed while holding the lock: page 2 had fetched the value ${after.toFixed(0)} ms later`);
  }
});
