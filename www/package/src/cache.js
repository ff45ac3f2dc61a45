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

import { Table } from "./table.js";

const CLOSED = "this SwrCache was closed";
const GET_OPTIONS = ["waitUntil", "signal", "ttl"];

/** An `Error` named "SwrError" with a `kind` and an optional `cause`. */
function swrError(kind, message, cause) {
  const e = cause === undefined ? new Error(message) : new Error(message, { cause });
  e.name = "SwrError";
  e.kind = kind;
  return e;
}

const reject = (kind, message, cause) => Promise.reject(swrError(kind, message, cause));

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
    /** Lookups answered here (hits) or by joining another call: counted here. */
    #counts = { hits: 0, stale: 0, misses: 0, expired: 0, fallbacks: 0, errors: 0 };
    /** In-flight lookups without per-call options, by key, to join. */
    #joins = new Map();

    constructor(secret, engine) {
      if (secret !== token) throw new TypeError("use `await SwrCache.open(options)` to create a SwrCache");
      this.#engine = engine;
      this.#table = engine.table();
      this.#timeout = engine.refreshTimeout();
    }

    /** Opens a cache; rejects with a message naming any bad option. */
    static async open(options) {
      let Engine;
      try {
        Engine = await engineClass();
      } catch (e) {
        throw swrError("init", `SwrCache.open: cannot load swre's WebAssembly module: ${e?.message ?? e}`, e);
      }
      return new SwrCache(token, await Engine.open(guarded(options), Table));
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
        return this.#lookup(key, fetcher, undefined, undefined, -1);
      }
      return this.#getWith(key, fetcher, options);
    }

    #getWith(key, fetcher, options) {
      if (options === null || typeof options !== "object") return reject("options", "get: options must be an object");
      for (const k in options) {
        if (!GET_OPTIONS.includes(k)) return reject("options", `get: unknown option \`${k}\` (known: ${GET_OPTIONS.join(", ")})`);
      }
      const { waitUntil, signal, ttl } = options;
      if (waitUntil !== undefined && typeof waitUntil !== "function") {
        return reject("options", "get: `waitUntil` must be a function");
      }
      if (signal !== undefined && !(signal && typeof signal.aborted === "boolean" && typeof signal.addEventListener === "function")) {
        return reject("options", "get: `signal` must be an AbortSignal");
      }
      if (ttl !== undefined && !(typeof ttl === "number" && ttl >= 0 && ttl <= Number.MAX_SAFE_INTEGER)) {
        return reject("options", `get: \`ttl\` must be a non-negative number of milliseconds (got ${String(ttl)})`);
      }
      if (signal?.aborted) return reject("aborted", "get: the caller's signal was already aborted", signal.reason);
      const hit = this.#table?.freshHit(key, Date.now());
      if (hit !== undefined) {
        this.#counts.hits++;
        return waitUntil === undefined ? Promise.resolve(hit) : this.#handOver(waitUntil, hit);
      }
      return this.#lookup(key, fetcher, waitUntil, signal, ttl === undefined ? -1 : ttl);
    }

    #lookup(key, fetcher, waitUntil, signal, ttl) {
      const engine = this.#engine;
      if (engine === undefined) return reject("closed", `get: ${CLOSED}`);
      if (typeof key !== "string") return reject("invalidKey", "get: the key must be a string");
      let answer;
      const joined = ttl < 0 ? this.#joins.get(key) : undefined;
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
        const raw = engine.get(key, this.#fetch(fetcher), ttl);
        if (ttl < 0) {
          this.#joins.set(key, raw);
          const done = () => {
            if (this.#joins.get(key) === raw) this.#joins.delete(key);
          };
          raw.then(done, done);
        }
        answer = raw.then(fromEngine);
      }
      if (keepAlive) answer = ticking(answer);
      if (signal !== undefined) answer = abortable(answer, signal);
      return waitUntil === undefined ? answer : answer.then((r) => this.#handOver(waitUntil, r));
    }

    /** Gives the engine's background work to the caller's `waitUntil`. */
    #handOver(waitUntil, r) {
      const engine = this.#engine;
      if (engine !== undefined && engine.busy()) {
        try {
          waitUntil(engine.pending());
        } catch (e) {
          // An unbound `ctx.waitUntil` throws "Illegal invocation": say so
          // rather than let workerd cancel the refresh.
          return reject("options", "get: `waitUntil` threw when called; pass `ctx.waitUntil.bind(ctx)`, not `ctx.waitUntil`", e);
        }
      }
      return r;
    }

    /**
     * The function the engine calls for an upstream fetch, with the value it
     * holds for the key and when that was fetched: it calls `fetcher` with
     * its context and returns (or resolves to) the answer the engine reads
     * (`platform-wasm/src/js_api/fetch.rs`), or rejects with what the
     * fetcher threw.
     */
    #fetch(fetcher) {
      // The engine admits the call as it is made: its deadline runs from now.
      const deadline = Date.now() + this.#timeout;
      return (staleValue, staleCreatedAt) => {
        const answer = [undefined, 0, -1];
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

    /** The stored value under `key` without fetching or refreshing, or `undefined`. */
    peek(key) {
      const engine = this.#engine;
      if (engine === undefined) return reject("closed", `peek: ${CLOSED}`);
      if (typeof key !== "string") return reject("invalidKey", "peek: the key must be a string");
      return engine.peek(key).then((r) => (r === undefined ? undefined : fromEngine(r)));
    }

    /** Stores `value` under `key` with the cache's TTL; the latest write wins. */
    set(key, value) {
      return this.#write("set", key, (engine) => engine.set(key, value));
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
      // A lookup from now on must not join a refresh that started before,
      // nor be answered here as fresh while the engine expires the entry.
      this.#joins.delete(key);
      this.#table?.expire(key, Date.now(), SCRATCH_META);
      return engine.expire(key).then(noop);
    }

    #write(name, key, op) {
      const engine = this.#engine;
      if (engine === undefined) return reject("closed", `${name}: ${CLOSED}`);
      if (typeof key !== "string") return reject("invalidKey", `${name}: the key must be a string`);
      // A lookup made from now on must not join one that started before,
      // nor be answered here from what the write replaces: it goes to the
      // engine, which runs it after this write.
      this.#joins.delete(key);
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

/**
 * `options` with the caller's functions wrapped so that they never throw
 * into the engine (a throw caught by wasm-bindgen's glue leaves a slot of
 * its externref table behind): a store's methods reject instead, and a
 * `waitUntil` that throws is reported here, at `open`.
 */
function guarded(options) {
  if (options === null || typeof options !== "object") return options;
  const o = { ...options };
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

// The answer a fetch gives the engine: `[value, flags, fresh]` (read by
// platform-wasm/src/js_api/fetch.rs). A context's setter writes its slot or
// flag; a setter added later takes the next slot.
/** `ctx.noStore()` was called. */
const NO_STORE = 1;
/** The fetcher returned `ctx.notModified()`. */
const NOT_MODIFIED = 2;
/** The fetcher misused its context: `answer[0]` is the message. */
const INVALID = 4;

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
 * What a fetcher is given (FusionCache's and BentoCache's fetch context):
 * the value held and when it was fetched, a signal, and what it may say
 * about this entry. The signal (an `AbortController` and its timer) is made
 * only when the fetcher reads it.
 */
class FetchContext {
  #deadline;
  #controller;
  #timer;
  #done = false;
  /** The answer to the engine, which the setters write. */
  #answer;

  constructor(staleValue, staleCreatedAt, deadline, answer) {
    /** The value the cache holds for the key (stale, expired, or fresh for an early refresh), or `undefined`. */
    this.staleValue = staleValue;
    /** When that value was fetched (Unix ms; for `If-Modified-Since`), or `undefined`. */
    this.staleCreatedAt = staleCreatedAt;
    this.#deadline = deadline;
    this.#answer = answer;
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

  /**
   * This entry's fresh window in ms, instead of the `ttl` option's or the
   * cache's (the stale and expired windows stay the cache's). A bad value
   * throws, and the call fails with kind "options" whatever the fetcher
   * then returns.
   */
  setTtl(ms) {
    if (typeof ms === "number" && ms >= 0 && ms <= Number.MAX_SAFE_INTEGER) {
      if (!this.#done) this.#answer[2] = ms;
      return;
    }
    const message = `ctx.setTtl: the fresh window must be a non-negative number of milliseconds (got ${String(ms)})`;
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
    if (this.#timer !== undefined) clearTimeout(this.#timer);
  }
}

/** Settles with `p`, or rejects when `signal` aborts first; never cancels `p`. */
function abortable(p, signal) {
  return new Promise((resolve, rejectWith) => {
    const onAbort = () => rejectWith(swrError("aborted", "get: aborted by the caller's signal", signal.reason));
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
