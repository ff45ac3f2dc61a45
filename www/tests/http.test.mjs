// HTTP response caching (`cache.fetch`) in plain Node, against a real
// `node:http` origin on loopback that counts what reaches it: phases from the
// response's own headers, Vary, revalidation with validators, unsafe methods,
// cache groups (RFC 9875), stale-if-error, and Cache-Status (RFC 9211).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startOrigin } from "./origin.mjs";
import { SwrCache } from "../package/src/node.js";
import { SwrEngine } from "../package/wasm/swre.js";

const { routes, hits, seen, base, route, close } = await startOrigin("/r");
after(close);

const open = () => SwrCache.open({ fresh: 60_000, stale: 60_000, expired: 60_000 });

test("Node: a cold URL fetched by 30 requests at once reaches the origin once, then hits", async () => {
  const cache = await open();
  const r = route((_, n) => ({ status: 200, headers: { "cache-control": "max-age=60" }, body: `v${n}`, delay: 30 }));
  const all = await Promise.all(Array.from({ length: 30 }, () => cache.fetch(r.url)));
  assert.equal(r.hits(), 1, "one origin request for the stampede");
  const bodies = await Promise.all(all.map((res) => res.text()));
  assert.deepEqual(new Set(bodies), new Set(["v1"]));
  const statuses = all.map((res) => res.headers.get("cache-status"));
  assert.equal(statuses.filter((s) => /^swre; fwd=miss; fwd-status=200; ttl=(59|60); stored$/.test(s)).length, 1, statuses.join(" | "));
  assert.ok(statuses.slice(1).every((s) => /collapsed|hit/.test(s)), statuses.join(" | "));
  const again = await cache.fetch(r.url);
  assert.equal(await again.text(), "v1");
  assert.match(again.headers.get("cache-status"), /^swre; hit; ttl=(59|60)$/);
  assert.equal(r.hits(), 1);
  cache.close();
});

test("Node: no-store, private (shared mode), a cookie and an uncacheable status reach the origin every time", async () => {
  const cache = await open();
  const cases = [
    { "cache-control": "no-store, max-age=60" },
    { "cache-control": "private, max-age=60" },
    { "cache-control": "max-age=60", "set-cookie": "a=1" },
  ].map((headers) => route(() => ({ status: 200, headers, body: "x" })));
  cases.push(route(() => ({ status: 302, headers: { location: "/elsewhere" }, body: "" })));
  for (const c of cases) {
    for (let i = 0; i < 3; i++) {
      const res = await cache.fetch(c.url, { fetch: (req) => fetch(req, { redirect: "manual" }) });
      assert.match(res.headers.get("cache-status"), /^swre; fwd=miss; fwd-status=\d+$/, c.path);
    }
    assert.equal(c.hits(), 3, c.path);
  }
  // A private cache (a service worker) keeps `private` responses.
  const mine = await SwrCache.open({ fresh: 60_000 });
  await mine.fetch(cases[1].url, { mode: "private" });
  await mine.fetch(cases[1].url, { mode: "private" });
  assert.equal(cases[1].hits(), 4);
  mine.close();
  cache.close();
});

test("Node: Vary: Accept-Language keeps one response per language", async () => {
  const cache = await open();
  const r = route((req) => ({
    status: 200,
    headers: { "cache-control": "max-age=60", vary: "Accept-Language" },
    body: `hello in ${req.headers["accept-language"]}`,
  }));
  const get = (lang) => cache.fetch(new Request(r.url, { headers: { "accept-language": lang } })).then((res) => res.text());
  assert.equal(await get("en"), "hello in en");
  assert.equal(await get("fr"), "hello in fr");
  assert.equal(await get("en"), "hello in en");
  assert.equal(await get("fr"), "hello in fr");
  assert.equal(r.hits(), 2, "one origin request per language");
  cache.close();
});

