#!/usr/bin/env bash
# Builds the JavaScript package (ES module + .wasm) into www/pkg with
# wasm-bindgen, from the size-optimised `wasm-release` profile.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
cargo build -q -p swre-wasm --target wasm32-unknown-unknown --profile wasm-release
rm -rf www/pkg
wasm-bindgen --target web --out-dir www/pkg --out-name swre \
  "$target_dir/wasm32-unknown-unknown/wasm-release/swre_wasm.wasm"
raw=$(wc -c < www/pkg/swre_bg.wasm)
gz=$(gzip -9c www/pkg/swre_bg.wasm | wc -c)
js=$(gzip -9c www/pkg/swre.js | wc -c)
echo "www/pkg: swre_bg.wasm ${raw} bytes (${gz} gzip -9), swre.js ${js} bytes gzip"
