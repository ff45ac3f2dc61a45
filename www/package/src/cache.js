// SwrCache: the package's one class, shared by every entry point.
//
// The memory tier is a JS `Table` (table.js) of decoded values, which the
// Rust engine reads and writes as its memory storage. Fresh hits are
// answered here, straight from that table, without crossing into
// WebAssembly; everything else (misses, stale and expired lookups, writes,
// the breaker, persistence, refresh control, eviction) is the engine's. As
// the table is the store itself, a hit always sees the latest write,
// delete, refresh or eviction, and its SIEVE bit is set here as the engine
// sets it on its own reads. Lookups of one key without per-call options that
// arrive while one is in flight join it (one engine call for a stampede).
// Tagged entries are never answered here: their tags' epochs are the
// engine's to check (the table flags them).
// With a `coordinator` (Workers), each upstream call the engine makes first
// asks a Durable Object for the key's lease, and may be answered by another
// isolate's call (coordinated.js); hits never do.

import { blank, INVALID, NO_STORE, NOT_MODIFIED } from "./answer.js";
import { httpFetch } from "./http.js";
import { RESERVED_PREFIX, Table } from "./table.js";

const CLOSED = "this SwrCache was closed";
const GET_OPTIONS = ["waitUntil", "signal", "ttl", "tags"];
const SET_OPTIONS = ["ttl", "tags"];

/** An `Error` named "SwrError" with a `kind` and an optional `cause`. */
function swrError(kind, message, cause) {
  const e = cause === undefined ? new Error(message) : new Error(message, { cause });
  e.name = "SwrError";
  e.kind = kind;
  return e;
}

const reject = (kind, message, cause) => Promise.reject(swrError(kind, message, cause));

/** A key under the engine's reserved prefix, refused before anything is touched. */
const reserved = (name) =>
  reject("invalidKey", `${name}: keys starting with "\\0swre:" are reserved for the cache's tag records`);

/** Where `Table.expire` writes the entry it expired (unused here). */
const SCRATCH_META = new Float64Array(7);

/** The result object every lookup resolves to (one shape for all paths). */
function result(value, status, age, r) {
  return {
    value,
    status,
    detail: r.detail ?? "none",
    age,
    createdAt: r.createdAt,
    freshUntil: r.freshUntil,
    staleUntil: r.staleUntil,
    expiresAt: r.expiresAt,
  };
}

const fromEngine = (r) => result(r.value, r.status, r.age, r);

/** One key's answer of `getMany`: the result object, or the error. */
function manyResult(key, r) {
  if (r instanceof Error) return { key, ok: false, error: r };
  return {
    key,
    ok: true,
    value: r.value,
    status: r.status,
    detail: r.detail,
    age: r.age,
    createdAt: r.createdAt,
    freshUntil: r.freshUntil,
    staleUntil: r.staleUntil,
    expiresAt: r.expiresAt,
  };
}
const noop = () => {};
/** The `stats()` counter of each status. */
const COUNTER = { hit: "hits", stale: "stale", miss: "misses", expired: "expired", fallback: "fallbacks" };

/**
 * Defines `SwrCache` over a loader that resolves to the wasm-bindgen
 * `SwrEngine` class once the module is instantiated. `keepAlive`: tick a
 * timer while a call waits on the engine (workerd cancels a request with no
 * I/O of its own as hung, which one waiting on another request's fetch is).
 * The engine bounds every wait by the call's deadline.
 */
