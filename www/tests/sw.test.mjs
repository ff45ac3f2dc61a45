// The service-worker example (sw.html, sw.js) in headless Chromium: the
// page's API requests go through the service worker's `cache.fetch`, so the
// second is answered from the cache with an RFC 9211 Cache-Status, and the
// API (counted by the server) is called once; after a reload the Cache API
// still holds it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";
import { start } from "../serve.mjs";
import { CHROMIUM } from "./chromium.mjs";

let server, context, profile;
before(async () => {
  server = await start(0);
  profile = await mkdtemp(path.join(os.tmpdir(), "swre-sw-"));
  context = await chromium.launchPersistentContext(profile, { ...CHROMIUM });
});

after(async () => {
  await context?.close();
  await server?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

test("the service-worker example answers the page's API requests from the cache", async () => {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(`${server.url}sw.html`);
  await page.waitForSelector("body[data-ready=true]", { timeout: 20_000 });
  const first = await page.evaluate(() => window.clock());
  assert.match(first.cacheStatus, /^swre; fwd=miss; fwd-status=200; ttl=(59|60); stored$/);
  const again = await Promise.all([1, 2, 3].map(() => page.evaluate(() => window.clock())));
  for (const r of again) {
    assert.match(r.cacheStatus, /^swre; hit; ttl=(59|60)$/);
    assert.deepEqual(r.body, first.body, "the stored response");
  }
  assert.equal(server.apiCalls(), 1);
  // A reload: a new page, the same service worker, the response from the Cache API.
  await page.reload();
  await page.waitForSelector("body[data-ready=true]", { timeout: 20_000 });
  const reloaded = await page.evaluate(() => window.clock());
  assert.deepEqual(reloaded.body, first.body);
  assert.match(reloaded.cacheStatus, /^swre; hit; ttl=(5\d|60)$/);
  assert.equal(server.apiCalls(), 1);
  assert.deepEqual(errors, []);
});
