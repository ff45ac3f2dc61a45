#!/usr/bin/env bash
# The one test command: installs what it needs when missing, then runs every
# check. Idempotent, no prompts. Usage: bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

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

ensure_component rustfmt
ensure_component clippy
ensure_target thumbv7em-none-eabihf
ensure_target wasm32-unknown-unknown

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (workspace, all targets, -D warnings)"
cargo clippy --workspace --all-targets -- -D warnings

step "no_std: swre-core for thumbv7em-none-eabihf and wasm32-unknown-unknown"
cargo build -p swre-core --no-default-features --target thumbv7em-none-eabihf
cargo build -p swre-core --no-default-features --target wasm32-unknown-unknown

step "rustdoc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "native tests (unit, integration, doc)"
cargo test --workspace

step "quickstart (the README's main job)"
cargo run -q -p swre-native --example quickstart -- "${TMPDIR:-/tmp}/swre-quickstart-ci"

step "all checks passed"