export function define(load, { keepAlive = false } = {}) {
  let loading;
  const engineClass = () => (loading ??= Promise.resolve().then(load));
  const token = Symbol("SwrCache");

  class SwrCache {
    #engine;
    /** The memory tier the engine stores into (table.js). */
    #table;
    #timeout;
    /** The coordinator across isolates (coordinated.js), if one was given. */
    #coordination;
    /** Lookups answered here (hits) or by joining another call: counted here. */
    #counts = { hits: 0, stale: 0, misses: 0, expired: 0, fallbacks: 0, errors: 0 };
    /** In-flight lookups without per-call options, by key, to join. */
    #joins = new Map();

    constructor(secret, engine, coordination) {
      if (secret !== token) throw new TypeError("use `await SwrCache.open(options)` to create a SwrCache");
      this.#engine = engine;
      this.#table = engine.table();
      this.#timeout = engine.refreshTimeout();
      this.#coordination = coordination;
      coordination?.setWindow(this.#timeout);
    }

    /** Opens a cache; rejects with a message naming any bad option. */
    static async open(options) {
      let Engine;
      try {
        Engine = await engineClass();
      } catch (e) {
        throw swrError("init", `SwrCache.open: cannot load swre's WebAssembly module: ${e?.message ?? e}`, e);
      }
      let coordination;
      if (options?.coordinator !== undefined) {
        // Loaded only when asked for: browsers never fetch it.
        const { coordinationOf } = await import("./coordinated.js");
        coordination = coordinationOf(options.coordinator, options.name);
        if (typeof coordination === "string") throw swrError("options", `SwrCache.open: ${coordination}`);
      }
      return new SwrCache(token, await Engine.open(guarded(options), Table), coordination);
    }

    /** The value under `key`, fetched with `fetcher` when there is no usable one. */
    get(key, fetcher, options) {
      if (typeof fetcher !== "function") return reject("fetcher", "get: the fetcher must be a function");
      if (options === undefined) {
        const hit = this.#table?.freshHit(key, Date.now());
        if (hit !== undefined) {
          this.#counts.hits++;
          return Promise.resolve(hit);
        }
        return this.#lookup(key, fetcher, undefined, undefined, -1, undefined);
      }
      return this.#getWith(key, fetcher, options);
    }

    #getWith(key, fetcher, options) {
      const o = callOptions("get", options, GET_OPTIONS);
      if (o instanceof Error) return Promise.reject(o);
      const { waitUntil, signal } = o;
      if (signal?.aborted) return reject("aborted", "get: the caller's signal was already aborted", signal.reason);
      const hit = this.#table?.freshHit(key, Date.now());
      if (hit !== undefined) {
        this.#counts.hits++;
        return waitUntil === undefined ? Promise.resolve(hit) : this.#handOver("get", waitUntil, hit);
      }
      return this.#lookup(key, fetcher, waitUntil, signal, o.ttl, o.tags);
    }

    /** `ttl` (-1: none) and `tags` (`undefined`: none): a call with either joins no other. */
    #lookup(key, fetcher, waitUntil, signal, ttl, tags) {
      const engine = this.#engine;
      if (engine === undefined) return reject("closed", `get: ${CLOSED}`);
      if (typeof key !== "string") return reject("invalidKey", "get: the key must be a string");
      let answer;
      const joinable = ttl < 0 && tags === undefined;
      const joined = joinable ? this.#joins.get(key) : undefined;
      if (joined !== undefined) {
        const counts = this.#counts;
        answer = joined.then(
          (r) => {
            counts[COUNTER[r.status]]++;
            return fromEngine(r);
          },
          (e) => {
            counts.errors++;
            throw e;
          },
        );
      } else {
        const raw = engine.get(key, this.#fetch(key, fetcher), ttl, tags);
        if (joinable) {
          this.#joins.set(key, raw);
          const done = () => {
            if (this.#joins.get(key) === raw) this.#joins.delete(key);
          };
          raw.then(done, done);
        }
        answer = raw.then(fromEngine);
      }
      if (keepAlive) answer = ticking(answer);
      if (signal !== undefined) answer = abortable("get", answer, signal);
      return waitUntil === undefined ? answer : answer.then((r) => this.#handOver("get", waitUntil, r));
    }

    /**
     * The values under `keys`, fetched together: fresh keys are answered
     * without the fetcher, and every stale or missing key goes to one call
     * of `fetcher(keys, ctx)` (stale ones refreshed in background). Resolves
     * to one `{ key, ok: true, ...result }` or `{ key, ok: false, error }`
     * per key, in the order of `keys`.
     */
    getMany(keys, fetcher, options) {
      if (typeof fetcher !== "function") return reject("fetcher", "getMany: the fetcher must be a function");
      let waitUntil, signal, ttl = -1, tags;
      if (options !== undefined) {
        const o = callOptions("getMany", options, GET_OPTIONS);
        if (o instanceof Error) return Promise.reject(o);
        ({ waitUntil, signal, ttl, tags } = o);
      }
      const engine = this.#engine;
      if (engine === undefined) return reject("closed", `getMany: ${CLOSED}`);
      if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) {
        return reject("invalidKey", "getMany: the keys must be an array of strings");
      }
      if (signal?.aborted) return reject("aborted", "getMany: the caller's signal was already aborted", signal.reason);
      if (options !== undefined) {
        // One rejection for a bad option, rather than one error per key.
        const bad = engine.checkOptions(ttl, tags);
        if (bad !== undefined) return Promise.reject(bad);
      }
      const asked = keys.slice();
      let answer = engine.getMany(asked, this.#fetchMany(fetcher), ttl, tags).then((rs) => rs.map((r, i) => manyResult(asked[i], r)));
      if (keepAlive) answer = ticking(answer);
      if (signal !== undefined) answer = abortable("getMany", answer, signal);
      return waitUntil === undefined ? answer : answer.then((r) => this.#handOver("getMany", waitUntil, r));
    }

    /** Gives the engine's background work to the caller's `waitUntil`. */
    #handOver(name, waitUntil, r) {
      const engine = this.#engine;
      if (engine !== undefined && engine.busy()) {
        try {
          waitUntil(engine.pending());
        } catch (e) {
          // An unbound `ctx.waitUntil` throws "Illegal invocation": say so
          // rather than let workerd cancel the refresh.
          return reject("options", `${name}: \`waitUntil\` threw when called; pass \`ctx.waitUntil.bind(ctx)\`, not \`ctx.waitUntil\``, e);
        }
      }
      return r;
    }

    /**
     * The function the engine calls for an upstream fetch of `key`, with the
     * value it holds for the key and when that was fetched: it calls
     * `fetcher` with its context and returns (or resolves to) the answer the
     * engine reads (answer.js, `platform-wasm/src/js_api/fetch.rs`), or
     * rejects with what the fetcher threw. With a coordinator, the call asks
     * it first, and may be answered by another isolate's fetch instead.
     */
    #fetch(key, fetcher) {
      // The engine admits the call as it is made: its deadline runs from now.
      const deadline = Date.now() + this.#timeout;
      const direct = this.#direct(fetcher, deadline);
      const coordination = this.#coordination;
      if (coordination === undefined) return direct;
      return (staleValue, staleCreatedAt) =>
        coordination.fetch(key, deadline, staleValue, () => direct(staleValue, staleCreatedAt));
    }

    /** The fetch of `#fetch`, made here: `fetcher` called with its context. */
    #direct(fetcher, deadline) {
      return (staleValue, staleCreatedAt) => {
        const answer = blank();
        const context = new FetchContext(staleValue, staleCreatedAt, deadline, answer);
        let out;
        try {
          out = fetcher(context);
        } catch (e) {
          context.done();
          // Rejected, not thrown: a throw caught by wasm-bindgen's glue
          // leaves one slot of the externref table behind (its unused
          // return value), about one per failing call.
          return answer[1] & INVALID ? answer : Promise.reject(e);
        }
        if (out !== null && typeof out === "object" && typeof out.then === "function") {
          return Promise.resolve(out).then(
            (v) => {
              context.done();
              return answered(answer, v);
            },
            (e) => {
              context.done();
              if (answer[1] & INVALID) return answer;
              throw e;
            },
          );
        }
        context.done();
        return answered(answer, out);
      };
    }

    /**
     * The function the engine calls for a batch fetch, with the keys to
     * fetch: it calls `fetcher(keys, ctx)` and resolves to its answer
     * flattened (`platform-wasm/src/js_api/batch.rs`), or rejects with what
     * the fetcher threw.
     */
    #fetchMany(fetcher) {
      const deadline = Date.now() + this.#timeout;
      return (keys) => {
        const context = new BatchContext(deadline);
        let out;
        try {
          out = fetcher(keys, context);
        } catch (e) {
          context.done();
          return Promise.reject(e);
        }
        return Promise.resolve(out).then(
          (v) => {
            context.done();
            return flattened(v);
          },
          (e) => {
            context.done();
            throw e;
          },
        );
      };
    }

    /**
     * `request` answered through the cache as an HTTP cache would (RFC 9111):
     * see `http.js` and `index.d.ts`. Resolves to a `Response` with a
     * `Cache-Status`.
     */
    fetch(request, options) {
      const engine = this.#engine;
      if (engine === undefined) return reject("closed", `fetch: ${CLOSED}`);
      return httpFetch(this, engine, swrError, request, options);
    }

    /** The stored value under `key` without fetching or refreshing, or `undefined`. */
    peek(key) {
      const engine = this.#engine;
      if (engine === undefined) return reject("closed", `peek: ${CLOSED}`);
      if (typeof key !== "string") return reject("invalidKey", "peek: the key must be a string");
      return engine.peek(key).then((r) => (r === undefined ? undefined : fromEngine(r)));
    }

    /**
     * Stores `value` under `key`, with the cache's TTL or the options'
     * (`ttl`, `tags`); the latest write wins. Bad options change nothing.
     */
    set(key, value, options) {
      if (options === undefined) return this.#write("set", key, (engine) => engine.set(key, value, -1, undefined));
      const o = callOptions("set", options, SET_OPTIONS);
      if (o instanceof Error) return Promise.reject(o);
      const engine = this.#engine;
      if (engine !== undefined && typeof key === "string") {
        // Checked before the table drops the key: a bad option changes nothing.
        const bad = engine.checkOptions(o.ttl, o.tags);
        if (bad !== undefined) return Promise.reject(bad);
      }
      return this.#write("set", key, (engine) => engine.set(key, value, o.ttl, o.tags));
    }

    /** Removes `key`; a fetch that started before never brings it back. */
    delete(key) {
      return this.#write("delete", key, (engine) => engine.delete(key));
    }

    /**
     * Makes `key`'s entry stale at once, kept as a fallback: the next `get`
     * serves it as "stale" and refreshes it.
     */
    expire(key) {
      const engine = this.#engine;
      if (engine === undefined) return reject("closed", `expire: ${CLOSED}`);
      if (typeof key !== "string") return reject("invalidKey", "expire: the key must be a string");
      if (key.startsWith(RESERVED_PREFIX)) return reserved("expire");
      // A lookup from now on must not join a refresh that started before,
      // nor be answered here as fresh while the engine expires the entry.
      this.#joins.delete(key);
      this.#coordination?.written(key);
      this.#table?.expire(key, Date.now(), SCRATCH_META);
      return engine.expire(key).then(noop);
    }

    /**
     * Invalidates every entry stored with `tag` (BentoCache `deleteByTag`,
     * FusionCache `RemoveByTag`): they read as absent from now on, here and
     * in every cache over the same persistent store.
     */
    invalidateTag(tag) {
      return this.#tagOp("invalidateTag", tag, (engine) => engine.invalidateTag(tag));
    }

    /**
     * Expires every entry stored with `tag` (BentoCache `expireByTag`,
     * FusionCache `ExpireByTag`): they read as stale from now on, kept as
     * fallbacks.
     */
    expireTag(tag) {
      return this.#tagOp("expireTag", tag, (engine) => engine.expireTag(tag));
    }

    #tagOp(name, tag, op) {
      const engine = this.#engine;
      if (engine === undefined) return reject("closed", `${name}: ${CLOSED}`);
      if (typeof tag !== "string") return reject("invalidTag", `${name}: the tag must be a string`);
      // A lookup from now on must not join one that started before (it may
      // fetch a value of this tag, which the engine then does not store). The
      // table needs nothing: its tagged entries are never answered here.
      this.#joins.clear();
      this.#coordination?.writtenAll();
      return op(engine).then(noop);
    }

    /**
     * Removes every entry, in memory and in the persistent store, with the
     * errors and throttle windows remembered; a fetch running now stores
     * nothing over it.
     */
    clear() {
      const engine = this.#engine;
      if (engine === undefined) return reject("closed", `clear: ${CLOSED}`);
      // As `delete` for every key: no lookup from now on joins one that
      // started before, or is answered here from what the clear removes.
      this.#joins.clear();
      this.#coordination?.writtenAll();
      this.#table.clear();
      return engine.clear().then(noop);
    }

    #write(name, key, op) {
      const engine = this.#engine;
      if (engine === undefined) return reject("closed", `${name}: ${CLOSED}`);
      if (typeof key !== "string") return reject("invalidKey", `${name}: the key must be a string`);
      // "Bad input changes nothing": the table is not touched for a key the engine refuses.
      if (key.startsWith(RESERVED_PREFIX)) return reserved(name);
      // A lookup made from now on must not join one that started before,
      // nor be answered here from what the write replaces: it goes to the
      // engine, which runs it after this write.
      this.#joins.delete(key);
      this.#coordination?.written(key);
      this.#table.remove(key);
      return op(engine).then(noop);
    }

    /** Resolves when every background refresh running now has finished. */
    pending() {
      const engine = this.#engine;
      return engine === undefined ? Promise.resolve() : engine.pending().then(noop);
    }

    /** Counters since the cache was opened. */
    stats() {
      const engine = this.#engine;
      if (engine === undefined) throw swrError("closed", `stats: ${CLOSED}`);
      const s = engine.stats();
      for (const k in this.#counts) s[k] += this.#counts[k];
      if (this.#coordination !== undefined) Object.assign(s, this.#coordination.counts);
      return s;
    }

    /**
     * Frees the engine. Later calls reject with kind "closed"; background
     * work already running finishes on its own.
     */
    close() {
      const engine = this.#engine;
      if (engine === undefined) return;
      this.#engine = undefined;
      this.#table.clear();
      this.#table = undefined;
      this.#joins.clear();
      engine.free();
    }

    [Symbol.dispose ?? Symbol.for("nodejs.dispose")]() {
      this.close();
    }
  }

  return SwrCache;
}