test("Node: a stored response with an ETag is revalidated with If-None-Match, and a 304 extends it", async () => {
  const cache = await open();
  const r = route((req, n) =>
    req.headers["if-none-match"] === '"v1"'
      ? { status: 304, headers: { "cache-control": "max-age=60", etag: '"v1"' } }
      : { status: 200, headers: { "cache-control": "max-age=0, stale-if-error=60", etag: '"v1"' }, body: `body${n}` });
  const first = await cache.fetch(r.url);
  assert.equal(await first.text(), "body1");
  // Fresh for 0 s, kept 60 s for errors: the next request waits on a
  // conditional request to the origin.
  const second = await cache.fetch(r.url);
  assert.equal(await second.text(), "body1", "the stored body, still good");
  assert.equal(r.hits(), 2);
  assert.equal(seen.filter((s) => s.path === r.path)[1].headers["if-none-match"], '"v1"');
  assert.match(second.headers.get("cache-status"), /^swre; fwd=stale; fwd-status=304; ttl=(59|60); stored$/);
  // The 304's max-age=60 made it fresh again: a hit, no origin request.
  const third = await cache.fetch(r.url);
  assert.equal(await third.text(), "body1");
  assert.match(third.headers.get("cache-status"), /^swre; hit; ttl=(59|60)$/);
  assert.equal(r.hits(), 2);
  cache.close();
});

test("Node: stale-while-revalidate serves the stored response at once and refreshes it once in background", async () => {
  const cache = await open();
  const r = route((_, n) => ({ status: 200, headers: { "cache-control": "max-age=0, stale-while-revalidate=60" }, body: `v${n}` }));
  assert.equal(await (await cache.fetch(r.url)).text(), "v1");
  const stale = await Promise.all([cache.fetch(r.url), cache.fetch(r.url), cache.fetch(r.url)]);
  for (const res of stale) {
    assert.equal(await res.text(), "v1");
    assert.match(res.headers.get("cache-status"), /^swre; hit; ttl=-?\d+$/);
  }
  await cache.pending();
  assert.equal(r.hits(), 2, "one background refresh for the three stale hits");
  cache.close();
});

test("Node: an origin failure is answered by the stored response within stale-if-error, else passed on", async () => {
  const cache = await open();
  let failing = false;
  const r = route((_, n) => (failing
    ? { status: 503, headers: {}, body: "down" }
    : { status: 200, headers: { "cache-control": "max-age=0, stale-if-error=60" }, body: `v${n}` }));
  assert.equal(await (await cache.fetch(r.url)).text(), "v1");
  failing = true;
  const fallback = await cache.fetch(r.url);
  assert.deepEqual([fallback.status, await fallback.text()], [200, "v1"]);
  assert.match(fallback.headers.get("cache-status"), /^swre; hit; ttl=-?\d+; detail=upstream-error$/);
  // Nothing stored for this one: the origin's 503 is the answer.
  const cold = route(() => ({ status: 503, headers: {}, body: "down" }));
  const res = await cache.fetch(cold.url);
  assert.deepEqual([res.status, await res.text()], [503, "down"]);
  assert.equal(res.headers.get("cache-status"), "swre; fwd=miss; fwd-status=503");
  cache.close();
});

test("Node: a successful POST invalidates its URL and its same-origin Location; a failed one does not", async () => {
  const cache = await open();
  const r = route((req, n) => (req.method === "POST"
    ? { status: n > 3 ? 500 : 201, headers: { location: "/other" } }
    : { status: 200, headers: { "cache-control": "max-age=60" }, body: `v${n}` }));
  routes.set("/other", () => ({ status: 200, headers: { "cache-control": "max-age=60" }, body: "other" }));
  await cache.fetch(r.url);
  await cache.fetch(`${base}/other`);
  const other = () => hits.get("/other") ?? 0;
  const before = other();
  const post = await cache.fetch(new Request(r.url, { method: "POST", body: "x" }));
  assert.equal(post.headers.get("cache-status"), "swre; fwd=method; fwd-status=201");
  assert.equal(await (await cache.fetch(r.url)).text(), "v3", "refetched after the POST");
  await cache.fetch(`${base}/other`);
  assert.equal(other(), before + 1, "Location invalidated too");
  await cache.fetch(new Request(r.url, { method: "POST", body: "x" })); // 500: nothing invalidated
  assert.equal(await (await cache.fetch(r.url)).text(), "v3");
  assert.equal(r.hits(), 4);
  cache.close();
});

