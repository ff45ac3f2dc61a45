// Upstream calls coalesced across Workers isolates (the `coordinator` option
// of `SwrCache.open`). The engine makes one upstream call per key in its own
// isolate; with a coordinator, that call first asks the key's
// `SwrCoordinator` Durable Object (coordinator.js) for the key's lease:
//
// - granted: the origin is called here, and the result (the value and what
//   the fetcher said of it, or its error) is published to the object, which
//   hands it to every isolate waiting on the key;
// - refused: this call waits for that result and answers it to the engine as
//   its own, never calling the origin, until a margin before the call's
//   deadline (then it calls the origin itself, in what is left); the
//   holder renews its short lease while its fetch runs, and if the lease
//   ends first (the holder died and stopped renewing, or gave up at its
//   deadline), a waiting call takes it over;
// - a key written here (set, delete, expire, or a tag invalidated, or the
//   cache cleared) within the last `refreshTimeout` never joins a flight
//   that started before the write: the object answers "alone" and the
//   origin is called here, as a write here promises ("a fetch that started
//   earlier never brings it back"); a flight started after it is joined;
// - the object cannot be reached (a throw, an RPC error, no answer within
//   `REACH_MS`): the origin is called here, as without a coordinator (one
//   call per key per isolate), and counted.
//
// Keys are spread over `buckets` objects by a hash; a key is coordinated
// under its scope (the cache's `name`, or `coordinator.scope`) and the key,
// so caches holding different data under the same keys keep apart by name:
// a scope is required, so two caches never share by default. Only upstream
// calls ask: a hit never touches the coordinator.

import { blank, NOT_MODIFIED } from "./answer.js";
import { LEASE_MS } from "./flights.js";

/** Objects the keys are spread over, by default. */
const BUCKETS = 32;
/** The largest value (or origin error response) handed through the coordinator, by default. */
const MAX_VALUE_BYTES = 1 << 20;
/** The largest `maxValueBytes` accepted: well under what one Durable Object RPC carries (32 MiB). */
const MAX_VALUE_BYTES_LIMIT = 16 << 20;
/** How long the coordinator may take to grant or refuse a lease before the origin is called without it. */
const REACH_MS = 1_000;
/** How much longer than its patience a waiter waits for the object's own "too late" (at most half the margin). */
const SLACK_MS = 250;
/** How often a holder renews its lease: three times a lease, so one lost renewal costs nothing. */
const RENEW_MS = LEASE_MS / 3;
const KNOWN = ["namespace", "buckets", "maxValueBytes", "scope"];
const HELP = "`coordinator` must be a Durable Object namespace bound to SwrCoordinator (e.g. env.SWRE_COORDINATOR), or { namespace, buckets?, maxValueBytes?, scope? }";
const NO_SCOPE =
  "`coordinator` needs the cache's `name` (or `coordinator.scope`): caches coordinate their keys under it, and caches with the same name share each other's values";

/** A result too large to hand through: waiters call the origin themselves. */
const UNSHARED = Object.freeze({ unshared: true });
/** The most keys whose writes are remembered; past it, a write counts as one to every key. */
const MAX_WRITTEN = 4_096;
/** A bound that ran out (see `bounded`). */
const TIMED_OUT = Symbol("timed out");

const isNamespace = (v) =>
  v !== null && typeof v === "object" && typeof v.idFromName === "function" && typeof v.get === "function";

/**
 * The `coordinator` option of `SwrCache.open` for a cache named `name`: a
 * `Coordination`, `undefined` when none is given, or the message saying
 * what is wrong with it.
 */
export function coordinationOf(option, name) {
  if (option === undefined) return undefined;
  let namespace = option;
  let buckets = BUCKETS;
  let maxValueBytes = MAX_VALUE_BYTES;
  let scope = name;
  if (!isNamespace(option)) {
    if (option === null || typeof option !== "object" || !isNamespace(option.namespace)) return HELP;
    for (const k in option) {
      if (!KNOWN.includes(k)) return `unknown option \`coordinator.${k}\` (known: ${KNOWN.join(", ")})`;
    }
    namespace = option.namespace;
    if (option.buckets !== undefined) {
      buckets = option.buckets;
      if (!Number.isInteger(buckets) || buckets < 1 || buckets > 1024) {
        return `\`coordinator.buckets\` must be an integer from 1 to 1024 (got ${String(buckets)})`;
      }
    }
    if (option.maxValueBytes !== undefined) {
      maxValueBytes = option.maxValueBytes;
      if (!(typeof maxValueBytes === "number" && maxValueBytes >= 0 && maxValueBytes <= MAX_VALUE_BYTES_LIMIT)) {
        return `\`coordinator.maxValueBytes\` must be a number of bytes from 0 to ${MAX_VALUE_BYTES_LIMIT} (16 MiB, under the RPC limit) (got ${String(maxValueBytes)})`;
      }
    }
    if (option.scope !== undefined) {
      scope = option.scope;
      if (typeof scope !== "string" || scope.length === 0) return `\`coordinator.scope\` must be a non-empty string (got ${String(scope)})`;
    }
  }
  if (typeof scope !== "string" || scope.length === 0) return NO_SCOPE;
  return new Coordination(namespace, buckets, maxValueBytes, scope);
}

