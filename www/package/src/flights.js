// The lease table of one `SwrCoordinator` object (coordinator.js): for each
// key in flight, which participant holds its lease and which wait for the
// holder's result. A participant is an upstream call in one isolate, named
// by an id it chooses (a random UUID) and keeps for the whole call: it asks
// for the lease, waits, publishes and releases with that id.
//
// Nothing is kept for a key once its flight ends (its result published, or
// its lease ended with nobody waiting), nor for a waiter once it has
// collected its outcome or its deadline has passed: the memory held is
// bounded by the calls in flight. A lease is short (`LEASE_MS`) and its
// holder `renew`s it while its fetch runs: a holder that died stops
// renewing and loses it within a lease's time, whatever its deadline. It
// then goes to a waiter that is waiting now (it called `wait`), the one
// with the most time left, else to one that has not called `wait` yet, as
// a lease it must renew as well; waiters past their deadline are told they
// are late. Plain JavaScript with timers, so Node tests drive it directly.

/** The longest wait granted, whatever a caller asks: 15 minutes. */
const MAX_MS = 15 * 60_000;
/** How long a lease lasts unless its holder renews it (the holder renews every third of it). */
export const LEASE_MS = 3_000;
/** The longest key accepted, in UTF-16 code units (the cache's name and its key). */
const MAX_KEY = 1 << 16;
/** The longest participant id accepted. */
const MAX_ID = 128;

/** What `wait` resolves to when the lease ended without a result: the waiter holds it now. */
const LEASE = Object.freeze({ lease: true });
/** What `wait` resolves to when the waiter's deadline passed first. */
const LATE = Object.freeze({ late: true });
/** What `wait` resolves to for an id this object does not know (it restarted, or the id was released). */
const GONE = Object.freeze({ gone: true });

function checked(key, id) {
  if (typeof key !== "string" || key.length === 0 || key.length > MAX_KEY) {
    throw new TypeError(`SwrCoordinator: the key must be a string of 1 to ${MAX_KEY} characters`);
  }
  if (typeof id !== "string" || id.length === 0 || id.length > MAX_ID) {
    throw new TypeError(`SwrCoordinator: the id must be a string of 1 to ${MAX_ID} characters`);
  }
}

/** `ms` as a duration to grant: at least 1, at most `MAX_MS`. */
function granted(ms) {
  if (typeof ms !== "number" || Number.isNaN(ms)) throw new TypeError("SwrCoordinator: the duration must be a number of milliseconds");
  return Math.min(MAX_MS, Math.max(1, Math.ceil(ms)));
}

export class Flights {
  /** Key → `{ holder, timer, waiters }`: the flights running. */
  #flights = new Map();
  /** Id → waiter, until its outcome is collected or its deadline passes. */
  #waiters = new Map();
  #leaseMs;

  /** `leaseMs`: how long a lease lasts unless renewed (tests shorten it). */
  constructor(leaseMs = LEASE_MS) {
    this.#leaseMs = leaseMs;
  }

