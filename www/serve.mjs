// A small static server for the demo page and the service-worker example
// (`sw.html`, `sw.js`), with the example's API, `/api/clock`: `node
// serve.mjs [port]`.
import http from "node:http";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.dirname(fileURLToPath(import.meta.url));
const types = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".svg": "image/svg+xml",
};
const allowed = new Set([
  "index.html",
  "app.js",
  "style.css",
  "package/src/web.js",
  "package/src/cache.js",
  "package/src/table.js",
  "package/src/http.js",
  "package/src/answer.js",
  "package/wasm/swre.js",
  "package/wasm/swre_bg.wasm",
  "sw.html",
  "sw.js",
]);

/**
 * Starts the server on `port` (0 picks a free one); resolves to `{ url,
 * close, apiCalls }`, where `apiCalls()` counts the requests `/api/clock`
 * answered.
 */
export function start(port = 0, host = "127.0.0.1") {
  let apiCalls = 0;
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, "http://localhost");
    if (url.pathname === "/api/clock") {
      // The service-worker example's API: fresh 60 s, then served stale
      // while revalidated for 5 min, kept a day for errors.
      apiCalls += 1;
      res.writeHead(200, {
        "content-type": "application/json",
        "cache-control": "max-age=60, stale-while-revalidate=300, stale-if-error=86400",
      });
      res.end(JSON.stringify({ now: Date.now(), call: apiCalls }));
      return;
    }
    const rel = url.pathname === "/" ? "index.html" : url.pathname.slice(1);
    if (!allowed.has(rel)) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found");
      return;
    }
    try {
      const body = await readFile(path.join(root, rel));
      res.writeHead(200, { "content-type": types[path.extname(rel)] ?? "application/octet-stream", "cache-control": "no-store" });
      res.end(body);
    } catch {
      res.writeHead(404, { "content-type": "text/plain" }).end("not built: run www/build.sh");
    }
  });
  return new Promise((resolve) => {
    server.listen(port, host, () => {
      const { port: actual } = server.address();
      resolve({
        url: `http://${host}:${actual}/`,
        close: () => new Promise((r) => server.close(r)),
        apiCalls: () => apiCalls,
      });
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { url } = await start(Number(process.argv[2] ?? 8080));
  console.log(`swre demo on ${url}`);
}
