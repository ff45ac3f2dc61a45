// Any bundler, no loader settings: the module travels inside the JavaScript
// as base64 (a third larger than the `.wasm`), e.g. for esbuild.
import { initSync, SwrEngine } from "../wasm/swre.js";
import { base64 } from "../wasm/swre_bg.wasm.base64.js";
import { define } from "./cache.js";

function bytes(text) {
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

export const SwrCache = define(() => {
  initSync({ module: bytes(base64) });
  return SwrEngine;
});
