#!/usr/bin/env bash
# What many regions cost: a 3-store playground (release build) is split into REGIONS
# regions through the scheduler, then the script prints, per store:
#   - idle CPU (utime + stime from /proc/<pid>/stat over IDLE_SECS, after SETTLE_SECS of
#     quiet so idle regions can hibernate), the scheduler's too;
#   - resident memory (VmRSS) and what each region added to it since the cluster had one;
# and the write throughput of tessera-bench (CLIENTS clients, 256-byte values) spread over
# all regions against the same load over the first 64 regions only.
#
# Usage: scripts/bench_regions.sh [REGIONS]          (default 10000; 3 replicas each)
# Environment: SETTLE_SECS (30) IDLE_SECS (10) BENCH_SECS (10) WARMUP_SECS (10) CLIENTS (64)
#              PD_PORT (23790) STORE_PORT (20960) KEEP_DIR (1: keep the data directory)
#
# Regions are cut at tessera-bench's own keys (`bench/` + 12 digits, KEYS_PER_REGION keys
# apart), in two rounds of batch splits (split-region operators, what `tessera ctl split`
# sends): the first region into about sqrt(REGIONS) parts, then each part into the rest,
# all parts at once. Figures only; nothing here passes or fails on timing. The machine is
# shared with whatever else runs: note it next to the figures.
set -euo pipefail

REGIONS=${1:-10000}
SETTLE_SECS=${SETTLE_SECS:-30}
IDLE_SECS=${IDLE_SECS:-10}
BENCH_SECS=${BENCH_SECS:-10}
# Load before each measured run: tikv-client learns each region from the scheduler the
# first time it writes to it, which over 10,000 regions is most of a short run.
WARMUP_SECS=${WARMUP_SECS:-10}
CLIENTS=${CLIENTS:-64}
PD_PORT=${PD_PORT:-23790}
STORE_PORT=${STORE_PORT:-20960}
KEYS_PER_REGION=${KEYS_PER_REGION:-100}

cd "$(dirname "$0")/.."
echo "building (release) ..."
cargo build --release -q -p tessera -p bench
TESSERA=$PWD/target/release/tessera
BENCH=$PWD/target/release/tessera-bench

DIR=$(mktemp -d /tmp/tessera-bench-regions-XXXXXX)
PG_PID=
cleanup() {
    if [ -n "$PG_PID" ] && kill -0 "$PG_PID" 2>/dev/null; then
        kill -INT "$PG_PID" 2>/dev/null || true
        wait "$PG_PID" 2>/dev/null || true
    fi
    if [ "${KEEP_DIR:-0}" != 1 ]; then rm -rf "$DIR"; else echo "data kept in $DIR"; fi
}
trap cleanup EXIT

"$TESSERA" playground --dir "$DIR/cluster" --pd-addr "127.0.0.1:$PD_PORT" \
    --store-port "$STORE_PORT" --stores 3 >"$DIR/playground.out" 2>&1 &
PG_PID=$!
for _ in $(seq 1 300); do
    grep -q "cluster ready" "$DIR/playground.out" && break
    kill -0 "$PG_PID" 2>/dev/null || { cat "$DIR/playground.out"; exit 1; }
    sleep 0.2
done
grep -q "cluster ready" "$DIR/playground.out" || { cat "$DIR/playground.out"; exit 1; }

PD_PID=$(sed -n 's/^scheduler .* pid \([0-9]*\) .*/\1/p' "$DIR/playground.out")
STORE_PIDS=$(sed -n 's/^store \([0-9]*\) .* pid \([0-9]*\) .*/\1:\2/p' "$DIR/playground.out" | tr '\n' ' ')

python3 - "$REGIONS" "$KEYS_PER_REGION" "127.0.0.1:$PD_PORT" "$PD_PID" "$STORE_PIDS" \
    "$SETTLE_SECS" "$IDLE_SECS" "$BENCH_SECS" "$CLIENTS" "$BENCH" "$WARMUP_SECS" "$STORE_PORT" <<'EOF'
import json, math, os, subprocess, sys, time, urllib.parse, urllib.request

regions, per_region, pd = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
pd_pid = int(sys.argv[4])
stores = {int(s.split(':')[0]): int(s.split(':')[1]) for s in sys.argv[5].split()}
settle, idle, bench_secs, clients, bench = (int(sys.argv[6]), int(sys.argv[7]),
                                            int(sys.argv[8]), int(sys.argv[9]), sys.argv[10])
warmup = sys.argv[11]
# Only this cluster's stores (anything else that registered with this scheduler is ignored).
our_addrs = {f'127.0.0.1:{int(sys.argv[12]) + i}' for i in range(3)}
keys = regions * per_region
tck = os.sysconf('SC_CLK_TCK')

