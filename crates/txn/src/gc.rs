//! MVCC garbage collection: drop the versions no read at or above the GC safe point can
//! see any more.
//!
//! Once the scheduler's safe point is `sp`, no transaction reads at a timestamp below `sp`
//! (the client resolved every lock below it before moving it), so for each user key only
//! what a read at `sp` sees, and everything newer, still matters. Per key, walking CF
//! `write` newest first (TiKV's rule):
//! - records with commit_ts > `sp` are kept untouched;
//! - at or below `sp`, Lock and Rollback records are deleted until the first Put or
//!   Delete: that is the version a read at `sp` sees. A Put is kept; a Delete is deleted
//!   too (with nothing older left, "not found" needs no record);
//! - every record below that one is deleted, and so is the CF `default` value of every
//!   deleted Put whose value was not inline.
//!
//! CF `lock` is never touched: a lock below the safe point is the client's to resolve.
//!
//! [`gc_range`] only reads; it returns the deletes as [`Modify`]s for the caller to write
//! (through Raft, so every replica drops the same versions).

use engine::{CF_DEFAULT, CF_WRITE};

use crate::{Error, Key, Modify, Result, Snapshot, TimeStamp, Write, WriteType};

/// The most bytes of keys one batch deletes; past it the batch is cut, even inside one
/// key's versions, so that a key written a million times never makes one huge raft entry.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// What one call of [`gc_range`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcBatch {
    /// Deletes in CF `write` and CF `default`.
    pub modifies: Vec<Modify>,
    /// Where to resume (an encoded user key), or `None` when the range is done. It may be
    /// the last key of this batch when the batch was cut inside that key's versions: apply
    /// `modifies` before resuming, as the resumed scan starts that key over.
    pub next: Option<Vec<u8>>,
    /// User keys looked at (a key cut over two batches counts in both).
    pub keys_scanned: usize,
    /// CF `write` records deleted.
    pub versions_deleted: usize,
}

/// Collects the garbage of the user keys in `[start, end)` (encoded user keys, empty `end`
/// = unbounded; `start` must be a user key's first version or before it, e.g. a region's
/// start) as of `safe_point`, stopping before the user key after `max_keys` of them (at
/// least one) or once [`MAX_BATCH_BYTES`] of deletes are collected.
pub fn gc_range<S: Snapshot + ?Sized>(
    snap: &S,
    start: &[u8],
    end: &[u8],
    safe_point: TimeStamp,
    max_keys: usize,
) -> Result<GcBatch> {
    gc_range_limited(snap, start, end, safe_point, max_keys, MAX_BATCH_BYTES)
}

fn gc_range_limited<S: Snapshot + ?Sized>(
    snap: &S,
    start: &[u8],
    end: &[u8],
    safe_point: TimeStamp,
    max_keys: usize,
    max_bytes: usize,
) -> Result<GcBatch> {
    let max_keys = max_keys.max(1);
    let mut batch = GcBatch::default();
    let mut bytes = 0usize;
    let mut current: Option<Key> = None;
    // Whether the current key's version seen by a read at the safe point was found: every
    // record below it is garbage.
    let mut found_visible = false;
    // A Delete that is the visible version is deleted only once every older record of its
    // key is: if the batch were cut in between, the next pass would take the next older
    // Put for the visible version and keep a value that a read at the safe point does not
    // see.
    let mut pending_delete: Option<Vec<u8>> = None;
    for item in snap.scan_cf(CF_WRITE, start, end, false) {
        let (stored, value) = item?;
        let (user, commit_ts) = Key::split_on_ts(&stored)?;
        if current.as_ref() != Some(&user) {
            push_write_delete(&mut batch, pending_delete.take());
            if batch.keys_scanned >= max_keys || bytes >= max_bytes {
                batch.next = Some(user.into_encoded());
                return Ok(batch);
            }
            batch.keys_scanned += 1;
            current = Some(user);
            found_visible = false;
        } else if bytes >= max_bytes {
            batch.next = current.map(Key::into_encoded);
            return Ok(batch);
        }
        if commit_ts > safe_point {
            continue;
        }
        let write = Write::parse(&value).map_err(|e| Error::corrupt(&stored, e))?;
        if !found_visible {
            match write.write_type {
                WriteType::Put => {
                    found_visible = true;
                    continue;
                }
                WriteType::Delete => {
                    found_visible = true;
                    bytes += stored.len();
                    pending_delete = Some(stored);
                    continue;
                }
                WriteType::Lock | WriteType::Rollback => {}
            }
        } else if write.write_type == WriteType::Put && write.short_value.is_none() {
            let user = current
                .as_ref()
                .expect("set for the first record of every key");
            let data_key = user.append_ts(write.start_ts).into_encoded();
            bytes += data_key.len();
            batch.modifies.push(Modify::Delete {
                cf: CF_DEFAULT,
                key: data_key,
            });
        }
        bytes += stored.len();
        push_write_delete(&mut batch, Some(stored));
    }
    push_write_delete(&mut batch, pending_delete);
    Ok(batch)
}