  /**
   * Asks for `key`'s lease: `"lease"` if it is granted (the caller calls
   * the origin, `renew`s the lease while it runs, then `publish`es or
   * `release`s), else `"wait"` (the caller `wait`s, at most `ms`, its time
   * left). `writtenAgo`: the caller wrote the key that many ms ago, so a
   * flight whose holder started before then is not joined: `"alone"` (the
   * caller calls the origin by itself; nothing is kept).
   */
  acquire(key, id, ms, writtenAgo) {
    checked(key, id);
    const time = granted(ms);
    if (writtenAgo !== undefined && !(typeof writtenAgo === "number" && writtenAgo >= 0)) {
      throw new TypeError("SwrCoordinator: writtenAgo must be a non-negative number of milliseconds");
    }
    if (this.#waiters.has(id)) throw new TypeError("SwrCoordinator: this id is already waiting");
    const flight = this.#flights.get(key);
    if (flight === undefined) {
      const f = { holder: id, since: Date.now(), timer: undefined, waiters: new Set() };
      this.#flights.set(key, f);
      this.#lease(key, f, id);
      return "lease";
    }
    if (flight.holder === id) throw new TypeError("SwrCoordinator: this id already holds the lease");
    // This object's clock throughout: the holder's start against the write's age on arrival.
    if (writtenAgo !== undefined && flight.since <= Date.now() - writtenAgo) return "alone";
    const w = { id, key, deadline: Date.now() + time, outcome: undefined, resolve: undefined, promise: undefined, collected: false, timer: undefined };
    w.promise = new Promise((resolve) => (w.resolve = resolve));
    w.timer = setTimeout(() => this.#late(w), time);
    flight.waiters.add(w);
    this.#waiters.set(id, w);
    return "wait";
  }

  /**
   * What waiter `id` gets: `{ result }` (the holder's published result),
   * `{ lease: true }` (the lease ended without one: `id` holds it now),
   * `{ late: true }` (its time ran out first) or `{ gone: true }` (unknown id).
   */
  wait(id) {
    const w = this.#waiters.get(id);
    if (w === undefined) return Promise.resolve(GONE);
    w.collected = true;
    if (w.outcome !== undefined) this.#forget(w);
    return w.promise;
  }

  /**
   * The holder's `result`, handed to every waiter of `key`; the flight ends.
   * `false` (and nothing handed out) if `id` no longer holds the lease.
   */
  publish(key, id, result) {
    const f = this.#flights.get(key);
    if (f === undefined || f.holder !== id) return false;
    clearTimeout(f.timer);
    this.#flights.delete(key);
    const outcome = { result };
    for (const w of f.waiters) this.#settle(w, outcome);
    return true;
  }

  /**
   * Holder `id` keeps `key`'s lease for another `LEASE_MS`: `true`, or
   * `false` if it no longer holds it (it was too slow to renew).
   */
  renew(key, id) {
    const f = this.#flights.get(key);
    if (f === undefined || f.holder !== id) return false;
    this.#lease(key, f, id);
    return true;
  }

  /**
   * `id` leaves `key`'s flight: a holder hands its lease over (or the
   * flight ends), a waiter stops waiting.
   */
  release(key, id) {
    const f = this.#flights.get(key);
    if (f !== undefined && f.holder === id) {
      this.#handOver(key, f);
      return;
    }
    const w = this.#waiters.get(id);
    if (w === undefined || w.key !== key) return;
    f?.waiters.delete(w);
    this.#settle(w, GONE);
    this.#forget(w);
  }

  /** How many flights run and how many waiters are kept: what this object holds. */
  inspect() {
    return { flights: this.#flights.size, waiters: this.#waiters.size };
  }

  #lease(key, f, id) {
    f.holder = id;
    clearTimeout(f.timer);
    f.timer = setTimeout(() => this.#handOver(key, f), this.#leaseMs);
  }

  /**
   * The lease ended without a result (released, or not renewed in time):
   * it goes to a waiter waiting now, with the most time left, else to one
   * that has not called `wait` yet; waiters past their deadline are late.
   */
  #handOver(key, f) {
    clearTimeout(f.timer);
    const now = Date.now();
    let next;
    for (const w of f.waiters) {
      if (w.deadline <= now) {
        f.waiters.delete(w);
        this.#settle(w, LATE);
      } else if (next === undefined || w.collected > next.collected || (w.collected === next.collected && w.deadline > next.deadline)) {
        next = w;
      }
    }
    if (next === undefined) {
      if (this.#flights.get(key) === f) this.#flights.delete(key);
      return;
    }
    f.waiters.delete(next);
    f.since = now;
    this.#lease(key, f, next.id);
    this.#settle(next, LEASE);
  }

  /** Waiter `w`'s deadline passed. */
  #late(w) {
    w.timer = undefined;
    if (w.outcome === undefined) {
      this.#flights.get(w.key)?.waiters.delete(w);
      this.#settle(w, LATE);
    }
    this.#waiters.delete(w.id);
  }

  #settle(w, outcome) {
    if (w.outcome !== undefined) return;
    w.outcome = outcome;
    w.resolve(outcome);
    if (w.collected) this.#forget(w);
  }

  #forget(w) {
    clearTimeout(w.timer);
    w.timer = undefined;
    this.#waiters.delete(w.id);
  }
}
