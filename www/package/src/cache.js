// SwrCache: the package's one class, shared by every entry point.
//
// Fresh hits are answered here, from a table of values the engine already
// decoded, without crossing into WebAssembly. Everything else (misses, stale
// and expired lookups, writes, the breaker, persistence, refresh control)
// is the Rust engine's. The table is a cache of the engine's answers, never
// a second source of truth:
//   - a slot is used only while its entry is fresh; stale entries go to the
//     engine, which refreshes them, and the next answer replaces the slot;
//   - `set` and `delete` drop the slot when they start and again when they
//     land, and an answer is kept only if no write began while it was on
//     its way, so the latest write always wins;
//   - hits served here count in `stats()` and, in batches sent before the
//     engine's next call, for the engine's eviction (the SIEVE visited bit);
//   - the table holds at most `maxEntries` slots and `maxBytes` of stored
//     size, dropping its oldest slots first.

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

/** A decoded answer of the engine, kept while it is fresh. */
class Slot {
  constructor(r) {
    this.value = r.value;
    this.createdAt = r.createdAt;
    this.freshUntil = r.freshUntil;
    this.staleUntil = r.staleUntil;
    this.expiresAt = r.expiresAt;
    this.size = r.size;
    /** Hit here since the engine last heard of it. */
    this.used = false;
  }
}

/** The result object every lookup resolves to (one shape for all paths). */
function result(value, status, age, r) {
  return {
    value,
    status,
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
    #table = new Map();
    #bytes = 0;
    #maxEntries;
    #maxBytes;
    #timeout;
    /** Keys hit here since the last batch sent to the engine. */
    #touched = [];
    /** Lookups answered here (hits) or by joining another call: counted here. */
    #counts = { hits: 0, stale: 0, misses: 0, expired: 0, fallbacks: 0, errors: 0 };
    /** Bumped by every write; an answer older than a write is not kept. */
    #writes = 0;
    /** In-flight lookups without per-call options, by key, to join. */
    #joins = new Map();

    constructor(secret, engine) {
      if (secret !== token) throw new TypeError("use `await SwrCache.open(options)` to create a SwrCache");
      this.#engine = engine;
      this.#maxEntries = engine.maxEntries();
      this.#maxBytes = engine.maxBytes();
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
      return new SwrCache(token, await Engine.open(guarded(options)));
    }

    /** The value under `key`, fetched with `fetcher` when there is no usable one. */
    get(key, fetcher, options) {
      if (typeof fetcher !== "function") return reject("fetcher", "get: the fetcher must be a function");
      if (options === undefined) {
        const slot = this.#table.get(key);
        if (slot !== undefined) {
          const now = Date.now();
          if (now < slot.freshUntil) return Promise.resolve(this.#hit(key, slot, now));
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
      const slot = this.#table.get(key);
      if (slot !== undefined) {
        const now = Date.now();
        if (now < slot.freshUntil) {
          const r = this.#hit(key, slot, now);
          return waitUntil === undefined ? Promise.resolve(r) : this.#handOver(waitUntil, r);
        }
      }
      return this.#lookup(key, fetcher, waitUntil, signal, ttl === undefined ? -1 : ttl);
    }

    #hit(key, slot, now) {
      this.#counts.hits++;
      if (!slot.used) {
        slot.used = true;
        this.#touched.push(key);
      }
      return result(slot.value, "hit", now - slot.createdAt, slot);
    }

    #lookup(key, fetcher, waitUntil, signal, ttl) {
      const engine = this.#engine;
      if (engine === undefined) return reject("closed", `get: ${CLOSED}`);
      if (typeof key !== "string") return reject("invalidKey", "get: the key must be a string");
      this.#flush(engine);
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
        const writes = this.#writes;
        const raw = engine.get(key, this.#fetch(engine, key, fetcher), ttl);
        if (ttl < 0) {
          this.#joins.set(key, raw);
          const done = () => {
            if (this.#joins.get(key) === raw) this.#joins.delete(key);
          };
          raw.then(done, done);
        }
        answer = raw.then((r) => {
          if (this.#writes === writes && this.#engine === engine) this.#keep(key, r);
          return fromEngine(r);
        });
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

    /** The function the engine calls for an upstream fetch. */
    #fetch(engine, key, fetcher) {
      const timeout = this.#timeout;
      return () => {
        const context = new FetchContext(engine, key, timeout);
        let out;
        try {
          out = fetcher(context);
        } catch (e) {
          context.done();
          // Rejected, not thrown: a throw caught by wasm-bindgen's glue
          // leaves one slot of the externref table behind (its unused
          // return value), about one per failing call.
          return Promise.reject(e);
        }
        if (out !== null && typeof out === "object" && typeof out.then === "function") {
          const done = () => context.done();
          Promise.resolve(out).then(done, done);
          return out;
        }
        context.done();
        return out;
      };
    }

    /** Keeps a fresh answer in the table. */
    #keep(key, r) {
      if (r.size < 0 || r.size > this.#maxBytes || !(Date.now() < r.freshUntil)) return;
      this.#drop(key);
      this.#table.set(key, new Slot(r));
      this.#bytes += r.size;
      while (this.#table.size > this.#maxEntries || this.#bytes > this.#maxBytes) {
        this.#drop(this.#table.keys().next().value);
      }
    }

    #drop(key) {
      const slot = this.#table.get(key);
      if (slot !== undefined) {
        this.#table.delete(key);
        this.#bytes -= slot.size;
      }
    }

    /** Sends the keys hit here since the last batch to the engine. */
    #flush(engine) {
      const touched = this.#touched;
      if (touched.length === 0) return;
      this.#touched = [];
      engine.touch(touched);
      for (const k of touched) {
        const slot = this.#table.get(k);
        if (slot !== undefined) slot.used = false;
      }
    }

    /** Forgets what the table and the joinable lookups know of `key`. */
    #written(key) {
      this.#writes++;
      this.#drop(key);
      this.#joins.delete(key);
    }

    /** The stored value under `key` without fetching or refreshing, or `undefined`. */
    peek(key) {
      const engine = this.#engine;
      if (engine === undefined) return reject("closed", `peek: ${CLOSED}`);
      if (typeof key !== "string") return reject("invalidKey", "peek: the key must be a string");
      this.#flush(engine);
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

    #write(name, key, op) {
      const engine = this.#engine;
      if (engine === undefined) return reject("closed", `${name}: ${CLOSED}`);
      if (typeof key !== "string") return reject("invalidKey", `${name}: the key must be a string`);
      this.#flush(engine);
      this.#written(key);
      const landed = () => this.#written(key);
      return op(engine).then(
        () => landed(),
        (e) => {
          landed();
          throw e;
        },
      );
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
      this.#joins.clear();
      this.#touched = [];
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

/**
 * What a fetcher is given. The signal (an `AbortController` and its timer)
 * and the stale value are made only when the fetcher reads them.
 */
class FetchContext {
  #engine;
  #key;
  #deadline;
  #controller;
  #timer;
  #stale;
  #read = false;
  #done = false;

  constructor(engine, key, timeout) {
    this.#engine = engine;
    this.#key = key;
    this.#deadline = Date.now() + timeout;
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

  /** The value the memory tier holds for the key (stale or expired), or `undefined`. */
  get staleValue() {
    if (!this.#read) {
      this.#read = true;
      try {
        this.#stale = this.#done ? undefined : this.#engine.memoryValue(this.#key);
      } catch {
        this.#stale = undefined; // the cache was closed meanwhile
      }
    }
    return this.#stale;
  }

  /** The fetch settled: its timer goes. */
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
