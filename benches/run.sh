#!/usr/bin/env bash
# Runs the benchmarks in quick mode (criterion, instruction counts per hit,
# the hit-ratio traces, then the JS package's benchmarks in Node and Chromium) and rewrites BENCHMARKS.md (and the hit
# latency chart) from that run. Usage: bash benches/run.sh [criterion filter]
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
rm -rf "$target_dir/criterion"
cargo bench -p swre-benches --bench cache -- --warm-up-time 0.5 --measurement-time 2 --noplot "$@"
# Instructions per fresh hit (valgrind's cachegrind; installed when missing).
if ! command -v valgrind >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then sudo_=""; else sudo_="sudo -n"; fi
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends valgrind
fi
cargo build -q --release -p swre-benches --example hitloop
python3 benches/instructions.py "$target_dir/release/examples/hitloop" "$target_dir/instructions.json"
# Hit ratios of MemoryStorage, moka and quick_cache on the same traces.
cargo run -q --release -p swre-benches --example hitratio -- "$target_dir/hitratio.json"
# Breaker recovery after an origin outage, beside moka (30 s of wall time).
cargo run -q --release -p swre-benches --example outage -- "$target_dir/outage.json"
# The JS package: needs www/package/wasm (bash www/build.sh) and www/node_modules (npm ci).
(cd www && node bench/run.mjs "$target_dir/js-bench.json")
python3 benches/report.py "$target_dir/criterion" BENCHMARKS.md benches/hit-latency.svg "$target_dir/js-bench.json" "$target_dir/hitratio.json" "$target_dir/instructions.json" "$target_dir/outage.json"
echo "wrote BENCHMARKS.md and benches/hit-latency.svg"