/** What a `tags` option or `ctx.setTags` takes (the engine checks the names). */
const TAGS_HELP = "an array of tag names (strings)";

/**
 * The per-call options of `name`, checked (the engine checks the tags' and
 * the window's limits): `{ waitUntil, signal, ttl, tags }` with `ttl` -1
 * for none and `tags` a copy, or the SwrError to reject with.
 */
function callOptions(name, options, known) {
  if (options === null || typeof options !== "object") return swrError("options", `${name}: options must be an object`);
  for (const k in options) {
    if (!known.includes(k)) return swrError("options", `${name}: unknown option \`${k}\` (known: ${known.join(", ")})`);
  }
  const { waitUntil, signal, ttl, tags } = options;
  if (waitUntil !== undefined && typeof waitUntil !== "function") {
    return swrError("options", `${name}: \`waitUntil\` must be a function`);
  }
  if (signal !== undefined && !(signal && typeof signal.aborted === "boolean" && typeof signal.addEventListener === "function")) {
    return swrError("options", `${name}: \`signal\` must be an AbortSignal`);
  }
  if (ttl !== undefined && !(typeof ttl === "number" && ttl >= 0 && ttl <= Number.MAX_SAFE_INTEGER)) {
    return swrError("options", `${name}: \`ttl\` must be a non-negative number of milliseconds (got ${String(ttl)})`);
  }
  let names;
  if (tags !== undefined) {
    names = tagList(tags);
    if (names instanceof Error) return swrError("options", `${name}: \`tags\` ${names.message}`);
  }
  return { waitUntil, signal, ttl: ttl === undefined ? -1 : ttl, tags: names };
}

