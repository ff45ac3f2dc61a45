// Types of the `swre` package. Durations are milliseconds; times are Unix
// milliseconds.

/** A JS object store (e.g. a Workers KV namespace). */
export interface SwrObjectStore {
  get(key: string, type?: "arrayBuffer"): Promise<Uint8Array | ArrayBuffer | null | undefined> | Uint8Array | ArrayBuffer | null | undefined;
  put(key: string, value: Uint8Array, options?: { expirationTtl?: number }): Promise<unknown> | unknown;
  delete(key: string): Promise<unknown> | unknown;
}

/** Where a SwrCache keeps entries: in memory only, or memory in front of a persistent store. */
export type SwrStorage = "memory" | "indexeddb" | "cache" | SwrObjectStore;

/** Options of `SwrCache.open`. */
export interface SwrOptions {
  /**
   * Database / cache name for "indexeddb" and "cache" (default "swre"). With a `coordinator`,
   * required (unless `coordinator.scope` is given): the scope its keys are coordinated under, so
   * caches of the same name share each other's fetched values across isolates.
   */
  name?: string;
  /** Default "memory". */
  storage?: SwrStorage;
  /** Served as a hit this long (default 5000). */
  fresh?: number;
  /** Then served at once while one background refresh runs (default 3600000). */
  stale?: number;
  /** Then kept as a fallback for upstream failures (default 302400000). */
  expired?: number;
  /** Entries kept in memory (default 100000). */
  maxEntries?: number;
  /**
   * Bytes kept in memory, each entry charged its key, its stored (encoded) size and 96 bytes
   * (default 64 MiB). The decoded values take more of the JS heap than their encoded size
   * (about 3× for small JSON objects): in a Worker (128 MB per isolate) keep this well under it.
   */
  maxBytes?: number;
  /** The largest value stored (default 16 MiB); a larger one is returned but not stored, and counted as `oversizedValues`. */
  maxValueBytes?: number;
  /** Longest an upstream call may take (default 30000); the fetcher's `signal` aborts then. */
  refreshTimeout?: number;
  /**
   * The circuit breaker: opens after `failureThreshold` upstream failures in a row, first for
   * `firstOpenFor` ms (default 1000), each re-opening after a failed trial `firstOpenFor` longer, up
   * to `openFor` (default 30000).
   */
  breaker?: { failureThreshold?: number; successThreshold?: number; openFor?: number; firstOpenFor?: number; maxHalfOpen?: number; maxKeyBreakers?: number };
  /** "revalidate" (default): wait for a refresh, old value on failure; "serveStale": serve expired values at once. */
  expiredMode?: "revalidate" | "serveStale";
  /** Receives each background task's promise (e.g. `ctx.waitUntil.bind(ctx)`). */
  waitUntil?: (promise: Promise<unknown>) => void;
  /**
   * The fail-safe throttle (FusionCache `FailSafeThrottleDuration`, BentoCache `graceBackoff`):
   * after a refresh of a key with an old value fails, that value is served for `base` ms
   * without calling the fetcher again, doubling with each consecutive failure up to `max`
   * (default `{ base: 5000, max: 60000 }`); `false` turns it off.
   */
  failSafeThrottle?: false | { base?: number; max?: number };
  /**
   * The soft timeout (FusionCache `FactorySoftTimeout`): a `get` waiting on the refresh of an
   * expired entry resolves with the old value ("fallback", detail "soft-timeout") after this
   * many ms, while the fetcher runs on to `refreshTimeout` and stores its value. Off by
   * default; must be shorter than `refreshTimeout`.
   */
  softTimeout?: number;
  /**
   * Early refresh (FusionCache eager refresh): a fresh hit starts a background refresh before
   * the entry goes stale. `{ beta }`: XFetch, with a chance rising as expiry nears, scaled by
   * how long the key's fetch took (beta 1 is the paper's optimum); `{ threshold }`: from that
   * fraction of the fresh window on (e.g. 0.9). Off by default. The hit says detail
   * "early-refresh" when it started one.
   */
  earlyRefresh?: { beta: number } | { threshold: number };
  /**
   * Cloudflare Workers: coalesces upstream calls across isolates through the `SwrCoordinator`
   * Durable Object (`swre/coordinator`): the upstream call of a key asks the key's object for a
   * lease; one isolate calls the origin and the others are handed its result (value or origin
   * error response; other errors are the holder's own, and a waiter takes over), waiting until a
   * tenth of `refreshTimeout` (at most 1 s) before their deadline. A lease lasts 3 s and its
   * holder renews it while fetching: a holder that died loses it within 3 s, and a waiting isolate
   * takes it over. A key written here (or a tag invalidated, the cache cleared) within
   * `refreshTimeout` joins no flight that started before. A coordinator that cannot be reached (a
   * throw, no answer within 1 s, no result in time) makes
   * the call go to the origin as without it (one call per key per isolate), counted as
   * `coordinatorUnavailable`. Hits never touch it. Keys are coordinated under the cache's
   * `name` (required with a coordinator) or `scope`, and the key, spread over `buckets` objects (default 32; the same in every Worker sharing
   * them); values (or origin error responses) over `maxValueBytes` (default 1 MiB, at most 16 MiB) are not
   * handed through, and waiters call the origin themselves. `undefined` (a missing binding):
   * no coordinator. `getMany` is not coordinated.
   */
  coordinator?: SwrCoordinatorNamespace | { namespace: SwrCoordinatorNamespace; buckets?: number; maxValueBytes?: number; scope?: string };
}

