// The memory tier of a SwrCache, in JavaScript: decoded values and their
// phase times, bounded by entries and bytes, evicted by SIEVE.
//
// The Rust engine uses it as its memory storage (through `SwrEngine`, which
// decodes a value once, when it is written, and reads entries back as
// handles), and the façade answers fresh hits from it directly. One copy of
// each entry exists, here; persistent stores behind it hold bytes.
//
// Entries live in slots of parallel arrays (values in an Array, times and
// sizes in typed arrays), found through a Map from key to slot: no object
// per entry, and no boxed number per time.

/** What a stored entry is charged besides its key and value, as the Rust MemoryStorage charges. */
const ENTRY_OVERHEAD = 96;
const VISITED = 1;
const PINNED = 2;
/** The entry has tags: its epochs are the engine's to check, so the façade does not answer it. */
const TAGGED = 4;
/** A tag record (a key under the engine's reserved prefix): never a façade hit. */
const RECORD = 8;
/** Keys the engine keeps its tag records under; user keys may not start so. */
export const RESERVED_PREFIX = "\0swre:";
/** How many replaced or evicted values are kept for answers still on their way. */
const RECENT = 64;

export class Table {
  /** Key → slot. Its insertion order is the SIEVE queue, oldest first. */
  #index = new Map();
  /** Slot → value. */
  #values = [];
  /** Slot → created, fresh-until, stale-until, expires-at (Unix ms). */
  #times = new Float64Array(0);
  /** Slot → bytes charged. */
  #sizes = new Uint32Array(0);
  /** Slot → VISITED | PINNED. */
  #flags = new Uint8Array(0);
  /** Slot → the id of the write it holds (an answer's handle names it). */
  #ids = new Uint32Array(0);
  /** How long each entry's fetch took (ms; 0 unknown): the early refresh's estimate. */
  #fetchMs = new Uint32Array(0);
  /** Slot → its tags as the engine encoded them (a Uint8Array), or undefined. */
  #tags = [];
  #nextId = 1;
  /**
   * Write id → value, for the last RECENT values replaced, removed or
   * evicted: an answer the engine read before that (a fallback that waited
   * on a failed refresh) still gets its own value.
   */
  #recent = new Map();
  /** Slots freed by removals, to reuse. */
  #free = [];
  /** Slots ever handed out (the next new one). */
  #top = 0;
  #bytes = 0;
  #maxEntries;
  #maxBytes;
  /** The SIEVE hand: an iterator over `#index`. */
  #hand = null;

  /** Early refresh: 0 off, 1 XFetch (`#earlyParam` is beta), 2 a threshold (the fraction). */
  #earlyMode = 0;
  #earlyParam = 0;

  constructor(maxEntries, maxBytes, earlyMode = 0, earlyParam = 0) {
    this.#maxEntries = maxEntries;
    this.#maxBytes = maxBytes;
    this.#earlyMode = earlyMode;
    this.#earlyParam = earlyParam;
  }