/** A copy of `tags` if it is an array of strings, or an Error saying what it is instead. */
function tagList(tags) {
  if (!Array.isArray(tags)) return swrError("options", `must be ${TAGS_HELP} (got ${typeof tags})`);
  for (const t of tags) {
    if (typeof t !== "string") return swrError("options", `must be ${TAGS_HELP} (got a ${typeof t} in it)`);
  }
  return tags.slice();
}

/**
 * A batch fetcher's answer (a `Map`, a plain object, or an array of
 * `[key, value]` pairs) as `[key, value, key, value, …]` with string keys
 * only, or the message saying what it is instead.
 */
function flattened(answer) {
  const flat = [];
  if (answer instanceof Map) {
    for (const [k, v] of answer) if (typeof k === "string") flat.push(k, v);
    return flat;
  }
  if (Array.isArray(answer)) {
    for (const pair of answer) {
      if (!Array.isArray(pair)) return "getMany: the fetcher's array must hold [key, value] pairs";
      if (typeof pair[0] === "string") flat.push(pair[0], pair[1]);
    }
    return flat;
  }
  if (answer !== null && typeof answer === "object") {
    for (const k of Object.keys(answer)) flat.push(k, answer[k]);
    return flat;
  }
  return `getMany: the fetcher must resolve to a Map, an object or an array of [key, value] pairs (got ${answer === null ? "null" : typeof answer})`;
}

