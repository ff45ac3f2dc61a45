// Node: the module is read from the package directory on first `open`.
import { readFileSync } from "node:fs";
import { initSync, SwrEngine } from "../wasm/swre.js";
import { define } from "./cache.js";

export const SwrCache = define(() => {
  initSync({ module: readFileSync(new URL("../wasm/swre_bg.wasm", import.meta.url)) });
  return SwrEngine;
});
