// Adversarial review of `cache.fetch`: each test names a defect found in
// review, against a real `node:http` origin on loopback.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startOrigin } from "./origin.mjs";
import { SwrCache } from "../package/src/node.js";

const { hits, base, route, close } = await startOrigin("/q");
after(close);

const open = () => SwrCache.open({ fresh: 60_000, stale: 60_000, expired: 60_000 });

test("review: a private response fetched for one user is not handed to a user whose request collapsed on it", async () => {
  const cache = await open();
  const r = route((req) => ({
    status: 200,
    headers: { "cache-control": "private, max-age=60" },
    body: `for ${req.headers.authorization ?? "anonymous"}`,
    delay: 50,
  }));
  const alice = cache.fetch(new Request(r.url, { headers: { authorization: "Bearer alice" } }));
  const bob = cache.fetch(new Request(r.url, { headers: { authorization: "Bearer bob" } }));
  const [a, b] = await Promise.all([alice, bob]);
  assert.equal(await a.text(), "for Bearer alice");
  assert.equal(await b.text(), "for Bearer bob", "bob must not get alice's private response");
  cache.close();
});

test("review: a response setting a cookie reaches its requester with the cookie, and no one else gets it", async () => {
  const cache = await open();
  const r = route((_, n) => ({ status: 200, headers: { "cache-control": "max-age=60", "set-cookie": `session=s${n}` }, body: `v${n}`, delay: 50 }));
  const [a, b] = await Promise.all([cache.fetch(r.url), cache.fetch(r.url)]);
  assert.equal(a.headers.get("set-cookie"), "session=s1", "the requester's own Set-Cookie");
  assert.notEqual(await b.text(), "v1", "the other request is not answered with the first's cookie-setting response");
  cache.close();
});

test("review: a client's If-None-Match is not forwarded on the shared fetch, so no other request gets its 304", async () => {
  const cache = await open();
  const r = route((req) => (req.headers["if-none-match"] === '"v1"'
    ? { status: 304, headers: { etag: '"v1"', "cache-control": "max-age=60" }, delay: 50 }
    : { status: 200, headers: { etag: '"v1"', "cache-control": "max-age=60" }, body: "full", delay: 50 }));
  const conditional = cache.fetch(new Request(r.url, { headers: { "if-none-match": '"v1"' } }));
  const plain = cache.fetch(r.url);
  const [c, p] = await Promise.all([conditional, plain]);
  assert.equal(p.status, 200, "the unconditional request gets the full response");
  assert.equal(await p.text(), "full");
  assert.ok(c.status === 200 || c.status === 304);
  // And it was stored: the next request is a hit.
  const again = await cache.fetch(r.url);
  assert.match(again.headers.get("cache-status"), /^swre; hit/);
  cache.close();
});

test("review: OPTIONS (a safe method: CORS preflights) does not invalidate the stored GET", async () => {
  const cache = await open();
  const r = route((req, n) => (req.method === "OPTIONS"
    ? { status: 204, headers: { "access-control-allow-origin": "*" } }
    : { status: 200, headers: { "cache-control": "max-age=60" }, body: `v${n}` }));
  assert.equal(await (await cache.fetch(r.url)).text(), "v1");
  await cache.fetch(new Request(r.url, { method: "OPTIONS" }));
  const again = await cache.fetch(r.url);
  assert.equal(await again.text(), "v1");
  assert.match(again.headers.get("cache-status"), /^swre; hit/);
  cache.close();
});

test("review: a Vary: * response costs one origin request, not three", async () => {
  const cache = await open();
  const r = route((_, n) => ({ status: 200, headers: { "cache-control": "max-age=60", vary: "*" }, body: `v${n}` }));
  const res = await cache.fetch(r.url);
  assert.equal(await res.text(), "v1");
  assert.equal(r.hits(), 1);
  cache.close();
});

test("review: a no-cache response is not served from the store without asking the origin", async () => {
  const cache = await open();
  const r = route((req, n) => (req.headers["if-none-match"] === '"e"'
    ? { status: 304, headers: { etag: '"e"', "cache-control": "no-cache" } }
    : { status: 200, headers: { etag: '"e"', "cache-control": "no-cache" }, body: `v${n}` }));
  assert.equal(await (await cache.fetch(r.url)).text(), "v1");
  const second = await cache.fetch(r.url);
  assert.equal(await second.text(), "v1");
  assert.equal(r.hits(), 2, "the origin was asked before the stored response was used");
  cache.close();
});

