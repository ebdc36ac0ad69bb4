#!/usr/bin/env bash
# profile.sh — where a 3-store playground spends its CPU under a write load (puts), from Linux perf.
#
# What it does:
#   1. builds target/release/tessera and target/release/tessera-bench (release builds keep
#      line tables: `debug = 1`), installs Debian's linux-perf if `perf` is missing;
#   2. starts `tessera playground --stores 3` in its own process group, waits for 3 stores;
#   3. for each client count of PROFILE_CLIENTS: runs `tessera-bench --workload write` (puts of 256-byte values) for
#      PROFILE_SECONDS while `perf record` samples every CPU of the machine on the software
#      clock (`cpu-clock`: hardware counters are not offered on these VMs) at PROFILE_HZ;
#   4. prints, per run: the bench's own figures, the CPU time per thread name (raft poller,
#      log writer, gRPC workers, the bench client, ...) as a share of what the machine had,
#      and the hottest functions of the store processes, overall and in the poller and the
#      log writer.
#
# Flat profiles (self time per function) need no frame pointers; call graphs of release
# Rust without them are unreliable, so none are taken. Figures from one run on a shared VM:
# compare shares within a run, not across machines.
#
# Usage: scripts/profile.sh
# Environment (all optional):
#   PROFILE_CLIENTS    client counts (default "1 64")
#   PROFILE_SECONDS    measured seconds per run (default 10)
#   PROFILE_HZ         samples per second per CPU (default 999)
#   PROFILE_TOP        functions listed per table (default 25)
#   PROFILE_PORT_BASE  the playground's PD port (default 33479; stores pick free ports)
#   PROFILE_KEEP       1: keep the work directory (perf.data files, logs)
#   PROFILE_POLLERS    raft pollers per store (`playground --store-pool-size`; default 0:
#                      one per four cores, at least one)
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${PROFILE_CLIENTS:-"1 64"}
SECONDS_PER_RUN=${PROFILE_SECONDS:-10}
HZ=${PROFILE_HZ:-999}
TOP=${PROFILE_TOP:-25}
PD_PORT=${PROFILE_PORT_BASE:-33479}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

log() { echo "[profile] $*" >&2; }
# perf pads its columns to the terminal's width and ends rows with unused columns.
tidy() { grep -E '^ +[0-9]' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]+$//'; }
die() { log "$*"; exit 1; }

cargo build --release -p tessera -p bench --bins >&2
TESSERA="$TARGET_DIR/release/tessera"
BENCH="$TARGET_DIR/release/tessera-bench"

if ! command -v perf >/dev/null 2>&1; then
    log "installing perf (Debian package linux-perf)"
    SUDO=""
    [[ "$(id -u)" != 0 ]] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq linux-perf >/dev/null
fi
command -v perf >/dev/null 2>&1 || die "perf is not on PATH"

WORK=$(mktemp -d /tmp/tessera-profile.XXXXXX)
PLAYGROUND_PID=""
cleanup() {
    if [[ -n "$PLAYGROUND_PID" ]] && kill -0 "$PLAYGROUND_PID" 2>/dev/null; then
        kill -TERM -- "-$PLAYGROUND_PID" 2>/dev/null || true
        for _ in $(seq 1 60); do
            kill -0 "$PLAYGROUND_PID" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL -- "-$PLAYGROUND_PID" 2>/dev/null || true
    fi
    if [[ "${PROFILE_KEEP:-0}" == 1 ]]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

log "starting the playground (PD 127.0.0.1:$PD_PORT, data in $WORK/cluster)"
setsid "$TESSERA" playground --dir "$WORK/cluster" --pd-addr "127.0.0.1:$PD_PORT" --stores 3 \
    --store-port $((PD_PORT + 10)) --store-pool-size "${PROFILE_POLLERS:-0}" \
    >"$WORK/playground.log" 2>&1 &
PLAYGROUND_PID=$!
up=0
for _ in $(seq 1 120); do
    if curl -fsS --max-time 2 "http://127.0.0.1:$PD_PORT/pd/api/v1/stores" 2>/dev/null |
        grep -q '"count": *3\b'; then
        up=1
        break
    fi
    kill -0 "$PLAYGROUND_PID" 2>/dev/null || die "the playground exited: $(tail -5 "$WORK/playground.log")"
    sleep 0.5
done
((up)) || die "3 stores did not register with the scheduler; see $WORK/playground.log"
sleep 3

# Store processes: children of the playground running `tessera server`.
store_pids=$(pgrep -f "$TESSERA server" | tr '\n' ',' | sed 's/,$//')
[[ -n "$store_pids" ]] || die "no store process found"

for c in $CLIENTS; do
    data="$WORK/perf-$c.data"
    log "run: put, $c client(s), ${SECONDS_PER_RUN}s, sampling all CPUs at ${HZ} Hz"
    perf record -q -a -e cpu-clock -F "$HZ" -o "$data" -- \
        "$BENCH" --target tikv --endpoints "127.0.0.1:$PD_PORT" --workload write \
        --clients "$c" --duration "$SECONDS_PER_RUN" --warmup 1 \
        >"$WORK/bench-$c.txt" 2>"$WORK/bench-$c.log" || die "the bench failed: $(tail -5 "$WORK/bench-$c.log")"
    echo
    echo "=== put, $c client(s) ==="
    grep -E "ops/s|p50|p99|stage" "$WORK/bench-$c.txt" | head -20 || true
    echo
    echo "--- CPU by thread name (share of all samples of all CPUs; idle included) ---"
    perf report -i "$data" --stdio --sort comm 2>/dev/null | tidy | sed -n "1,20p"
    echo
    echo "--- hottest functions in the store processes (self time) ---"
    echo "(share of the store processes' samples)"
    perf report -i "$data" --stdio --pid "$store_pids" --percentage relative \
        --sort dso,symbol 2>/dev/null | tidy | sed -n "1,${TOP}p"
    for thread in raft-poller raft-log-writer; do
        comms=$(perf report -i "$data" --stdio --sort comm 2>/dev/null \
            | grep -oE "$thread[-0-9]*" | sort -u | tr '\n' ',' | sed 's/,$//')
        [[ -n "$comms" ]] || continue
        echo
        echo "--- hottest functions in $thread (self time, share of that thread) ---"
        perf report -i "$data" --stdio --comms "$comms" --percentage relative \
            --sort symbol 2>/dev/null | tidy | sed -n "1,${TOP}p"
    done
done
