#!/usr/bin/env bash
# Miri over ShardLock, the crate's one `unsafe` module
# (core/src/storage/memory/lock.rs): its tests run under Miri's data-race
# detector and weak-memory emulation, on many scheduler seeds.
# Installs the pinned nightly with miri + rust-src when missing; idempotent,
# no prompts. Usage: bash tests/miri.sh   (docs/MIRI.md says why this nightly)
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: Miri from before mid-July 2026 reports a false data race here
# (rust-lang/miri#5104, fixed by miri PR #5111); this nightly has the fix.
TOOLCHAIN=nightly-2026-08-01
# Seeds 0..SEEDS; each seed is one full run of the lock tests.
SEEDS=${MIRI_SEEDS:-32}
# One Miri sysroot per toolchain, so that another nightly's `cargo miri`
# (which builds into the shared default cache) never forces a rebuild here.
export MIRI_SYSROOT="${XDG_CACHE_HOME:-$HOME/.cache}/miri-sysroot/$TOOLCHAIN"

start=$SECONDS
step() { printf '\n==> %s\n' "$*"; }

if ! rustup toolchain list | grep -q "^$TOOLCHAIN"; then
  step "installing $TOOLCHAIN with miri and rust-src"
  rustup toolchain install "$TOOLCHAIN" --profile minimal \
    --component miri,rust-src --no-self-update
else
  installed=$(rustup component list --toolchain "$TOOLCHAIN" --installed)
  missing=()
  grep -q '^miri' <<<"$installed" || missing+=(miri)
  grep -q '^rust-src' <<<"$installed" || missing+=(rust-src)
  if [ ${#missing[@]} -gt 0 ]; then
    step "adding ${missing[*]} to $TOOLCHAIN"
    rustup component add --toolchain "$TOOLCHAIN" "${missing[@]}"
  fi
fi

step "cargo +$TOOLCHAIN miri setup (a no-op once the sysroot is built)"
cargo "+$TOOLCHAIN" miri setup

step "ShardLock tests under Miri, seeds 0..$SEEDS"
MIRIFLAGS="-Zmiri-many-seeds=0..$SEEDS ${MIRIFLAGS:-}" \
  cargo "+$TOOLCHAIN" miri test -p swre-core --lib storage::memory::lock::tests::

step "miri: ShardLock tests passed on $SEEDS seeds in $((SECONDS - start)) s"
