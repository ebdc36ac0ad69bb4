#!/usr/bin/env bash
# bench_vs_etcd.sh — the same write workload against a 3-member etcd and a 3-store Tessera
# cluster on this machine, side by side.
#
# What it does:
#   1. builds target/release/tessera-bench (and target/release/tessera unless BENCH_ONLY=etcd);
#   2. installs Debian's etcd-server and etcd-client with apt-get if `etcd` is not on PATH;
#   3. starts a 3-member etcd cluster on 127.0.0.1 (its own client and peer ports, data in a
#      temporary directory, default durability: every member fsyncs its WAL), waits until
#      all members are healthy, runs `--workload write` with 256-byte values for 1, 16 and 64
#      clients, then stops etcd;
#   4. starts `tessera playground --dir <tmp> --pd-addr 127.0.0.1:<port> --stores 3` in the
#      background, waits until PD's GET /pd/api/v1/stores reports 3 stores, lets it settle,
#      runs the same three runs with the tikv target, then stops it (SIGTERM, then waits);
#   5. prints a table: clients, etcd ops/s, tessera ops/s, ratio (tessera / etcd), p99 of both.
# Everything it starts is stopped and its temporary directory removed on any exit (trap).
# Every run's JSON result and every server log stay in the work directory until then; set
# BENCH_KEEP=1 to keep it.
#
# Usage: scripts/bench_vs_etcd.sh
# Environment (all optional):
#   BENCH_DURATION   measured seconds per run (default 10)
#   BENCH_WARMUP     unmeasured seconds before each run (default 1)
#   BENCH_CLIENTS    client counts (default "1 16 64")
#   BENCH_VALUE_SIZE value size in bytes (default 256)
#   BENCH_ONLY       "etcd" or "tessera" to run one half only (default: both)
#   BENCH_PORT_BASE  first loopback port used (default 32379): etcd clients on base..base+2,
#                    etcd peers on base+10..base+12, Tessera's PD on base+100
#   BENCH_API_VERSION  TiKV API version for the playground and the client (default 1)
#   BENCH_SETTLE     seconds to wait after the stores registered (default 3)
#   BENCH_KEEP       1: keep the work directory (logs, JSON results)
#   CARGO_BUILD_JOBS passed through to cargo (use 1 on a shared 2-core machine)
# Both systems and the load generator share this machine's cores: the figures compare the
# two systems under the same conditions, not either one's best case on dedicated hardware.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-1}"
CLIENTS="${BENCH_CLIENTS:-1 16 64}"
VALUE_SIZE="${BENCH_VALUE_SIZE:-256}"
ONLY="${BENCH_ONLY:-both}"
PORT_BASE="${BENCH_PORT_BASE:-32379}"
API_VERSION="${BENCH_API_VERSION:-1}"
SETTLE="${BENCH_SETTLE:-3}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BENCH="$TARGET_DIR/release/tessera-bench"
TESSERA="$TARGET_DIR/release/tessera"

case "$ONLY" in both | etcd | tessera) ;; *)
    echo "BENCH_ONLY must be etcd, tessera or unset, not '$ONLY'" >&2
    exit 2
    ;;
esac
run_etcd() { [[ "$ONLY" != tessera ]]; }
run_tessera() { [[ "$ONLY" != etcd ]]; }

