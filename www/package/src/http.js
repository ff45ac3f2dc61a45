// HTTP response caching: `cache.fetch(request, options)`, for Workers and
// service workers. Whole responses (status, headers, body bytes) are cached
// by method and URL, and by the request headers their `Vary` names; their
// phases come from their own headers (RFC 9111, RFC 5861: `max-age`,
// `s-maxage`, `stale-while-revalidate`, `stale-if-error`, …), which the
// engine's `httpPhases` reads (`swre-core`'s `HttpPolicy`, so those rules
// live once). Stored entries with validators are revalidated with
// `If-None-Match` / `If-Modified-Since` (a 304 extends the entry); a
// successful unsafe method invalidates its URL (RFC 9111 §4.4) and the
// cache groups it names (RFC 9875); every response carries an RFC 9211
// `Cache-Status` member that the engine renders.

const SAFE = new Set(["GET", "HEAD"]);
/** Safe methods that are not cached: passed through, invalidating nothing (RFC 9110 §9.2.1). */
const PASSED = new Set(["OPTIONS", "TRACE"]);
/**
 * Request headers the cache's own fetch never carries: the client's
 * preconditions would make the origin answer a 304 or 412 that the cache
 * would hand to every request sharing the fetch (the cache sends its own
 * validators).
 */
const CLIENT_CONDITIONALS = ["if-none-match", "if-modified-since", "if-match", "if-unmodified-since", "if-range"];
/**
 * The value of an origin answer that only its requester may have (not
 * storable: `private`, `no-store`, `Set-Cookie`, `Authorization`, `Vary: *`,
 * …): the requester gets the origin's `Response` as it came, and requests
 * that shared the fetch ask the origin themselves (RFC 9111 §4: only a
 * stored or storable response may answer other requests).
 */
const NOT_SHARED = new Uint8Array([0]);
const notShared = (bytes) => bytes instanceof Uint8Array && bytes.length === 1 && bytes[0] === 0;
/** Not stored with a response: hop-by-hop fields, and cookies (never replayed to another user). */
const UNSTORED = new Set([
  "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
  "transfer-encoding", "upgrade", "set-cookie",
]);
/** Statuses whose responses have no body (Fetch standard, "null body status"). */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);
/** Origin answers that count as failures: a stored response may stand in (`stale-if-error`). */
const FAILURE = new Set([500, 502, 503, 504]);
/** Known options of `cache.fetch`. */
const OPTIONS = ["fetch", "mode", "waitUntil", "maxBodyBytes"];
const DEFAULT_MAX_BODY = 8 << 20;
const TEXT_IN = new TextEncoder();
const TEXT_OUT = new TextDecoder();
/** The engine's limits on an entry's tags (swre-core `MAX_TAGS`, `MAX_TAG_BYTES`). */
const TAGS_HELD = 32;
const TAG_BYTES = 256;
/** Stored responses' format version (the first byte). */
const VERSION = 1;

/** The key of `url`'s GET response; variants add their request headers' values. */
const baseKey = (url) => `http:GET ${url}`;
/** The tag of every variant of `url` (set only on responses with `Vary`). */
const urlTag = (url) => `http-url:${url}`;

/**
 * `cache.fetch`: see `index.d.ts`. `swrError(kind, message, cause)` makes the
 * package's errors; `engine` gives the phases and renders `Cache-Status`.
 */
