//! The linearizability checker on hand-made histories: those that must pass, and those
//! that must fail (so a passing cluster run means something).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use history::linearizability::{check, check_with, Config, Verdict};
use history::{History, Op, Outcome, Recorder, Ret};

fn put(k: &str, v: &str) -> Op {
    Op::Put {
        key: k.into(),
        value: v.into(),
    }
}

fn get(k: &str) -> Op {
    Op::Get { key: k.into() }
}

fn del(k: &str) -> Op {
    Op::Delete { key: k.into() }
}

fn cas(k: &str, expected: Option<&str>, new: Option<&str>) -> Op {
    Op::Cas {
        key: k.into(),
        expected: expected.map(Into::into),
        new: new.map(Into::into),
    }
}

fn done() -> Outcome {
    Outcome::Ok(Ret::Done)
}

fn read(v: Option<&str>) -> Outcome {
    Outcome::Ok(Ret::Value(v.map(Into::into)))
}

fn swapped(s: bool) -> Outcome {
    Outcome::Ok(Ret::Swapped(s))
}

#[track_caller]
fn must_pass(h: &History) {
    h.validate().expect("well-formed history");
    match check(h) {
        Verdict::Linearizable(_) => {}
        Verdict::Violation(c) => panic!("expected linearizable, got:\n{c}"),
        v => panic!("expected linearizable, got {v:?}"),
    }
}

/// Fails unless the checker reports a violation on `key` that could not place op `stuck`.
#[track_caller]
fn must_fail(h: &History, key: &str, stuck: usize) -> String {
    h.validate().expect("well-formed history");
    match check(h) {
        Verdict::Violation(c) => {
            assert_eq!(c.key, key.as_bytes(), "wrong key in\n{c}");
            assert_eq!(c.stuck.id, stuck, "wrong op reported in\n{c}");
            c.to_string()
        }
        v => panic!("expected a violation, got {v:?}"),
    }
}

#[test]
fn sequential_writes_and_reads_are_linearizable() {
    let mut h = History::new();
    h.push(1, 1, Some(2), get("x"), read(None));
    h.push(1, 3, Some(4), put("x", "1"), done());
    h.push(2, 5, Some(6), get("x"), read(Some("1")));
    h.push(2, 7, Some(8), del("x"), done());
    h.push(1, 9, Some(10), get("x"), read(None));
    must_pass(&h);
}

#[test]
fn a_stale_read_is_a_violation() {
    let mut h = History::new();
    h.push(1, 1, Some(2), put("x", "1"), done());
    h.push(1, 3, Some(4), put("x", "2"), done());
    let stale = h.push(2, 5, Some(6), get("x"), read(Some("1")));
    let report = must_fail(&h, "x", stale);
    assert!(report.contains("could not place"), "{report}");
    assert!(
        report.contains("\"2\""),
        "the report shows the newer value: {report}"
    );
}

#[test]
fn a_lost_write_is_a_violation() {
    let mut h = History::new();
    h.push(1, 1, Some(2), put("x", "1"), done());
    let lost = h.push(2, 3, Some(4), get("x"), read(None));
    must_fail(&h, "x", lost);
}

#[test]
fn a_write_seen_before_its_call_is_a_violation() {
    let mut h = History::new();
    let early = h.push(2, 1, Some(2), get("x"), read(Some("1")));
    h.push(1, 3, Some(4), put("x", "1"), done());
    must_fail(&h, "x", early);
}

#[test]
fn a_read_concurrent_with_a_write_may_see_either_value() {
    for seen in [None, Some("1")] {
        let mut h = History::new();
        h.push(1, 1, Some(10), put("x", "1"), done());
        h.push(2, 2, Some(3), get("x"), read(seen));
        must_pass(&h);
    }
    // Two concurrent writes, then reads: either order is fine, but only one at a time.
    for last in ["1", "2"] {
        let mut h = History::new();
        h.push(1, 1, Some(4), put("x", "1"), done());
        h.push(2, 2, Some(3), put("x", "2"), done());
        h.push(1, 5, Some(6), get("x"), read(Some(last)));
        h.push(2, 7, Some(8), get("x"), read(Some(last)));
        must_pass(&h);
    }
    let mut h = History::new();
    h.push(1, 1, Some(4), put("x", "1"), done());
    h.push(2, 2, Some(3), put("x", "2"), done());
    h.push(1, 5, Some(6), get("x"), read(Some("1")));
    let flip = h.push(2, 7, Some(8), get("x"), read(Some("2")));
    must_fail(&h, "x", flip);
}

#[test]
fn reads_during_a_write_never_go_back_to_the_old_value() {
    let mut h = History::new();
    h.push(1, 1, Some(10), put("x", "1"), done());
    h.push(2, 2, Some(3), get("x"), read(Some("1")));
    let back = h.push(3, 4, Some(5), get("x"), read(None));
    must_fail(&h, "x", back);
}