fn push_write_delete(batch: &mut GcBatch, stored: Option<Vec<u8>>) {
    if let Some(key) = stored {
        batch.versions_deleted += 1;
        batch.modifies.push(Modify::Delete { cf: CF_WRITE, key });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemSnapshot;
    use crate::{MvccReader, MvccTxn, SHORT_VALUE_MAX_LEN};
    use engine::CF_LOCK;
    use rand::{Rng, SeedableRng};

    /// Commits one record of `kind` for `key` (the CF default value too, when long).
    fn commit(
        snap: &mut MemSnapshot,
        key: &[u8],
        kind: WriteType,
        start_ts: TimeStamp,
        commit_ts: TimeStamp,
        value: &[u8],
    ) {
        let key = Key::from_raw(key);
        let mut txn = MvccTxn::new(start_ts);
        let short = match kind {
            WriteType::Put if value.len() > SHORT_VALUE_MAX_LEN => {
                txn.put_value(key.clone(), start_ts, value.to_vec());
                None
            }
            WriteType::Put => Some(value.to_vec()),
            WriteType::Rollback => {
                let w = Write::new_rollback(start_ts, true);
                txn.put_write(key, commit_ts, &w);
                snap.apply(txn.modifies());
                return;
            }
            _ => None,
        };
        txn.put_write(key, commit_ts, &Write::new(kind, start_ts, short));
        snap.apply(txn.modifies());
    }

    fn put(snap: &mut MemSnapshot, key: &[u8], commit_ts: TimeStamp, value: &[u8]) {
        commit(snap, key, WriteType::Put, commit_ts - 1, commit_ts, value);
    }

    /// What a snapshot read of `key` at `ts` returns.
    fn read(snap: &MemSnapshot, key: &[u8], ts: TimeStamp) -> Option<Vec<u8>> {
        let reader = MvccReader::new(snap);
        let key = Key::from_raw(key);
        match reader.get_write(&key, ts).unwrap() {
            Some((_, w)) if w.write_type == WriteType::Put => {
                Some(reader.load_data(&key, &w).unwrap())
            }
            _ => None,
        }
    }

    /// The commit timestamps left in CF write for `key`, newest first.
    fn versions(snap: &MemSnapshot, key: &[u8]) -> Vec<TimeStamp> {
        let enc = Key::from_raw(key);
        snap.dump(CF_WRITE)
            .into_iter()
            .filter_map(|(k, _)| {
                let (u, ts) = Key::split_on_ts(&k).unwrap();
                (u == enc).then_some(ts)
            })
            .collect()
    }

    /// Runs GC over everything in batches of `max_keys`, applying each batch.
    fn gc_all(
        snap: &mut MemSnapshot,
        safe_point: TimeStamp,
        max_keys: usize,
        max_bytes: usize,
    ) -> (usize, usize) {
        let (mut batches, mut deleted) = (0, 0);
        let mut start = Vec::new();
        loop {
            let b = gc_range_limited(&*snap, &start, &[], safe_point, max_keys, max_bytes).unwrap();
            snap.apply(&b.modifies);
            batches += 1;
            deleted += b.versions_deleted;
            match b.next {
                Some(n) => start = n,
                None => return (batches, deleted),
            }
            assert!(batches < 100_000, "GC does not converge");
        }
    }

    fn assert_reads_unchanged(
        before: &MemSnapshot,
        after: &MemSnapshot,
        keys: &[&[u8]],
        from: TimeStamp,
    ) {
        for key in keys {
            for ts in [
                from,
                from + 1,
                from + 7,
                from + 50,
                from + 1000,
                TimeStamp::MAX,
            ] {
                assert_eq!(
                    read(before, key, ts),
                    read(after, key, ts),
                    "key {key:?} at {ts}"
                );
            }
        }
    }

    #[test]
    fn keeps_the_newest_put_at_or_below_the_safe_point_and_everything_newer() {
        let mut snap = MemSnapshot::new();
        for i in 1..=10u64 {
            put(&mut snap, b"k", i * 10, format!("v{i}").as_bytes());
        }
        put(&mut snap, b"other", 5, b"x");
        let before = snap.clone();
        let b = gc_range(&snap, &[], &[], 55, 100).unwrap();
        assert_eq!(b.keys_scanned, 2);
        assert_eq!(b.versions_deleted, 4);
        assert_eq!(b.next, None);
        assert!(b
            .modifies
            .iter()
            .all(|m| matches!(m, Modify::Delete { cf: CF_WRITE, .. })));
        snap.apply(&b.modifies);
        assert_eq!(versions(&snap, b"k"), vec![100, 90, 80, 70, 60, 50]);
        assert_eq!(
            versions(&snap, b"other"),
            vec![5],
            "a key's only version stays"
        );
        assert_eq!(read(&snap, b"k", 55).as_deref(), Some(&b"v5"[..]));
        assert_reads_unchanged(&before, &snap, &[b"k", b"other"], 55);
        // Below the safe point, history is gone: a read there sees no version at all.
        assert_eq!(read(&snap, b"k", 45), None);

        // A second pass finds nothing more.
        let again = gc_range(&snap, &[], &[], 55, 100).unwrap();
        assert!(again.modifies.is_empty());
        // A safe point exactly at a commit keeps that commit.
        let b = gc_range(&snap, &[], &[], 80, 100).unwrap();
        snap.apply(&b.modifies);
        assert_eq!(versions(&snap, b"k"), vec![100, 90, 80]);
    }

    #[test]
    fn a_delete_as_the_visible_version_goes_with_everything_below() {
        let mut snap = MemSnapshot::new();
        put(&mut snap, b"gone", 10, b"a");
        put(&mut snap, b"gone", 20, b"b");
        commit(&mut snap, b"gone", WriteType::Delete, 25, 30, b"");
        put(&mut snap, b"back", 10, b"a");
        commit(&mut snap, b"back", WriteType::Delete, 25, 30, b"");
        put(&mut snap, b"back", 40, b"again");
        let before = snap.clone();
        let b = gc_range(&snap, &[], &[], 35, 10).unwrap();
        assert_eq!(b.versions_deleted, 5);
        snap.apply(&b.modifies);
        assert!(versions(&snap, b"gone").is_empty());
        assert_eq!(versions(&snap, b"back"), vec![40]);
        assert_reads_unchanged(&before, &snap, &[b"gone", b"back"], 35);
        assert_eq!(read(&snap, b"back", 40).as_deref(), Some(&b"again"[..]));

        // Cut inside the key: the Delete stays until everything below it is gone, so a
        // resumed pass never takes an older Put for the visible version.
        let mut snap = MemSnapshot::new();
        for i in 1..=40u64 {
            put(&mut snap, b"d", i * 10, b"old");
        }
        commit(&mut snap, b"d", WriteType::Delete, 405, 410, b"");
        let key_len = Key::from_raw(b"d").as_encoded().len() + 8;
        let b = gc_range_limited(&snap, &[], &[], 500, 10, 5 * key_len).unwrap();
        assert!(b.next.is_some());
        assert!(b
            .modifies
            .iter()
            .all(|m| !matches!(m, Modify::Delete { key, .. }
            if *key == Key::from_raw(b"d").append_ts(410).into_encoded())));
        let (batches, deleted) = gc_all(&mut snap, 500, 10, 5 * key_len);
        assert!(batches > 5);
        assert_eq!(deleted, 41);
        assert!(versions(&snap, b"d").is_empty());
    }

    #[test]
    fn long_values_of_deleted_puts_leave_cf_default() {
        let mut snap = MemSnapshot::new();
        let long = |c: u8| vec![c; SHORT_VALUE_MAX_LEN + 45];
        put(&mut snap, b"big", 10, &long(b'a'));
        put(&mut snap, b"big", 20, b"short");
        put(&mut snap, b"big", 30, &long(b'c'));
        put(&mut snap, b"big", 40, &long(b'd'));
        put(&mut snap, b"big", 50, &long(b'e'));
        assert_eq!(snap.len(CF_DEFAULT), 4);
        let before = snap.clone();
        let b = gc_range(&snap, &[], &[], 45, 10).unwrap();
        assert_eq!(b.versions_deleted, 3);
        snap.apply(&b.modifies);
        assert_eq!(versions(&snap, b"big"), vec![50, 40]);
        let k = Key::from_raw(b"big");
        let defaults: Vec<_> = snap
            .dump(CF_DEFAULT)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(
            defaults,
            vec![
                k.append_ts(49).into_encoded(),
                k.append_ts(39).into_encoded()
            ],
            "only the kept versions' values remain"
        );
        assert_reads_unchanged(&before, &snap, &[b"big"], 45);
    }

    #[test]
    fn lock_and_rollback_records_at_or_below_the_safe_point_go() {
        let mut snap = MemSnapshot::new();
        put(&mut snap, b"a", 10, b"v");
        commit(&mut snap, b"a", WriteType::Lock, 15, 20, b"");
        commit(&mut snap, b"a", WriteType::Rollback, 25, 25, b"");
        commit(&mut snap, b"a", WriteType::Rollback, 40, 40, b"");
        commit(&mut snap, b"a", WriteType::Lock, 41, 42, b"");
        // Only Lock and Rollback records: nothing to keep.
        commit(&mut snap, b"b", WriteType::Rollback, 5, 5, b"");
        commit(&mut snap, b"b", WriteType::Lock, 6, 7, b"");
        // A lock in CF lock is the client's business.
        snap.apply(&[Modify::Put {
            cf: CF_LOCK,
            key: Key::from_raw(b"a").into_encoded(),
            value: b"opaque".to_vec(),
        }]);
        let before = snap.clone();
        let b = gc_range(&snap, &[], &[], 30, 10).unwrap();
        snap.apply(&b.modifies);
        assert_eq!(
            versions(&snap, b"a"),
            vec![42, 40, 10],
            "records above the safe point stay"
        );
        assert!(versions(&snap, b"b").is_empty());
        assert_eq!(snap.dump(CF_LOCK), before.dump(CF_LOCK));
        assert_eq!(b.versions_deleted, 4);
        assert_reads_unchanged(&before, &snap, &[b"a", b"b"], 30);
    }

    #[test]
    fn resumes_across_batches_and_respects_the_range() {
        let mut snap = MemSnapshot::new();
        let keys: Vec<Vec<u8>> = (0..10u8).map(|i| vec![b'k', b'0' + i]).collect();
        for k in &keys {
            for ts in [10, 20, 30] {
                put(&mut snap, k, ts, k);
            }
        }
        let mut one_shot = snap.clone();
        let all = gc_range(&one_shot, &[], &[], 25, 1000).unwrap();
        one_shot.apply(&all.modifies);
        assert_eq!(all.versions_deleted, 10);

        let mut start = Vec::new();
        let mut seen = 0;
        let mut batches = 0;
        loop {
            let b = gc_range(&snap, &start, &[], 25, 3).unwrap();
            assert!(b.keys_scanned <= 3);
            seen += b.keys_scanned;
            batches += 1;
            snap.apply(&b.modifies);
            match b.next {
                Some(n) => {
                    assert_eq!(n, Key::from_raw(&keys[seen]).into_encoded());
                    start = n;
                }
                None => break,
            }
        }
        assert_eq!((seen, batches), (10, 4));
        assert_eq!(snap.dump(CF_WRITE), one_shot.dump(CF_WRITE));

        // A bounded range touches only its keys; `max_keys` 0 still makes progress.
        let mut fresh = MemSnapshot::new();
        for k in &keys {
            put(&mut fresh, k, 10, b"x");
            put(&mut fresh, k, 20, b"y");
        }
        let lo = Key::from_raw(&keys[2]).into_encoded();
        let hi = Key::from_raw(&keys[5]).into_encoded();
        let b = gc_range(&fresh, &lo, &hi, 25, 0).unwrap();
        assert_eq!(b.keys_scanned, 1);
        assert_eq!(b.next, Some(Key::from_raw(&keys[3]).into_encoded()));
        let b = gc_range(&fresh, &lo, &hi, 25, 100).unwrap();
        assert_eq!((b.keys_scanned, b.versions_deleted, b.next), (3, 3, None));
        assert!(gc_range(&fresh, &hi, &lo, 25, 100)
            .unwrap()
            .modifies
            .is_empty());
    }

    #[test]
    fn a_key_with_many_versions_is_cut_into_bounded_batches() {
        let mut snap = MemSnapshot::new();
        for i in 1..=1000u64 {
            let value = if i % 3 == 0 {
                vec![b'L'; 300]
            } else {
                b"s".to_vec()
            };
            put(&mut snap, b"hot", i * 10, &value);
        }
        put(&mut snap, b"next", 10, b"n");
        put(&mut snap, b"next", 20, b"n");
        let before = snap.clone();
        let write_key_len = Key::from_raw(b"hot").as_encoded().len() + 8;
        let budget = 50 * write_key_len;
        let b = gc_range_limited(&snap, &[], &[], 9_995, 100, budget).unwrap();
        assert_eq!(
            b.next,
            Some(Key::from_raw(b"hot").into_encoded()),
            "cut inside the key"
        );
        let bytes: usize = b
            .modifies
            .iter()
            .map(|m| match m {
                Modify::Delete { key, .. } => key.len(),
                Modify::Put { .. } => unreachable!("GC only deletes"),
            })
            .sum();
        assert!(
            bytes < budget + 2 * write_key_len,
            "{bytes} bytes in one batch"
        );

        let (batches, deleted) = gc_all(&mut snap, 9_995, 100, budget);
        assert!(batches > 10, "{batches} batches");
        assert_eq!(deleted, 998 + 1);
        assert_eq!(versions(&snap, b"hot"), vec![10_000, 9_990]);
        assert_eq!(snap.len(CF_DEFAULT), 1, "only 9990's long value stays");
        assert_reads_unchanged(&before, &snap, &[b"hot", b"next"], 9_995);
    }

    #[test]
    fn random_histories_keep_every_read_at_or_above_the_safe_point() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x6c);
        for round in 0..40 {
            let mut snap = MemSnapshot::new();
            let keys: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'r', i]).collect();
            for k in &keys {
                let mut ts = 1;
                for _ in 0..rng.gen_range(0..30) {
                    ts += rng.gen_range(1..5);
                    let start = ts;
                    let kind = match rng.gen_range(0..6) {
                        0 => WriteType::Delete,
                        1 => WriteType::Lock,
                        2 => WriteType::Rollback,
                        _ => WriteType::Put,
                    };
                    if kind == WriteType::Rollback {
                        commit(&mut snap, k, kind, start, start, b"");
                    } else {
                        ts += rng.gen_range(1..3);
                        let len = if rng.gen_bool(0.3) { 400 } else { 3 };
                        commit(&mut snap, k, kind, start, ts, &vec![round as u8; len]);
                    }
                }
            }
            let safe_point = rng.gen_range(1..120);
            let before = snap.clone();
            gc_all(
                &mut snap,
                safe_point,
                rng.gen_range(1..4),
                rng.gen_range(20..400),
            );
            let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
            assert_reads_unchanged(&before, &snap, &refs, safe_point);
            for k in &keys {
                // At or below the safe point at most one record stays, and it is a Put.
                let enc = Key::from_raw(k);
                let old: Vec<_> = versions(&snap, k)
                    .into_iter()
                    .filter(|ts| *ts <= safe_point)
                    .collect();
                assert!(old.len() <= 1, "round {round}: {old:?}");
                if let Some(ts) = old.first() {
                    let bytes = snap
                        .get_cf(CF_WRITE, enc.append_ts(*ts).as_encoded())
                        .unwrap()
                        .unwrap();
                    assert_eq!(Write::parse(&bytes).unwrap().write_type, WriteType::Put);
                }
            }
            // Every CF default value left belongs to a Put still there.
            for (dk, _) in snap.dump(CF_DEFAULT) {
                let (user, start) = Key::split_on_ts(&dk).unwrap();
                let owner = snap.dump(CF_WRITE).into_iter().any(|(wk, wv)| {
                    let (u, _) = Key::split_on_ts(&wk).unwrap();
                    let w = Write::parse(&wv).unwrap();
                    u == user && w.start_ts == start && w.write_type == WriteType::Put
                });
                assert!(owner, "round {round}: orphan value");
            }
        }
    }

    #[test]
    fn a_corrupt_record_is_an_error_not_a_panic() {
        let mut snap = MemSnapshot::new();
        put(&mut snap, b"k", 10, b"v");
        snap.apply(&[Modify::Put {
            cf: CF_WRITE,
            key: Key::from_raw(b"k").append_ts(5).into_encoded(),
            value: vec![b'Z', 1],
        }]);
        assert!(matches!(
            gc_range(&snap, &[], &[], 20, 10),
            Err(Error::Corrupt(_))
        ));
        let mut snap = MemSnapshot::new();
        snap.apply(&[Modify::Put {
            cf: CF_WRITE,
            key: b"short".to_vec(),
            value: vec![],
        }]);
        assert!(gc_range(&snap, &[], &[], 20, 10).is_err());
    }
}
