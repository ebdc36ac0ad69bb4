//! Range reads: the keys of `[lower, upper)` and their values as a snapshot read at `ts`
//! sees them, ascending or descending.
//!
//! One pass: CF write is walked once in the scan's direction and CF lock alongside it over
//! the same range, so each version record is looked at once and each lock once; only
//! long values cost a point read of CF default. Going forward, a key's versions come
//! newest first and the first Put or Delete at or below `ts` decides; going backward they
//! come oldest first, so the last such record before the versions above `ts` decides.

use codec::mvcc::split_ts;
use engine::{CF_LOCK, CF_WRITE};

use crate::read::check_lock;
use crate::{
    Error, Key, KvIter, KvPair, Lock, MvccReader, Result, Snapshot, TimeStamp, Write, WriteType,
};

/// What a scan reads and how.
#[derive(Clone, Debug, Default)]
pub struct ScanOptions<'a> {
    /// The read timestamp.
    pub ts: TimeStamp,
    /// At most this many entries, errors included (0 reads nothing).
    pub limit: usize,
    /// Return keys with empty values (long values are then not read at all).
    pub key_only: bool,
    /// Descending order.
    pub reverse: bool,
    /// Transactions whose locks the reader may read through (`context.resolved_locks`).
    pub bypass_locks: &'a [TimeStamp],
}

/// One key a scan returns (raw) with its value, or the `KeyIsLocked` error that hides it.
pub type ScanEntry = (Vec<u8>, Result<Vec<u8>>);

/// Scans the encoded user keys of `[lower, upper)` (empty `upper` = unbounded). A key
/// whose lock blocks the read (see [`check_lock`]) gives an error entry and the scan goes
/// on; the entries are in key order (descending when `reverse`). `Err` only for a store
/// failure (a record that does not decode, a missing long value, an engine error).
pub fn scan<S: Snapshot + ?Sized>(
    snap: &S,
    lower: &[u8],
    upper: &[u8],
    opts: &ScanOptions<'_>,
) -> Result<Vec<ScanEntry>> {
    let mut out = Vec::new();
    if opts.limit == 0 {
        return Ok(out);
    }
    let reader = MvccReader::new(snap);
    let mut writes = Cursor::new(snap.scan_cf(CF_WRITE, lower, upper, opts.reverse))?;
    let mut locks = Cursor::new(snap.scan_cf(CF_LOCK, lower, upper, opts.reverse))?;
    while out.len() < opts.limit {
        let next_write = match &writes.head {
            Some((stored, _)) => Some(split(stored)?.0),
            None => None,
        };
        let next_lock = locks.head.as_ref().map(|(k, _)| k.as_slice());
        let cur = match (next_write, next_lock) {
            (None, None) => break,
            (Some(w), None) => w,
            (None, Some(l)) => l,
            (Some(w), Some(l)) if opts.reverse => w.max(l),
            (Some(w), Some(l)) => w.min(l),
        };
        let key = Key::from_encoded(cur.to_vec());
        let raw = key.to_raw()?;

        let mut blocked = None;
        if let Some((_, bytes)) = locks.head.take_if(|(k, _)| k == key.as_encoded()) {
            locks.advance()?;
            let lock = Lock::parse(&bytes).map_err(|e| Error::corrupt(key.as_encoded(), e))?;
            if let Err(e) = check_lock(&raw, &lock, opts.ts, opts.bypass_locks) {
                blocked = Some(e);
            }
        }
        let visible = take_versions(&mut writes, key.as_encoded(), opts, blocked.is_none())?;
        if let Some(e) = blocked {
            out.push((raw, Err(e)));
        } else if let Some(write) = visible {
            let value = if opts.key_only {
                Vec::new()
            } else {
                reader.load_data(&key, &write)?
            };
            out.push((raw, Ok(value)));
        }
    }
    Ok(out)
}

/// Moves `writes` past every version of the encoded user key `cur`; when `want`, returns
/// the version a read at `opts.ts` sees if it is a Put.
fn take_versions(
    writes: &mut Cursor<'_>,
    cur: &[u8],
    opts: &ScanOptions<'_>,
    want: bool,
) -> Result<Option<Write>> {
    let mut visible: Option<Write> = None;
    let mut decided = !want;
    while let Some((stored, value)) = &writes.head {
        let (user, commit_ts) = split(stored)?;
        if user != cur {
            break;
        }
        if !decided && commit_ts <= opts.ts {
            let write = Write::parse(value).map_err(|e| Error::corrupt(stored, e))?;
            if matches!(write.write_type, WriteType::Put | WriteType::Delete) {
                visible = Some(write);
                // Backward, a newer version (still at or below ts) may follow.
                decided = !opts.reverse;
            }
        }
        writes.advance()?;
    }
    Ok(visible.filter(|w| w.write_type == WriteType::Put))
}

