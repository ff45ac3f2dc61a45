#!/usr/bin/env python3
"""Instructions per fresh hit, counted by valgrind's cachegrind: each mode of
the hitloop example runs at two sizes and the difference is divided by the
difference in hits, so set-up cost drops out. The counts do not depend on
the machine's load, so runs on different machines compare.

Usage: instructions.py HITLOOP_BINARY OUT_JSON
"""
import json
import os
import re
import subprocess
import sys

MODES = ["engine", "raw", "typed", "quick", "moka", "stale", "xfetch"]
SMALL, LARGE = 200_000, 600_000


def refs(binary, mode, n):
    out = subprocess.run(
        ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null", binary, mode],
        env={**os.environ, "HITLOOP_N": str(n)},
        capture_output=True, text=True, check=True,
    ).stderr
    m = re.search(r"I\s+refs:\s+([\d,]+)", out)
    if not m:
        sys.exit(f"no instruction count from cachegrind for {mode}:\n{out}")
    return int(m.group(1).replace(",", ""))


def main():
    binary, out = sys.argv[1:3]
    per_hit = {}
    for mode in MODES:
        per_hit[mode] = (refs(binary, mode, LARGE) - refs(binary, mode, SMALL)) / (LARGE - SMALL)
        print(f"{mode}: {per_hit[mode]:.1f} instructions per hit")
    with open(out, "w") as f:
        json.dump(per_hit, f)


if __name__ == "__main__":
    main()