export async function httpFetch(cache, engine, swrError, input, options) {
  const o = checked(options, swrError);
  let request;
  try {
    request = input instanceof Request ? input : new Request(input);
  } catch (e) {
    throw swrError("options", `fetch: not a request or URL: ${e?.message ?? e}`, e);
  }
  const status = (...args) => engine.constructor.cacheStatus(...args);
  if (PASSED.has(request.method)) {
    const res = await o.fetch(request);
    return labelled(res, status("miss", "none", 0, Date.now(), "method", res.status, false, false));
  }
  if (!SAFE.has(request.method)) return unsafe(cache, engine.constructor, o, request, status);
  const requestCc = request.headers.get("cache-control") ?? "";
  if (/(^|,)\s*no-(store|cache)\b/i.test(requestCc) || request.headers.has("range")) {
    // Told not to use the store (or a part asked for): straight to the origin.
    const res = await o.fetch(request);
    return labelled(res, status("miss", "none", 0, Date.now(), "request", res.status, false, false));
  }
  const url = request.url;
  try {
    return await cached(cache, engine, o, request, url, status);
  } catch (e) {
    if (e?.kind !== "invalidKey") throw e;
    // A key over the cache's limit (a long URL, or long values of the
    // headers a response varies on): not cached, passed through.
    const res = await o.fetch(request);
    return labelled(res, status("miss", "none", 0, Date.now(), "bypass", res.status, false, false));
  }
}

/** A `GET` or `HEAD` of `url` answered through the cache. */
async function cached(cache, engine, o, request, url, status) {
  let look = await lookup(cache, engine, o, request, baseKey(url));
  if (look.response !== undefined) return look.response;
  // A response fetched for this request matches it (`Vary: *` aside, which
  // is not shared).
  if (!(look.run.called && look.result.status === "miss") && !varyMatches(look.stored.meta, request)) {
    // Stored for other values of the headers it varies on: this request's
    // variant has its own key.
    const key = `${baseKey(url)}\n${JSON.stringify(varyValues(look.stored.meta.v, request))}`;
    look = await lookup(cache, engine, o, request, key);
    if (look.response !== undefined) return look.response;
    if (!varyMatches(look.stored.meta, request)) {
      // It varies on other headers now (or on `*`): not from the store.
      const res = await o.fetch(request);
      return labelled(res, status("miss", "none", 0, Date.now(), "vary-miss", res.status, false, false));
    }
  }
  return served(look, request, status);
}

/** The checked options, with `fetch` defaulting to the global one. */
function checked(options, swrError) {
  const o = options ?? {};
  if (o === null || typeof o !== "object") throw swrError("options", "fetch: options must be an object");
  for (const k in o) {
    if (!OPTIONS.includes(k)) throw swrError("options", `fetch: unknown option \`${k}\` (known: ${OPTIONS.join(", ")})`);
  }
  if (o.fetch !== undefined && typeof o.fetch !== "function") throw swrError("options", "fetch: `fetch` must be a function");
  if (o.mode !== undefined && o.mode !== "shared" && o.mode !== "private") {
    throw swrError("options", `fetch: \`mode\` must be "shared" or "private" (got ${String(o.mode)})`);
  }
  if (o.waitUntil !== undefined && typeof o.waitUntil !== "function") throw swrError("options", "fetch: `waitUntil` must be a function");
  const max = o.maxBodyBytes ?? DEFAULT_MAX_BODY;
  if (!(typeof max === "number" && max >= 0)) throw swrError("options", "fetch: `maxBodyBytes` must be a non-negative number");
  const upstream = o.fetch ?? ((r) => globalThis.fetch(r));
  return {
    fetch: upstream,
    private: o.mode === "private",
    get: o.waitUntil === undefined ? undefined : { waitUntil: o.waitUntil },
    maxBody: max,
  };
}

/**
 * One lookup of `key` through the cache, fetching `request` from the origin
 * when it holds nothing usable: `{ result, stored, run }`, or `{ response }`
 * when the origin's failure is the answer (nothing stored stood in).
 */