log() { printf '\n== %s\n' "$*" >&2; }
die() {
    printf 'bench_vs_etcd: %s\n' "$*" >&2
    exit 1
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench_vs_etcd.XXXXXX")"
PIDS=()

# Stops whatever we started (SIGTERM, a grace period, then SIGKILL) and removes the
# temporary directory. Runs on every exit, including Ctrl-C and errors.
stop_pids() {
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((${#PIDS[@]})); then stop_pids "${PIDS[@]}"; fi
    if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
        echo "work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# GET http://127.0.0.1:$1$2, body on stdout; curl if present, else bash's /dev/tcp.
http_get() {
    local port=$1 path=$2
    if command -v curl >/dev/null 2>&1; then
        curl -fsS --max-time 2 "http://127.0.0.1:$port$path"
    else
        local reply
        exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
        reply="$(timeout 2 cat <&3)" || true
        exec 3<&-
        [[ "$reply" == "HTTP/1."?" 200"* ]] || return 1
        printf '%s\n' "${reply#*$'\r\n\r\n'}"
    fi
}

# One JSON number field from a tessera-bench --json line ("ops_per_sec", "p99_us", ...).
json_field() {
    local v
    v="$(grep -o "\"$2\":[-0-9.eE+]*" <<<"$1" | awk -F: 'NR == 1 { print $2 }')"
    printf '%s' "${v:-}"
}

# ---------------------------------------------------------------------------------------
log "building"
if run_tessera; then
    (cd "$ROOT" && cargo build --release -p tessera -p bench)
    [[ -x "$TESSERA" ]] || die "$TESSERA was not built"
else
    (cd "$ROOT" && cargo build --release -p bench)
fi
[[ -x "$BENCH" ]] || die "$BENCH was not built"

if run_etcd && ! command -v etcd >/dev/null 2>&1; then
    log "installing etcd (Debian packages etcd-server, etcd-client)"
    SUDO=""
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "etcd is missing and apt-get needs root"
        SUDO=sudo
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-server etcd-client >/dev/null
    command -v etcd >/dev/null 2>&1 || die "etcd still not on PATH after apt-get install"
fi

# run_series NAME TARGET ENDPOINTS [extra flags...]: one run per client count; results in
# $WORK/NAME-<clients>.json (a missing or empty file means the run failed).
run_series() {
    local name=$1 target=$2 endpoints=$3
    shift 3
    local c out
    for c in $CLIENTS; do
        log "$name: write, $c client(s), ${VALUE_SIZE}-byte values, ${DURATION}s (+${WARMUP}s warmup)"
        if out="$("$BENCH" --target "$target" --endpoints "$endpoints" --workload write \
            --clients "$c" --value-size "$VALUE_SIZE" --duration "$DURATION" \
            --warmup "$WARMUP" --json "$@")"; then
            printf '%s\n' "$out" >"$WORK/$name-$c.json"
            printf '%s\n' "$out" >&2
        else
            echo "run failed (see above)" >&2
            : >"$WORK/$name-$c.json"
        fi
    done
}

# ---------------------------------------------------------------------------------------
ETCD_VERSION="-"
if run_etcd; then
    # awk reads all of it: `head` would close the pipe early and, under pipefail, fail.
    ETCD_VERSION="$(etcd --version 2>/dev/null | awk 'NR == 1 { print $NF }')"
    log "starting a 3-member etcd cluster ($ETCD_VERSION)"
    cluster=""
    endpoints=""
    for i in 0 1 2; do
        cluster+="${cluster:+,}m$i=http://127.0.0.1:$((PORT_BASE + 10 + i))"
        endpoints+="${endpoints:+,}127.0.0.1:$((PORT_BASE + i))"
    done
    ETCD_PIDS=()
    for i in 0 1 2; do
        client="http://127.0.0.1:$((PORT_BASE + i))"
        peer="http://127.0.0.1:$((PORT_BASE + 10 + i))"
        etcd --name "m$i" --data-dir "$WORK/etcd/m$i" \
            --listen-client-urls "$client" --advertise-client-urls "$client" \
            --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token "bench-$$" >"$WORK/etcd-m$i.log" 2>&1 &
        ETCD_PIDS+=($!)
        PIDS+=($!)
    done
    healthy=0
    for _ in $(seq 1 60); do
        healthy=0
        for i in 0 1 2; do
            kill -0 "${ETCD_PIDS[$i]}" 2>/dev/null ||
                die "etcd member m$i exited; log: $(tail -n 5 "$WORK/etcd-m$i.log")"
            # Into a variable first: `grep -q` closing a pipe early would fail it (pipefail).
            if body="$(http_get $((PORT_BASE + i)) /health 2>/dev/null)" &&
                grep -q '"health": *"true"' <<<"$body"; then
                healthy=$((healthy + 1))
            fi
        done
        ((healthy == 3)) && break
        sleep 0.5
    done
    ((healthy == 3)) || die "etcd cluster not healthy after 30 s (logs in $WORK)"
    echo "etcd healthy at $endpoints" >&2

    run_series etcd etcd "$endpoints"

    log "stopping etcd"
    stop_pids "${ETCD_PIDS[@]}"
    PIDS=()
fi

# ---------------------------------------------------------------------------------------
if run_tessera; then
    pd_port=$((PORT_BASE + 100))
    log "starting tessera playground (PD 127.0.0.1:$pd_port, 3 stores, API v$API_VERSION)"
    "$TESSERA" playground --dir "$WORK/tessera" --pd-addr "127.0.0.1:$pd_port" --stores 3 \
        --api-version "$API_VERSION" >"$WORK/tessera.log" 2>&1 &
    TESSERA_PID=$!
    PIDS+=("$TESSERA_PID")
    ready=0
    for _ in $(seq 1 120); do
        kill -0 "$TESSERA_PID" 2>/dev/null ||
            die "tessera playground exited; log: $(tail -n 20 "$WORK/tessera.log")"
        if body="$(http_get "$pd_port" /pd/api/v1/stores 2>/dev/null)" &&
            grep -q '"count": *3\b' <<<"$body"; then
            ready=1
            break
        fi
        sleep 0.5
    done
    ((ready)) || die "3 stores not registered with PD after 60 s; log: $(tail -n 20 "$WORK/tessera.log")"
    echo "3 stores registered; settling ${SETTLE}s" >&2
    sleep "$SETTLE"

    run_series tessera tikv "127.0.0.1:$pd_port" --api-version "$API_VERSION"

    log "stopping tessera"
    stop_pids "$TESSERA_PID"
    PIDS=()
fi

# ---------------------------------------------------------------------------------------
# The table. Rates are successful operations per second in the measured window; p99 is the
# 99th percentile latency of successful operations, in milliseconds.
fmt_rate() { [[ -n "$1" ]] && printf '%.0f' "$1" || printf -- '-'; }
fmt_ms() { [[ -n "$1" ]] && awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }' || printf -- '-'; }

echo
echo "write, ${VALUE_SIZE}-byte values, ${DURATION}s per run, $(nproc) cores shared by servers and client"
echo "etcd $ETCD_VERSION (3 members, WAL fsync) vs tessera playground (3 stores, API v$API_VERSION)"
printf '%-8s %14s %14s %8s %14s %14s %8s %8s\n' clients "etcd ops/s" "tessera ops/s" ratio \
    "etcd p99 ms" "tessera p99 ms" "etcd err" "tess err"
for c in $CLIENTS; do
    e="$(cat "$WORK/etcd-$c.json" 2>/dev/null || true)"
    t="$(cat "$WORK/tessera-$c.json" 2>/dev/null || true)"
    e_rate="$(json_field "$e" ops_per_sec)"
    t_rate="$(json_field "$t" ops_per_sec)"
    ratio="-"
    if [[ -n "$e_rate" && -n "$t_rate" ]]; then
        ratio="$(awk -v t="$t_rate" -v e="$e_rate" 'BEGIN { if (e > 0) printf "%.2f", t / e; else print "-" }')"
    fi
    e_err="$(json_field "$e" errors)"
    t_err="$(json_field "$t" errors)"
    printf '%-8s %14s %14s %8s %14s %14s %8s %8s\n' "$c" "$(fmt_rate "$e_rate")" \
        "$(fmt_rate "$t_rate")" "$ratio" "$(fmt_ms "$(json_field "$e" p99_us)")" \
        "$(fmt_ms "$(json_field "$t" p99_us)")" "${e_err:--}" "${t_err:--}"
done