/** A Durable Object namespace binding (`env.SWRE_COORDINATOR`) of the `SwrCoordinator` class. */
export interface SwrCoordinatorNamespace {
  idFromName(name: string): unknown;
  get(id: unknown): unknown;
}

/** Counters `stats()` adds when the cache was opened with a `coordinator` (absent otherwise). */
export interface SwrCoordinatorStats {
  /** Upstream calls made here holding the key's lease (takeovers included). */
  coordinatorLeases?: number;
  /** Upstream calls answered by another isolate's result, without calling the origin here. */
  coordinatorShared?: number;
  /** Leases taken over from a holder that died or gave up at its deadline. */
  coordinatorTakeovers?: number;
  /** Upstream calls made here because the holder's value was over `maxValueBytes`. */
  coordinatorUnshared?: number;
  /** Upstream calls made here because the coordinator could not be reached. */
  coordinatorUnavailable?: number;
}

/**
 * What a fetcher is given (FusionCache's and BentoCache's fetch context): what the cache holds,
 * a signal, and what the fetcher may say about the entry it fetches. Setters act when called
 * before the fetcher returns.
 */
export interface SwrFetchContext {
  /** Aborts when the refresh timeout passes: pass it to `fetch(url, { signal })`. */
  readonly signal: AbortSignal;
  /**
   * The value the cache holds for the key (stale, expired, or fresh for an early refresh), if
   * any: what was stored, as a read returns it (a `SwrValue`, shared and read-only).
   */
  readonly staleValue: unknown;
  /** When `staleValue` was fetched (Unix ms), for `If-Modified-Since`; `undefined` when none is held. */
  readonly staleCreatedAt: number | undefined;
  /**
   * This entry's fresh window in ms (BentoCache `ctx.setTtl`, FusionCache `ctx.Options.Duration`),
   * instead of the `ttl` option's or the cache's; `windows.stale` and `windows.expired`, when
   * given, replace the cache's too (a response's `stale-while-revalidate` and `stale-if-error`),
   * else the stale and expired windows stay the
   * cache's. Any length (a window read from an HTTP `max-age` may be short); if the three total
   * under 1 ms the value is returned and not stored. A value that is not a non-negative number
   * throws, and the call fails with kind "options" and stores nothing.
   */
  setTtl(ms: number, windows?: { stale?: number; expired?: number }): void;
  /**
   * The value is returned to the callers but not stored, and what the cache held for the key
   * goes; the next `get` fetches again (BentoCache's `ctx.skip()` stores nothing too, but
   * answers `undefined`).
   */
  noStore(): void;
  /**
   * This entry's tags (BentoCache's and FusionCache's tags set by the factory), instead of the
   * `tags` option's or those the entry had; `[]` stores it untagged. Anything but an array of
   * strings throws and fails the call with kind "options"; a bad name (empty, over 256 bytes,
   * over 32 tags) fails it with kind "invalidTag".
   */
  setTags(tags: readonly string[]): void;
  /**
   * Return it when the origin says the held value is still good (an HTTP 304; FusionCache
   * `ctx.NotModified()`): the value stays and its phases start again, with the fresh window
   * `setTtl` gives, else the `ttl` option's, else the one it had. With no value held the call
   * fails with kind "upstream".
   */
  notModified(): SwrNotModified;
}

