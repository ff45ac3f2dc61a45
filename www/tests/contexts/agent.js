// What each browsing context of the cross-context tests (three pages, a
// module worker, a service worker; contexts.test.mjs) runs: SwrCaches over
// one IndexedDB database, driven through `self.agent` by the test (Playwright
// evaluates in pages and workers alike).
import { SwrCache } from "../../package/src/web.js";

const caches = new Map();
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The cache named `name` (an IndexedDB database), opened once. */
function cache(name) {
  let c = caches.get(name);
  if (c === undefined) {
    c = SwrCache.open({ name, storage: "indexeddb", fresh: 60_000, stale: 60_000, refreshTimeout: 15_000 });
    caches.set(name, c);
  }
  return c;
}

/** A fetcher answering the text of `url` (the test's counting origin). */
const fromOrigin = (url) => async () => (await fetch(url)).text();

/** What a settled lookup shows: its value and status, or its error. */
const outcome = (p) =>
  p.then(
    (r) => ({ value: r.value, status: r.status }),
    (e) => ({ error: `${e.kind ?? e.name}: ${e.message}` }),
  );

self.agent = {
  /** The kind of context this is. */
  kind: typeof window !== "undefined" ? "page" : typeof registration !== "undefined" ? "service worker" : "worker",

  /**
   * Takes `navigator.locks` and/or `BroadcastChannel` away (as in an
   * insecure context or an old browser), or gives them back.
   */
  without({ locks = false, channel = false } = {}) {
    if (locks) Object.defineProperty(navigator, "locks", { value: undefined, configurable: true });
    else delete navigator.locks;
    if (channel) {
      self.savedChannel ??= globalThis.BroadcastChannel;
      globalThis.BroadcastChannel = undefined;
    } else if (self.savedChannel !== undefined) {
      globalThis.BroadcastChannel = self.savedChannel;
    }
  },

  async open(name) {
    await cache(name);
    return self.agent.kind;
  },

  /** `get(key)` fetching `url`; with when it started and ended. */
  async get(name, key, url) {
    const c = await cache(name);
    const start = now();
    const r = await outcome(c.get(key, fromOrigin(url)));
    return { ...r, start, end: now() };
  },

  /** Starts a `get` and returns at once (its result is kept for `result`). */
  async start(name, key, url) {
    self.started = self.agent.get(name, key, url);
    return now();
  },

  result: () => self.started,

  async delete(name, key) {
    const c = await cache(name);
    const start = now();
    await c.delete(key);
    return { start, end: now() };
  },

  async run(name, op, ...args) {
    const c = await cache(name);
    await c[op](...args);
  },

  /**
   * Looks `key` up every millisecond or so until `until` (epoch ms), with a
   * fetcher answering "refetched" at once: when each lookup that answered
   * `old` ended, and how many lookups started after `after` answered it.
   */
  async probe(name, key, old, after, until) {
    const c = await cache(name);
    let lastOld = 0, olds = 0, oldsAfter = 0, others = 0, othersAfter = 0, firstStatus;
    while (now() < until) {
      const start = now();
      const r = await c.get(key, () => "refetched");
      firstStatus ??= r.status;
      if (r.value === old) {
        lastOld = now();
        olds++;
        if (start > after) oldsAfter++;
      } else {
        others++;
        if (start > after) othersAfter++;
      }
      await sleep(1);
    }
    return { lastOld, olds, oldsAfter, others, othersAfter, firstStatus };
  },

  async stats(name) {
    return (await cache(name)).stats();
  },
};
