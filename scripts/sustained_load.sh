#!/bin/bash
# Sustained load on a release playground of 3 stores, with one line per second per store
# from scripts/sample_stores.py (docs/performance.md, "Sustained load").
#
#   scripts/sustained_load.sh OUT_DIR demo    # tessera playground --demo (16 writers, 1 KiB)
#   scripts/sustained_load.sh OUT_DIR seq     # tessera-bench --workload load (sequential keys)
#
# Environment: MB (default 400 for demo, 200 for seq), SPLIT_MB (region split size, default
# 8; 1024 keeps everything in one region), SETTLE (seconds to wait after a seq load before
# measuring the directories, default 20), BIN (default target/release), PD_PORT (27479),
# STORE_PORT (27260).
# OUT_DIR gets play.out (the playground's output: per-second puts, latency), bench.out (seq),
# samples.tsv (per second and store: raft log fsyncs, KV syncs and writes, machine CPU and
# disk writes, poller time, splits, snapshots, journal / table / raft-log MiB) and
# du_end.txt (the stores' kv/ and raft/ bytes at the end). Data and logs stay in OUT_DIR/data.
set -eu
OUT=$1
LOAD=${2:-demo}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
PD_PORT=${PD_PORT:-27479}
STORE_PORT=${STORE_PORT:-27260}
SPLIT_MB=${SPLIT_MB:-8}
if [ "$LOAD" = demo ]; then MB=${MB:-400}; else MB=${MB:-200}; fi
export RUST_LOG=${RUST_LOG:-info,fjall=debug}
mkdir -p "$OUT"
DIR=$OUT/data
[ -e "$DIR" ] && { echo "$DIR exists" >&2; exit 2; }

common=(--dir "$DIR" --pd-addr "127.0.0.1:$PD_PORT" --store-port "$STORE_PORT"
        --region-split-size-mb "$SPLIT_MB")
if [ "$LOAD" = demo ]; then
  "$BIN/tessera" playground "${common[@]}" --demo --demo-mb "$MB" > "$OUT/play.out" 2>&1 &
else
  "$BIN/tessera" playground "${common[@]}" --keep-running > "$OUT/play.out" 2>&1 &
fi
PLAY=$!
for _ in $(seq 240); do
  grep -q "cluster ready" "$OUT/play.out" && break
  kill -0 $PLAY 2>/dev/null || { cat "$OUT/play.out"; exit 1; }
  sleep 0.5
done
ADDRS=$(grep -o 'http://[0-9.:]*/metrics' "$OUT/play.out" | grep -v ":$PD_PORT/" \
        | sed 's#http://##; s#/metrics##')
# shellcheck disable=SC2086
python3 "$ROOT/scripts/sample_stores.py" "$DIR" $ADDRS > "$OUT/samples.tsv" &
SAMPLER=$!
if [ "$LOAD" = demo ]; then
  wait $PLAY || true
else
  "$BIN/tessera-bench" --target tikv --endpoints "127.0.0.1:$PD_PORT" --workload load \
    --clients 16 --value-size 1024 --max-ops $((MB * 1024)) --duration 3600 \
    > "$OUT/bench.out" 2>&1 || true
  sleep "${SETTLE:-20}"
  du -sb "$DIR"/store*/kv "$DIR"/store*/raft > "$OUT/du_end.txt"
  kill -TERM $PLAY
  wait $PLAY || true
fi
[ -f "$OUT/du_end.txt" ] || du -sb "$DIR"/store*/kv "$DIR"/store*/raft > "$OUT/du_end.txt"
kill $SAMPLER 2>/dev/null || true
grep -E "^(wrote|put latency|puts per second)" "$OUT/play.out" || true
[ -f "$OUT/bench.out" ] && grep -E "ops/s  |latency|per second" "$OUT/bench.out" | grep -v "^ *run" || true
cat "$OUT/du_end.txt"
