// The script hosting the Durable Objects of tests/coordinator.workerd.test.mjs:
// the package's SwrCoordinator, and three that fail in the ways a coordinator
// can be unreachable (throws, lacks the methods, never answers in time).
import { DurableObject } from "cloudflare:workers";
export { SwrCoordinator } from "../package/src/coordinator.js";

export class Broken extends DurableObject {
  acquire() {
    throw new Error("the coordinator is broken");
  }
}

export class Missing extends DurableObject {}

export class Hung extends DurableObject {
  acquire() {
    return new Promise((resolve) => setTimeout(() => resolve("lease"), 30_000));
  }
}

export default {
  fetch() {
    return new Response("the coordinators' host");
  },
};