async function lookup(cache, engine, o, request, key, retried = false) {
  const run = { called: false, fwdStatus: -1, stored: false, revalidated: false, own: undefined, cookies: undefined, done: false };
  let result;
  try {
    // The request's signal bounds this request's wait (as `fetch` would
    // reject), never the shared fetch.
    const options = request.signal ? { ...o.get, signal: request.signal } : o.get;
    result = await cache.get(key, (ctx) => originFetch(engine, o, request, ctx, run), options);
  } catch (e) {
    run.done = true;
    discard(run);
    const failed = e?.cause?.swreResponse;
    if (failed === undefined) throw e;
    // The origin failed and nothing stood in: its answer goes to the client.
    const stored = decoded(failed);
    const now = Date.now();
    const label = engine.constructor.cacheStatus("miss", "none", 0, now, "miss", stored.meta.s, false, !run.called);
    return { response: build(stored, request, label, 0) };
  }
  run.done = true;
  if (result.status === "miss" && run.own !== undefined) {
    // This request's own fetch, not shared: the origin's answer as it came.
    let own = run.own;
    run.own = undefined;
    if (request.method === "HEAD" && own.status !== 0) {
      // Fetched as its GET: the client asked for the head only.
      own.body?.cancel().catch(() => {});
      own = new Response(null, { status: own.status, statusText: own.statusText, headers: own.headers });
    }
    const fwd = run.revalidated ? "stale" : "miss";
    return { response: labelled(own, engine.constructor.cacheStatus("miss", "none", 0, Date.now(), fwd, own.status, false, false)) };
  }
  discard(run);
  if (notShared(result.value)) {
    // Another request's answer, which only it may have: this one asks the origin.
    const res = await o.fetch(request);
    return { response: labelled(res, engine.constructor.cacheStatus("miss", "none", 0, Date.now(), "miss", res.status, false, false)) };
  }
  const stored = decoded(result.value);
  if (stored === undefined) {
    if (retried) throw new Error(`fetch: the cache keeps holding something other than a response under ${key}`);
    // Not a response this module stored (a plain `set` under an `http:` key):
    // the origin answers, and its response replaces it.
    await cache.delete(key);
    return lookup(cache, engine, o, request, key, true);
  }
  return { result, stored, run };
}

/** Cancels the body of an unshared answer no request will read (a background refresh's). */
function discard(run) {
  const own = run.own;
  run.own = undefined;
  own?.body?.cancel().catch(() => {});
}

/** The response for a lookup's result, labelled with its `Cache-Status`. */
function served({ result, stored, run }, request, status) {
  const now = Date.now();
  let label;
  if (result.status === "miss") {
    const fwd = run.revalidated ? "stale" : "miss";
    label = status("miss", result.detail, result.freshUntil, now, fwd, run.fwdStatus, run.stored, !run.called);
  } else {
    label = status(result.status, result.detail, result.freshUntil, now, "", -1, false, false);
  }
  const age = Math.max(0, Math.floor((now - result.createdAt) / 1000)) + (stored.meta.a ?? 0);
  const response = build(stored, request, label, age);
  // Cookies are not stored, but the response the origin sent to this
  // request's own fetch keeps them.
  if (result.status === "miss" && run.called && run.cookies !== undefined) {
    for (const c of run.cookies) response.headers.append("set-cookie", c);
  }
  return response;
}

/**
 * The engine's upstream call: the origin's response to `request` (made
 * conditional when the held response has validators), encoded, with its
 * phases, tags and whether to store it set on `ctx`.
 */
