// Memory per entry in Node: 100,000 small entries filled by `get`, the JS
// heap (after a full collection) plus, for swre, wasm linear memory.
// Run as `node bench/node-memory.mjs <swre|lru-cache|Map SWR>`; prints bytes per entry.
import v8 from "node:v8";
import { readFileSync } from "node:fs";
import { runInNewContext } from "node:vm";
import { SwrCache } from "swre";
import { initSync } from "../package/wasm/swre.js";
import { LRUCache } from "lru-cache";
import { contenders } from "./workloads.mjs";

v8.setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc");
const N = 100_000;
const which = process.argv[2];
const libs = await contenders({ SwrCache, LRUCache });
const wasm = initSync({ module: readFileSync(new URL("../package/wasm/swre_bg.wasm", import.meta.url)) });
const used = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed + wasm.memory.buffer.byteLength;
};
const { get } = libs[which];
await get("first", () => 0);
const before = used();
for (let i = 0; i < N; i++) await get(`user:${i}`, () => ({ id: i, name: `user ${i}` }));
const perEntry = (used() - before) / N;
process.stdout.write(JSON.stringify(perEntry));