/** What `ctx.notModified()` returns, for the fetcher to return. */
export interface SwrNotModified {
  readonly [Symbol.toStringTag]: "SwrNotModified";
}

/**
 * Calls the origin; its value must be a string, a Uint8Array / ArrayBuffer, or JSON, or
 * `ctx.notModified()`.
 */
export type SwrFetcher<T = unknown> = (context: SwrFetchContext) => T | SwrNotModified | Promise<T | SwrNotModified>;

/** Options of one `get`. */
export interface SwrGetOptions {
  /** Given a promise of background work, if any: a Worker's `ctx.waitUntil.bind(ctx)`
   * (bound: an unbound `ctx.waitUntil` throws when called, and `get` then rejects with kind "options"). */
  waitUntil?: (promise: Promise<unknown>) => void;
  /** Cancels this caller's wait (rejects with kind "aborted"); never the shared fetch. */
  signal?: AbortSignal;
  /** The fresh window, in milliseconds, of a value this call fetches (the stale and expired windows stay the cache's). */
  ttl?: number;
  /**
   * The tags of a value this call fetches (at most 32 non-empty names of up to 256 bytes), for
   * `invalidateTag` / `expireTag`; they stick through refreshes. A lookup with `tags` or `ttl`
   * joins no other lookup in the façade (the engine still makes one upstream call per key).
   */
  tags?: readonly string[];
}

/** Options of one `set`. */
export interface SwrSetOptions {
  /** The fresh window of this value in milliseconds (the stale and expired windows stay the cache's). */
  ttl?: number;
  /** The tags of this value, as for `get`. */
  tags?: readonly string[];
}

/** Options of one `getMany`: those of `get`, for every key. */
export type SwrGetManyOptions = SwrGetOptions;

/** What a batch fetcher is given: a signal aborting when the refresh timeout passes. */
export interface SwrBatchFetchContext {
  readonly signal: AbortSignal;
}

/**
 * Calls the origin once for `keys` (the stale and missing ones, each once) and answers their
 * values as a `Map`, a plain object or an array of `[key, value]` pairs; a key left out fails
 * alone (kind "upstream"), keys not asked for are ignored.
 */
export type SwrBatchFetcher<T = unknown> = (
  keys: string[],
  context: SwrBatchFetchContext,
) => SwrBatchAnswer<T> | Promise<SwrBatchAnswer<T>>;

export type SwrBatchAnswer<T> = ReadonlyMap<string, T> | Readonly<Record<string, T>> | ReadonlyArray<readonly [string, T]>;

/** One key's answer of `getMany`: its result, or its error. */
export type SwrManyResult<T = unknown> =
  | ({ readonly key: string; readonly ok: true } & SwrResult<T>)
  | { readonly key: string; readonly ok: false; readonly error: SwrError };

