// Cloudflare Workers (workerd): wrangler bundles the `.wasm` import as a
// compiled module, so instantiation is synchronous and needs no fetch.
import wasm from "../wasm/swre_bg.wasm";
import { initSync, SwrEngine } from "../wasm/swre.js";
import { define } from "./cache.js";

export const SwrCache = define(
  () => {
    initSync({ module: wasm });
    return SwrEngine;
  },
  { keepAlive: true },
);
