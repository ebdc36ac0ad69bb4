//! The behaviour every [`Engine`] must show, as runnable checks.
//!
//! Each engine's test file calls [`run_all`] with a constructor of fresh, empty engines.
//! A new engine is correct for Tessera only if it passes all of them.

use crate::{
    Engine, Snapshot, WriteBatch, ALL_CFS, CF_DEFAULT, CF_LOCK, CF_RAFT, CF_WRITE, MAX_KEY_LEN,
};

/// Runs every check against engines made by `new_engine`.
pub fn run_all<E: Engine>(new_engine: impl Fn() -> E) {
    put_get_delete_per_cf(&new_engine());
    batch_is_atomic_across_cfs(&new_engine());
    last_operation_on_a_key_wins(&new_engine());
    snapshot_is_isolated(&new_engine());
    scan_bounds_and_order(&new_engine());
    binary_keys(&new_engine());
    delete_range(&new_engine());
    approximate_size_grows(&new_engine());
    empty_batch_and_large_values(&new_engine());
    keys_longer_than_the_limit(&new_engine());
}

fn put<E: Engine>(e: &E, cf: &'static str, k: &[u8], v: &[u8]) {
    let mut wb = e.write_batch();
    wb.put(cf, k, v);
    e.write(wb, false).unwrap();
}

fn keys_of<E: Engine>(
    e: &E,
    cf: &'static str,
    start: &[u8],
    end: &[u8],
    reverse: bool,
) -> Vec<Vec<u8>> {
    e.snapshot()
        .scan(cf, start, end, reverse)
        .map(|kv| kv.unwrap().0)
        .collect()
}

/// Writes land in their own CF only; deletes remove them.
pub fn put_get_delete_per_cf<E: Engine>(e: &E) {
    for (i, cf) in ALL_CFS.iter().enumerate() {
        put(e, cf, b"k", &[i as u8]);
    }
    for (i, cf) in ALL_CFS.iter().enumerate() {
        assert_eq!(e.get(cf, b"k").unwrap(), Some(vec![i as u8]), "cf {cf}");
    }
    let mut wb = e.write_batch();
    wb.delete(CF_LOCK, b"k");
    e.write(wb, true).unwrap();
    assert_eq!(e.get(CF_LOCK, b"k").unwrap(), None);
    assert_eq!(e.get(CF_DEFAULT, b"k").unwrap(), Some(vec![0]));
    assert_eq!(e.get(CF_WRITE, b"missing").unwrap(), None);
}