test("Node: Cache-Groups tag responses, and Cache-Group-Invalidation on an unsafe method's response invalidates them", async () => {
  const cache = await open();
  const a = route((_, n) => ({ status: 200, headers: { "cache-control": "max-age=60", "cache-groups": '"scripts", "all"' }, body: `a${n}` }));
  const b = route((_, n) => ({ status: 200, headers: { "cache-control": "max-age=60", "cache-groups": '"all"' }, body: `b${n}` }));
  const c = route((_, n) => ({ status: 200, headers: { "cache-control": "max-age=60" }, body: `c${n}` }));
  const purge = route(() => ({ status: 204, headers: { "cache-group-invalidation": '"scripts"' } }));
  for (const x of [a, b, c]) await cache.fetch(x.url);
  await cache.fetch(new Request(purge.url, { method: "POST" }));
  assert.equal(await (await cache.fetch(a.url)).text(), "a2", "in group scripts");
  assert.equal(await (await cache.fetch(b.url)).text(), "b1", "not in it");
  assert.equal(await (await cache.fetch(c.url)).text(), "c1");
  cache.close();
});

test("Node: HEAD is answered from the stored GET; a request's no-cache bypasses the store", async () => {
  const cache = await open();
  const r = route((_, n) => ({ status: 200, headers: { "cache-control": "max-age=60", "content-type": "text/plain" }, body: `v${n}` }));
  await cache.fetch(r.url);
  const head = await cache.fetch(new Request(r.url, { method: "HEAD" }));
  assert.deepEqual([head.status, await head.text(), head.headers.get("content-type")], [200, "", "text/plain"]);
  assert.equal(r.hits(), 1);
  const bypass = await cache.fetch(new Request(r.url, { headers: { "cache-control": "no-cache" } }));
  assert.equal(await bypass.text(), "v2");
  assert.equal(bypass.headers.get("cache-status"), "swre; fwd=request; fwd-status=200");
  assert.equal(await (await cache.fetch(r.url)).text(), "v1", "the stored response stays");
  cache.close();
});

test("Node: bad options and inputs reject with kind options and fetch nothing", async () => {
  const cache = await open();
  const r = route(() => ({ status: 200, headers: {}, body: "x" }));
  for (const [options, pattern] of [
    [{ mode: "public" }, /`mode` must be "shared" or "private"/],
    [{ fetch: 1 }, /`fetch` must be a function/],
    [{ nope: 1 }, /unknown option `nope`/],
    [{ maxBodyBytes: -1 }, /`maxBodyBytes`/],
  ]) {
    const e = await cache.fetch(r.url, options).catch((err) => err);
    assert.deepEqual([e.name, e.kind], ["SwrError", "options"]);
    assert.match(e.message, pattern);
  }
  const e = await cache.fetch("not a url").catch((err) => err);
  assert.equal(e.kind, "options");
  assert.equal(r.hits(), 0);
  cache.close();
  assert.equal((await cache.fetch(r.url).catch((err) => err)).kind, "closed");
});

test("Node: Cache-Groups parsing follows RFC 8941 Lists of Strings, and ignores anything else", async () => {
  (await open()).close(); // loads the module
  // swre-core's reading (`http::string_list`), through the binding cache.fetch uses.
  const prefix = "http-group:https://o.test ";
  const structuredStrings = (field) =>
    SwrEngine.groupTags("https://o.test", field ?? undefined).map((t) => {
      assert.ok(t.startsWith(prefix), t);
      return t.slice(prefix.length);
    });
  assert.deepEqual(structuredStrings('"a", "b c";p=1,"d\\"e"'), ["a", "b c", 'd"e']);
  assert.deepEqual(structuredStrings('"a", b'), []);
  assert.deepEqual(structuredStrings(null), []);
  assert.deepEqual(structuredStrings(""), []);
});

test("Node: a response naming more cache groups than an entry holds is answered, not stored", async () => {
  const cache = await open();
  const groups = Array.from({ length: 33 }, (_, i) => `"g${i}"`).join(", ");
  const r = route((_, n) => ({ status: 200, headers: { "cache-control": "max-age=60", "cache-groups": groups }, body: `v${n}` }));
  assert.equal(await (await cache.fetch(r.url)).text(), "v1");
  const second = await cache.fetch(r.url);
  assert.equal(await second.text(), "v2");
  assert.equal(second.headers.get("cache-status"), "swre; fwd=miss; fwd-status=200");
  assert.equal(r.hits(), 2);
  cache.close();
});
