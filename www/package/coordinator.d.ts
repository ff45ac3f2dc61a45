// Types of `swre/coordinator`: the Durable Object class that coalesces
// upstream calls across Cloudflare Workers isolates. Export it from the
// Worker's main module and bind it (wrangler.toml):
//
//   [[durable_objects.bindings]]
//   name = "SWRE_COORDINATOR"
//   class_name = "SwrCoordinator"
//
//   [[migrations]]
//   tag = "swre-coordinator-v1"
//   new_sqlite_classes = ["SwrCoordinator"]
//
// then open caches with `SwrCache.open({ name, coordinator: env.SWRE_COORDINATOR, … })`.
//
// In a Worker's `Env` type, declare the binding as a plain `DurableObjectNamespace` (no type
// argument): this declaration does not extend `DurableObject` from "cloudflare:workers", which
// would make the package's types need `@cloudflare/workers-types`, so the branded
// `DurableObjectNamespace<SwrCoordinator>` that `wrangler types` writes does not accept it.

/** What one coordinator object holds now. */
export interface SwrCoordinatorHeld {
  /** Keys whose lease is held (an upstream call in flight somewhere). */
  readonly flights: number;
  /** Calls of other isolates waiting for a holder's result (or whose result is not yet collected). */
  readonly waiters: number;
}

/**
 * The Durable Object class `SwrCache`'s `coordinator` option calls over RPC: it grants per-key
 * leases and hands the holder's result to the isolates waiting on the key. State is in memory
 * only: an object that restarts forgets its leases, and the callers it forgot call the origin
 * themselves. The methods other than `inspect` are the protocol `SwrCache` speaks. At run time
 * it extends `DurableObject` from "cloudflare:workers"; declared structurally here (see above:
 * bind it as an unparameterised `DurableObjectNamespace`).
 */
export declare class SwrCoordinator {
  constructor(ctx: unknown, env: unknown);
  /**
   * Asks for `key`'s lease: "lease" (call the origin, renewing the lease), "wait" (at most `ms`),
   * or "alone" (the flight started more than `writtenAgo` ms ago, before the caller's write).
   */
  acquire(key: string, id: string, ms: number, writtenAgo?: number): "lease" | "wait" | "alone";
  /** Holder `id` keeps its lease (3 s) a while longer; `false` if it no longer holds it. */
  renew(key: string, id: string): boolean;
  /** What waiter `id` gets: the holder's result, the lease (taken over), too late, or unknown. */
  wait(id: string): Promise<{ result: unknown } | { lease: true } | { late: true } | { gone: true }>;
  /** Hands the holder's result to every waiter of `key`; `false` if `id` no longer holds the lease. */
  publish(key: string, id: string, result: unknown): boolean;
  /** `id` gives up its lease (to a waiting caller) or stops waiting. */
  release(key: string, id: string): void;
  /** What this object holds now (all zero when nothing is in flight). */
  inspect(): SwrCoordinatorHeld;
}