test("review: a GET in flight when a POST invalidates its URL does not store the old response", async () => {
  const cache = await open();
  let version = 1;
  const r = route((req) => (req.method === "POST"
    ? { status: 204, headers: {} }
    : { status: 200, headers: { "cache-control": "max-age=60", "cache-groups": '"g"' }, body: `v${version}`, delay: 100 }));
  const inflight = cache.fetch(r.url);
  await new Promise((res) => setTimeout(res, 30));
  version = 2;
  await cache.fetch(new Request(r.url, { method: "POST" }));
  assert.equal(await (await inflight).text(), "v1");
  const after = await cache.fetch(r.url);
  assert.equal(await after.text(), "v2", "not the response fetched before the POST");
  cache.close();
});

test("review: a GET in flight when a group is invalidated does not store the old response", async () => {
  const cache = await open();
  let version = 1;
  const r = route(() => ({ status: 200, headers: { "cache-control": "max-age=60", "cache-groups": '"g"' }, body: `v${version}`, delay: 100 }));
  const purge = route(() => ({ status: 204, headers: { "cache-group-invalidation": '"g"' } }));
  const inflight = cache.fetch(r.url);
  await new Promise((res) => setTimeout(res, 30));
  version = 2;
  await cache.fetch(new Request(purge.url, { method: "POST" }));
  assert.equal(await (await inflight).text(), "v1");
  assert.equal(await (await cache.fetch(r.url)).text(), "v2");
  cache.close();
});

test("review: a GET in flight for a Vary variant when a POST invalidates the URL does not store the old variant", async () => {
  const cache = await open();
  let version = 1;
  const r = route((req) => (req.method === "POST"
    ? { status: 204, headers: {} }
    : { status: 200, headers: { "cache-control": "max-age=60", vary: "accept-language" }, body: `${req.headers["accept-language"]}${version}`, delay: req.headers["accept-language"] === "fr" ? 100 : 0 }));
  const get = (lang) => cache.fetch(new Request(r.url, { headers: { "accept-language": lang } }));
  assert.equal(await (await get("en")).text(), "en1");
  const inflight = get("fr");
  await new Promise((res) => setTimeout(res, 30));
  version = 2;
  await cache.fetch(new Request(r.url, { method: "POST" }));
  assert.equal(await (await inflight).text(), "fr1");
  assert.equal(await (await get("fr")).text(), "fr2");
  cache.close();
});

test("review: a very long URL is answered (passed through), not rejected", async () => {
  const cache = await open();
  const r = route((_, n) => ({ status: 200, headers: { "cache-control": "max-age=60" }, body: `v${n}` }));
  const res = await cache.fetch(`${r.url}?q=${"x".repeat(4000)}`).catch((e) => e);
  assert.ok(res instanceof Response, `rejected: ${res?.kind} ${res?.message}`);
  assert.equal(await res.text(), "v1");
  cache.close();
});

test("review: an opaque / error Response from the fetch option is handed back, not a RangeError", async () => {
  const cache = await open();
  const res = await cache.fetch(`${base}/whatever-opaque`, { fetch: async () => Response.error() }).catch((e) => e);
  assert.ok(res instanceof Response || res?.name === "SwrError", `threw ${res?.name}: ${res?.message}`);
  cache.close();
});

test("review: a request whose signal aborts rejects at once; the shared fetch goes on and is stored", async () => {
  const cache = await open();
  const r = route((_, n) => ({ status: 200, headers: { "cache-control": "max-age=60" }, body: `v${n}`, delay: 300 }));
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 30);
  const t0 = Date.now();
  const e = await cache.fetch(new Request(r.url, { signal: ac.signal })).catch((err) => err);
  assert.ok(Date.now() - t0 < 250, "rejected when aborted, not when the origin answered");
  assert.deepEqual([e.name, e.kind], ["SwrError", "aborted"]);
  await new Promise((res) => setTimeout(res, 400));
  const again = await cache.fetch(r.url);
  assert.equal(await again.text(), "v1");
  assert.equal(r.hits(), 1);
  cache.close();
});

test("review: a URL over the cache's key limit is passed through, not rejected", async () => {
  const cache = await SwrCache.open({ fresh: 60_000 });
  const r = route((_, n) => ({ status: 200, headers: { "cache-control": "max-age=60" }, body: `v${n}` }));
  const res = await cache.fetch(`${r.url}?q=${"x".repeat(9000)}`).catch((e) => e);
  assert.ok(res instanceof Response, `rejected: ${res?.kind} ${res?.message}`);
  assert.equal(await res.text(), "v1");
  assert.equal(res.headers.get("cache-status"), "swre; fwd=bypass; fwd-status=200");
  cache.close();
});
