// The README's JavaScript examples, extracted from README.md and run as
// written: the browser example in Chromium, the Worker example in workerd.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Miniflare, Response } from "miniflare";
import { chromium } from "playwright-core";
import { start } from "../serve.mjs";
import { CHROMIUM } from "./chromium.mjs";
import { bundleWorker } from "./bundle-worker.mjs";

const www = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const readme = await readFile(path.join(www, "..", "README.md"), "utf8");

/** The first ```js block after `heading`. */
function snippet(heading) {
  const at = readme.indexOf(heading);
  assert.ok(at >= 0, `README has no "${heading}"`);
  const m = /```js\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(m, `no js block after "${heading}"`);
  return m[1];
}

let server, context, profile;
before(async () => {
  server = await start(0);
  profile = await mkdtemp(path.join(os.tmpdir(), "swre-readme-"));
  context = await chromium.launchPersistentContext(profile, {
    ...CHROMIUM,
  });
});

after(async () => {
  await context?.close();
  await server?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

test("the README's browser example runs as written", async () => {
  const code = snippet("## From JavaScript");
  const page = await context.newPage();
  let apiCalls = 0;
  await page.route("**/api/user/1", (route) => {
    apiCalls += 1;
    return route.fulfill({ json: { id: 1, name: "Ada" } });
  });
  await page.route("**/readme-example.js", (route) => route.fulfill({ contentType: "text/javascript", body: code }));
  const logs = [];
  page.on("console", (m) => logs.push(m.text()));
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  for (const want of ["miss", "hit"]) {
    await page.goto(server.url);
    await page.addScriptTag({ type: "module", url: "/readme-example.js" });
    const deadline = Date.now() + 10_000;
    while (!logs.some((l) => l.startsWith(`${want} `)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(logs.some((l) => l.startsWith(`${want} `)), `expected a "${want}" line, got ${JSON.stringify(logs)}`);
    logs.length = 0;
  }
  assert.equal(apiCalls, 1, "the second run (after a reload) was served from IndexedDB");
  assert.deepEqual(errors, []);
});

test("the README's Workers example runs as written in workerd", async () => {
  const file = path.join(www, "worker", ".readme-example.mjs");
  await writeFile(file, snippet("### Cloudflare Workers"));
  const bundle = await bundleWorker(file);
  let calls = 0;
  const mf = new Miniflare({
    modulesRoot: bundle.modulesRoot,
    modules: bundle.modules,
    compatibilityDate: "2025-06-01",
    serviceBindings: {
      UPSTREAM: async (request) => {
        calls += 1;
        return new Response(`upstream says ${new URL(request.url).pathname}`);
      },
    },
  });
  try {
    // No Cache-Control from this upstream: the cache's own windows apply
    // (fresh 5 s by default).
    const first = await mf.dispatchFetch("http://example.test/item/7");
    assert.equal(await first.text(), "upstream says /item/7");
    assert.match(first.headers.get("cache-status"), /^swre; fwd=miss; fwd-status=200; ttl=[45]; stored$/);
    const second = await mf.dispatchFetch("http://example.test/item/7");
    assert.equal(await second.text(), "upstream says /item/7");
    assert.match(second.headers.get("cache-status"), /^swre; hit; ttl=[45]$/);
    assert.equal(calls, 1);
  } finally {
    await mf.dispose();
    await rm(file, { force: true });
    await rm(bundle.dir, { recursive: true, force: true });
  }
});
