// The JS package in plain Node: no leak per call, no timer left behind, a
// caller's unencodable value never opens the breaker, and the latest write
// or delete wins over a refresh that started before it.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import v8 from "node:v8";
import { runInNewContext } from "node:vm";
import { SwrCache } from "../package/src/node.js";
import { initSync } from "../package/wasm/swre.js";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
let wasm;

before(async () => {
  (await SwrCache.open()).close(); // the package loads the module itself
  // Already instantiated: this returns the module's exports, for the checks below.
  wasm = initSync({ module: readFileSync(path.join(root, "package/wasm/swre_bg.wasm")) });
});

const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The JS heap after full collections (one can leave some garbage behind). */
function heapUsed() {
  v8.setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc");
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

test("3M warm hits leave wasm memory, the externref table and the JS heap flat", async () => {
  const cache = await SwrCache.open({ storage: "memory", fresh: 3_600_000 });
  await cache.get("k", () => "v");
  const ctx = { waitUntil() {} };
  const hits = async (n) => {
    for (let i = 0; i < n; i++) {
      await cache.get("k", () => "never");
      await cache.get("k", () => "never", {});
      await cache.get("k", () => "never", { waitUntil: ctx.waitUntil });
    }
  };
  await hits(20_000);
  const table = wasm.__wbindgen_externrefs.length;
  const memory = wasm.memory.buffer.byteLength;
  const heap = heapUsed();
  await hits(1_000_000);
  assert.equal(wasm.__wbindgen_externrefs.length, table, "the externref table grew");
  assert.equal(wasm.memory.buffer.byteLength, memory, "wasm memory grew");
  const grown = heapUsed() - heap;
  // Any object kept per hit (16 bytes at least) would be 48 MB; the
  // collector's own noise is about 1 MB.
  assert.ok(grown < 4 << 20, `the JS heap grew by ${grown} bytes over 3M hits`);
  const s = cache.stats();
  assert.equal(s.upstreamCalls, 1);
  assert.equal(s.hits, 3 * 1_020_000, "hits answered in JS are counted");
});

test("300k failing fetches, misses and codec errors leave wasm memory and the externref table flat", async () => {
  const cache = await SwrCache.open({
    storage: "memory",
    maxEntries: 1_000,
    breaker: { failureThreshold: 1_000_000_000 },
  });
  let n = 0;
  const miss = async () => {
    for (let i = 0; i < 2_000; i++) await cache.get(`m${n++}`, async () => "v", {});
  };
  for (let i = 0; i < 10; i++) await miss(); // every table at its steady size
  const t0 = wasm.__wbindgen_externrefs.length;
  const m0 = wasm.memory.buffer.byteLength;
  for (let i = 0; i < 25; i++) await miss();
  assert.equal(wasm.__wbindgen_externrefs.length, t0, "misses grew the externref table");
  assert.equal(wasm.memory.buffer.byteLength, m0, "misses grew wasm memory");
  const rejects = async () => {
    throw new Error("origin down");
  };
  const throws = () => {
    throw new Error("origin down");
  };
  const run = async (n) => {
    for (let i = 0; i < n; i++) {
      await cache.get("k", i % 2 ? rejects : throws, i % 3 ? {} : undefined).then(
        () => assert.fail("resolved"),
        (e) => assert.equal(e.kind, "upstream"),
      );
    }
  };
  await run(20_000);
  const table = wasm.__wbindgen_externrefs.length;
  const memory = wasm.memory.buffer.byteLength;
  await run(300_000);
  assert.equal(wasm.__wbindgen_externrefs.length, table, "the externref table grew");
  assert.equal(wasm.memory.buffer.byteLength, memory, "wasm memory grew");
  assert.equal(cache.stats().upstreamErrors, 320_000);
  // Values JSON cannot hold (the stringify throws) and cannot be set.
  const cyclic = {};
  cyclic.self = cyclic;
  const codec = async (n) => {
    for (let i = 0; i < n; i++) {
      const e = await (i % 2 ? cache.get(`c${i % 7}`, () => 10n) : cache.set("c", cyclic)).then(() => null, (e) => e);
      assert.equal(e?.kind, "codec");
    }
  };
  await codec(5_000);
  const t1 = wasm.__wbindgen_externrefs.length;
  await codec(30_000);
  assert.equal(wasm.__wbindgen_externrefs.length, t1, "codec errors grew the externref table");
});

test("no timer outlives the call it bounds, so Node can exit", async () => {
  const before = timers();
  const cache = await SwrCache.open({ storage: "memory", refreshTimeout: 30_000 });
  const r = await cache.get("cold", async () => {
    await sleep(5);
    return "fetched";
  });
  assert.equal(r.status, "miss");
  await cache.pending();
  await sleep(0);
  assert.equal(timers(), before, "a timer of the finished call is still pending");
});

test("values a fetcher cannot have cached are codec errors that never open the breaker", async () => {
  const cache = await SwrCache.open({ storage: "memory" });
  const bad = [() => undefined, () => 10n, () => Symbol("s"), () => () => 1];
  for (let i = 0; i < 40; i++) {
    const err = await cache.get(`bad:${i}`, bad[i % bad.length]).then(
      () => null,
      (e) => e,
    );
    assert.ok(err, `bad:${i} resolved`);
    assert.equal(err.kind, "codec", `bad:${i}: ${err.message}`);
  }
  const ok = await cache.get("good", () => ({ fine: true }));
  assert.deepEqual([ok.status, ok.value], ["miss", { fine: true }]);
  const setErr = await cache.set("k", 10n).then(
    () => null,
    (e) => e,
  );
  assert.equal(setErr.kind, "codec", "set reports the same kind");
});

test("a non-function waitUntil is rejected by get as by open", async () => {
  const cache = await SwrCache.open({ storage: "memory" });
  const err = await cache.get("k", () => "v", { waitUntil: 42 }).then(
    () => null,
    (e) => e,
  );
  assert.ok(err);
  assert.equal(err.kind, "options");
  assert.match(err.message, /waitUntil/);
});

test("an unbound waitUntil fails loudly instead of letting the refresh be cancelled", async () => {
  const ctx = {
    promises: [],
    waitUntil(p) {
      if (this !== ctx) throw new TypeError("Illegal invocation");
      this.promises.push(p);
    },
  };
  const cache = await SwrCache.open({ storage: "memory", fresh: 1, stale: 60_000, expired: 60_000 });
  await cache.get("k", () => "v1");
  await sleep(5); // stale now
  const err = await cache.get("k", () => "v2", { waitUntil: ctx.waitUntil }).then(
    () => null,
    (e) => e,
  );
  assert.ok(err, "an unbound waitUntil was accepted silently");
  assert.equal(err.kind, "options");
  assert.match(err.message, /bind\(ctx\)/);
  await cache.pending();
  await sleep(5);
  const r = await cache.get("k", () => "v3", { waitUntil: ctx.waitUntil.bind(ctx) });
  assert.equal(r.status, "stale");
  assert.equal(ctx.promises.length, 1);
});

test("a set or delete made while a refresh runs is never undone by it", async () => {
  const cache = await SwrCache.open({ storage: "memory", fresh: 1, stale: 60_000, expired: 60_000 });
  await cache.set("s", "old");
  await cache.set("d", "old");
  await sleep(5); // both stale
  let release;
  const gate = new Promise((r) => (release = r));
  const slow = async () => {
    await gate;
    return "refreshed";
  };
  assert.equal((await cache.get("s", slow)).status, "stale");
  assert.equal((await cache.get("d", slow)).status, "stale");
  await cache.set("s", "mine");
  await cache.delete("d");
  release();
  await cache.pending();
  assert.equal((await cache.peek("s")).value, "mine");
  assert.equal(await cache.peek("d"), undefined);
});

test("thrown values that are not Errors read as JSON or String(), never Rust debug text", async () => {
  const cache = await SwrCache.open({ storage: "memory" });
  const cases = [
    [{ code: 7 }, '{"code":7}'],
    [42, "42"],
    [null, "null"],
    [Symbol("s"), "Symbol(s)"],
  ];
  for (const [i, [thrown, text]] of cases.entries()) {
    const err = await cache.get(`t${i}`, () => {
      throw thrown;
    }).then(
      () => null,
      (e) => e,
    );
    assert.equal(err.kind, "upstream");
    assert.ok(err.message.includes(text), err.message);
    assert.ok(!err.message.includes("JsValue("), err.message);
  }
});

test("values up to maxValueBytes are cached; larger ones are returned, not stored, and counted", async () => {
  const cache = await SwrCache.open({ storage: "memory" });
  const big = "x".repeat(5 << 20); // 5 MiB: under the 16 MiB default
  assert.equal((await cache.get("big", () => big)).status, "miss");
  const again = await cache.get("big", () => "never");
  assert.equal(again.status, "hit", "a 5 MiB value was silently not cached");
  assert.equal(again.value.length, big.length);

  const small = await SwrCache.open({ storage: "memory", maxValueBytes: 1_000, maxBytes: 1 << 20 });
  const r = await small.get("k", () => "y".repeat(2_000));
  assert.equal(r.value.length, 2_000, "the value is still returned");
  assert.equal((await small.get("k", () => "again")).value, "again", "it was stored");
  assert.equal(small.stats().oversizedValues, 1);

  const bad = await SwrCache.open({ maxBytes: 1_000, maxValueBytes: 2_000 }).then(
    () => null,
    (e) => e,
  );
  assert.equal(bad.kind, "options");
  assert.match(bad.message, /maxValueBytes/);
});

test("an unbound waitUntil given to open is rejected there", async () => {
  const ctx = {
    waitUntil(p) {
      if (this !== ctx) throw new TypeError("Illegal invocation");
      return p;
    },
  };
  const err = await SwrCache.open({ waitUntil: ctx.waitUntil }).then(
    () => null,
    (e) => e,
  );
  assert.ok(err, "open accepted an unbound waitUntil");
  assert.equal(err.kind, "options");
  assert.match(err.message, /bind\(ctx\)/);
  const ok = await SwrCache.open({ waitUntil: ctx.waitUntil.bind(ctx) });
  assert.equal((await ok.get("k", () => "v")).status, "miss");
});

test("strings come back as they were, lone surrogates included", async () => {
  const cache = await SwrCache.open({ storage: "memory" });
  const odd = ["\uD800", "a\uDC00b", "\uDBFF\uDBFF", "plain é ✓ 😀", ""];
  for (const [i, s] of odd.entries()) {
    assert.equal((await cache.get(`s${i}`, () => s)).value, s, `miss ${JSON.stringify(s)}`);
    assert.equal((await cache.get(`s${i}`, () => "other")).value, s, `hit ${JSON.stringify(s)}`);
    await cache.set(`t${i}`, s);
    assert.equal((await cache.peek(`t${i}`)).value, s, `set/peek ${JSON.stringify(s)}`);
  }
  assert.deepEqual((await cache.get("j", () => ({ s: "\uD800" }))).value, { s: "\uD800" });
});
