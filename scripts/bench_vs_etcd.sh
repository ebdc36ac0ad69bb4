#!/usr/bin/env bash
# bench_vs_etcd.sh — the same workloads against a 3-member etcd and a 3-store Tessera
# cluster on this machine, side by side.
#
# What it does:
#   1. builds target/release/tessera-bench (and target/release/tessera unless BENCH_ONLY=etcd);
#   2. installs Debian's etcd-server and etcd-client with apt-get if `etcd` is not on PATH;
#   3. starts a 3-member etcd cluster on 127.0.0.1 (its own client and peer ports, data in a
#      temporary directory, default durability: every member fsyncs its WAL), waits until
#      all members are healthy, runs the plan below, then stops etcd;
#   4. starts `tessera playground --dir <tmp> --pd-addr 127.0.0.1:<port> --stores 3` in the
#      background, waits until PD's GET /pd/api/v1/stores reports 3 stores, lets it settle,
#      runs the same plan with the tikv target, then stops it (SIGTERM, then waits);
#   5. prints one table: per row, both systems' ops/s, the ratio (tessera / etcd), p99 and
#      p999 latency, errors and (transactions) conflicts; then why any run failed.
#
# The plan (each run BENCH_DURATION seconds after BENCH_WARMUP seconds of warm-up):
#   write         puts of 256-byte values, at each of BENCH_CLIENTS;
#   read          gets only, over a preloaded key space of BENCH_READ_KEYS keys, at each of
#                 BENCH_CLIENTS;
#   txn-transfer  bank transfers over BENCH_TXN_ACCOUNTS accounts, at each of
#                 BENCH_TXN_CLIENTS: read two accounts, move an amount, write both, commit;
#                 a conflict is retried and counted; the tool checks at the end that the
#                 balances still add up (a run that breaks that fails). etcd: Range both,
#                 then a Txn comparing both mod_revisions. Tessera: optimistic Percolator
#                 transactions through tikv-client, and in addition each mode of
#                 BENCH_TXN_MODES (async-commit, one-pc, pessimistic) at the largest of
#                 BENCH_TXN_CLIENTS; etcd has one kind of transaction, so those rows compare
#                 with etcd's txn-transfer at the same client count.
# A run that fails (the target refuses, times out, or breaks the balance check) is reported
# in its row and below the table; the script goes on with the next run. If a system cannot
# be started at all, its rows all say so. The exit status is 0 when every run succeeded,
# 1 otherwise (after the table).
#
# Everything it starts is stopped and its temporary directory removed on any exit (trap).
# Every run's JSON result and log and every server log stay in the work directory until
# then; set BENCH_KEEP=1 to keep it.
#
# Usage: scripts/bench_vs_etcd.sh
# Environment (all optional):
#   BENCH_DURATION     measured seconds per run (default 10)
#   BENCH_WARMUP       unmeasured seconds before each run (default 1)
#   BENCH_WORKLOADS    parts of the plan to run (default "write read txn-transfer")
#   BENCH_CLIENTS      client counts for write and read (default "1 16 64 256")
#   BENCH_VALUE_SIZE   value size in bytes for write and read (default 256)
#   BENCH_READ_KEYS    key space preloaded for read (default 10000)
#   BENCH_TXN_CLIENTS  client counts for txn-transfer (default "16 64")
#   BENCH_TXN_ACCOUNTS accounts in the txn-transfer bank (default 1000)
#   BENCH_TXN_MODES    further Tessera transaction modes (default "async-commit one-pc";
#                      "" for none)
#   BENCH_ONLY         "etcd" or "tessera" to run one half only (default: both)
#   BENCH_PORT_BASE    first loopback port used (default 32379): etcd clients on base..base+2,
#                      etcd peers on base+10..base+12, Tessera's PD on base+100
#   BENCH_API_VERSION  TiKV API version for the playground and the client (default 1)
#   BENCH_CLIENTS_PER_CONNECTION  etcd clients sharing one connection (default 8): etcd
#                      gets one connection to its leader per this many clients (the leader
#                      is found with Maintenance Status; if none is, connections go to the
#                      members in turn). Tessera's clients share one tikv-client (its
#                      fastest set-up here; tessera-bench --clients-per-connection changes it)
#   BENCH_POLLERS      raft pollers per store (`playground --store-pool-size`; default 0:
#                      one per four cores, at least one)
#   BENCH_SETTLE       seconds to wait after the stores registered (default 3)
#   BENCH_RUN_TIMEOUT  seconds a run may take beyond duration + warm-up, preload included,
#                      before it is stopped and counted as failed (default 180)
#   BENCH_KEEP         1: keep the work directory (logs, JSON results)
#   CARGO_BUILD_JOBS   passed through to cargo (use 1 on a shared 2-core machine)
# Both systems and the load generator share this machine's cores: the figures compare the
# two systems under the same conditions, not either one's best case on dedicated hardware.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-1}"
WORKLOADS="${BENCH_WORKLOADS:-write read txn-transfer}"
CLIENTS="${BENCH_CLIENTS:-1 16 64 256}"
VALUE_SIZE="${BENCH_VALUE_SIZE:-256}"
READ_KEYS="${BENCH_READ_KEYS:-10000}"
TXN_CLIENTS="${BENCH_TXN_CLIENTS:-16 64}"
TXN_ACCOUNTS="${BENCH_TXN_ACCOUNTS:-1000}"
TXN_MODES="${BENCH_TXN_MODES-async-commit one-pc}"
ONLY="${BENCH_ONLY:-both}"
PORT_BASE="${BENCH_PORT_BASE:-32379}"
API_VERSION="${BENCH_API_VERSION:-1}"
POLLERS="${BENCH_POLLERS:-0}"
PER_CONNECTION="${BENCH_CLIENTS_PER_CONNECTION:-8}"
SETTLE="${BENCH_SETTLE:-3}"
RUN_TIMEOUT_EXTRA="${BENCH_RUN_TIMEOUT:-180}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BENCH="$TARGET_DIR/release/tessera-bench"
TESSERA="$TARGET_DIR/release/tessera"