/** The bucket of `key` among `n`: FNV-1a over its UTF-16 code units, the same in every isolate. */
export function bucketOf(key, n) {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % n;
}

export class Coordination {
  #namespace;
  #buckets;
  #maxValueBytes;
  #scope;
  /** How long a write here keeps its key from joining older flights: the cache's `refreshTimeout`. */
  #window = 0;
  /** Key → when it was last written here, oldest first, within `#window`. */
  #written = new Map();
  /** When every key was last written here (a tag invalidated, the cache cleared). */
  #writtenAll = -Infinity;
  /** What `stats()` adds. */
  counts = {
    coordinatorLeases: 0,
    coordinatorShared: 0,
    coordinatorTakeovers: 0,
    coordinatorUnshared: 0,
    coordinatorUnavailable: 0,
  };

  constructor(namespace, buckets, maxValueBytes, scope) {
    this.#namespace = namespace;
    this.#buckets = buckets;
    this.#maxValueBytes = maxValueBytes;
    this.#scope = scope;
  }

  /** `ms`: the cache's `refreshTimeout`, the longest a flight started before a write runs. */
  setWindow(ms) {
    this.#window = ms;
  }

  /** `key` was written here (set, deleted, expired): its fetches join no older flight for a while. */
  written(key) {
    const now = Date.now();
    const w = this.#written;
    w.delete(key);
    w.set(key, now);
    // Oldest first: what is out of the window goes from the front.
    for (const [k, t] of w) {
      if (now - t < this.#window) break;
      w.delete(k);
    }
    if (w.size > MAX_WRITTEN) this.writtenAll();
  }

  /** Every key was written here (a tag invalidated, the cache cleared). */
  writtenAll() {
    this.#writtenAll = Date.now();
    this.#written.clear();
  }

  /** How long ago `key` was last written here, if within the window (else `undefined`). */
  #writtenAgo(key) {
    const ago = Date.now() - Math.max(this.#written.get(key) ?? -Infinity, this.#writtenAll);
    return ago < this.#window ? ago : undefined;
  }

  /**
   * The engine's upstream call of `key`, due by `deadline` (Unix ms), with
   * the value the cache holds (`staleValue`): `run()` (the fetcher, made
   * here) holding the lease, or the holder's result, or `run()` without the
   * coordinator when it cannot be reached. Resolves to the engine's answer
   * (answer.js) or rejects as the fetch did.
   */
  async fetch(key, deadline, staleValue, run) {
    // The scope's length first: no scope and key make the name of another pair.
    const name = `${this.#scope.length}:${this.#scope}${key}`;
    const id = crypto.randomUUID();
    // A waiter gives up waiting a margin before its deadline and calls the
    // origin itself in what is left: the coordinator never fails a call.
    const margin = Math.min(REACH_MS, left(deadline) / 10);
    const patience = () => Math.max(1, left(deadline) - margin);
    let stub;
    let state;
    try {
      const ns = this.#namespace;
      stub = ns.get(ns.idFromName(`swre-${bucketOf(name, this.#buckets)}`));
      const ago = this.#writtenAgo(key);
      const asked = ago === undefined ? stub.acquire(name, id, patience()) : stub.acquire(name, id, patience(), ago);
      state = await bounded(asked, Math.min(REACH_MS, left(deadline)));
    } catch {
      state = undefined;
    }
    // A flight started before this isolate's write: not joined.
    if (state === "alone") return run();
    if (state !== "lease" && state !== "wait") return this.#alone(stub, name, id, run);
    if (state === "wait") {
      let outcome;
      try {
        outcome = await bounded(stub.wait(id), patience() + Math.min(SLACK_MS, margin / 2));
      } catch {
        return this.#alone(stub, name, id, run);
      }
      // No result in time (the holder is slow, or the object hangs): the origin, here.
      if (outcome === TIMED_OUT || outcome?.late === true) return this.#alone(stub, name, id, run);
      if (outcome !== null && typeof outcome === "object" && outcome.result !== undefined) {
        return this.#received(outcome.result, run);
      }
      if (outcome?.lease !== true) return this.#alone(undefined, name, id, run);
      this.counts.coordinatorTakeovers++;
    }
    return this.#hold(stub, name, id, deadline, staleValue, run);
  }

  /** The origin called here without the coordinator, which could not be reached or gave no result in time. */
  #alone(stub, name, id, run) {
    this.counts.coordinatorUnavailable++;
    // A grant or a wait that arrives after all is given back.
    if (stub !== undefined) leave(stub, name, id);
    return run();
  }

