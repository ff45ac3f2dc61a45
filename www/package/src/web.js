// Browsers, web and service workers, and bundlers that understand
// `new URL("…", import.meta.url)` (Vite, webpack, Rollup, Parcel): the
// module is fetched on first `open`, so no top-level await is needed.
import init, { SwrEngine } from "../wasm/swre.js";
import { define } from "./cache.js";

export const SwrCache = define(async () => {
  await init({ module_or_path: new URL("../wasm/swre_bg.wasm", import.meta.url) });
  return SwrEngine;
});