/**
 * `options` with the caller's functions wrapped so that they never throw
 * into the engine (a throw caught by wasm-bindgen's glue leaves a slot of
 * its externref table behind): a store's methods reject instead, and a
 * `waitUntil` that throws is reported here, at `open`.
 */
function guarded(options) {
  if (options === null || typeof options !== "object") return options;
  const o = { ...options };
  // The façade's own (coordinated.js): the engine never sees the binding.
  delete o.coordinator;
  const { waitUntil, storage } = o;
  if (typeof waitUntil === "function") {
    try {
      waitUntil(Promise.resolve());
    } catch (e) {
      throw swrError("options", "SwrCache.open: `waitUntil` threw when called; pass `ctx.waitUntil.bind(ctx)`, not `ctx.waitUntil`", e);
    }
    o.waitUntil = (p) => {
      try {
        waitUntil(p);
      } catch {
        // Checked at open; a later throw only loses the hand-over.
      }
    };
  }
  if (storage !== null && typeof storage === "object") {
    const methods = ["get", "put", "delete"];
    if (methods.every((m) => typeof storage[m] === "function")) {
      const store = {};
      for (const m of methods) {
        store[m] = (...args) => {
          try {
            return storage[m](...args);
          } catch (e) {
            return Promise.reject(e);
          }
        };
      }
      o.storage = store;
    }
  }
  return o;
}

