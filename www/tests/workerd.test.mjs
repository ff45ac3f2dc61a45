// The example Worker in real workerd (Miniflare): fresh hits, stale served at
// once with exactly one refresh after the response, one upstream call for 50
// concurrent requests, fallback on an upstream 500, over the Cache API and KV.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { Miniflare, Response } from "miniflare";

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const UPSTREAM_DELAY_MS = 300;

// The upstream: counts calls per path, answers after a delay, can be made to fail.
const upstream = { calls: new Map(), finished: [], failing: new Set(), version: 0 };
async function upstreamHandler(request) {
  const { pathname } = new URL(request.url);
  upstream.calls.set(pathname, (upstream.calls.get(pathname) ?? 0) + 1);
  await new Promise((r) => setTimeout(r, UPSTREAM_DELAY_MS));
  upstream.finished.push({ pathname, at: Date.now() });
  if (upstream.failing.has(pathname)) return new Response("boom", { status: 500 });
  upstream.version += 1;
  return new Response(`${pathname} v${upstream.version}`);
}
const calls = (p) => upstream.calls.get(p) ?? 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let mf;
before(async () => {
  mf = new Miniflare({
    modulesRoot: root,
    modules: true,
    scriptPath: path.join(root, "worker/worker.mjs"),
    modulesRules: [
      { type: "ESModule", include: ["**/*.js"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    compatibilityDate: "2025-06-01",
    kvNamespaces: ["KV"],
    bindings: { FRESH_MS: "800", STALE_MS: "1500", EXPIRED_MS: "60000" },
    serviceBindings: { UPSTREAM: upstreamHandler },
  });
  await mf.ready;
});

after(async () => {
  await mf?.dispose();
});

async function get(p) {
  const started = Date.now();
  const res = await mf.dispatchFetch(`http://worker.test${p}`);
  const body = await res.text();
  return { res, body, status: res.status, cacheStatus: res.headers.get("cache-status"), tookMs: Date.now() - started, at: Date.now() };
}

const detail = (r) => /detail=([a-z]+)/.exec(r.cacheStatus ?? "")?.[1];

for (const kind of ["cache", "kv"]) {
  test(`${kind}: a miss then fresh hits that never call upstream`, async () => {
    const p = `/${kind}/fresh`;
    const first = await get(p);
    assert.equal(first.status, 200);
    assert.equal(detail(first), "miss");
    assert.match(first.cacheStatus, /^swre; fwd=uri-miss; stored/);
    for (let i = 0; i < 3; i++) {
      const hit = await get(p);
      assert.equal(detail(hit), "hit");
      assert.match(hit.cacheStatus, /^swre; hit; ttl=/);
      assert.equal(hit.body, first.body);
    }
    assert.equal(calls(p), 1);
  });

  test(`${kind}: a stale hit answers at once and one refresh completes after the response`, async () => {
    const p = `/${kind}/stale`;
    const first = await get(p);
    assert.equal(detail(first), "miss");
    await sleep(1000); // past fresh (800 ms), inside stale
    const stale = await get(p);
    assert.equal(detail(stale), "stale");
    assert.equal(stale.body, first.body, "the old body is served");
    assert.ok(stale.tookMs < UPSTREAM_DELAY_MS, `answered in ${stale.tookMs} ms, before upstream could`);
    // The refresh re-reads the shared store (Cache API / KV) before it calls
    // upstream, so its call may start just after the response.
    for (let i = 0; i < 100 && calls(p) < 2; i++) await sleep(10);
    assert.equal(calls(p), 2, "one background refresh started");
    await sleep(UPSTREAM_DELAY_MS + 300);
    const refreshes = upstream.finished.filter((f) => f.pathname === p);
    assert.equal(refreshes.length, 2, "exactly one refresh completed");
    assert.ok(refreshes[1].at >= stale.at, "the refresh completed after the response");
    const after = await get(p);
    assert.equal(detail(after), "hit");
    assert.notEqual(after.body, first.body, "the refreshed body is served");
    assert.equal(calls(p), 2);
  });

  test(`${kind}: 50 concurrent requests on a cold key make one upstream call`, async () => {
    const p = `/${kind}/stampede`;
    const results = await Promise.all(Array.from({ length: 50 }, () => get(p)));
    assert.equal(calls(p), 1);
    const bodies = new Set(results.map((r) => r.body));
    assert.equal(bodies.size, 1, "every caller got the same body");
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.ok(["miss", "hit"].includes(detail(r)), r.cacheStatus);
    }
  });

  test(`${kind}: an upstream 500 in the expired window gives the old body`, async () => {
    const p = `/${kind}/fallback`;
    const first = await get(p);
    assert.equal(detail(first), "miss");
    await sleep(2500); // past fresh + stale (2300 ms): expired
    upstream.failing.add(p);
    const fallback = await get(p);
    assert.equal(fallback.status, 200);
    assert.equal(detail(fallback), "fallback");
    assert.match(fallback.cacheStatus, /fwd=stale/);
    assert.equal(fallback.body, first.body);
    assert.equal(calls(p), 2, "one failed attempt");
    upstream.failing.delete(p);
  });
}

test("a cold key with upstream down is a 502 that still carries Cache-Status", async () => {
  const p = "/cache/down";
  upstream.failing.add(p);
  const r = await get(p);
  assert.equal(r.status, 502);
  assert.equal(detail(r), "error");
  upstream.failing.delete(p);
});
