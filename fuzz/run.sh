#!/usr/bin/env bash
# Fuzzes each target for a bounded time (default 60 s each), growing the
# committed corpus. Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`).
# Usage: bash fuzz/run.sh [seconds-per-target]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz
for target in envelope_decode codec_decode file_storage_read http_headers; do
  mkdir -p "corpus/$target"
  echo "==> $target for ${secs}s"
  cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$secs" -max_len=4096 2>&1 | grep -E "^(#[0-9]+ +DONE|Done|INFO: -max_total_time|.*ERROR)" || true
done