/** What `ctx.notModified()` returns, for the fetcher to return. */
const NOT_MODIFIED_ANSWER = Object.freeze({ [Symbol.toStringTag]: "SwrNotModified" });

/** The answer once the fetcher returned `value`. */
function answered(answer, value) {
  if (answer[1] & INVALID) return answer;
  if (value === NOT_MODIFIED_ANSWER) answer[1] |= NOT_MODIFIED;
  else answer[0] = value;
  return answer;
}

/**
 * What a batch fetcher is given: a signal, aborting at the call's deadline.
 * The signal (an `AbortController` and its timer) is made only when the
 * fetcher reads it.
 */
class BatchContext {
  #deadline;
  #controller;
  #timer;
  #done = false;

  constructor(deadline) {
    this.#deadline = deadline;
  }

  /** Aborts when the refresh timeout passes: pass it to `fetch(url, { signal })`. */
  get signal() {
    if (this.#controller === undefined) {
      const controller = new AbortController();
      this.#controller = controller;
      const reason = () => new DOMException("the refresh timeout passed", "TimeoutError");
      const left = this.#deadline - Date.now();
      if (left <= 0) controller.abort(reason());
      else if (!this.#done) this.#timer = setTimeout(() => controller.abort(reason()), left);
    }
    return this.#controller.signal;
  }

  /** The fetch settled: its timer goes. */
  done() {
    this.#done = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
  }
}

/**
 * What a fetcher is given (FusionCache's and BentoCache's fetch context):
 * the value held and when it was fetched, a signal, and what it may say
 * about this entry.
 */
class FetchContext extends BatchContext {
  #done = false;
  /** The answer to the engine, which the setters write. */
  #answer;