/**
 * A cached value as every read returns it: strings and bytes as they were
 * (an `ArrayBuffer` or a `Buffer` comes back as a plain `Uint8Array`), and
 * anything else as `JSON.parse(JSON.stringify(value))` gives it back (a
 * `Date` becomes its ISO string, a `Map` or `Set` `{}`, `NaN` `null`).
 * Hits share one object: it is read-only.
 */
export type SwrValue<T> = T extends string
  ? string
  : T extends ArrayBuffer | Uint8Array
    ? Uint8Array
    : Jsonified<T>;

/** What JSON keeps of `T`, read-only. */
export type Jsonified<T> = unknown extends T
  ? unknown
  : T extends string | number | boolean | null
  ? T
  : T extends Date
    ? string
    : T extends { toJSON(): infer J }
      ? Jsonified<J>
      : T extends Map<unknown, unknown> | Set<unknown> | WeakMap<object, unknown> | WeakSet<object>
        ? Readonly<Record<string, never>>
        : T extends readonly (infer U)[]
          ? ReadonlyArray<Jsonified<U>>
          : T extends object
            ? { readonly [K in keyof T as T[K] extends (...args: never[]) => unknown ? never : K]: Jsonified<T[K]> }
            : never;

export type SwrStatus = "hit" | "stale" | "miss" | "expired" | "fallback";

/**
 * Why a value was served as it was, beside its status: "none", or the cause of a fallback
 * ("upstream-error", "timeout", "breaker-open", "shutdown"), a stale value whose refresh did
 * not start ("throttled", "breaker-open", "refresh-skipped"), or a fallback after the soft
 * timeout ("soft-timeout").
 */
export type SwrDetail =
  | "none" | "soft-timeout" | "throttled" | "breaker-open" | "upstream-error" | "timeout"
  | "refresh-skipped" | "shutdown" | "early-refresh";

export interface SwrResult<T = unknown> {
  readonly value: SwrValue<T>;
  readonly status: SwrStatus;
  readonly detail: SwrDetail;
  /** Milliseconds since the value was fetched. */
  readonly age: number;
  readonly createdAt: number;
  readonly freshUntil: number;
  readonly staleUntil: number;
  readonly expiresAt: number;
}

/** What a rejected promise of this package carries. */
export interface SwrError extends Error {
  name: "SwrError";
  kind:
    | "options" | "fetcher" | "invalidKey" | "invalidTag" | "upstream" | "timeout" | "circuitOpen" | "storage"
    | "codec" | "shutdown" | "abandoned" | "valueTooLarge" | "aborted" | "closed" | "init" | "other";
}

// Counters since the cache was opened: swre-core's `Stats` fields in
// camelCase, generated from the Rust source by the build.
import type { SwrStats } from "./wasm/stats.js";
export type { SwrStats };

/** Options of `cache.fetch`. */
export interface SwrFetchOptions {
  /** Calls the origin (default: the global `fetch`); e.g. `(r) => env.ORIGIN.fetch(r)`. */
  fetch?: (request: Request) => Promise<Response>;
  /**
   * `"shared"` (default: a Worker, a proxy in front of many users: `s-maxage` applies, `private`
   * responses and responses setting cookies are not stored, nor answers to requests with
   * `Authorization` unless the response allows it) or `"private"` (a service worker or a page:
   * `s-maxage` is ignored and `private` responses are stored). RFC 9111 §3, §3.5.
   */
  mode?: "shared" | "private";
  /** Workers: `ctx.waitUntil.bind(ctx)`, so background revalidation outlives the response. */
  waitUntil?: (promise: Promise<unknown>) => void;
  /** Bodies larger than this are passed through and not stored (default 8 MiB). */
  maxBodyBytes?: number;
}