def http(method, path, body=None):
    req = urllib.request.Request(f'http://{pd}{path}', method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={'content-type': 'application/json'})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b'null')

def key(i):
    return b'bench/%012d' % i

def region_of(k):
    return http('GET', '/pd/api/v1/region/key/' + urllib.parse.quote(k.decode(), safe=''))

def store_counts():
    v = http('GET', '/pd/api/v1/stores')
    return {s['store']['id']: (s['status'].get('region_count', 0), s['status'].get('leader_count', 0))
            for s in v['stores'] if s['store'].get('address') in our_addrs}

def cpu_ticks(pid):
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])

def rss_kib(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0

def idle_cpu(secs):
    pids = dict(stores, pd=pd_pid)
    before = {n: cpu_ticks(p) for n, p in pids.items()}
    t0 = time.time()
    time.sleep(secs)
    dt = time.time() - t0
    return {n: 100.0 * (cpu_ticks(p) - before[n]) / tck / dt for n, p in pids.items()}

def wait_for(what, cond, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if cond():
                return
        except Exception:
            pass
        time.sleep(1)
    sys.exit(f'{what}: not reached in {timeout} s')

def split(region_id, cut_at):
    body = {'name': 'split-region', 'region_id': region_id, 'keys': [key(i).hex().upper() for i in cut_at]}
    for attempt in range(30):
        try:
            http('POST', '/pd/api/v1/operators', body)
            return
        except Exception as e:
            last = e
            time.sleep(1)
    sys.exit(f'split of region {region_id} refused: {last}')

time.sleep(3)
rss_one = {s: rss_kib(p) for s, p in stores.items()}
print(f'cluster of 3 stores up; 1 region; RSS per store (KiB): {rss_one}')

# Round 1: the first region into `parts` parts; round 2: every part into the rest.
parts = max(1, int(math.isqrt(regions)))
bounds = [round(i * regions / parts) for i in range(parts + 1)]
t0 = time.time()
if parts > 1:
    split(region_of(key(0))['id'], [b * per_region for b in bounds[1:-1]])
    wait_for('first round of splits', lambda: all(c[0] >= parts for c in store_counts().values()), 300)
for lo, hi in zip(bounds, bounds[1:]):
    cuts = [r * per_region for r in range(lo + 1, hi)]
    if cuts:
        split(region_of(key(lo * per_region))['id'], cuts)
def all_split():
    c = store_counts()
    return all(v[0] >= regions for v in c.values()) and sum(v[1] for v in c.values()) >= regions
wait_for(f'{regions} regions with leaders', all_split, 1800)
print(f'split into {regions} regions in {time.time() - t0:.1f} s: ' +
      ', '.join(f'store {s}: {c[0]} regions, {c[1]} leaders' for s, c in sorted(store_counts().items())))

print(f'settling {settle} s, then measuring idle CPU over {idle} s ...')
time.sleep(settle)
cpu = idle_cpu(idle)
for s in sorted(stores):
    rss = rss_kib(stores[s])
    per = (rss - rss_one[s]) * 1024 / max(1, regions - 1)
    print(f'store {s}: idle CPU {cpu[s]:5.1f}% of one core; RSS {rss / 1024:7.1f} MiB '
          f'({per / 1024:.1f} KiB per region added)')
print(f'scheduler: idle CPU {cpu["pd"]:5.1f}% of one core; RSS {rss_kib(pd_pid) / 1024:.1f} MiB')

def run_bench(nkeys):
    out = subprocess.run([bench, '--target', 'tikv', '--endpoints', pd, '--workload', 'write',
                          '--clients', str(clients), '--value-size', '256', '--keys', str(nkeys),
                          '--duration', str(bench_secs), '--warmup', warmup, '--json'],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f'tessera-bench failed: {out.stderr[-2000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])

few = min(64, regions)
r_few = run_bench(few * per_region)
r_all = run_bench(keys)
def show(label, r):
    lat = r.get('latency') or {}
    extra = ''.join(f', {k} {lat[k + "_us"] / 1000:.2f} ms' for k in ('p50', 'p99') if k + '_us' in lat)
    print(f'writes over {label:>6} regions: {r["ops_per_sec"]:9.0f} puts/s ({r["errors"]} errors{extra})')
show(str(few), r_few)
show(str(regions), r_all)
if r_few['ops_per_sec'] > 0:
    print(f'ratio all/{few}: {r_all["ops_per_sec"] / r_few["ops_per_sec"]:.2f}')
time.sleep(settle)
cpu = idle_cpu(idle)
print(f'idle CPU {settle} s after the writes (% of one core): ' +
      ', '.join(f'store {s} {cpu[s]:.1f}' for s in sorted(stores)) + f', scheduler {cpu["pd"]:.1f}')
EOF