  /** The origin called here holding the lease; its result published for the waiters. */
  async #hold(stub, name, id, deadline, staleValue, run) {
    this.counts.coordinatorLeases++;
    // Past the deadline the engine has given the call up: the lease goes to
    // a waiter with time left rather than wait out its own end.
    let over = false;
    const timer = setTimeout(() => {
      over = true;
      clearInterval(renewing);
      leave(stub, name, id);
    }, left(deadline));
    // The lease is short: kept while the fetch runs, lost soon after this
    // isolate dies. A renewal refused (the lease was lost) ends the renewals.
    const renewing = setInterval(() => {
      try {
        Promise.resolve(stub.renew(name, id)).then((held) => held === false && clearInterval(renewing), () => {});
      } catch {
        // The object cannot be reached now: the next renewal may.
      }
    }, RENEW_MS);
    const stop = () => {
      clearTimeout(timer);
      clearInterval(renewing);
    };
    let answer;
    try {
      answer = await run();
    } catch (e) {
      stop();
      // Only the origin's own answer (an error response) is shared: any
      // other error (a timeout, an abort, a limit or a credential of this
      // isolate's) may be this call's alone, so a waiter takes over and
      // calls the origin itself.
      if (!over && Date.now() < deadline && e?.swreResponse instanceof Uint8Array) await publish(stub, name, id, this.#failure(e));
      else leave(stub, name, id);
      throw e;
    }
    stop();
    if (!over) await publish(stub, name, id, this.#shareable(answer, staleValue));
    return answer;
  }

  /** The holder's published result as this call's answer (or error). */
  #received(result, run) {
    if (result === null || typeof result !== "object" || result.unshared === true) {
      this.counts.coordinatorUnshared++;
      return run();
    }
    this.counts.coordinatorShared++;
    const { error } = result;
    if (error !== undefined) {
      const e = new Error(String(error.message));
      if (typeof error.name === "string") e.name = error.name;
      // An origin's error response (http.js), for a stored one to stand in or to be answered.
      if (error.response instanceof Uint8Array) e.swreResponse = error.response;
      throw e;
    }
    const answer = blank();
    const { type, value } = result;
    if (type === "j") answer[0] = JSON.parse(value);
    else if (type === "s" || type === "b") answer[0] = value;
    // "u": a value JSON cannot hold, which the engine refuses here as it did there.
    answer[1] = result.flags;
    answer[2] = result.fresh;
    answer[3] = result.tags;
    answer[4] = result.stale;
    answer[5] = result.expired;
    return answer;
  }

  /** What the waiters are handed for the holder's `answer`. */
  #shareable(answer, staleValue) {
    let [value, flags] = answer;
    if (flags & NOT_MODIFIED) {
      // "Not modified" of no value says nothing of a waiter's: it asks itself.
      if (staleValue === undefined) return UNSHARED;
      // The value held here stays; a waiter may hold an older one.
      value = staleValue;
      flags &= ~NOT_MODIFIED;
    }
    const shared = encoded(value);
    if (byteSize(shared.value) > this.#maxValueBytes) return UNSHARED;
    const [, , fresh, tags, stale, expired] = answer;
    return { ...shared, flags, fresh, tags, stale, expired };
  }

  /** What the waiters are handed for the holder's error `e`, the origin's error response. */
  #failure(e) {
    const response = e.swreResponse;
    if (response.byteLength > this.#maxValueBytes) return UNSHARED;
    const message = e instanceof Error ? e.message : String(e);
    return { error: { name: typeof e?.name === "string" ? e.name : "Error", message, response: response.slice() } };
  }
}

/** `value` as it travels: its type (`s`tring, `b`ytes, `j`son, `u`nstorable) and its form. */
function encoded(value) {
  if (typeof value === "string") return { type: "s", value };
  // A view is copied: the whole buffer behind it would travel otherwise.
  if (value instanceof Uint8Array) return { type: "b", value: value.byteLength === value.buffer.byteLength ? value : value.slice() };
  if (value instanceof ArrayBuffer) return { type: "b", value: new Uint8Array(value) };
  let text;
  try {
    text = JSON.stringify(value);
  } catch {
    text = undefined;
  }
  return typeof text === "string" ? { type: "j", value: text } : { type: "u", value: undefined };
}

const byteSize = (v) => (typeof v === "string" ? v.length : v === undefined ? 0 : v.byteLength);

/** Milliseconds until `deadline`, at least 0. */
const left = (deadline) => Math.max(0, deadline - Date.now());

/** Settles as `p`, or resolves to `TIMED_OUT` after `ms`. */
function bounded(p, ms) {
  let timer;
  const out = new Promise((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  return Promise.race([p, out]).finally(() => clearTimeout(timer));
}

/**
 * Publishes `result`. If the object cannot take it (too large for RPC, or
 * no answer in time), publishes "unshared": each waiter calls the origin
 * once, rather than take the lease over and fail the same way in turn; if
 * that fails too, gives the lease up.
 */
async function publish(stub, name, id, result) {
  for (const r of [result, UNSHARED]) {
    try {
      if ((await bounded(stub.publish(name, id, r), REACH_MS)) !== TIMED_OUT) return;
    } catch {
      // Tried again as "unshared".
    }
  }
  leave(stub, name, id);
}

/** Leaves `name`'s flight (a lease given up, a wait abandoned), not waiting for the answer. */
function leave(stub, name, id) {
  try {
    Promise.resolve(stub.release(name, id)).catch(() => {});
  } catch {
    // The object cannot be reached: the lease ends at its time.
  }
}