/// A stored CF write key as (encoded user key, commit ts).
fn split(stored: &[u8]) -> Result<(&[u8], TimeStamp)> {
    split_ts(stored).map_err(|e| Error::corrupt(stored, e))
}

/// An iterator with its next pair pulled out, to compare keys before consuming them.
struct Cursor<'a> {
    iter: KvIter<'a>,
    head: Option<KvPair>,
}

impl<'a> Cursor<'a> {
    fn new(iter: KvIter<'a>) -> Result<Self> {
        let mut c = Cursor { iter, head: None };
        c.advance()?;
        Ok(c)
    }

    fn advance(&mut self) -> Result<()> {
        self.head = self.iter.next().transpose()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::read::test_util::*;
    use crate::testing::MemSnapshot;
    use crate::LockType;

    fn enc(raw: &[u8]) -> Vec<u8> {
        Key::from_raw(raw).into_encoded()
    }

    fn opts(ts: TimeStamp, limit: usize) -> ScanOptions<'static> {
        ScanOptions {
            ts,
            limit,
            ..Default::default()
        }
    }

    /// Entries as (key, Some(value)) or (key, None) for a lock error (checked to be one).
    fn run(
        snap: &MemSnapshot,
        lower: &[u8],
        upper: &[u8],
        o: &ScanOptions<'_>,
    ) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        scan(snap, lower, upper, o)
            .unwrap()
            .into_iter()
            .map(|(k, v)| match v {
                Ok(v) => (k, Some(v)),
                Err(Error::KeyIsLocked(info)) => {
                    assert_eq!(info.key, k);
                    (k, None)
                }
                Err(e) => panic!("{e}"),
            })
            .collect()
    }

    fn kv(k: &[u8], v: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
        (k.to_vec(), Some(v.to_vec()))
    }

    fn locked(k: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
        (k.to_vec(), None)
    }

    /// TinyKV 4C's scan fixture, in TiKV's layout: keys 1, 1·23, 3, 4, 5 (one deleted).
    fn fixture() -> MemSnapshot {
        let mut snap = MemSnapshot::new();
        must_put(&mut snap, &[1], &[42], 50, 51);
        must_put(&mut snap, &[1], &[43], 52, 53);
        must_put(&mut snap, &[1, 23], &[44], 50, 51);
        must_put(&mut snap, &[3], &[45], 50, 51);
        must_put(&mut snap, &[4], &[46; 300], 50, 51);
        must_write(&mut snap, &[4], WriteType::Delete, 60, 61);
        must_put(&mut snap, &[5], &[47], 100, 101);
        snap
    }

    #[test]
    fn scan_empty_and_limit_zero() {
        let empty = MemSnapshot::new();
        assert!(run(&empty, &[], &[], &opts(100, 10)).is_empty());
        let snap = fixture();
        assert!(run(&snap, &[], &[], &opts(100, 0)).is_empty());
    }

    #[test]
    fn scan_all() {
        let snap = fixture();
        let got = run(&snap, &[], &[], &opts(100, 10));
        assert_eq!(got, [kv(&[1], &[43]), kv(&[1, 23], &[44]), kv(&[3], &[45])]);
        // Between the two versions of [1], and before [4]'s delete.
        let got = run(&snap, &[], &[], &opts(52, 10));
        assert_eq!(
            got,
            [
                kv(&[1], &[42]),
                kv(&[1, 23], &[44]),
                kv(&[3], &[45]),
                kv(&[4], &[46; 300])
            ]
        );
        let got = run(&snap, &[], &[], &opts(200, u32::MAX as usize));
        assert_eq!(got.len(), 4);
        assert_eq!(got[3], kv(&[5], &[47]));
        assert!(run(&snap, &[], &[], &opts(50, 10)).is_empty());
    }

    #[test]
    fn scan_limit_and_bounds() {
        let snap = fixture();
        let got = run(&snap, &[], &[], &opts(100, 2));
        assert_eq!(got, [kv(&[1], &[43]), kv(&[1, 23], &[44])]);
        let got = run(&snap, &enc(&[1, 23]), &enc(&[5]), &opts(200, 10));
        assert_eq!(got, [kv(&[1, 23], &[44]), kv(&[3], &[45])]);
        assert!(run(&snap, &enc(&[3]), &enc(&[3]), &opts(200, 10)).is_empty());
        assert!(run(&snap, &enc(&[5]), &enc(&[3]), &opts(200, 10)).is_empty());
    }

    #[test]
    fn scan_deleted() {
        let mut snap = MemSnapshot::new();
        must_put(&mut snap, &[1], &[1], 10, 11);
        must_write(&mut snap, &[1], WriteType::Delete, 20, 21);
        must_put(&mut snap, &[2], &[2], 10, 11);
        must_write(&mut snap, &[2], WriteType::Lock, 20, 21);
        must_write(&mut snap, &[2], WriteType::Rollback, 30, 30);
        must_write(&mut snap, &[3], WriteType::Delete, 20, 21);
        must_put(&mut snap, &[3], &[3], 30, 31);
        assert_eq!(run(&snap, &[], &[], &opts(25, 10)), [kv(&[2], &[2])]);
        assert_eq!(
            run(&snap, &[], &[], &opts(40, 10)),
            [kv(&[2], &[2]), kv(&[3], &[3])]
        );
        assert_eq!(
            run(&snap, &[], &[], &opts(15, 10)),
            [kv(&[1], &[1]), kv(&[2], &[2])]
        );
    }

    #[test]
    fn reverse_scan() {
        let snap = fixture();
        let rev = |ts, limit| ScanOptions {
            reverse: true,
            ..opts(ts, limit)
        };
        let got = run(&snap, &[], &[], &rev(100, 10));
        assert_eq!(got, [kv(&[3], &[45]), kv(&[1, 23], &[44]), kv(&[1], &[43])]);
        let got = run(&snap, &[], &[], &rev(52, 10));
        assert_eq!(
            got,
            [
                kv(&[4], &[46; 300]),
                kv(&[3], &[45]),
                kv(&[1, 23], &[44]),
                kv(&[1], &[42])
            ]
        );
        // [lower, upper): upper excluded, lower included.
        let got = run(&snap, &enc(&[1, 23]), &enc(&[5]), &rev(200, 10));
        assert_eq!(got, [kv(&[3], &[45]), kv(&[1, 23], &[44])]);
        let got = run(&snap, &[], &[], &rev(200, 2));
        assert_eq!(got, [kv(&[5], &[47]), kv(&[3], &[45])]);
        assert!(run(&snap, &[], &[], &rev(200, 0)).is_empty());
    }

    #[test]
    fn reverse_scan_picks_the_newest_visible_among_many_versions() {
        let mut snap = MemSnapshot::new();
        for i in 1..=10u64 {
            must_put(&mut snap, b"a", &[i as u8], 10 * i, 10 * i + 1);
            must_write(&mut snap, b"a", WriteType::Lock, 10 * i + 2, 10 * i + 3);
        }
        for ts in [0, 11, 12, 55, 101, 1000] {
            let want = if ts < 11 {
                vec![]
            } else {
                vec![kv(b"a", &[((ts - 1) / 10).min(10) as u8])]
            };
            let fwd = run(&snap, &[], &[], &opts(ts, 5));
            let back = run(
                &snap,
                &[],
                &[],
                &ScanOptions {
                    reverse: true,
                    ..opts(ts, 5)
                },
            );
            assert_eq!(fwd, want, "forward at {ts}");
            assert_eq!(back, want, "backward at {ts}");
        }
    }

    #[test]
    fn locks_are_recorded_and_counted() {
        let mut snap = fixture();
        // A blocking lock on a key with versions, on a key with none, and harmless ones.
        must_lock(&mut snap, &[1, 23], &[1], LockType::Put, 90, &[0]);
        must_lock(&mut snap, &[2], &[1], LockType::Delete, 90, &[]);
        must_lock(&mut snap, &[3], &[1], LockType::Lock, 90, &[]);
        must_lock(&mut snap, &[3, 1], &[1], LockType::Pessimistic, 90, &[]);
        must_lock(&mut snap, &[5], &[1], LockType::Put, 150, &[0]);
        let got = run(&snap, &[], &[], &opts(100, 10));
        assert_eq!(
            got,
            [
                kv(&[1], &[43]),
                locked(&[1, 23]),
                locked(&[2]),
                kv(&[3], &[45])
            ]
        );
        // The limit counts lock errors.
        let got = run(&snap, &[], &[], &opts(100, 2));
        assert_eq!(got, [kv(&[1], &[43]), locked(&[1, 23])]);
        // Backward: the same entries, reversed.
        let back = ScanOptions {
            reverse: true,
            ..opts(100, 10)
        };
        assert_eq!(
            run(&snap, &[], &[], &back),
            [
                kv(&[3], &[45]),
                locked(&[2]),
                locked(&[1, 23]),
                kv(&[1], &[43])
            ]
        );
        // Below the locks: nothing is hidden.
        assert_eq!(run(&snap, &[], &[], &opts(89, 10)).len(), 3);
        // Above the lock on [5]: it blocks too.
        assert_eq!(
            run(&snap, &[], &[], &opts(150, 10)).last(),
            Some(&locked(&[5]))
        );
    }

    #[test]
    fn resolved_locks_and_min_commit_ts_let_reads_through() {
        let mut snap = fixture();
        must_lock(&mut snap, &[1], &[1], LockType::Put, 90, &[0]);
        let mut pushed = Lock::new(LockType::Put, vec![1], 80, 100);
        pushed.min_commit_ts = 120;
        put_lock(&mut snap, &[3], &pushed);
        let bypass = [90];
        let o = ScanOptions {
            bypass_locks: &bypass,
            ..opts(100, 10)
        };
        assert_eq!(
            run(&snap, &[], &[], &o),
            [kv(&[1], &[43]), kv(&[1, 23], &[44]), kv(&[3], &[45])]
        );
        let got = run(&snap, &[], &[], &opts(120, 10));
        assert_eq!(got[0], locked(&[1]));
        assert_eq!(got[2], locked(&[3]));
    }

    #[test]
    fn key_only_reads_no_value() {
        let mut snap = fixture();
        // A record whose long value is missing: only a value read would notice.
        must_write(&mut snap, &[6], WriteType::Put, 10, 11);
        let o = ScanOptions {
            key_only: true,
            ..opts(100, 10)
        };
        let got = run(&snap, &[], &[], &o);
        assert_eq!(
            got,
            [
                kv(&[1], &[]),
                kv(&[1, 23], &[]),
                kv(&[3], &[]),
                kv(&[6], &[])
            ]
        );
        assert!(matches!(
            scan(&snap, &[], &[], &opts(100, 10)),
            Err(Error::Corrupt(_))
        ));
    }

    /// A snapshot that counts the reads made of it.
    struct Counting {
        inner: MemSnapshot,
        scans: AtomicUsize,
        gets: AtomicUsize,
    }

    impl Snapshot for Counting {
        fn get_cf(&self, cf: engine::CfName, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            self.inner.get_cf(cf, key)
        }
        fn scan_cf<'a>(
            &'a self,
            cf: engine::CfName,
            start: &[u8],
            end: &[u8],
            reverse: bool,
        ) -> KvIter<'a> {
            self.scans.fetch_add(1, Ordering::SeqCst);
            self.inner.scan_cf(cf, start, end, reverse)
        }
    }

    #[test]
    fn one_pass_over_each_cf() {
        let mut inner = MemSnapshot::new();
        for i in 0..100u8 {
            for v in 0..5u64 {
                must_put(&mut inner, &[i], &[v as u8], 10 + 10 * v, 11 + 10 * v);
            }
            if i % 10 == 0 {
                must_lock(&mut inner, &[i], &[i], LockType::Put, 1000, &[]);
            }
        }
        must_put(&mut inner, &[200], &[7; 256], 10, 11);
        let snap = Counting {
            inner,
            scans: AtomicUsize::new(0),
            gets: AtomicUsize::new(0),
        };
        for reverse in [false, true] {
            snap.scans.store(0, Ordering::SeqCst);
            snap.gets.store(0, Ordering::SeqCst);
            let got = scan(
                &snap,
                &[],
                &[],
                &ScanOptions {
                    reverse,
                    ..opts(35, 1000)
                },
            )
            .unwrap();
            assert_eq!(got.len(), 101);
            assert!(got
                .iter()
                .filter(|(k, _)| k[0] != 200)
                .all(|(_, v)| v.as_deref() == Ok(&[2][..])));
            assert_eq!(snap.scans.load(Ordering::SeqCst), 2, "one iterator per CF");
            assert_eq!(
                snap.gets.load(Ordering::SeqCst),
                1,
                "only the long value is fetched"
            );
        }
    }
}
