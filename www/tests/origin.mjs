// A real `node:http` origin on loopback for the HTTP caching tests: each
// path answers with its route, `routes.get(path)(req, count)` →
// `{ status, headers, body, delay }`; `hits` counts requests per path and
// `seen` keeps each request's method and headers.
import { createServer } from "node:http";

/** Starts an origin; `route(fn)` makes a fresh path (named with `prefix`) answering with `fn`. */
export async function startOrigin(prefix = "/r") {
  const routes = new Map();
  const hits = new Map();
  const seen = [];
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    const n = (hits.get(path) ?? 0) + 1;
    hits.set(path, n);
    seen.push({ path, method: req.method, headers: req.headers });
    const route = routes.get(path);
    const answer = route === undefined ? { status: 404, headers: {}, body: "no route" } : route(req, n);
    setTimeout(() => {
      res.writeHead(answer.status, answer.headers);
      res.end(answer.body ?? "");
    }, answer.delay ?? 0);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  let unique = 0;
  const route = (fn) => {
    const path = `${prefix}${++unique}`;
    routes.set(path, fn);
    return { path, url: `${base}${path}`, hits: () => hits.get(path) ?? 0 };
  };
  return { routes, hits, seen, base, route, close: () => new Promise((r) => server.close(r)) };
}