/// A batch over several CFs becomes visible as a whole.
pub fn batch_is_atomic_across_cfs<E: Engine>(e: &E) {
    let before = e.snapshot();
    let mut wb = e.write_batch();
    wb.put(CF_DEFAULT, b"a", b"1");
    wb.put(CF_WRITE, b"a", b"2");
    wb.put(CF_RAFT, b"state", b"3");
    assert_eq!(wb.count(), 3);
    assert_eq!(wb.data_size(), 1 + 1 + 1 + 1 + 5 + 1);
    assert_eq!(
        e.get(CF_DEFAULT, b"a").unwrap(),
        None,
        "nothing before write"
    );
    e.write(wb, false).unwrap();
    let after = e.snapshot();
    assert_eq!(after.get(CF_DEFAULT, b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(after.get(CF_WRITE, b"a").unwrap(), Some(b"2".to_vec()));
    assert_eq!(after.get(CF_RAFT, b"state").unwrap(), Some(b"3".to_vec()));
    assert_eq!(before.get(CF_RAFT, b"state").unwrap(), None);
}

/// Operations in one batch apply in order: the last one on a key wins.
pub fn last_operation_on_a_key_wins<E: Engine>(e: &E) {
    let mut wb = e.write_batch();
    wb.put(CF_DEFAULT, b"pp", b"first");
    wb.put(CF_DEFAULT, b"pp", b"second");
    wb.put(CF_DEFAULT, b"pd", b"x");
    wb.delete(CF_DEFAULT, b"pd");
    wb.delete(CF_DEFAULT, b"dp");
    wb.put(CF_DEFAULT, b"dp", b"back");
    e.write(wb, false).unwrap();
    assert_eq!(e.get(CF_DEFAULT, b"pp").unwrap(), Some(b"second".to_vec()));
    assert_eq!(e.get(CF_DEFAULT, b"pd").unwrap(), None);
    assert_eq!(e.get(CF_DEFAULT, b"dp").unwrap(), Some(b"back".to_vec()));
    // Across batches too.
    put(e, CF_DEFAULT, b"pp", b"third");
    assert_eq!(e.get(CF_DEFAULT, b"pp").unwrap(), Some(b"third".to_vec()));
}

/// Later writes are invisible to an earlier snapshot, which stays usable.
pub fn snapshot_is_isolated<E: Engine>(e: &E) {
    put(e, CF_DEFAULT, b"s1", b"old");
    let snap = e.snapshot();
    put(e, CF_DEFAULT, b"s1", b"new");
    put(e, CF_DEFAULT, b"s2", b"added");
    let mut wb = e.write_batch();
    wb.delete(CF_DEFAULT, b"s1");
    e.write(wb, false).unwrap();
    assert_eq!(snap.get(CF_DEFAULT, b"s1").unwrap(), Some(b"old".to_vec()));
    assert_eq!(snap.get(CF_DEFAULT, b"s2").unwrap(), None);
    let clone = snap.clone();
    let ks: Vec<_> = clone
        .scan(CF_DEFAULT, b"s", b"t", false)
        .map(|kv| kv.unwrap())
        .collect();
    assert_eq!(ks, vec![(b"s1".to_vec(), b"old".to_vec())]);
    assert_eq!(e.get(CF_DEFAULT, b"s1").unwrap(), None);
}

/// Start is inclusive, end exclusive, empty end unbounded; reverse reverses.
pub fn scan_bounds_and_order<E: Engine>(e: &E) {
    for k in [b"b", b"d", b"a", b"c", b"e"] {
        put(e, CF_WRITE, k, b"v");
    }
    put(e, CF_LOCK, b"c", b"other cf");
    assert_eq!(
        keys_of(e, CF_WRITE, b"b", b"d", false),
        vec![b"b".to_vec(), b"c".to_vec()]
    );
    assert_eq!(
        keys_of(e, CF_WRITE, b"b", b"d", true),
        vec![b"c".to_vec(), b"b".to_vec()]
    );
    assert_eq!(
        keys_of(e, CF_WRITE, b"c", b"", false),
        vec![b"c".to_vec(), b"d".to_vec(), b"e".to_vec()]
    );
    assert_eq!(keys_of(e, CF_WRITE, b"", b"", true).len(), 5);
    assert_eq!(keys_of(e, CF_WRITE, b"", b"", true)[0], b"e".to_vec());
    assert!(keys_of(e, CF_WRITE, b"x", b"z", false).is_empty());
    assert!(
        keys_of(e, CF_WRITE, b"d", b"b", false).is_empty(),
        "start after end"
    );
    assert!(
        keys_of(e, CF_WRITE, b"c", b"c", false).is_empty(),
        "empty range"
    );
    assert_eq!(keys_of(e, CF_LOCK, b"", b"", false), vec![b"c".to_vec()]);
}

/// Keys with 0x00 and 0xFF bytes sort byte-wise; empty keys are rejected, not stored.
pub fn binary_keys<E: Engine>(e: &E) {
    let mut wb = e.write_batch();
    wb.put(CF_DEFAULT, b"ok", b"1");
    wb.put(CF_DEFAULT, b"", b"empty");
    assert!(e.write(wb, false).is_err(), "an empty key must be rejected");
    assert_eq!(
        e.get(CF_DEFAULT, b"ok").unwrap(),
        None,
        "a rejected batch writes nothing"
    );
    let keys: Vec<Vec<u8>> = vec![
        vec![0x00],
        vec![0x00, 0x00],
        vec![0x01],
        vec![0xFF],
        vec![0xFF, 0xFF, 0x00],
    ];
    for k in &keys {
        put(e, CF_DEFAULT, k, k);
    }
    let got = keys_of(e, CF_DEFAULT, b"", b"", false);
    assert_eq!(got, keys);
    assert_eq!(
        keys_of(e, CF_DEFAULT, &[0x00], &[0x01], false),
        vec![vec![0x00], vec![0x00, 0x00]]
    );
}

/// delete_range_into removes exactly the range.
pub fn delete_range<E: Engine>(e: &E) {
    for i in 0..20u8 {
        put(e, CF_LOCK, &[b'r', i], b"v");
    }
    let mut wb = e.write_batch();
    let n = e
        .delete_range_into(&mut wb, CF_LOCK, &[b'r', 5], &[b'r', 15])
        .unwrap();
    assert_eq!(n, 10);
    e.write(wb, false).unwrap();
    let left = keys_of(e, CF_LOCK, b"r", b"s", false);
    assert_eq!(left.len(), 10);
    assert!(left.contains(&vec![b'r', 4]) && left.contains(&vec![b'r', 15]));
    assert!(!left.contains(&vec![b'r', 5]) && !left.contains(&vec![b'r', 14]));
    let mut wb = e.write_batch();
    e.delete_range_into(&mut wb, CF_LOCK, b"", b"").unwrap();
    e.write(wb, false).unwrap();
    assert!(keys_of(e, CF_LOCK, b"", b"", false).is_empty());
}

/// approximate_size reflects stored bytes in the range.
pub fn approximate_size_grows<E: Engine>(e: &E) {
    let empty = e.approximate_size(CF_DEFAULT, b"m", b"n").unwrap();
    for i in 0..100u32 {
        put(e, CF_DEFAULT, format!("m{i:04}").as_bytes(), &[7u8; 100]);
    }
    let full = e.approximate_size(CF_DEFAULT, b"m", b"n").unwrap();
    assert!(full >= empty + 100 * 100, "size {full} after writing 10 KB");
    assert_eq!(e.approximate_size(CF_DEFAULT, b"x", b"y").unwrap(), 0);
}

/// Empty batches are fine; megabyte values survive.
pub fn empty_batch_and_large_values<E: Engine>(e: &E) {
    let wb = e.write_batch();
    assert!(wb.is_empty());
    e.write(wb, true).unwrap();
    let big: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    put(e, CF_DEFAULT, b"big", &big);
    assert_eq!(e.get(CF_DEFAULT, b"big").unwrap(), Some(big.clone()));
    e.sync().unwrap();
    assert_eq!(e.snapshot().get(CF_DEFAULT, b"big").unwrap(), Some(big));
}

/// A key longer than [`MAX_KEY_LEN`] is refused by a write, found by no get, and works as a
/// scan bound on either side (the engine never panics on one: a read path may be handed
/// any key).
pub fn keys_longer_than_the_limit<E: Engine>(e: &E) {
    let longest = vec![b'k'; MAX_KEY_LEN];
    let mut longer = longest.clone();
    longer.push(0);
    let mut wb = e.write_batch();
    wb.put(CF_DEFAULT, &longer, b"v");
    assert!(
        e.write(wb, false).is_err(),
        "a key over the limit is refused"
    );
    assert_eq!(e.get(CF_DEFAULT, &longer).unwrap(), None);
    assert_eq!(e.snapshot().get(CF_DEFAULT, &longer).unwrap(), None);
    put(e, CF_DEFAULT, b"a", b"1");
    put(e, CF_DEFAULT, &longest, b"2");
    put(e, CF_DEFAULT, b"l", b"3");
    // longest < longer < "l"
    assert_eq!(
        keys_of(e, CF_DEFAULT, &longer, b"", false),
        vec![b"l".to_vec()]
    );
    assert_eq!(
        keys_of(e, CF_DEFAULT, b"", &longer, false),
        vec![b"a".to_vec(), longest.clone()]
    );
    assert_eq!(
        keys_of(e, CF_DEFAULT, b"", &longer, true),
        vec![longest.clone(), b"a".to_vec()]
    );
    assert_eq!(
        keys_of(e, CF_DEFAULT, &longer, &[b'k'; 70_000], false),
        Vec::<Vec<u8>>::new()
    );
}