async function originFetch(engine, o, request, ctx, run) {
  run.called = true;
  const held = ctx.staleValue === undefined ? undefined : decoded(ctx.staleValue);
  const headers = new Headers(request.headers);
  for (const h of CLIENT_CONDITIONALS) headers.delete(h);
  const conditional = held !== undefined && varyMatches(held.meta, request);
  if (conditional) {
    if (held.meta.e !== undefined) headers.set("if-none-match", held.meta.e);
    if (held.meta.l !== undefined) headers.set("if-modified-since", held.meta.l);
  }
  // A HEAD is looked up as its GET: the stored response has the body.
  const init = { method: "GET", headers, signal: ctx.signal };
  const res = await o.fetch(new Request(request, init));
  run.fwdStatus = res.status;
  const now = Date.now();
  if (res.status === 304 && conditional && (held.meta.e !== undefined || held.meta.l !== undefined)) {
    // Still good: the held response stays, its phases start again from the
    // 304's headers where it gives them, else the stored ones.
    run.revalidated = true;
    const phases = phasesOf(engine, o, request, res.headers, held.meta, held.meta.s, now);
    if (typeof phases === "string") ctx.noStore();
    else {
      ctx.setTtl(phases[0], { stale: phases[1], expired: phases[2] });
      run.stored = true;
    }
    return ctx.notModified();
  }
  const phases = res.status === 0 || res.type === "opaque" || res.type === "opaqueredirect"
    ? "status"
    : phasesOf(engine, o, request, res.headers, undefined, res.status, now);
  const vary = varyNames(res.headers);
  if (!FAILURE.has(res.status) && (typeof phases === "string" || vary.includes("*"))) {
    // Not storable: its requester's alone, body unread.
    ctx.noStore();
    if (run.done) res.body?.cancel().catch(() => {});
    else run.own = res;
    return NOT_SHARED;
  }
  const body = NULL_BODY.has(res.status) ? new Uint8Array(0) : new Uint8Array(await res.arrayBuffer());
  const encoded = encode(res, request, body);
  if (FAILURE.has(res.status)) {
    // An error for the engine: a stored response may stand in for it
    // (`stale-if-error`), and it counts against the breaker.
    const e = new Error(`the origin answered ${res.status}`);
    e.swreResponse = encoded;
    throw e;
  }
  if (res.headers.has("set-cookie")) {
    run.cookies = typeof res.headers.getSetCookie === "function" ? res.headers.getSetCookie() : [res.headers.get("set-cookie")];
  }
  if (body.length > o.maxBody) {
    ctx.noStore();
    return encoded;
  }
  ctx.setTtl(phases[0], { stale: phases[1], expired: phases[2] });
  const tags = [];
  if (res.headers.has("vary")) tags.push(urlTag(request.url));
  const origin = new URL(request.url).origin;
  // RFC 9875 groups, read and scoped to the origin by swre-core.
  tags.push(...engine.constructor.groupTags(origin, res.headers.get("cache-groups") ?? undefined));
  if (tags.length > TAGS_HELD || tags.some((t) => TEXT_IN.encode(t).length > TAG_BYTES)) {
    // More groups, or longer names, than an entry's tags hold: stored
    // without them, a group's invalidation would miss it.
    ctx.noStore();
    return encoded;
  }
  if (tags.length > 0) ctx.setTags(tags);
  run.stored = true;
  return encoded;
}

/** The engine's phases for a response (its headers, else `fallback`'s stored meta), or why not stored. */
function phasesOf(engine, o, request, headers, fallback, status, now) {
  const field = (name) => headers.get(name) ?? fallback?.h?.find(([k]) => k === name)?.[1];
  return engine.httpPhases(
    o.private,
    status,
    field("cache-control") ?? undefined,
    field("expires") ?? undefined,
    headers.get("date") ?? undefined,
    headers.get("age") ?? undefined,
    headers.has("set-cookie"),
    request.headers.has("authorization"),
    now,
  );
}

/**
 * A successful unsafe method invalidates its URL, the same-origin URLs of its
 * `Location` and `Content-Location` (RFC 9111 §4.4), and the groups its
 * `Cache-Group-Invalidation` names (RFC 9875); the response goes to the
 * client as it is, labelled.
 */
async function unsafe(cache, engineClass, o, request, status) {
  const res = await o.fetch(request);
  if (res.status >= 200 && res.status < 400) {
    const target = new URL(request.url);
    const urls = [target.href];
    for (const name of ["location", "content-location"]) {
      const v = res.headers.get(name);
      if (v === null) continue;
      try {
        const u = new URL(v, target);
        if (u.origin === target.origin) urls.push(u.href);
      } catch {
        // Not a URL: nothing to invalidate.
      }
    }
    const ops = [];
    for (const u of urls) ops.push(cache.delete(baseKey(u)), cache.invalidateTag(urlTag(u)));
    const groups = res.headers.get("cache-group-invalidation") ?? undefined;
    for (const tag of engineClass.groupTags(target.origin, groups)) ops.push(cache.invalidateTag(tag));
    await Promise.all(ops);
  }
  return labelled(res, status("miss", "none", 0, Date.now(), "method", res.status, false, false));
}