  constructor(staleValue, staleCreatedAt, deadline, answer) {
    super(deadline);
    /** The value the cache holds for the key (stale, expired, or fresh for an early refresh), or `undefined`. */
    this.staleValue = staleValue;
    /** When that value was fetched (Unix ms; for `If-Modified-Since`), or `undefined`. */
    this.staleCreatedAt = staleCreatedAt;
    this.#answer = answer;
  }

  /**
   * This entry's fresh window in ms, instead of the `ttl` option's or the
   * cache's; `windows.stale` and `windows.expired`, if given, replace the
   * cache's too (phases read from an HTTP response: `stale-while-revalidate`,
   * `stale-if-error`). Any length; under 1 ms in all, the value is returned
   * and not stored. A bad value throws, and the call fails with kind
   * "options" whatever the fetcher then returns.
   */
  setTtl(ms, windows) {
    const ok = (v) => typeof v === "number" && v >= 0 && v <= Number.MAX_SAFE_INTEGER;
    const { stale, expired } = windows !== null && typeof windows === "object" ? windows : {};
    if (ok(ms) && (windows === undefined || (typeof windows === "object" && windows !== null &&
        (stale === undefined || ok(stale)) && (expired === undefined || ok(expired))))) {
      if (!this.#done) {
        this.#answer[2] = ms;
        this.#answer[4] = stale ?? -1;
        this.#answer[5] = expired ?? -1;
      }
      return;
    }
    const message = ok(ms)
      ? `ctx.setTtl: \`windows\` must be { stale?, expired? } with non-negative numbers of milliseconds (got ${JSON.stringify(windows) ?? String(windows)})`
      : `ctx.setTtl: the fresh window must be a non-negative number of milliseconds (got ${String(ms)})`;
    this.#fail(message);
    throw swrError("options", message);
  }

  /**
   * This entry's tags (BentoCache's and FusionCache's tags chosen by the
   * factory), instead of the `tags` option's or those the entry had; an
   * empty array stores it untagged. Anything but an array of strings
   * throws, and the call fails with kind "options" whatever the fetcher
   * then returns; a bad name (the engine's rules) fails it with kind
   * "invalidTag".
   */
  setTags(tags) {
    const names = tagList(tags);
    if (!(names instanceof Error)) {
      if (!this.#done) this.#answer[3] = names;
      return;
    }
    const message = `ctx.setTags: the tags ${names.message}`;
    this.#fail(message);
    throw swrError("options", message);
  }

  /** The value is returned to the callers but not stored; what the cache held for the key goes. */
  noStore() {
    if (!this.#done) this.#answer[1] |= NO_STORE;
  }

  /**
   * For the fetcher to return when the origin says the held value is still
   * good (an HTTP 304): the value stays, its phases start again. With no
   * value held, the call fails (kind "upstream").
   */
  notModified() {
    return NOT_MODIFIED_ANSWER;
  }

  #fail(message) {
    const answer = this.#answer;
    if (this.#done || answer[1] & INVALID) return;
    answer[0] = message;
    answer[1] |= INVALID;
  }

  /** The fetch settled: its timer goes, and the answer is final. */
  done() {
    this.#done = true;
    super.done();
  }
}

/** Settles with `p`, or rejects when `signal` aborts first; never cancels `p`. */
function abortable(name, p, signal) {
  return new Promise((resolve, rejectWith) => {
    const onAbort = () => rejectWith(swrError("aborted", `${name}: aborted by the caller's signal`, signal.reason));
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (r) => {
        signal.removeEventListener("abort", onAbort);
        resolve(r);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        rejectWith(e);
      },
    );
  });
}

/** `p`, with a timer ticking until it settles (workerd: this request has I/O). */
function ticking(p) {
  const tick = setInterval(noop, 25);
  const stop = () => clearInterval(tick);
  p.then(stop, stop);
  return p;
}
