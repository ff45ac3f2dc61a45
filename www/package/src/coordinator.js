// `SwrCoordinator`: the Durable Object class that coalesces upstream calls
// across Workers isolates (`import { SwrCoordinator } from "swre/coordinator"`,
// exported from the Worker's main module and bound in wrangler.toml). Each
// object holds the leases of the keys hashed to its bucket (flights.js);
// `SwrCache` (coordinated.js) calls it over RPC. State lives in memory only:
// an object that restarts forgets its flights, and callers it forgot call
// the origin themselves.
import { DurableObject } from "cloudflare:workers";
import { Flights } from "./flights.js";

export class SwrCoordinator extends DurableObject {
  #flights = new Flights();

  /**
   * Asks for `key`'s lease: `"lease"` (call the origin, renewing it), `"wait"`
   * (at most `ms`), or `"alone"` (the flight started more than `writtenAgo` ms
   * ago, before the caller's write: call the origin without it).
   */
  acquire(key, id, ms, writtenAgo) {
    return this.#flights.acquire(key, id, ms, writtenAgo);
  }

  /** Resolves to `{ result }`, `{ lease: true }`, `{ late: true }` or `{ gone: true }`. */
  wait(id) {
    return this.#flights.wait(id);
  }

  /** Holder `id` keeps its lease a while longer; `false` if it no longer holds it. */
  renew(key, id) {
    return this.#flights.renew(key, id);
  }

  /** Hands the holder's result to every waiter; `false` if `id` no longer holds the lease. */
  publish(key, id, result) {
    return this.#flights.publish(key, id, result);
  }

  /** `id` gives up its lease (to the waiter with the most time left) or stops waiting. */
  release(key, id) {
    this.#flights.release(key, id);
  }

  /** `{ flights, waiters }`: what this object holds now. */
  inspect() {
    return this.#flights.inspect();
  }
}
