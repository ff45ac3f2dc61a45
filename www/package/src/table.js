// The memory tier of a SwrCache, in JavaScript: decoded values and their
// phase times, bounded by entries and bytes, evicted by SIEVE.
//
// The Rust engine uses it as its memory storage (through `SwrEngine`, which
// decodes a value once, when it is written, and reads entries back as
// handles), and the façade answers fresh hits from it directly. One copy of
// each entry exists, here; persistent stores behind it hold bytes.

/** What a stored entry is charged besides its key and value, as the Rust MemoryStorage charges. */
const ENTRY_OVERHEAD = 96;

/** One entry: the decoded value and the absolute times of its phases. */
class Slot {
  constructor(id, value, size, meta) {
    this.id = id;
    this.value = value;
    this.size = size;
    this.createdAt = meta[0];
    this.freshUntil = meta[1];
    this.staleUntil = meta[2];
    this.expiresAt = meta[3];
    this.pinned = meta[4] !== 0;
    /** Read since the eviction hand last passed (SIEVE). */
    this.visited = false;
  }
}

export class Table {
  #slots = new Map();
  #bytes = 0;
  #maxEntries;
  #maxBytes;
  #nextId = 1;
  /** The SIEVE hand: an iterator over the slots, oldest first. */
  #hand = null;

  constructor(maxEntries, maxBytes) {
    this.#maxEntries = maxEntries;
    this.#maxBytes = maxBytes;
  }

  /** The slot under `key`, for the façade's hits (which set `visited`). */
  slot(key) {
    return this.#slots.get(key);
  }

  get size() {
    return this.#slots.size;
  }

  // Called by the engine (platform-wasm/src/js_api/table.rs).

  /** Fills `meta` with the entry's times, pinned flag and id; false when absent. */
  read(key, meta) {
    const s = this.#slots.get(key);
    if (s === undefined) return false;
    s.visited = true;
    meta[0] = s.createdAt;
    meta[1] = s.freshUntil;
    meta[2] = s.staleUntil;
    meta[3] = s.expiresAt;
    meta[4] = s.pinned ? 1 : 0;
    meta[5] = s.id;
    return true;
  }

  /**
   * Stores an entry, evicting as needed; false (and nothing changed) when it
   * can never fit. `meta`: created, fresh-until, stale-until, expires-at,
   * pinned (1 or 0), and the time now (for eviction: expired entries go
   * first).
   */
  write(key, value, size, meta) {
    const charge = key.length + size + ENTRY_OVERHEAD;
    if (charge > this.#maxBytes) return false;
    const old = this.#slots.get(key);
    const slot = new Slot(this.#nextId++, value, charge, meta);
    if (old !== undefined) {
      this.#bytes -= old.size;
      slot.visited = old.visited;
    }
    this.#slots.set(key, slot);
    this.#bytes += charge;
    while (this.#slots.size > this.#maxEntries || this.#bytes > this.#maxBytes) {
      if (!this.#evictOne(key, meta[5])) break;
    }
    return true;
  }

  /** The value of the entry `id` under `key`, or of whatever replaced it; `undefined` when the key is gone. */
  value(key, id) {
    const s = this.#slots.get(key);
    return s === undefined ? undefined : s.value;
  }

  remove(key) {
    const s = this.#slots.get(key);
    if (s !== undefined) {
      this.#slots.delete(key);
      this.#bytes -= s.size;
    }
  }

  clear() {
    this.#slots.clear();
    this.#bytes = 0;
    this.#hand = null;
  }

  /**
   * Evicts one entry other than `keep`: the first the hand finds unvisited
   * or past its expiry, clearing visited bits on the way (SIEVE).
   */
  #evictOne(keep, now) {
    for (let pass = 0; pass < 3; pass++) {
      if (this.#hand === null) this.#hand = this.#slots.entries();
      for (let n = this.#hand.next(); !n.done; n = this.#hand.next()) {
        const [k, s] = n.value;
        if (k === keep) continue;
        if (s.visited && s.expiresAt > now) {
          s.visited = false;
          continue;
        }
        this.#slots.delete(k);
        this.#bytes -= s.size;
        return true;
      }
      this.#hand = null;
    }
    return false;
  }
}
