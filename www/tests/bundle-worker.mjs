// Bundles a Worker the way wrangler does: esbuild with the `workerd` and
// `worker` conditions, `.wasm` imports kept as separate compiled modules,
// `cloudflare:` imports left to the runtime.
// Resolves to Miniflare `modules` / `modulesRoot` options.
import { build } from "esbuild";
import { mkdtemp, copyFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

export async function bundleWorker(entry, { nodePaths = [] } = {}) {
  const dir = await mkdtemp(path.join(os.tmpdir(), "swre-worker-"));
  const wasm = new Map();
  const out = await build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: "neutral",
    conditions: ["workerd", "worker", "browser"],
    mainFields: ["module", "main"],
    // The runtime's own modules (`cloudflare:workers`), as wrangler leaves them.
    external: ["cloudflare:*"],
    nodePaths,
    write: false,
    logLevel: "silent",
    plugins: [
      {
        name: "wasm-modules",
        setup(b) {
          b.onResolve({ filter: /\.wasm$/ }, (args) => {
            const file = path.resolve(args.resolveDir, args.path);
            const name = `${wasm.size}-${path.basename(file)}`;
            wasm.set(name, file);
            return { path: `./${name}`, external: true };
          });
        },
      },
    ],
  });
  const script = path.join(dir, "worker.mjs");
  await writeFile(script, out.outputFiles[0].contents);
  const modules = [{ type: "ESModule", path: script }];
  for (const [name, file] of wasm) {
    await copyFile(file, path.join(dir, name));
    modules.push({ type: "CompiledWasm", path: path.join(dir, name) });
  }
  return { modulesRoot: dir, modules, dir };
}