#[test]
fn an_unknown_write_may_take_effect_late_or_never() {
    // Seen long after its client gave up on it.
    let mut h = History::new();
    h.push(1, 1, None, put("x", "1"), Outcome::Unknown);
    h.push(2, 10, Some(11), get("x"), read(None));
    h.push(2, 20, Some(21), get("x"), read(Some("1")));
    h.push(2, 30, Some(31), get("x"), read(Some("1")));
    must_pass(&h);
    // Never seen at all.
    let mut h = History::new();
    h.push(1, 1, None, put("x", "1"), Outcome::Unknown);
    h.push(2, 10, Some(11), get("x"), read(None));
    must_pass(&h);
    // Lost after being seen: once applied it stays applied (until overwritten).
    let mut h = History::new();
    h.push(1, 1, None, put("x", "1"), Outcome::Unknown);
    h.push(2, 10, Some(11), get("x"), read(Some("1")));
    let gone = h.push(2, 20, Some(21), get("x"), read(None));
    must_fail(&h, "x", gone);
}

#[test]
fn an_unknown_write_is_never_seen_before_its_call() {
    let mut h = History::new();
    let early = h.push(2, 1, Some(2), get("x"), read(Some("1")));
    h.push(1, 3, None, put("x", "1"), Outcome::Unknown);
    must_fail(&h, "x", early);
}

#[test]
fn an_unknown_delete_may_take_effect_late() {
    let mut h = History::new();
    h.push(1, 1, Some(2), put("x", "1"), done());
    h.push(1, 3, None, del("x"), Outcome::Unknown);
    h.push(2, 10, Some(11), get("x"), read(Some("1")));
    h.push(2, 20, Some(21), get("x"), read(None));
    h.push(1, 30, Some(31), put("x", "2"), done());
    h.push(2, 40, Some(41), get("x"), read(Some("2")));
    must_pass(&h);
}

#[test]
fn a_failed_write_never_takes_effect() {
    let mut h = History::new();
    h.push(1, 1, Some(2), put("x", "1"), Outcome::Failed);
    let ghost = h.push(2, 3, Some(4), get("x"), read(Some("1")));
    must_fail(&h, "x", ghost);
}

#[test]
fn a_read_after_a_delete_sees_nothing() {
    let mut h = History::new();
    h.push(1, 1, Some(2), put("x", "1"), done());
    h.push(1, 3, Some(4), del("x"), done());
    let stale = h.push(2, 5, Some(6), get("x"), read(Some("1")));
    must_fail(&h, "x", stale);
}

#[test]
fn compare_and_swap_succeeds_for_one_of_two_racing_clients() {
    let mut h = History::new();
    h.push(1, 1, Some(2), put("x", "0"), done());
    h.push(1, 3, Some(8), cas("x", Some("0"), Some("a")), swapped(true));
    h.push(
        2,
        4,
        Some(9),
        cas("x", Some("0"), Some("b")),
        swapped(false),
    );
    h.push(1, 10, Some(11), get("x"), read(Some("a")));
    must_pass(&h);
    let mut h = History::new();
    h.push(1, 1, Some(2), put("x", "0"), done());
    h.push(1, 3, Some(8), cas("x", Some("0"), Some("a")), swapped(true));
    let second = h.push(2, 4, Some(9), cas("x", Some("0"), Some("b")), swapped(true));
    let r = h.push(1, 10, Some(11), get("x"), read(Some("b")));
    let report = match check(&h) {
        Verdict::Violation(c) => c,
        v => panic!("two winners of one swap must fail, got {v:?}"),
    };
    assert!(
        [second, r].contains(&report.stuck.id),
        "the report names the second swap or the read:\n{report}"
    );
    // A swap to "absent" deletes; an unknown one may have done so.
    let mut h = History::new();
    h.push(1, 1, Some(2), put("x", "0"), done());
    h.push(1, 3, None, cas("x", Some("0"), None), Outcome::Unknown);
    h.push(2, 10, Some(11), get("x"), read(None));
    must_pass(&h);
}

#[test]
fn keys_are_checked_separately_and_the_bad_one_is_named() {
    let mut h = History::new();
    h.push(1, 1, Some(2), put("a", "1"), done());
    h.push(1, 3, Some(4), put("b", "1"), done());
    h.push(2, 5, Some(6), get("a"), read(Some("1")));
    let bad = h.push(2, 7, Some(8), get("b"), read(None));
    must_fail(&h, "b", bad);
}

