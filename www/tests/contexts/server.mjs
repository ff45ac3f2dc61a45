// The cross-context tests' server: the package and the agent's files from
// www/, and a counting origin on the same origin, `/origin/<id>`, each id
// answering as the test set it up (`route(id, { delay, hangFirst })`).
import http from "node:http";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

const www = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const SERVED = ["/package/src/", "/package/wasm/", "/tests/contexts/"];
const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".wasm": "application/wasm" };

export async function startServer() {
  const routes = new Map();
  const hits = new Map();
  const hanging = new Set();
  const server = http.createServer(async (req, res) => {
    const { pathname } = new URL(req.url, "http://x");
    if (pathname.startsWith("/origin/")) {
      const id = pathname.slice("/origin/".length);
      const n = (hits.get(id) ?? 0) + 1;
      hits.set(id, n);
      const route = routes.get(id) ?? {};
      if (route.hangFirst && n === 1) {
        // Never answered: the caller holds its lock until its context closes.
        hanging.add(res);
        return;
      }
      setTimeout(() => {
        res.writeHead(200, { "content-type": "text/plain", "cache-control": "no-store" });
        res.end(`${id}#${n}`);
      }, route.delay ?? 0);
      return;
    }
    const rel = path.normalize(pathname);
    if (!SERVED.some((p) => rel.startsWith(p))) {
      res.writeHead(404).end("not found");
      return;
    }
    try {
      const body = await readFile(path.join(www, rel));
      res.writeHead(200, { "content-type": TYPES[path.extname(rel)] ?? "application/octet-stream", "cache-control": "no-store" });
      res.end(body);
    } catch {
      res.writeHead(404).end("not built: run www/build.sh");
    }
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    route: (id, answer) => routes.set(id, answer),
    hits: (id) => hits.get(id) ?? 0,
    close: () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      return new Promise((r) => server.close(r));
    },
  };
}