/** The request's values of the headers `names` (lower case). */
const varyValues = (names, request) => names.map((n) => request.headers.get(n) ?? "");

/** Whether a stored response may answer `request`: its `Vary` headers have the values it was stored for. */
function varyMatches(meta, request) {
  if (meta.v.length === 0) return true;
  if (meta.v.includes("*")) return false;
  const values = varyValues(meta.v, request);
  return values.every((v, i) => v === meta.q[i]);
}

/**
 * A response as stored: a version byte, the length of the head (4 bytes,
 * big-endian), the head as JSON (`s` status, `t` status text, `h` headers,
 * `v` the `Vary` names, `q` the request's values of them, `e` ETag, `l`
 * Last-Modified, `a` the origin's Age), then the body.
 */
function encode(res, request, body) {
  const h = [];
  for (const [k, v] of res.headers) if (!UNSTORED.has(k)) h.push([k, v]);
  const vary = varyNames(res.headers);
  const head = { s: res.status, t: res.statusText, h, v: vary, q: varyValues(vary, request) };
  const etag = res.headers.get("etag");
  if (etag !== null) head.e = etag;
  const modified = res.headers.get("last-modified");
  if (modified !== null) head.l = modified;
  const age = Number.parseInt(res.headers.get("age") ?? "", 10);
  if (Number.isFinite(age) && age > 0) head.a = age;
  const json = TEXT_IN.encode(JSON.stringify(head));
  const out = new Uint8Array(5 + json.length + body.length);
  out[0] = VERSION;
  new DataView(out.buffer).setUint32(1, json.length);
  out.set(json, 5);
  out.set(body, 5 + json.length);
  return out;
}

/** Heads already parsed, by the stored bytes (hits share one object). */
const HEADS = new WeakMap();

/** The header names a response's `Vary` lists, lower case. */
const varyNames = (headers) =>
  (headers.get("vary") ?? "").split(",").map((n) => n.trim().toLowerCase()).filter((n) => n !== "");

/** `{ meta, body }` of a stored response, or `undefined` for anything else. */
function decoded(bytes) {
  if (!(bytes instanceof Uint8Array) || bytes.length < 5 || bytes[0] !== VERSION) return undefined;
  let meta = HEADS.get(bytes);
  const len = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(1);
  if (5 + len > bytes.length) return undefined;
  if (meta === undefined) {
    try {
      meta = JSON.parse(TEXT_OUT.decode(bytes.subarray(5, 5 + len)));
    } catch {
      return undefined;
    }
    if (!meta || typeof meta.s !== "number" || !Array.isArray(meta.h) || !Array.isArray(meta.v) || !Array.isArray(meta.q)) {
      return undefined;
    }
    HEADS.set(bytes, meta);
  }
  return { meta, body: bytes.subarray(5 + len) };
}

/** A `Response` for `stored`, with `label` added to its `Cache-Status` and its `Age`. */
function build(stored, request, label, age) {
  const { meta, body } = stored;
  const headers = new Headers(meta.h);
  headers.set("age", String(age));
  appendStatus(headers, label);
  const empty = request.method === "HEAD" || NULL_BODY.has(meta.s);
  return new Response(empty ? null : body.slice(), { status: meta.s, statusText: meta.t, headers });
}

/** `res` with `label` appended to its `Cache-Status` (each cache adds its member last, RFC 9211 §2). */
function labelled(res, label) {
  // An opaque or error response (status 0) cannot be rebuilt: as it came.
  if (res.status === 0) return res;
  const headers = new Headers(res.headers);
  appendStatus(headers, label);
  return new Response(res.body, { status: res.status, statusText: res.statusText, headers });
}

function appendStatus(headers, label) {
  const had = headers.get("cache-status");
  headers.set("cache-status", had === null ? label : `${had}, ${label}`);
}
