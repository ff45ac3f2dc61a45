// The JS benchmarks: warm hit, 1,000-caller stampede and memory per entry,
// swre beside lru-cache and a plain Map SWR, in Node and in headless
// Chromium, from one run. Writes JSON to the path given (benches/run.sh
// turns it into BENCHMARKS.md). Usage: node bench/run.mjs OUT.json
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { SwrCache } from "swre";
import { LRUCache } from "lru-cache";
import { timings } from "./workloads.mjs";
import { CHROMIUM } from "../tests/chromium.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const www = path.dirname(here);
const out = process.argv[2];
if (!out) throw new Error("usage: node bench/run.mjs OUT.json");

const report = { node: {}, chromium: {}, memory: {}, size: {}, versions: {} };

// Node
report.node = await timings({ SwrCache, LRUCache }, { hits: 2_000_000 });
for (const name of ["swre", "lru-cache", "Map SWR"]) {
  const bytes = execFileSync(process.execPath, [path.join(here, "node-memory.mjs"), name], { cwd: www, encoding: "utf8" });
  report.memory[name] = Number(bytes);
}

// Chromium: the same workloads bundled with esbuild (swre through its
// swre/inline entry, so the page needs no second file).
const bundle = await build({
  stdin: {
    contents: `import { SwrCache } from "swre/inline"; import { LRUCache } from "lru-cache"; import { timings } from "./workloads.mjs";
      window.__bench = timings({ SwrCache, LRUCache }, { hits: 1_000_000 });`,
    resolveDir: here,
    loader: "js",
  },
  bundle: true,
  format: "esm",
  platform: "browser",
  write: false,
  logLevel: "silent",
});
const browser = await chromium.launch(CHROMIUM);
try {
  const page = await browser.newPage();
  await page.route("http://bench.test/**", (route) =>
    route.request().url().endsWith(".js")
      ? route.fulfill({ contentType: "text/javascript", body: bundle.outputFiles[0].text })
      : route.fulfill({ contentType: "text/html", body: `<!doctype html><script type="module" src="/bench.js"></script>` }),
  );
  await page.goto("http://bench.test/");
  report.chromium = await page.evaluate(() => window.__bench);
  report.versions.chromium = browser.version();
} finally {
  await browser.close();
}

// Shipped size, gzip -9: swre's module and its JS as a bundler ships it
// (minified), beside lru-cache's minified build.
const gz = (buf) => gzipSync(buf, { level: 9 }).length;
const js = await build({ entryPoints: [path.join(www, "package/src/web.js")], bundle: true, minify: true, format: "esm", write: false, external: ["*.wasm"], logLevel: "silent" });
report.size.swreWasm = gz(readFileSync(path.join(www, "package/wasm/swre_bg.wasm")));
report.size.swreJs = gz(js.outputFiles[0].contents);
const lru = await build({ entryPoints: [path.join(www, "node_modules/lru-cache/dist/esm/index.js")], bundle: true, minify: true, format: "esm", write: false, logLevel: "silent", platform: "neutral" });
report.size.lruCache = gz(lru.outputFiles[0].contents);
report.versions.node = process.version;
report.versions.lruCache = JSON.parse(readFileSync(path.join(www, "node_modules/lru-cache/package.json"), "utf8")).version;
writeFileSync(out, JSON.stringify(report, null, 2));
console.log(JSON.stringify(report, null, 2));
