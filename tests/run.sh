#!/usr/bin/env bash
# The one test command: installs what it needs when missing, then runs every
# check. Idempotent, no prompts. Usage: bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

step() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

ensure_target() {
  if ! rustup target list --installed | grep -qx "$1"; then
    step "installing Rust target $1"
    rustup target add "$1"
  fi
}

ensure_component() {
  if ! rustup component list --installed | grep -q "^$1"; then
    step "installing rustup component $1"
    rustup component add "$1"
  fi
}

# Debian packages, installed together when any is missing.
ensure_debs() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    step "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# wasm-bindgen-cli at exactly the wasm-bindgen version in Cargo.lock.
ensure_wasm_bindgen_cli() {
  local want have
  want=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
  have=$(wasm-bindgen --version 2>/dev/null | awk '{ print $2 }' || true)
  if [ -z "$want" ]; then
    echo "cannot find wasm-bindgen in Cargo.lock" >&2
    exit 1
  fi
  if [ "$have" != "$want" ]; then
    step "installing wasm-bindgen-cli $want (found: ${have:-none})"
    cargo install wasm-bindgen-cli --version "$want" --force
  fi
}

# A full run from a fresh clone writes about 3 GB of build output (3.1 GB
# measured); say up front when the disk is short of that, so a failure later
# reads as what it is.
avail_kb=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ -n "$avail_kb" ] && [ "$avail_kb" -lt 4000000 ]; then
  echo "warning: only $((avail_kb / 1024)) MB free on $(df -P . | awk 'NR == 2 { print $6 }'); the build needs about 3 GB" >&2
fi

ensure_component rustfmt
ensure_component clippy
ensure_target thumbv7em-none-eabihf
ensure_target wasm32-unknown-unknown
ensure_debs chromium chromium-driver redis-server
if ! command -v npm >/dev/null 2>&1; then
  ensure_debs nodejs npm
fi
ensure_wasm_bindgen_cli

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (workspace, all targets, -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo clippy for wasm32 (swre-core with its testing feature; swre-wasm, all targets)"
cargo clippy -p swre-core --lib --features testing --target wasm32-unknown-unknown -- -D warnings
cargo clippy -p swre-wasm --all-targets --target wasm32-unknown-unknown -- -D warnings

step "no_std: swre-core for thumbv7em-none-eabihf and wasm32-unknown-unknown"
cargo build -p swre-core --no-default-features --target thumbv7em-none-eabihf
cargo build -p swre-core --no-default-features --target wasm32-unknown-unknown

step "rustdoc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --exclude swre-wasm --no-deps --quiet
RUSTDOCFLAGS="-D warnings" cargo doc -p swre-wasm --no-deps --quiet --target wasm32-unknown-unknown

step "benchmarks build (they are run by benches/run.sh, never timed here)"
cargo build -q -p swre-benches --all-targets

step "native tests (unit, integration, doc; property tests, fuzz corpus, fault injection, short soak)"
cargo test --workspace -- --skip fleet::three_processes

step "fleet: three processes on one redis-server (burst, invalidation lag, kill -9 of Redis); figures printed"
cargo test -q -p swre-tests --test native fleet::three_processes -- --nocapture

step "deterministic simulation: 100,000 seeded runs of the engine (release build)"
cargo test --release -p swre-core --test sim

step "Miri over the one unsafe module (ShardLock), 32 seeds, pinned nightly"
bash tests/miri.sh

step "browser tests: swre-wasm in headless Chromium (wasm-bindgen-test-runner)"
CHROMEDRIVER=/usr/bin/chromedriver \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
WASM_BINDGEN_TEST_WEBDRIVER_JSON="$ROOT/platform-wasm/webdriver.json" \
WASM_BINDGEN_TEST_TIMEOUT=180 \
  cargo test -p swre-wasm --target wasm32-unknown-unknown

step "npm ci (www: test tools, and binaryen's wasm-opt and esbuild for the package build)"
(cd www && npm ci --no-audit --no-fund --loglevel=error)

step "JavaScript package: wasm-release profile, wasm-bindgen --target web, wasm-opt"
bash www/build.sh

step "JS package: Node tests, workerd (Miniflare), the demo page in Chromium, and the packed tarball in seven settings"
(cd www && npm test)

step "quickstart (the README's main job)"
cargo run -q -p swre-native --example quickstart -- "${TMPDIR:-/tmp}/swre-quickstart-ci"

step "prometheus example: the engine's metrics through the metrics facade, rendered as Prometheus text"
cargo run -q -p swre-native --features metrics --example prometheus

step "axum_cache example: the tower layer in front of an axum route, over real HTTP on loopback"
cargo run -q -p swre-native --features tower --example axum_cache

step "fleet example: three instances with a backplane, on a redis-server the example starts on a free loopback port"
cargo run -q -p swre-native --features redis,metrics --example fleet

step "all checks passed"
