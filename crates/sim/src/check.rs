//! The checks at the end of a run: the whole history goes to the per-key linearizability
//! checker (`history::linearizability`), and the final read-back must find, for every
//! key, the value of a write that nothing acknowledged later superseded (no acknowledged
//! write lost).
//!
//! A violation is reported with a shortened history: the operations of the violating key
//! only, around the operation the checker could not place (positions are simulator steps,
//! times virtual microseconds), after the checker's own counterexample.

use history::linearizability::{check, Verdict};
use history::{History, Op};

use crate::client::{OpRecord, OpResult};
use crate::world::Sim;

/// Operations of the violating key shown on each side of the one that could not be placed.
pub const SHORT_WINDOW: usize = 12;

impl Sim {
    /// Runs both checks and records what they find.
    pub(crate) fn check_history(&mut self) {
        let mut h = History::new();
        for r in &self.history {
            r.to_history(&mut h);
        }
        if let Err(e) = h.validate() {
            self.violations.push(format!("malformed history: {e}"));
            return;
        }
        match check(&h) {
            Verdict::Linearizable(s) => {
                self.check_summary = format!(
                    "linearizable: {} keys, {} ops ({} unknown writes), {} search steps",
                    s.keys, s.ops, s.unknown, s.steps
                );
            }
            Verdict::Violation(c) => {
                self.check_summary = "NOT linearizable".into();
                let short = shortened(&self.history, &c.key, c.stuck.id);
                self.violations.push(format!(
                    "linearizability violation\n{c}\nshortened history (key {}, ops around \
                     #{}):\n{short}",
                    crate::client::show(&c.key),
                    c.stuck.id
                ));
            }
            Verdict::Undecided { key, steps } => {
                self.check_summary = "undecided".into();
                self.violations.push(format!(
                    "the linearizability search of key {} gave up after {steps} steps",
                    crate::client::show(&key)
                ));
            }
        }
        for v in lost_writes(&self.history, self.verify_from) {
            self.violations.push(v);
        }
        self.check_bank();
        self.check_lists();
    }
}

/// The operations on `key` around operation `stuck` (history index), one per line.
pub fn shortened(history: &[OpRecord], key: &[u8], stuck: usize) -> String {
    let of_key: Vec<usize> = (0..history.len())
        .filter(|&i| history[i].op.key() == key)
        .collect();
    let at = of_key.iter().position(|&i| i == stuck).unwrap_or(0);
    let from = at.saturating_sub(SHORT_WINDOW);
    let to = (at + SHORT_WINDOW + 1).min(of_key.len());
    let mut s = String::new();
    if from > 0 {
        s.push_str(&format!("  ... {from} earlier ops on this key\n"));
    }
    for &i in &of_key[from..to] {
        let mark = if i == stuck { ">>" } else { "  " };
        s.push_str(&format!("{mark} {}\n", history[i].line(i)));
    }
    if to < of_key.len() {
        s.push_str(&format!(
            "  ... {} later ops on this key\n",
            of_key.len() - to
        ));
    }
    s
}