export declare class SwrCache {
  private constructor();
  /** Opens a cache (loading the WebAssembly module the first time); rejects with kind "options" naming any bad option. */
  static open(options?: SwrOptions): Promise<SwrCache>;
  /** The value under `key`, fetched with `fetcher` when there is no usable one. */
  get<T = unknown>(key: string, fetcher: SwrFetcher<T>, options?: SwrGetOptions): Promise<SwrResult<T>>;
  /** The stored value under `key` without fetching or refreshing, or `undefined`. */
  peek<T = unknown>(key: string): Promise<SwrResult<T> | undefined>;
  /**
   * `request` answered through the cache as an HTTP cache (RFC 9111): a GET's (or HEAD's)
   * response is stored for the phases its own headers give (`max-age` / `s-maxage`,
   * `stale-while-revalidate`, `stale-if-error`, `Expires`, `Age`; the cache's windows when it
   * gives none), per the request headers its `Vary` names, revalidated with `If-None-Match` /
   * `If-Modified-Since` when it has validators (a 304 extends it), never when `no-store`, not
   * cacheable by status, or (shared) `private`; an origin 500/502/503/504 is answered by the
   * stored response within `stale-if-error`; a successful unsafe method invalidates its URL, its
   * same-origin `Location` / `Content-Location`, and the RFC 9875 cache groups its
   * `Cache-Group-Invalidation` names (responses join groups with `Cache-Groups`). Every response
   * carries an RFC 9211 `Cache-Status` member (`swre; hit; ttl=…`, `swre; fwd=miss; …; stored`,
   * `collapsed` when it shared another request's origin fetch). Bodies are read whole. Rejects
   * with kind "options" for bad options, and as `get` does when the origin cannot be reached and
   * nothing stored stands in.
   */
  fetch(request: Request | string | URL, options?: SwrFetchOptions): Promise<Response>;
  /**
   * The values under `keys`, fetched together (BentoCache `getMany`, sturdyc `GetOrFetchBatch`):
   * fresh keys are answered without the fetcher, every stale or missing key goes to one call of
   * `fetcher` (stale ones served at once and refreshed in background). Resolves to one answer per
   * key, in the order of `keys`; rejects only for bad arguments or options.
   */
  getMany<T = unknown>(keys: readonly string[], fetcher: SwrBatchFetcher<T>, options?: SwrGetManyOptions): Promise<SwrManyResult<T>[]>;
  /** Stores `value` under `key` with the cache's TTL or `options.ttl`, and `options.tags`; the latest write or delete wins. */
  set(key: string, value: unknown, options?: SwrSetOptions): Promise<void>;
  /** Removes `key`; a fetch that started earlier never brings it back. */
  delete(key: string): Promise<void>;
  /**
   * Makes `key`'s entry stale at once but keeps it as a fallback (FusionCache `Expire`,
   * BentoCache `expire`): the next `get` serves it as "stale" and refreshes it.
   */
  expire(key: string): Promise<void>;
  /**
   * Invalidates every entry stored with `tag` (BentoCache `deleteByTag`, FusionCache `RemoveByTag`):
   * they read as absent from now on, in this cache and any other over the same persistent store.
   */
  invalidateTag(tag: string): Promise<void>;
  /**
   * Expires every entry stored with `tag` (BentoCache `expireByTag`, FusionCache `ExpireByTag`):
   * they read as stale from now on and are kept as fallbacks.
   */
  expireTag(tag: string): Promise<void>;
  /**
   * Removes every entry, in memory and in the persistent store (BentoCache `clear`, FusionCache
   * `Clear`); a store object without `clear` makes it reject with kind "storage" after the memory
   * tier is emptied.
   */
  clear(): Promise<void>;
  /** Resolves when every background refresh running now has finished. */
  pending(): Promise<void>;
  /** Counters since the cache was opened (and the coordinator's, with one). */
  stats(): SwrStats & SwrCoordinatorStats;
  /** Frees the cache; later calls reject with kind "closed". */
  close(): void;
}
