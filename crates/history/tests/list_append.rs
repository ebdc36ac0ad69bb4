//! The list-append snapshot-isolation checker: histories SI allows pass (including write
//! skew, which SI permits); each forbidden phenomenon is found and named.

use history::list_append::{check, Anomaly, EdgeKind, Mop, TxnHistory, TxnStatus};

fn ap(k: &str, v: u64) -> Mop {
    Mop::Append {
        key: k.into(),
        value: v,
    }
}

fn rd(k: &str, list: &[u64]) -> Mop {
    Mop::Read {
        key: k.into(),
        value: Some(list.to_vec()),
    }
}

use TxnStatus::{Aborted, Committed, Unknown};

fn names(a: &[Anomaly]) -> Vec<&'static str> {
    a.iter().map(|x| x.name()).collect()
}

#[test]
fn a_serial_history_passes() {
    let mut h = TxnHistory::new();
    h.push(Committed, vec![rd("x", &[]), ap("x", 1), ap("y", 1)]);
    h.push(Committed, vec![rd("x", &[1]), ap("x", 2), rd("y", &[1])]);
    h.push(Committed, vec![rd("x", &[1, 2]), rd("y", &[1]), ap("y", 2)]);
    h.push(Committed, vec![rd("x", &[1, 2]), rd("y", &[1, 2])]);
    assert_eq!(check(&h), vec![]);
}

#[test]
fn write_skew_is_allowed_under_snapshot_isolation() {
    // Both read the same snapshot and write disjoint keys: two rw edges, no G-single.
    let mut h = TxnHistory::new();
    h.push(Committed, vec![rd("x", &[]), rd("y", &[]), ap("x", 1)]);
    h.push(Committed, vec![rd("x", &[]), rd("y", &[]), ap("y", 2)]);
    h.push(Committed, vec![rd("x", &[1]), rd("y", &[2])]);
    assert_eq!(check(&h), vec![]);
}

#[test]
fn an_unknown_transaction_whose_write_was_seen_takes_part() {
    let mut h = TxnHistory::new();
    h.push(
        Unknown,
        vec![
            ap("x", 1),
            Mop::Read {
                key: "y".into(),
                value: None,
            },
        ],
    );
    h.push(Committed, vec![rd("x", &[1]), ap("x", 2)]);
    h.push(Committed, vec![rd("x", &[1, 2])]);
    assert_eq!(check(&h), vec![]);
}

#[test]
fn a_lost_update_is_g_single() {
    // Both read x empty and appended: the second overwrote a version it never saw.
    let mut h = TxnHistory::new();
    let t1 = h.push(Committed, vec![rd("x", &[]), ap("x", 1)]);
    let t2 = h.push(Committed, vec![rd("x", &[]), ap("x", 2)]);
    h.push(Committed, vec![rd("x", &[1, 2])]);
    let found = check(&h);
    assert_eq!(names(&found), vec!["G-single"], "{found:?}");
    let Anomaly::GSingle(cycle) = &found[0] else {
        unreachable!()
    };
    let kinds: Vec<EdgeKind> = cycle.iter().map(|e| e.kind).collect();
    assert_eq!(kinds.iter().filter(|k| **k == EdgeKind::Rw).count(), 1);
    let mut nodes: Vec<usize> = cycle.iter().map(|e| e.from).collect();
    nodes.sort();
    assert_eq!(nodes, vec![t1, t2]);
    assert!(found[0].to_string().contains("rw on x"), "{}", found[0]);
}

#[test]
fn a_fractured_read_is_g_single() {
    // T2 sees T1's append to x but not its append to y.
    let mut h = TxnHistory::new();
    h.push(Committed, vec![ap("x", 1), ap("y", 1)]);
    h.push(Committed, vec![rd("x", &[1]), rd("y", &[])]);
    h.push(Committed, vec![rd("x", &[1]), rd("y", &[1])]);
    assert_eq!(names(&check(&h)), vec!["G-single"]);
}

#[test]
fn a_dirty_read_is_g1a() {
    let mut h = TxnHistory::new();
    let w = h.push(Aborted, vec![ap("x", 1)]);
    let r = h.push(Committed, vec![rd("x", &[1])]);
    assert_eq!(
        check(&h),
        vec![Anomaly::AbortedRead {
            key: "x".into(),
            value: 1,
            writer: w,
            reader: r
        }]
    );
}

#[test]
fn an_intermediate_read_is_g1b() {
    let mut h = TxnHistory::new();
    h.push(Committed, vec![ap("x", 1), ap("x", 2)]);
    h.push(Committed, vec![rd("x", &[1])]);
    let found = check(&h);
    assert!(names(&found).contains(&"G1b"), "{found:?}");
}

#[test]
fn a_write_cycle_is_g0() {
    let mut h = TxnHistory::new();
    h.push(Committed, vec![ap("x", 1), ap("y", 2)]);
    h.push(Committed, vec![ap("x", 3), ap("y", 4)]);
    h.push(Committed, vec![rd("x", &[1, 3]), rd("y", &[4, 2])]);
    let found = check(&h);
    assert!(names(&found).contains(&"G0"), "{found:?}");
}

#[test]
fn circular_information_flow_is_g1c() {
    // Each saw the other's write: neither can have gone first.
    let mut h = TxnHistory::new();
    h.push(Committed, vec![ap("x", 1), rd("y", &[2])]);
    h.push(Committed, vec![ap("y", 2), rd("x", &[1])]);
    let found = check(&h);
    assert!(names(&found).contains(&"G1c"), "{found:?}");
    assert!(!names(&found).contains(&"G0"));
}

#[test]
fn reads_that_disagree_on_order_are_incompatible() {
    let mut h = TxnHistory::new();
    h.push(Committed, vec![ap("x", 1)]);
    h.push(Committed, vec![ap("x", 2)]);
    h.push(Committed, vec![rd("x", &[1, 2])]);
    h.push(Committed, vec![rd("x", &[2])]);
    assert_eq!(names(&check(&h)), vec!["incompatible-order"]);
}

#[test]
fn garbage_duplicates_and_internal_inconsistency_are_reported() {
    let mut h = TxnHistory::new();
    h.push(Committed, vec![ap("x", 1)]);
    h.push(Committed, vec![rd("x", &[1, 1])]);
    h.push(Committed, vec![rd("y", &[9])]);
    h.push(Committed, vec![ap("z", 5), rd("z", &[])]);
    let found = names(&check(&h));
    for want in ["duplicate-elements", "garbage-read", "internal"] {
        assert!(found.contains(&want), "{want} missing from {found:?}");
    }
}
