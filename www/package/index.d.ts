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
  /** Database / cache name for "indexeddb" and "cache" (default "swre"). */
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
  /** Bytes kept in memory, each entry charged its key, its stored (encoded) size and 96 bytes (default 64 MiB). */
  maxBytes?: number;
  /** The largest value stored (default 16 MiB); a larger one is returned but not stored, and counted as `oversizedValues`. */
  maxValueBytes?: number;
  /** Longest an upstream call may take (default 30000); the fetcher's `signal` aborts then. */
  refreshTimeout?: number;
  /** The circuit breaker: opens after `failureThreshold` upstream failures in a row. */
  breaker?: { failureThreshold?: number; successThreshold?: number; openFor?: number; maxHalfOpen?: number; maxKeyBreakers?: number };
  /** "revalidate" (default): wait for a refresh, old value on failure; "serveStale": serve expired values at once. */
  expiredMode?: "revalidate" | "serveStale";
  /** Receives each background task's promise (e.g. `ctx.waitUntil.bind(ctx)`). */
  waitUntil?: (promise: Promise<unknown>) => void;
}

/** What a fetcher is given. */
export interface SwrFetchContext<T = unknown> {
  /** Aborts when the refresh timeout passes: pass it to `fetch(url, { signal })`. */
  signal: AbortSignal;
  /** The value the cache holds in memory for the key (stale or expired), if any. */
  readonly staleValue: SwrValue<T> | undefined;
}

/** Calls the origin; its value must be a string, a Uint8Array / ArrayBuffer, or JSON. */
export type SwrFetcher<T = unknown> = (context: SwrFetchContext<T>) => T | Promise<T>;

/** Options of one `get`. */
export interface SwrGetOptions {
  /** Given a promise of background work, if any: a Worker's `ctx.waitUntil.bind(ctx)`
   * (bound: an unbound `ctx.waitUntil` throws when called, and `get` then rejects with kind "options"). */
  waitUntil?: (promise: Promise<unknown>) => void;
  /** Cancels this caller's wait (rejects with kind "aborted"); never the shared fetch. */
  signal?: AbortSignal;
  /** The fresh window, in milliseconds, of a value this call fetches (the stale and expired windows stay the cache's). */
  ttl?: number;
}

/**
 * A cached value as every read returns it: the JSON value of what the fetcher
 * returned (a Map or Date does not survive), or the string or bytes as given.
 * Hits share one object: treat it as read-only.
 */
export type SwrValue<T> = T extends string | Uint8Array ? T : T extends ArrayBuffer ? Uint8Array : Readonly<T>;

export type SwrStatus = "hit" | "stale" | "miss" | "expired" | "fallback";

export interface SwrResult<T = unknown> {
  readonly value: SwrValue<T>;
  readonly status: SwrStatus;
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
    | "options" | "fetcher" | "invalidKey" | "upstream" | "timeout" | "circuitOpen" | "storage"
    | "codec" | "shutdown" | "abandoned" | "valueTooLarge" | "aborted" | "closed" | "init" | "other";
}

// Counters since the cache was opened: swre-core's `Stats` fields in
// camelCase, generated from the Rust source by the build.
import type { SwrStats } from "./wasm/stats.js";
export type { SwrStats };

export declare class SwrCache {
  private constructor();
  /** Opens a cache (loading the WebAssembly module the first time); rejects with kind "options" naming any bad option. */
  static open(options?: SwrOptions): Promise<SwrCache>;
  /** The value under `key`, fetched with `fetcher` when there is no usable one. */
  get<T = unknown>(key: string, fetcher: SwrFetcher<T>, options?: SwrGetOptions): Promise<SwrResult<T>>;
  /** The stored value under `key` without fetching or refreshing, or `undefined`. */
  peek<T = unknown>(key: string): Promise<SwrResult<T> | undefined>;
  /** Stores `value` under `key` with the cache's TTL; the latest write or delete wins. */
  set(key: string, value: unknown): Promise<void>;
  /** Removes `key`; a fetch that started earlier never brings it back. */
  delete(key: string): Promise<void>;
  /** Resolves when every background refresh running now has finished. */
  pending(): Promise<void>;
  /** Counters since the cache was opened. */
  stats(): SwrStats;
  /** Frees the cache; later calls reject with kind "closed". */
  close(): void;
  [Symbol.dispose](): void;
}
