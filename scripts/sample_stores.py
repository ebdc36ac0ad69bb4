#!/usr/bin/env python3
"""Samples every store once a second during a load, for finding stalls.

Usage: scripts/sample_stores.py DATA_DIR STATUS_ADDR [STATUS_ADDR ...] > samples.tsv

DATA_DIR is the playground's directory (store directories `store*/` below it, each with
`kv/` and `raft/`). One line per second per store: the per-second deltas of the stores'
fsync, KV write and poller round histograms (count and mean, ms), splits and snapshots,
and the sizes of the KV engine's journals and tables and of the raft log. Stops when
every status address stopped answering. Standard library only.
"""

import os
import re
import sys
import time
import urllib.request

SERIES = {
    "fsync_raft": ('tessera_raftstore_fsync_duration_seconds', 'db="raft"'),
    "fsync_kv": ('tessera_raftstore_fsync_duration_seconds', 'db="kv"'),
    "kv_write": ('tessera_raftstore_kv_write_duration_seconds', None),
    "round": ('tessera_raftstore_poller_round_duration_seconds', None),
}
COUNTERS = ["tessera_raftstore_split_total"]


def scrape(addr):
    try:
        with urllib.request.urlopen(f"http://{addr}/metrics", timeout=2) as r:
            return r.read().decode()
    except Exception:
        return None


def parse(text):
    out = {}
    for name, (metric, label) in SERIES.items():
        for suffix in ("_sum", "_count"):
            total = 0.0
            for m in re.finditer(rf"^{metric}{suffix}(\{{[^}}]*\}})? (\S+)$", text, re.M):
                if label is None or (m.group(1) and label in m.group(1)):
                    total += float(m.group(2))
            out[name + suffix] = total
    for c in COUNTERS:
        total = 0.0
        for m in re.finditer(rf"^{c}(\{{[^}}]*\}})? (\S+)$", text, re.M):
            total += float(m.group(2))
        out[c] = total
    # raft fsyncs slower than ~20 ms: all of them minus those in buckets up to 14.8 ms
    le = [(float(m.group(1)), float(m.group(2))) for m in re.finditer(
        r'^tessera_raftstore_fsync_duration_seconds_bucket\{db="raft",le="([0-9.e+-]+)"\} (\S+)$',
        text, re.M)]
    fast = max((n for b, n in le if b < 0.02), default=0.0)
    out["slow_fsync"] = out["fsync_raft_count"] - fast
    for kind in ("generated", "applied"):
        m = re.search(rf'^tessera_snapshot_total\{{type="{kind}"\}} (\S+)$', text, re.M)
        out["snap_" + kind] = float(m.group(1)) if m else 0.0
    return out


def cpu_times():
    # user+nice, system+irq+softirq, idle, iowait (jiffies) of the whole machine
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    return (v[0] + v[1], v[2] + v[5] + v[6], v[3], v[4])


def disk_writes():
    # sectors written by all whole disks (vd*, sd*, nvme*n*), from /proc/diskstats
    total = 0
    with open("/proc/diskstats") as f:
        for line in f:
            parts = line.split()
            if re.fullmatch(r"(vd[a-z]|sd[a-z]|nvme\d+n\d+)", parts[2]):
                total += int(parts[9])
    return total * 512


def dir_size(path, pred=lambda name: True):
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            if pred(f):
                try:
                    total += os.path.getsize(os.path.join(root, f))
                except OSError:
                    pass
    return total


def main():
    data_dir, addrs = sys.argv[1], sys.argv[2:]
    stores = sorted(d for d in os.listdir(data_dir)
                    if d.startswith("store") and os.path.isdir(os.path.join(data_dir, d)))
    prev = {}
    print("t\tstore\tfsync_raft_n\tfsync_raft_ms\tfsync_kv_n\tfsync_kv_ms\tkv_write_n\t"
          "kv_write_ms\tcpu_usr\tcpu_sys\tcpu_iowait\tdisk_mb_w\trounds\tround_ms\tround_busy\tsplits\tsnap_gen\tsnap_apply\tslow_fsync\tjournal_mb\ttables_mb\traft_mb",
          flush=True)
    start = time.time()
    dead = 0
    last_cpu, last_disk = cpu_times(), disk_writes()
    while dead < 5:
        t0 = time.time()
        alive = False
        cpu, disk = cpu_times(), disk_writes()
        dc = [a - b for a, b in zip(cpu, last_cpu)]
        total = max(1, sum(dc))
        machine = (f"{100 * dc[0] / total:.0f}\t{100 * dc[1] / total:.0f}\t{100 * dc[3] / total:.0f}\t"
                   f"{(disk - last_disk) / 2**20:.0f}")
        last_cpu, last_disk = cpu, disk
        for i, addr in enumerate(addrs):
            text = scrape(addr)
            if text is None:
                continue
            alive = True
            cur = parse(text)
            p = prev.get(addr)
            prev[addr] = cur
            if p is None:
                continue
            d = {k: cur[k] - p[k] for k in cur}

            def mean_ms(n):
                c = d[n + "_count"]
                return f"{1000 * d[n + '_sum'] / c:.2f}" if c else "-"
            kv = os.path.join(data_dir, stores[i], "kv") if i < len(stores) else ""
            raft = os.path.join(data_dir, stores[i], "raft") if i < len(stores) else ""
            journal = dir_size(kv, lambda f: f.endswith(".jnl")) if kv else 0
            tables = (dir_size(kv) - journal) if kv else 0
            print(f"{t0 - start:.0f}\t{i + 1}\t{d['fsync_raft_count']:.0f}\t{mean_ms('fsync_raft')}\t"
                  f"{d['fsync_kv_count']:.0f}\t{mean_ms('fsync_kv')}\t{d['kv_write_count']:.0f}\t"
                  f"{mean_ms('kv_write')}\t{machine}\t{d['round_count']:.0f}\t{mean_ms('round')}\t"
                  f"{d['round_sum']:.2f}\t{d['tessera_raftstore_split_total']:.0f}\t{d['snap_generated']:.0f}\t"
                  f"{d['snap_applied']:.0f}\t{d['slow_fsync']:.0f}\t"
                  f"{journal / 2**20:.0f}\t{tables / 2**20:.0f}\t{dir_size(raft) / 2**20:.0f}",
                  flush=True)
        dead = 0 if alive else dead + 1
        time.sleep(max(0.0, 1.0 - (time.time() - t0)))


if __name__ == "__main__":
    main()
