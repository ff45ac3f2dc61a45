// The packed package as a user gets it: `npm pack` of www/package installed
// into a fresh temp project, then used in seven settings: a Node script, a
// Worker bundled as wrangler bundles it and run in workerd (also with the
// `swre/coordinator` Durable Object, as its README shows), a Chromium page
// (import map, no bundler), a module worker, a module service worker, an
// esbuild bundle (the `swre/inline` entry) and a Vite build. No `.wasm` is
// ever copied by hand.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { build as esbuild } from "esbuild";
import { build as viteBuild } from "vite";
import { Miniflare, Response as MiniflareResponse } from "miniflare";
import { chromium } from "playwright-core";
import { bundleWorker } from "./bundle-worker.mjs";
import { CHROMIUM } from "./chromium.mjs";

const www = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
let project, server, browser;

/** Writes `files` (relative path → text) under the project. */
async function write(files) {
  for (const [rel, text] of Object.entries(files)) {
    const file = path.join(project, rel);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, text);
  }
}

/** A static server over the project directory. */
function serve(root) {
  const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm" };
  const s = http.createServer(async (req, res) => {
    const rel = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const file = path.join(root, rel);
    if (!file.startsWith(root)) return res.writeHead(403).end();
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": types[path.extname(file)] ?? "application/octet-stream", "cache-control": "no-store" });
      res.end(body);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  return new Promise((resolve) => s.listen(0, "127.0.0.1", () => resolve({ url: `http://127.0.0.1:${s.address().port}`, close: () => new Promise((r) => s.close(r)) })));
}

// What every setting runs: a miss, then a hit, from a memory cache.
const SCENARIO = `
  const cache = await SwrCache.open();
  let calls = 0;
  const fetcher = () => { calls++; return { answer: 42 }; };
  const a = await cache.get("k", fetcher);
  const b = await cache.get("k", fetcher);
  const result = [a.status, b.status, b.value.answer, calls];
`;
const EXPECTED = ["miss", "hit", 42, 1];

before(async () => {
  project = await mkdtemp(path.join(os.tmpdir(), "swre-pack-"));
  const tarball = execFileSync("npm", ["pack", "--silent", "--pack-destination", project], { cwd: path.join(www, "package"), encoding: "utf8" }).trim().split("\n").pop();
  await write({ "package.json": JSON.stringify({ name: "swre-pack-trial", private: true, type: "module" }) });
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--offline", "--loglevel=error", path.join(project, tarball)], { cwd: project, stdio: "pipe" });
  server = await serve(project);
  browser = await chromium.launch({
    ...CHROMIUM,
  });
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (project) await rm(project, { recursive: true, force: true });
});

/** Opens `page` of the project in Chromium and waits for `window.__result`. */
async function inChromium(rel) {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  try {
    await page.goto(`${server.url}/${rel}`);
    await page.waitForFunction(() => window.__result !== undefined, null, { timeout: 20_000 }).catch(() => {});
    const result = await page.evaluate(() => window.__result);
    assert.ok(result !== undefined, `no result from ${rel}: ${errors.join("; ")}`);
    return result;
  } finally {
    await page.close();
  }
}

test("the tarball holds the entry points, the types and the module, and nothing else", async () => {
  const pkg = path.join(project, "node_modules", "swre");
  const files = (await readdir(pkg, { recursive: true })).sort();
  for (const f of ["index.d.ts", "coordinator.d.ts", "package.json", "src/cache.js", "src/node.js", "src/web.js", "src/workerd.js", "src/inline.js", "src/coordinator.js", "wasm/swre.js", "wasm/swre_bg.wasm", "wasm/stats.d.ts"]) {
    assert.ok(files.includes(f), `${f} is missing from the package`);
  }
  assert.ok(!files.some((f) => f.endsWith(".rs") || f.includes("tests")), files.join(", "));
});

test("Node: a script imports the package and uses it with no setup", async () => {
  await write({ "node-script.mjs": `import { SwrCache } from "swre";\n${SCENARIO}\nconsole.log(JSON.stringify(result));\n` });
  const out = execFileSync(process.execPath, ["node-script.mjs"], { cwd: project, encoding: "utf8", timeout: 30_000 });
  assert.deepEqual(JSON.parse(out), EXPECTED);
});

test("Workers: bundled with the workerd condition, run in workerd", async () => {
  await write({
    "worker.mjs": `import { SwrCache } from "swre";
let cache;
export default {
  async fetch(request, env, ctx) {
    cache ??= SwrCache.open({ storage: "cache", name: "pack" });
    const c = await cache;
    let calls = 0;
    const r = await c.get(new URL(request.url).pathname, () => { calls++; return "from origin"; }, { waitUntil: ctx.waitUntil.bind(ctx) });
    return Response.json([r.status, r.value, calls]);
  },
};
`,
  });
  const bundle = await bundleWorker(path.join(project, "worker.mjs"));
  const mf = new Miniflare({ modulesRoot: bundle.modulesRoot, modules: bundle.modules, compatibilityDate: "2025-06-01" });
  try {
    const first = await (await mf.dispatchFetch("http://w.test/a")).json();
    const second = await (await mf.dispatchFetch("http://w.test/a")).json();
    assert.deepEqual(first, ["miss", "from origin", 1]);
    assert.deepEqual(second, ["hit", "from origin", 0]);
  } finally {
    await mf.dispose();
    await rm(bundle.dir, { recursive: true, force: true });
  }
});

test("Workers: the README's coordinator example, from the tarball, bound as its wrangler.toml says", async () => {
  const readme = await readFile(path.join(www, "package", "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Across Workers isolates"));
  const code = /```js\n([\s\S]*?)```/.exec(section)[1];
  const toml = /```toml\n([\s\S]*?)```/.exec(section)[1];
  for (const line of ['name = "SWRE_COORDINATOR"', 'class_name = "SwrCoordinator"', 'new_sqlite_classes = ["SwrCoordinator"]', 'binding = "KV"']) {
    assert.ok(toml.includes(line), `the wrangler.toml has ${line}`);
  }
  await write({ "readme-coordinated.mjs": code });
  const bundle = await bundleWorker(path.join(project, "readme-coordinated.mjs"));
  let calls = 0;
  const mf = new Miniflare({
    modulesRoot: bundle.modulesRoot,
    modules: bundle.modules,
    compatibilityDate: "2025-06-01",
    kvNamespaces: ["KV"],
    durableObjects: { SWRE_COORDINATOR: { className: "SwrCoordinator", useSQLite: true } },
    outboundService: (request) => {
      calls++;
      return new MiniflareResponse(`origin says ${new URL(request.url).pathname}`);
    },
  });
  try {
    for (const want of ["miss", "hit"]) {
      const res = await mf.dispatchFetch("http://w.test/item/7");
      assert.equal(res.headers.get("x-cache"), want);
      assert.equal(await res.text(), "origin says /item/7");
    }
    assert.equal(calls, 1);
  } finally {
    await mf.dispose();
    await rm(bundle.dir, { recursive: true, force: true });
  }
});

test("Workers: SwrCoordinator from swre/coordinator counts its lease, and a hit never asks it", async () => {
  await write({
    "coordinated-worker.mjs": `import { SwrCache } from "swre";
export { SwrCoordinator } from "swre/coordinator";
let cache;
export default {
  async fetch(request, env, ctx) {
    cache ??= SwrCache.open({ storage: "cache", name: "pack-coordinated", coordinator: env.SWRE_COORDINATOR });
    const c = await cache;
    const r = await c.get(new URL(request.url).pathname, () => "from origin", { waitUntil: ctx.waitUntil.bind(ctx) });
    const s = c.stats();
    return Response.json([r.status, r.value, s.coordinatorLeases, s.coordinatorUnavailable]);
  },
};
`,
  });
  const bundle = await bundleWorker(path.join(project, "coordinated-worker.mjs"));
  const mf = new Miniflare({
    modulesRoot: bundle.modulesRoot,
    modules: bundle.modules,
    compatibilityDate: "2025-06-01",
    durableObjects: { SWRE_COORDINATOR: "SwrCoordinator" },
  });
  try {
    const first = await (await mf.dispatchFetch("http://w.test/a")).json();
    const second = await (await mf.dispatchFetch("http://w.test/a")).json();
    assert.deepEqual(first, ["miss", "from origin", 1, 0]);
    assert.deepEqual(second, ["hit", "from origin", 1, 0], "a hit never asks the coordinator");
  } finally {
    await mf.dispose();
    await rm(bundle.dir, { recursive: true, force: true });
  }
});

test("Chromium page: an import map and no bundler", async () => {
  await write({
    "page.html": `<!doctype html><script type="importmap">{ "imports": { "swre": "/node_modules/swre/src/web.js" } }</script>
<script type="module">import { SwrCache } from "swre";\n${SCENARIO}\nwindow.__result = result;</script>`,
  });
  assert.deepEqual(await inChromium("page.html"), EXPECTED);
});

test("Chromium module worker", async () => {
  await write({
    "module-worker.js": `import { SwrCache } from "/node_modules/swre/src/web.js";\n${SCENARIO}\npostMessage(result);\n`,
    "worker.html": `<!doctype html><script type="module">
const w = new Worker("/module-worker.js", { type: "module" });
w.onmessage = (e) => { window.__result = e.data; };
w.onerror = (e) => { window.__result = ["worker error", e.message]; };
</script>`,
  });
  assert.deepEqual(await inChromium("worker.html"), EXPECTED);
});

test("Chromium module service worker (no top-level await), answering fetches from the Cache API", async () => {
  await write({
    "sw.js": `import { SwrCache } from "/node_modules/swre/src/web.js";
let cache;
let calls = 0;
self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (e) => e.waitUntil(self.clients.claim()));
self.addEventListener("fetch", (e) => {
  const url = new URL(e.request.url);
  if (!url.pathname.startsWith("/swr/")) return;
  e.respondWith((async () => {
    cache ??= SwrCache.open({ storage: "cache", name: "sw-trial" });
    const r = await (await cache).get(url.pathname, () => { calls++; return "from the service worker"; }, { waitUntil: e.waitUntil.bind(e) });
    return Response.json([r.status, r.value, calls]);
  })());
});
`,
    "sw.html": `<!doctype html><script type="module">
await navigator.serviceWorker.register("/sw.js", { type: "module" });
await navigator.serviceWorker.ready;
if (!navigator.serviceWorker.controller) await new Promise((r) => navigator.serviceWorker.addEventListener("controllerchange", r, { once: true }));
const a = await (await fetch("/swr/item")).json();
const b = await (await fetch("/swr/item")).json();
window.__result = [a, b];
</script>`,
  });
  assert.deepEqual(await inChromium("sw.html"), [
    ["miss", "from the service worker", 1],
    ["hit", "from the service worker", 1],
  ]);
});

test("esbuild bundle of the swre/inline entry: no loader settings, no .wasm to copy", async () => {
  await write({ "esb/entry.js": `import { SwrCache } from "swre/inline";\n${SCENARIO}\nwindow.__result = result;\n` });
  await esbuild({
    entryPoints: [path.join(project, "esb/entry.js")],
    bundle: true,
    format: "esm",
    platform: "browser",
    outfile: path.join(project, "esb/out/bundle.js"),
    logLevel: "silent",
  });
  assert.deepEqual(await readdir(path.join(project, "esb/out")), ["bundle.js"]);
  await write({ "esb/out/index.html": `<!doctype html><script type="module" src="bundle.js"></script>` });
  assert.deepEqual(await inChromium("esb/out/index.html"), EXPECTED);
});

test("Vite build: the module is emitted as an asset from new URL(…, import.meta.url)", async () => {
  await write({
    "vite-app/index.html": `<!doctype html><script type="module" src="./main.js"></script>`,
    "vite-app/main.js": `import { SwrCache } from "swre";\n${SCENARIO}\nwindow.__result = result;\n`,
  });
  await viteBuild({ root: path.join(project, "vite-app"), base: "./", logLevel: "silent", build: { outDir: "dist", emptyOutDir: true } });
  const assets = await readdir(path.join(project, "vite-app/dist/assets"));
  assert.ok(assets.some((f) => f.endsWith(".wasm")), `no .wasm among ${assets.join(", ")}`);
  assert.deepEqual(await inChromium("vite-app/dist/index.html"), EXPECTED);
});

test("TypeScript: a strict consumer type-checks against the packed types", async () => {
  await write({
    "ts/consumer.ts": `import { SwrCache, type SwrStats, type SwrValue } from "swre";
import type { SwrCoordinator } from "swre/coordinator";
type User = { id: number; at: Date; tags: Map<string, number> };
export async function main(): Promise<string> {
  const cache = await SwrCache.open({ fresh: 1_000, maxBytes: 1 << 20, storage: "memory" });
  const r = await cache.get("u", async ({ signal }): Promise<User> => ({ id: signal.aborted ? 0 : 1, at: new Date(), tags: new Map() }), { ttl: 10_000 });
  const at: string = r.value.at; // a Date comes back as its ISO string
  const id: number = r.value.id;
  const bytes: SwrValue<ArrayBuffer> = new Uint8Array(1);
  const stats: SwrStats = cache.stats();
  // The fetcher's context: a conditional refresh, its own TTL, no store.
  const page = await cache.get("page", async (ctx) => {
    const headers: Record<string, string> = {};
    if (ctx.staleCreatedAt !== undefined) headers["if-modified-since"] = new Date(ctx.staleCreatedAt).toUTCString();
    if (headers["if-modified-since"] !== undefined && ctx.signal.aborted) return ctx.notModified();
    ctx.setTtl(60_000);
    if (ctx.staleValue === null) ctx.noStore();
    return { html: "<p>hi</p>", at: new Date() };
  });
  const html: string = page.value.html;
  const when: string = page.value.at;
  // Tags, clear and batches.
  await cache.set("t", { n: 1 }, { ttl: 60_000, tags: ["users"] });
  await cache.get("t", (ctx) => {
    ctx.setTags(["users", "user:1"]);
    return { n: 2 };
  }, { tags: ["users"] });
  await cache.invalidateTag("users");
  await cache.expireTag("user:1");
  const many = await cache.getMany(["a", "b"], async (keys, { signal }) => new Map(keys.map((k) => [k, { k, aborted: signal.aborted }])), { ttl: 5_000, tags: ["batch"] });
  let firstKey = "";
  for (const m of many) {
    if (m.ok) firstKey ||= m.value.k + m.status;
    else firstKey ||= m.error.kind;
  }
  await cache.getMany(["c"], (keys) => Object.fromEntries(keys.map((k) => [k, 1])));
  await cache.getMany(["d"], (keys) => keys.map((k): [string, string] => [k, "v"]));
  await cache.clear();
  cache.close();
  // A Durable Object namespace as @cloudflare/workers-types declares one.
  type Id = { readonly name?: string; equals(other: Id): boolean };
  const namespace = {} as { idFromName(name: string): Id; get(id: Id, options?: { locationHint?: string }): { id: Id } };
  const coordinated = await SwrCache.open({ coordinator: namespace });
  const tuned = await SwrCache.open({ name: "other", coordinator: { namespace, buckets: 64, maxValueBytes: 4 << 20 } });
  const shared: number = (coordinated.stats().coordinatorShared ?? 0) + (tuned.stats().coordinatorLeases ?? 0);
  const held = (null as unknown as SwrCoordinator | null)?.inspect();
  return at + id + bytes.length + stats.flightsTakenOver + html + when + firstKey + shared + (held?.flights ?? 0);
}
`,
  });
  const tsc = path.join(www, "node_modules", "typescript", "bin", "tsc");
  for (const resolution of [["--module", "nodenext", "--moduleResolution", "nodenext"], ["--module", "esnext", "--moduleResolution", "bundler"]]) {
    execFileSync(process.execPath, [tsc, "--noEmit", "--strict", "--target", "es2022", "--lib", "es2022,dom", ...resolution, "ts/consumer.ts"], { cwd: project, encoding: "utf8" });
  }
});