#[test]
fn a_search_out_of_steps_is_undecided_not_a_hang() {
    let mut h = History::new();
    for c in 0..6u64 {
        h.push(c, 1 + c, Some(100 + c), put("x", &c.to_string()), done());
    }
    h.push(9, 200, Some(201), get("x"), read(Some("7")));
    let tiny = Config {
        max_steps_per_key: 20,
        ..Config::default()
    };
    assert!(matches!(check_with(&h, &tiny), Verdict::Undecided { .. }));
    assert!(
        check(&h).is_violation(),
        "with room the garbage read is found"
    );
}

/// A register behind a mutex is linearizable by construction: thousands of recorded
/// concurrent operations must check as linearizable, within the default budget.
#[test]
fn a_mutex_register_recorded_from_threads_is_linearizable() {
    let rec = Arc::new(Recorder::new());
    let store: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let threads: Vec<_> = (0..6u64)
        .map(|c| {
            let (rec, store) = (rec.clone(), store.clone());
            std::thread::spawn(move || {
                let mut x = c.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                for i in 0..800 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let key = format!("k{}", x % 3);
                    let op = match x % 10 {
                        0..=3 => get(&key),
                        4..=8 => put(&key, &format!("{c}-{i}")),
                        _ => del(&key),
                    };
                    let p = rec.invoke(c, op.clone());
                    let out = {
                        let mut m = store.lock().unwrap();
                        match op {
                            Op::Get { .. } => read(m.get(&key).map(|s| s.as_str())),
                            Op::Put { value, .. } => {
                                m.insert(key, String::from_utf8(value).unwrap());
                                done()
                            }
                            _ => {
                                m.remove(&key);
                                done()
                            }
                        }
                    };
                    // Every tenth write "times out": applied, but its answer is lost.
                    if i % 10 == 0 && !matches!(out, Outcome::Ok(Ret::Value(_))) {
                        rec.finish(p, Outcome::Unknown);
                    } else {
                        rec.finish(p, out);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let h = rec.history();
    h.validate()
        .expect("the recorder writes well-formed histories");
    assert_eq!(h.len(), 6 * 800);
    match check(&h) {
        Verdict::Linearizable(s) => assert_eq!(s.keys, 3),
        v => panic!("a mutex register must be linearizable: {v:?}"),
    }
    // The same history with one read made stale: it returns the value of a put that a
    // later completed put overwrote before the read was called. That must be caught.
    let e = h.entries();
    let ok_put = |x: &history::Entry| {
        matches!(x.op, Op::Put { .. }) && matches!(x.outcome, Outcome::Ok(Ret::Done))
    };
    let (read_id, stale_value) =
        e.iter()
            .filter(|g| matches!(g.op, Op::Get { .. }) && matches!(g.outcome, Outcome::Ok(_)))
            .find_map(|g| {
                let p2 = e.iter().rev().find(|p2| {
                    ok_put(p2) && p2.op.key() == g.op.key() && p2.ret.unwrap() < g.call
                })?;
                let p1 = e.iter().find(|p1| {
                    ok_put(p1) && p1.op.key() == g.op.key() && p1.ret.unwrap() < p2.call
                })?;
                let Op::Put { value, .. } = &p1.op else {
                    unreachable!()
                };
                Some((g.id, value.clone()))
            })
            .expect("some read follows two sequential puts");
    let mut bad = History::new();
    for x in e {
        let outcome = if x.id == read_id {
            Outcome::Ok(Ret::Value(Some(stale_value.clone())))
        } else {
            x.outcome.clone()
        };
        bad.push(x.client, x.call, x.ret, x.op.clone(), outcome);
    }
    match check(&bad) {
        Verdict::Violation(c) => assert_eq!(c.key, e[read_id].op.key()),
        v => panic!("one stale read among {} ops must be caught: {v:?}", e.len()),
    }
}

#[test]
fn the_recorder_orders_calls_and_returns_and_leaves_unfinished_ops_unknown() {
    let rec = Recorder::new();
    let a = rec.invoke(1, put("x", "1"));
    let b = rec.invoke(2, get("x"));
    rec.finish(a, done());
    let _never = rec.invoke(1, put("x", "2"));
    rec.finish(b, read(Some("1")));
    let h = rec.history();
    let e = h.entries();
    assert_eq!((e[0].call, e[0].ret), (1, Some(3)));
    assert_eq!((e[1].call, e[1].ret), (2, Some(5)));
    assert_eq!(
        (e[2].call, e[2].ret, &e[2].outcome),
        (4, None, &Outcome::Unknown)
    );
    h.validate().unwrap();
    must_pass(&h);
    // A client with two operations in flight is a recording bug.
    let mut bad = History::new();
    bad.push(1, 1, Some(5), put("x", "1"), done());
    bad.push(1, 2, Some(3), get("x"), read(None));
    assert!(bad.validate().is_err());
}