case "$ONLY" in both | etcd | tessera) ;; *)
    echo "BENCH_ONLY must be etcd, tessera or unset, not '$ONLY'" >&2
    exit 2
    ;;
esac
for w in $WORKLOADS; do
    case "$w" in write | read | txn-transfer) ;; *)
        echo "BENCH_WORKLOADS: unknown workload '$w' (write, read, txn-transfer)" >&2
        exit 2
        ;;
    esac
done
for m in $TXN_MODES; do
    case "$m" in optimistic | pessimistic | async-commit | one-pc) ;; *)
        echo "BENCH_TXN_MODES: unknown mode '$m' (pessimistic, async-commit, one-pc)" >&2
        exit 2
        ;;
    esac
done
run_etcd() { [[ "$ONLY" != tessera ]]; }
run_tessera() { [[ "$ONLY" != etcd ]]; }
wants() { [[ " $WORKLOADS " == *" $1 "* ]]; }

log() { printf '\n== %s\n' "$*" >&2; }
die() {
    printf 'bench_vs_etcd: %s\n' "$*" >&2
    exit 1
}

WORK="$(mktemp -d "${TMPDIR:-/tmp}/bench_vs_etcd.XXXXXX")"
RUNS="$WORK/runs"
mkdir -p "$RUNS"
PIDS=()

# Stops whatever we started (SIGTERM, a grace period, then SIGKILL) and removes the
# temporary directory. Runs on every exit, including Ctrl-C and errors.
# The playground runs in a process group of its own (setsid) and stops its children itself
# on SIGTERM (up to 10 s per group of children); if it has to be killed, its whole group
# goes with it, so no scheduler or store outlives the run and holds the next run's ports.
stop_pids() {
    local pid
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for _ in $(seq 1 300); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        kill -KILL -- "-$pid" 2>/dev/null || true
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

# One JSON number field from a tessera-bench --json line ("ops_per_sec", "p99_us", ...);
# the first occurrence, which for these names is the top-level or latency one.
json_field() {
    local v
    v="$(grep -o "\"$2\":[-0-9.eE+]*" <<<"$1" | awk -F: 'NR == 1 { print $2 }')"
    printf '%s' "${v:-}"
}

# ---------------------------------------------------------------------------------------
# The plan: one line per run, "system|id|workload|clients|flags". The same id on both
# systems is the same run; rows of the table pair them (ROWS below).
PLAN=()
ROWS=() # "label|tessera id|etcd id"
if wants write; then
    for c in $CLIENTS; do
        PLAN+=("etcd|write.$c|write|$c|--value-size $VALUE_SIZE")
        PLAN+=("tessera|write.$c|write|$c|--value-size $VALUE_SIZE")
        ROWS+=("write|write.$c|write.$c")
    done
fi
if wants read; then
    for c in $CLIENTS; do
        PLAN+=("etcd|read.$c|read|$c|--value-size $VALUE_SIZE --keys $READ_KEYS")
        PLAN+=("tessera|read.$c|read|$c|--value-size $VALUE_SIZE --keys $READ_KEYS")
        ROWS+=("read|read.$c|read.$c")
    done
