// The example Worker in real workerd (Miniflare), caching the origin's
// responses by their own Cache-Control: fresh hits, stale served at once with
// exactly one refresh after the response, one upstream call for 50
// concurrent requests, fallback on an upstream 500 (stale-if-error), a POST
// invalidating, over the Cache API and KV; every response labelled with an
// RFC 9211 Cache-Status.
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
  if (request.method === "POST") return new Response(null, { status: 204 });
  upstream.version += 1;
  return new Response(`${pathname} v${upstream.version}`, {
    headers: { "cache-control": "max-age=2, stale-while-revalidate=2, stale-if-error=60" },
  });
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
    serviceBindings: { UPSTREAM: upstreamHandler },
  });
  await mf.ready;
});

after(async () => {
  await mf?.dispose();
});

async function get(p, init) {
  const started = Date.now();
  const res = await mf.dispatchFetch(`http://worker.test${p}`, init);
  const body = await res.text();
  return { res, body, status: res.status, cacheStatus: res.headers.get("cache-status"), tookMs: Date.now() - started, at: Date.now() };
}

// Fresh for 2 s from the request (RFC 9111 counts the response's delay as
// age), stale 2 s more, then kept 60 s for errors.
const MISS = /^swre; fwd=miss; fwd-status=200; ttl=[01]; stored$/;
const HIT = /^swre; hit; ttl=[01]$/;
const COLLAPSED = /^swre; fwd=miss; collapsed$/;

for (const kind of ["cache", "kv"]) {
  test(`${kind}: a miss then fresh hits that never call upstream`, async () => {
    const p = `/${kind}/fresh`;
    const first = await get(p);
    assert.equal(first.status, 200);
    assert.match(first.cacheStatus, MISS);
    for (let i = 0; i < 3; i++) {
      const hit = await get(p);
      assert.match(hit.cacheStatus, HIT);
      assert.equal(hit.body, first.body);
    }
    assert.equal(calls(p), 1);
  });

  test(`${kind}: a stale hit answers at once and one refresh completes after the response`, async () => {
    const p = `/${kind}/stale`;
    const first = await get(p);
    assert.match(first.cacheStatus, MISS);
    await sleep(2200); // past fresh (2 s), inside stale-while-revalidate
    const stale = await get(p);
    assert.match(stale.cacheStatus, /^swre; hit; ttl=-[12]$/);
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
    assert.match(after.cacheStatus, HIT);
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
      assert.ok([MISS, COLLAPSED, HIT].some((re) => re.test(r.cacheStatus)), r.cacheStatus);
    }
  });

  test(`${kind}: an upstream 500 in the expired window gives the old body`, async () => {
    const p = `/${kind}/fallback`;
    const first = await get(p);
    assert.match(first.cacheStatus, MISS);
    await sleep(4200); // past fresh + stale-while-revalidate (4 s): stale-if-error
    upstream.failing.add(p);
    const fallback = await get(p);
    assert.equal(fallback.status, 200);
    assert.match(fallback.cacheStatus, /^swre; hit; ttl=-\d+; detail=upstream-error$/);
    assert.equal(fallback.body, first.body);
    assert.equal(calls(p), 2, "one failed attempt");
    upstream.failing.delete(p);
  });

  test(`${kind}: a POST to a cached URL invalidates it`, async () => {
    const p = `/${kind}/posted`;
    const first = await get(p);
    assert.match(first.cacheStatus, MISS);
    const post = await get(p, { method: "POST", body: "x" });
    assert.equal(post.status, 204, post.body);
    assert.equal(post.cacheStatus, "swre; fwd=method; fwd-status=204");
    const again = await get(p);
    assert.match(again.cacheStatus, MISS);
    assert.notEqual(again.body, first.body);
    assert.equal(calls(p), 3);
  });
}

test("a cold key with the origin failing gets the origin's answer, labelled", async () => {
  const p = "/cache/down";
  upstream.failing.add(p);
  const r = await get(p);
  assert.deepEqual([r.status, r.body], [500, "boom"]);
  assert.equal(r.cacheStatus, "swre; fwd=miss; fwd-status=500");
  upstream.failing.delete(p);
});