/// The final read-back (operations from `verify_from` on) against the writes: each read
/// must return what a write that may be the last one wrote. A write may be the last one
/// unless an acknowledged write was called after it returned. Returns one line per read
/// that found something else: an acknowledged write lost (or a value from nowhere).
pub fn lost_writes(history: &[OpRecord], verify_from: usize) -> Vec<String> {
    let mut out = Vec::new();
    for (ri, read) in history.iter().enumerate().skip(verify_from) {
        let (Op::Get { key }, OpResult::Ok(got)) = (&read.op, &read.result) else {
            continue;
        };
        let read_ret = read.ret.map_or(u64::MAX, |r| r.0);
        let writes: Vec<(usize, &OpRecord)> = history[..verify_from.min(history.len())]
            .iter()
            .enumerate()
            .filter(|(_, w)| w.op.is_write() && w.op.key() == key.as_slice())
            .filter(|(_, w)| {
                !matches!(
                    w.result,
                    OpResult::Failed(_) | OpResult::Swapped { swapped: false, .. }
                )
            })
            .filter(|(_, w)| w.call.0 < read_ret)
            .collect();
        let acked = |w: &OpRecord| {
            matches!(
                w.result,
                OpResult::Ok(_) | OpResult::Swapped { swapped: true, .. }
            )
        };
        // Candidates: writes no acknowledged write was called after.
        let candidates: Vec<&(usize, &OpRecord)> = writes
            .iter()
            .filter(|(_, w)| {
                let ret = w.ret.filter(|_| acked(w)).map_or(u64::MAX, |r| r.0);
                !writes.iter().any(|(_, o)| acked(o) && o.call.0 > ret)
            })
            .collect();
        let fits = |w: &OpRecord| match (&w.op, got) {
            (Op::Put { value, .. }, Some(v)) => value == v,
            (
                Op::Cas {
                    new: Some(value), ..
                },
                Some(v),
            ) => value == v,
            (Op::Delete { .. }, None) => true,
            _ => false,
        };
        let ok = candidates.iter().any(|(_, w)| fits(w))
            || (got.is_none() && !writes.iter().any(|(_, w)| acked(w)));
        if !ok {
            let last: Vec<String> = candidates.iter().map(|(i, w)| w.line(*i)).collect();
            out.push(format!(
                "acknowledged write lost: read-back #{ri} of {} returned {:?}; the writes that \
                 may be last are:\n  {}",
                crate::client::show(key),
                got.as_deref().map(crate::client::show),
                last.join("\n  ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(op: Op, call: u64, ret: u64, result: OpResult) -> OpRecord {
        OpRecord {
            client: 0,
            op,
            call: (call, 0),
            ret: Some((ret, 0)),
            result,
            attempts: 1,
            served_by: None,
        }
    }

    fn put(v: &str) -> Op {
        Op::Put {
            key: b"k".to_vec(),
            value: v.as_bytes().to_vec(),
        }
    }

    fn get() -> Op {
        Op::Get { key: b"k".to_vec() }
    }

    #[test]
    fn the_read_back_must_find_the_last_acknowledged_write() {
        let h = vec![
            rec(put("a"), 1, 2, OpResult::Ok(None)),
            rec(put("b"), 3, 4, OpResult::Ok(None)),
            rec(put("c"), 5, 6, OpResult::Unknown("timed out".into())),
            rec(get(), 10, 11, OpResult::Ok(Some(b"b".to_vec()))),
            rec(get(), 12, 13, OpResult::Ok(Some(b"c".to_vec()))),
            rec(get(), 14, 15, OpResult::Ok(Some(b"a".to_vec()))),
            rec(get(), 16, 17, OpResult::Ok(None)),
        ];
        let lost = lost_writes(&h, 3);
        assert_eq!(lost.len(), 2, "{lost:?}");
        assert!(lost[0].contains("#5") && lost[1].contains("#6"), "{lost:?}");
    }

    #[test]
    fn the_shortened_history_keeps_only_the_key_around_the_stuck_op() {
        let mut h = Vec::new();
        for i in 0..80u64 {
            let key = if i % 2 == 0 {
                b"k".to_vec()
            } else {
                b"j".to_vec()
            };
            h.push(rec(Op::Get { key }, i * 2, i * 2 + 1, OpResult::Ok(None)));
        }
        let s = shortened(&h, b"k", 40);
        assert!(s.contains(">> #40 "), "{s}");
        assert!(!s.contains(" get \"j\""), "{s}");
        assert_eq!(
            s.lines().filter(|l| l.contains(" get ")).count(),
            2 * SHORT_WINDOW + 1
        );
        assert!(s.contains("earlier ops") && s.contains("later ops"), "{s}");
    }
}