fi
if wants txn-transfer; then
    max_txn_clients=0
    for c in $TXN_CLIENTS; do
        PLAN+=("etcd|txn.$c|txn-transfer|$c|--keys $TXN_ACCOUNTS")
        PLAN+=("tessera|txn.$c|txn-transfer|$c|--keys $TXN_ACCOUNTS --txn-mode optimistic")
        ROWS+=("txn-transfer optimistic|txn.$c|txn.$c")
        ((c > max_txn_clients)) && max_txn_clients=$c
    done
    if ((max_txn_clients > 0)); then
        c=$max_txn_clients
        for m in $TXN_MODES; do
            [[ "$m" == optimistic ]] && continue
            PLAN+=("tessera|txn-$m.$c|txn-transfer|$c|--keys $TXN_ACCOUNTS --txn-mode $m")
            ROWS+=("txn-transfer $m *|txn-$m.$c|txn.$c")
        done
    fi
fi
((${#PLAN[@]})) || die "nothing to run (BENCH_WORKLOADS, BENCH_CLIENTS, BENCH_TXN_CLIENTS)"

# A run's files: $RUNS/SYSTEM.ID.{json,log,rc,err}. rc missing: not run (BENCH_ONLY).
mark_failed() {
    local sys=$1 id=$2 reason=$3
    echo 1 >"$RUNS/$sys.$id.rc"
    printf '%s\n' "$reason" >"$RUNS/$sys.$id.err"
    : >"$RUNS/$sys.$id.json"
}

# run_one SYSTEM TARGET ENDPOINTS ID WORKLOAD CLIENTS FLAGS [more flags...]: one run; never
# fails the script.
run_one() {
    local sys=$1 target=$2 endpoints=$3 id=$4 workload=$5 clients=$6 flags=$7
    shift 7
    local base="$RUNS/$sys.$id" rc reason limit
    limit=$(awk -v d="$DURATION" -v w="$WARMUP" -v x="$RUN_TIMEOUT_EXTRA" \
        'BEGIN { printf "%d", d + w + x + 0.999 }')
    log "$sys: $workload, $clients client(s), $flags $* (${DURATION}s + ${WARMUP}s warm-up)"
    set +e
    # shellcheck disable=SC2086 # $flags is a list of flags
    timeout --kill-after=10 "$limit" "$BENCH" --target "$target" --endpoints "$endpoints" \
        --workload "$workload" --clients "$clients" --duration "$DURATION" \
        --warmup "$WARMUP" --json $flags "$@" 2>&1 >"$base.json" | tee "$base.log" >&2
    rc=${PIPESTATUS[0]}
    set -e
    echo "$rc" >"$base.rc"
    if ((rc == 0)); then
        cat "$base.json" >&2
        return 0
    fi
    if ((rc == 124 || rc == 137)); then
        reason="timed out after ${limit}s"
    else
        reason="$(grep -h '^error:' "$base.log" | tail -n 1 | cut -c 1-300)"
        reason="${reason:-exit status $rc}"
    fi
    printf '%s\n' "$reason" >"$base.err"
    echo "run failed: $reason (continuing)" >&2
}

# run_plan SYSTEM TARGET ENDPOINTS [extra flags...]
# With PLAN_PART=raw only the write/read runs, with PLAN_PART=txn only txn-transfer.
run_plan() {
    local sys=$1 target=$2 endpoints=$3
    shift 3
    local entry s id workload clients flags
    for entry in "${PLAN[@]}"; do
        IFS='|' read -r s id workload clients flags <<<"$entry"
        [[ "$s" == "$sys" ]] || continue
        case "${PLAN_PART:-}:$workload" in
            raw:txn-transfer | txn:write | txn:read) continue ;;
        esac
        run_one "$sys" "$target" "$endpoints" "$id" "$workload" "$clients" "$flags" "$@"
    done
}

# fail_plan SYSTEM REASON: every run of SYSTEM failed for REASON (it could not be started).
fail_plan() {
    local sys=$1 reason=$2 entry s id rest
    echo "$sys: $reason; its runs are skipped" >&2
    local workload
    for entry in "${PLAN[@]}"; do
        IFS='|' read -r s id workload rest <<<"$entry"
        case "${PLAN_PART:-}:$workload" in
            raw:txn-transfer | txn:write | txn:read) continue ;;
        esac
        [[ "$s" == "$sys" ]] && mark_failed "$sys" "$id" "$reason"
    done
    return 0
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

# ---------------------------------------------------------------------------------------
# start_etcd: a 3-member cluster; sets ETCD_ENDPOINTS and ETCD_PIDS, or returns 1 with the
# reason in START_ERROR.
START_ERROR=""
start_etcd() {
    local cluster="" i client peer healthy body
    ETCD_ENDPOINTS=""
    for i in 0 1 2; do
        cluster+="${cluster:+,}m$i=http://127.0.0.1:$((PORT_BASE + 10 + i))"
        ETCD_ENDPOINTS+="${ETCD_ENDPOINTS:+,}127.0.0.1:$((PORT_BASE + i))"
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
    for _ in $(seq 1 60); do
        healthy=0
        for i in 0 1 2; do
            if ! kill -0 "${ETCD_PIDS[$i]}" 2>/dev/null; then
                START_ERROR="etcd member m$i exited: $(tail -n 2 "$WORK/etcd-m$i.log" | tr '\n' ' ')"
                return 1
            fi
            # Into a variable first: `grep -q` closing a pipe early would fail it (pipefail).
            if body="$(http_get $((PORT_BASE + i)) /health 2>/dev/null)" &&
                grep -q '"health": *"true"' <<<"$body"; then
                healthy=$((healthy + 1))
            fi
        done
        ((healthy == 3)) && return 0
        sleep 0.5
    done
    START_ERROR="etcd cluster not healthy after 30 s"
    return 1
}

ETCD_VERSION="-"
if run_etcd; then
    # awk reads all of it: `head` would close the pipe early and, under pipefail, fail.
    ETCD_VERSION="$(etcd --version 2>/dev/null | awk 'NR == 1 { print $NF }')"
    log "starting a 3-member etcd cluster ($ETCD_VERSION)"
    if start_etcd; then
        echo "etcd healthy at $ETCD_ENDPOINTS" >&2
        run_plan etcd etcd "$ETCD_ENDPOINTS" --clients-per-connection "$PER_CONNECTION"
    else
        fail_plan etcd "$START_ERROR"
    fi
    log "stopping etcd"
    stop_pids "${ETCD_PIDS[@]}"
    PIDS=()
fi

# ---------------------------------------------------------------------------------------
# start_tessera: the playground; sets TESSERA_PID, or returns 1 with the reason in
# START_ERROR.
start_tessera() {
    local body
    # The store's default region size (96 MiB, TiKV's), not the playground's 8 MiB that
    # makes its demo split: a cluster under comparison runs as configured in production.
    setsid "$TESSERA" playground --dir "$WORK/tessera-$1" --pd-addr "127.0.0.1:$PD_PORT" --stores 3 \
        --api-version "$API_VERSION" --store-pool-size "$POLLERS" --region-split-size-mb 96 \
        >"$WORK/tessera-$1.log" 2>&1 &
    TESSERA_PID=$!
    PIDS+=("$TESSERA_PID")
    for _ in $(seq 1 120); do
        if ! kill -0 "$TESSERA_PID" 2>/dev/null; then
            START_ERROR="tessera playground exited: $(tail -n 3 "$WORK/tessera-$1.log" | tr '\n' ' ')"
            return 1
        fi
        if body="$(http_get "$PD_PORT" /pd/api/v1/stores 2>/dev/null)" &&
            grep -q '"count": *3\b' <<<"$body"; then
            return 0
        fi
        sleep 0.5
    done
    START_ERROR="3 stores not registered with PD after 60 s"
    return 1
}

if run_tessera; then
    PD_PORT=$((PORT_BASE + 100))
    # In API V1 raw and transactional keys share one key space (as in TiKV), and the
    # regions the raw runs cut end at raw keys, which tikv-client's TransactionClient
    # cannot decode: the transactional runs get a fresh playground of their own.
    for PLAN_PART in raw txn; do
        log "starting tessera playground for the $PLAN_PART runs (PD 127.0.0.1:$PD_PORT, 3 stores, API v$API_VERSION)"
        if start_tessera "$PLAN_PART"; then
            echo "3 stores registered; settling ${SETTLE}s" >&2
            sleep "$SETTLE"
            run_plan tessera tikv "127.0.0.1:$PD_PORT" --api-version "$API_VERSION"
        else
            fail_plan tessera "$START_ERROR"
        fi
        log "stopping tessera"
        stop_pids "$TESSERA_PID"
        PIDS=()
    done
    PLAN_PART=""
fi

# ---------------------------------------------------------------------------------------
# The table. Rates are successful operations per second in the measured window (for
# txn-transfer: committed transfers, retries included in their latency); latencies are the
# 99th and 99.9th percentiles of successful operations, in milliseconds.
fmt_rate() { [[ -n "$1" ]] && printf '%.0f' "$1" || printf -- '-'; }
fmt_ms() { [[ -n "$1" ]] && awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }' || printf -- '-'; }

# cell SYSTEM ID: sets C_RATE (number or empty), C_SHOW (what the table prints), C_P99, C_P999,
# C_ERR, C_CONFL; C_FAILED=1 when the run failed.
cell() {
    local sys=$1 id=$2 base="$RUNS/$1.$2" json rc
    C_RATE="" C_P99="-" C_P999="-" C_ERR="-" C_CONFL="-" C_FAILED=0
    if [[ ! -f "$base.rc" ]]; then
        C_SHOW="-"
        return
    fi
    rc="$(cat "$base.rc")"
    json="$(cat "$base.json" 2>/dev/null || true)"
    if [[ -n "$json" ]]; then
        C_RATE="$(json_field "$json" ops_per_sec)"
        C_P99="$(fmt_ms "$(json_field "$json" p99_us)")"
        C_P999="$(fmt_ms "$(json_field "$json" p999_us)")"
        C_ERR="$(json_field "$json" errors)"
        if grep -q '"invariant"' <<<"$json"; then C_CONFL="$(json_field "$json" conflicts)"; fi
    fi
    if [[ "$rc" == 0 ]]; then
        C_SHOW="$(fmt_rate "$C_RATE")"
    else
        C_FAILED=1
        # A run with figures that failed broke the balance check: show them, marked.
        if [[ -n "$C_RATE" ]]; then
            C_SHOW="$(fmt_rate "$C_RATE")!"
            C_RATE=""
        else
            C_SHOW="FAILED"
        fi
    fi
}

echo
echo "${DURATION}s per run after ${WARMUP}s warm-up; $(nproc) cores shared by servers and client"
echo "etcd $ETCD_VERSION (3 members, WAL fsync, clients at the leader) vs tessera playground (3 stores, API v$API_VERSION); etcd: $PER_CONNECTION clients per connection; tessera: one shared tikv-client"
echo "write/read: ${VALUE_SIZE}-byte values, read over $READ_KEYS preloaded keys;" \
    "txn-transfer: $TXN_ACCOUNTS accounts"
fmt='%-28s %7s %11s %11s %7s %15s %15s %9s %9s\n'
printf "$fmt" workload clients "etcd ops/s" "tess ops/s" ratio "etcd p99/p999" "tess p99/p999" \
    "etcd e/c" "tess e/c"
any_failed=0
for row in "${ROWS[@]}"; do
    IFS='|' read -r label tid eid <<<"$row"
    clients="${tid##*.}"
    cell etcd "$eid"
    e_show=$C_SHOW e_rate=$C_RATE e_lat="$C_P99/$C_P999" e_ec="$C_ERR/$C_CONFL" e_failed=$C_FAILED
    cell tessera "$tid"
    t_show=$C_SHOW t_rate=$C_RATE t_lat="$C_P99/$C_P999" t_ec="$C_ERR/$C_CONFL" t_failed=$C_FAILED
    ((e_failed || t_failed)) && any_failed=1
    ratio="-"
    if [[ -n "$e_rate" && -n "$t_rate" ]]; then
        ratio="$(awk -v t="$t_rate" -v e="$e_rate" 'BEGIN { if (e > 0) printf "%.2f", t / e; else print "-" }')"
    fi
    [[ "$e_ec" == "-/-" ]] && e_ec="-"
    [[ "$t_ec" == "-/-" ]] && t_ec="-"
    [[ "$e_lat" == "-/-" ]] && e_lat="-"
    [[ "$t_lat" == "-/-" ]] && t_lat="-"
    printf "$fmt" "$label" "$clients" "$e_show" "$t_show" "$ratio" "$e_lat" "$t_lat" "$e_ec" "$t_ec"
done
echo "e/c: errors / conflicts (failed attempts, each retried) in the measured window;" \
    "! : the balances did not add up after the run"
[[ "$TXN_MODES" =~ [a-z] ]] && wants txn-transfer &&
    echo "* : Tessera only; the etcd column repeats etcd's txn-transfer at that client count"

if ((any_failed)); then
    echo
    echo "failed runs:"
    for f in "$RUNS"/*.err; do
        [[ -e "$f" ]] || continue
        name="$(basename "$f" .err)"
        printf '  %-28s %s\n' "$name" "$(cat "$f")"
    done
    exit 1
fi