  /**
   * The façade's hit: the answer for `key` if its entry is fresh at `now`
   * (marking it used, as the engine's reads do), else `undefined`.
   */
  freshHit(key, now) {
    const i = this.#index.get(key);
    if (i === undefined) return undefined;
    const t = this.#times;
    const at = i * 4;
    const freshUntil = t[at + 1];
    if (!(now < freshUntil) || this.#flags[i] & (TAGGED | RECORD)) return undefined;
    const createdAt = t[at];
    // An early refresh may be due: the engine decides (and draws).
    if (this.#earlyMode !== 0 && this.#mayRefreshEarly(i, now, createdAt, freshUntil)) return undefined;
    this.#flags[i] |= VISITED;
    return { value: this.#values[i], status: "hit", detail: "none", age: now - createdAt, createdAt, freshUntil, staleUntil: t[at + 2], expiresAt: t[at + 3] };
  }

  /**
   * Whether a fresh hit at `now` may start an early refresh (the engine's
   * `EarlyRefresh::is_due` without its draw): past the threshold, or within
   * 37 δβ of expiry for XFetch (−ln u never exceeds that).
   */
  #mayRefreshEarly(i, now, createdAt, freshUntil) {
    const fresh = freshUntil - createdAt;
    if (this.#earlyMode === 2) return now >= createdAt + Math.floor(fresh * this.#earlyParam + 0.5);
    const delta = this.#fetchMs[i] || fresh / 100;
    return freshUntil - now <= delta * this.#earlyParam * 37;
  }

  /** The value held for `key` in any phase, or `undefined`. */
  valueOf(key) {
    const i = this.#index.get(key);
    return i === undefined ? undefined : this.#values[i];
  }

  // Called by the engine (platform-wasm/src/js_api/table.rs).

  /**
   * `JSON.stringify` that never throws into the engine (a throw caught by
   * wasm-bindgen's glue leaves a slot of its externref table behind): the
   * text, `undefined` for what JSON cannot hold, or an `Error` for a throw.
   */
  stringify(value) {
    try {
      return JSON.stringify(value);
    } catch (e) {
      return e instanceof Error ? e : new Error(String(e));
    }
  }

  /** `JSON.parse` that never throws: the value, or an `Error` (which no JSON text parses to). */
  parse(text) {
    try {
      return JSON.parse(text);
    } catch (e) {
      return e instanceof Error ? e : new Error(String(e));
    }
  }

  /** Fills `meta` with the entry's four times, pinned flag (1 or 0), write id, fetch time and tagged flag (1 or 0); false when absent. */
  read(key, meta) {
    const i = this.#index.get(key);
    if (i === undefined) return false;
    this.#flags[i] |= VISITED;
    const t = this.#times;
    const at = i * 4;
    meta[0] = t[at];
    meta[1] = t[at + 1];
    meta[2] = t[at + 2];
    meta[3] = t[at + 3];
    meta[4] = this.#flags[i] & PINNED ? 1 : 0;
    meta[5] = this.#ids[i];
    meta[6] = this.#fetchMs[i];
    meta[7] = this.#flags[i] & TAGGED ? 1 : 0;
    return true;
  }

  /** The tags (as the engine encoded them) of the entry under `key`, or `undefined`. */
  tags(key) {
    const i = this.#index.get(key);
    return i === undefined ? undefined : this.#tags[i];
  }

  /**
   * Stores an entry, evicting as needed; false (and nothing changed) when it
   * can never fit. `meta`: created, fresh-until, stale-until, expires-at,
   * pinned (1 or 0), the time now (an expired entry the hand reaches goes
   * even if it was read), and the fetch time in ms. `tags`: the entry's
   * tags as the engine encodes them, or `undefined`.
   */
  write(key, value, size, meta, tags) {
    const charge = key.length + size + ENTRY_OVERHEAD;
    if (charge > this.#maxBytes) {
      // It can never be held; neither may what it replaces be served.
      this.remove(key);
      return false;
    }
    let i = this.#index.get(key);
    if (i === undefined) {
      i = this.#slot();
      this.#index.set(key, i);
      this.#flags[i] = 0;
    } else {
      this.#bytes -= this.#sizes[i];
      this.#remember(i);
    }
    this.#values[i] = value;
    this.#tags[i] = tags;
    this.#ids[i] = this.#nextId;
    this.#fetchMs[i] = meta[6];
    this.#nextId = this.#nextId === 0xffffffff ? 1 : this.#nextId + 1;
    const at = i * 4;
    this.#times[at] = meta[0];
    this.#times[at + 1] = meta[1];
    this.#times[at + 2] = meta[2];
    this.#times[at + 3] = meta[3];
    this.#sizes[i] = charge;
    this.#flags[i] =
      (this.#flags[i] & VISITED) |
      (meta[4] !== 0 ? PINNED : 0) |
      (tags === undefined ? 0 : TAGGED) |
      (key.startsWith(RESERVED_PREFIX) ? RECORD : 0);
    this.#bytes += charge;
    while (this.#index.size > this.#maxEntries || this.#bytes > this.#maxBytes) {
      if (!this.#evictOne(key, meta[5])) break;
    }
    return true;
  }

  /**
   * Gives write `id` under `key` new times, its value and id kept (the engine
   * writing back a value it read, as a "not modified" answer does); `meta` as
   * for `write`. False (and nothing changed) when the key holds another write
   * or none.
   */
  touch(key, id, meta, tags) {
    const i = this.#index.get(key);
    if (i === undefined || this.#ids[i] !== id) return false;
    this.#tags[i] = tags;
    const at = i * 4;
    this.#times[at] = meta[0];
    this.#times[at + 1] = meta[1];
    this.#times[at + 2] = meta[2];
    this.#times[at + 3] = meta[3];
    this.#flags[i] =
      (this.#flags[i] & VISITED) |
      (meta[4] !== 0 ? PINNED : 0) |
      (tags === undefined ? 0 : TAGGED) |
      (key.startsWith(RESERVED_PREFIX) ? RECORD : 0);
    this.#fetchMs[i] = meta[6];
    return true;
  }

  /** The value of write `id` under `key` (what a handle read from this table stands for), or `undefined` when it is no longer known. */
  value(key, id) {
    const i = this.#index.get(key);
    if (i !== undefined && this.#ids[i] === id) return this.#values[i];
    return this.#recent.get(id);
  }

  /**
   * Ends the entry's fresh phase at `now` (at its creation if the clock reads
   * earlier) if it is fresh; fills `meta` as `read` does; false when absent.
   */
  expire(key, now, meta) {
    const i = this.#index.get(key);
    if (i === undefined) return false;
    const at = i * 4;
    const t = this.#times;
    t[at + 1] = Math.min(t[at + 1], Math.max(now, t[at]));
    return this.read(key, meta);
  }

  remove(key) {
    const i = this.#index.get(key);
    if (i === undefined) return;
    this.#index.delete(key);
    this.#remember(i);
    this.#values[i] = undefined;
    this.#tags[i] = undefined;
    this.#bytes -= this.#sizes[i];
    this.#free.push(i);
  }

  clear() {
    this.#index.clear();
    this.#recent.clear();
    this.#values = [];
    this.#tags = [];
    this.#free = [];
    this.#top = 0;
    this.#bytes = 0;
    this.#hand = null;
  }

  /** Keeps slot `i`'s value by its write id, dropping the oldest beyond RECENT. */
  #remember(i) {
    this.#recent.set(this.#ids[i], this.#values[i]);
    if (this.#recent.size > RECENT) this.#recent.delete(this.#recent.keys().next().value);
  }

  /** A free slot, growing the arrays (doubling, up to `maxEntries` + 1) when none is left. */
  #slot() {
    const reused = this.#free.pop();
    if (reused !== undefined) return reused;
    const i = this.#top++;
    if (i >= this.#flags.length) {
      const cap = Math.min(Math.max(64, this.#flags.length * 2), this.#maxEntries + 1);
      const times = new Float64Array(cap * 4);
      times.set(this.#times);
      this.#times = times;
      const sizes = new Uint32Array(cap);
      sizes.set(this.#sizes);
      this.#sizes = sizes;
      const flags = new Uint8Array(cap);
      flags.set(this.#flags);
      this.#flags = flags;
      const ids = new Uint32Array(cap);
      ids.set(this.#ids);
      this.#ids = ids;
      const fetchMs = new Uint32Array(cap);
      fetchMs.set(this.#fetchMs);
      this.#fetchMs = fetchMs;
    }
    return i;
  }

  /**
   * Evicts one entry other than `keep`: the first the hand finds unvisited
   * or past its expiry, clearing visited bits on the way (SIEVE). Unlike the
   * Rust MemoryStorage, which keeps an expiry heap, an expired entry is
   * evicted only when the hand reaches it, not before every live one.
   */
  #evictOne(keep, now) {
    for (let pass = 0; pass < 3; pass++) {
      if (this.#hand === null) this.#hand = this.#index.entries();
      for (let n = this.#hand.next(); !n.done; n = this.#hand.next()) {
        const [k, i] = n.value;
        if (k === keep) continue;
        if (this.#flags[i] & VISITED && this.#times[i * 4 + 3] > now) {
          this.#flags[i] &= ~VISITED;
          continue;
        }
        this.remove(k);
        return true;
      }
      this.#hand = null;
    }
    return false;
  }
}
