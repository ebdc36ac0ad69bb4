#!/usr/bin/env bash
# Runs N seeds of the deterministic simulator (crates/sim) in a release build and prints
# one line per seed (its faults), seeds per minute, the failures and the command that
# replays each. Usage: scripts/simulate.sh N [START]   (N defaults to 100, START to 0)
# Exits non-zero if any seed failed.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100}"
start="${2:-0}"
exec cargo run --release -q -p sim --example simulate -- --seeds "$n" --start "$start"
