//! Per-key linearizability of a register history (put, get, delete, compare-and-swap).
//!
//! The search is Wing and Gong's, with the improvements Lowe and Horn & Kroening describe
//! (and Porcupine implements): the history is cut by key (a key-value map is linearizable
//! if and only if each key is); each key's calls and returns form one list in position
//! order; the search walks it depth first, linearizing an operation whose call it meets
//! (when the register model accepts its result) and backtracking when it meets the return
//! of an operation not yet linearized; a memo of (set of linearized operations, register
//! state) pairs already explored cuts every repeated branch.
//!
//! Operations are prepared first:
//! - `Failed` operations and reads without an answer are dropped (no effect, no result);
//! - an `Unknown` write returns at +infinity, so it may be linearized anywhere after its
//!   call; once only such writes are left, the rest is trivially linearizable (each can go
//!   last, or "never" - the same thing for a history that ends);
//! - when the value an `Unknown` write wrote is written by nothing else, every operation
//!   that observed that value must come after it, so its return is moved to the earliest
//!   return among them (exact: every linearization satisfies it);
//! - on a key without compare-and-swap, an `Unknown` put whose value nobody read is dropped
//!   (exact: only reads observe a register there, and none observed it).
//!
//! The search is bounded by a step budget; past it the verdict is `Undecided`, never a
//! hang.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::history::{show, show_opt, Entry, History, Op, Outcome, Ret};

/// Search limits.
#[derive(Clone, Debug)]
pub struct Config {
    /// Steps (list entries visited) allowed per key before giving up as undecided.
    pub max_steps_per_key: u64,
    /// How many ops of the longest linearizable prefix a report prints (the last ones).
    pub report_prefix: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_steps_per_key: 20_000_000,
            report_prefix: 25,
        }
    }
}

/// The answer for a whole history.
#[derive(Debug)]
pub enum Verdict {
    /// Every key's operations are linearizable.
    Linearizable(Summary),
    /// A key's operations are not; the first such key found.
    Violation(Box<Counterexample>),
    /// No violation found, but some key's search ran out of steps.
    Undecided { key: Vec<u8>, steps: u64 },
}

impl Verdict {
    /// True for [`Verdict::Linearizable`].
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable(_))
    }

    /// True for [`Verdict::Violation`].
    pub fn is_violation(&self) -> bool {
        matches!(self, Verdict::Violation(_))
    }
}

/// What a successful check covered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Keys checked.
    pub keys: usize,
    /// Operations that took part in the search (after preparation).
    pub ops: usize,
    /// Unknown writes the search could place or leave out.
    pub unknown: usize,
    /// Search steps over all keys.
    pub steps: u64,
}

/// Why one key is not linearizable.
#[derive(Clone, Debug)]
pub struct Counterexample {
    /// The key.
    pub key: Vec<u8>,
    /// The longest linearizable prefix the search found, in linearization order, each with
    /// the register's value after it.
    pub prefix: Vec<(Entry, Option<Vec<u8>>)>,
    /// The operation whose return the search reached without being able to place it after
    /// that prefix.
    pub stuck: Entry,
    /// The other operations called but not linearized at that point (candidates that did
    /// not fit either).
    pub pending: Vec<Entry>,
    /// How many of the prefix's operations the report prints (the last ones).
    pub show_last: usize,
}

impl fmt::Display for Counterexample {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "key {} is not linearizable", show(&self.key))?;
        let skip = self.prefix.len().saturating_sub(self.show_last);
        writeln!(
            f,
            "  longest linearizable prefix: {} ops{}",
            self.prefix.len(),
            if skip > 0 {
                format!(" (the first {skip} not shown)")
            } else {
                String::new()
            }
        )?;
        for (e, state) in &self.prefix[skip..] {
            writeln!(f, "    {e}    => {}", show_opt(state))?;
        }
        let state = self.prefix.last().and_then(|(_, s)| s.clone());
        writeln!(
            f,
            "  could not place (register holds {} after the prefix):",
            show_opt(&state)
        )?;
        writeln!(f, "    {}", self.stuck)?;
        if !self.pending.is_empty() {
            writeln!(
                f,
                "  other operations in flight there ({}), none of which fits:",
                self.pending.len()
            )?;
            for e in self.pending.iter().take(self.show_last) {
                writeln!(f, "    {e}")?;
            }
        }
        Ok(())
    }
}

/// Checks every key of `history` with the default limits.
pub fn check(history: &History) -> Verdict {
    check_with(history, &Config::default())
}

/// Checks every key of `history`. Returns the first violation found; otherwise
/// `Undecided` if some key ran out of steps; otherwise `Linearizable`.
pub fn check_with(history: &History, cfg: &Config) -> Verdict {
    let mut summary = Summary::default();
    let mut undecided = None;
    for (key, entries) in history.by_key() {
        match check_key(&key, &entries, cfg) {
            KeyResult::Ok {
                ops,
                unknown,
                steps,
            } => {
                summary.keys += 1;
                summary.ops += ops;
                summary.unknown += unknown;
                summary.steps += steps;
            }
            KeyResult::Violation(c) => return Verdict::Violation(c),
            KeyResult::Undecided(steps) => {
                undecided.get_or_insert((key.clone(), steps));
            }
        }
    }
    match undecided {
        Some((key, steps)) => Verdict::Undecided { key, steps },
        None => Verdict::Linearizable(summary),
    }
}

enum KeyResult {
    Ok {
        ops: usize,
        unknown: usize,
        steps: u64,
    },
    Violation(Box<Counterexample>),
    Undecided(u64),
}

/// One operation of one key in the register model: values interned, 0 = absent.
#[derive(Clone, Copy, Debug)]
enum Step {
    Put(u32),
    Delete,
    Get(u32),
    Cas {
        expected: u32,
        new: u32,
        /// `None`: outcome unknown, either is fine.
        swapped: Option<bool>,
    },
}

impl Step {
    /// The register after this operation from `state`, or `None` if its result cannot
    /// happen there.
    fn apply(self, state: u32) -> Option<u32> {
        match self {
            Step::Put(v) => Some(v),
            Step::Delete => Some(0),
            Step::Get(v) => (v == state).then_some(state),
            Step::Cas {
                expected,
                new,
                swapped,
            } => {
                let hit = state == expected;
                match swapped {
                    Some(s) if s != hit => None,
                    _ => Some(if hit { new } else { state }),
                }
            }
        }
    }
}

struct Prepared<'a> {
    entry: &'a Entry,
    step: Step,
    /// `u64::MAX` = +infinity.
    ret: u64,
}

#[derive(Default)]
struct Interner {
    ids: HashMap<Vec<u8>, u32>,
    values: Vec<Vec<u8>>,
}

impl Interner {
    fn id(&mut self, v: &Option<Vec<u8>>) -> u32 {
        let Some(v) = v else { return 0 };
        if let Some(id) = self.ids.get(v) {
            return *id;
        }
        self.values.push(v.clone());
        let id = self.values.len() as u32;
        self.ids.insert(v.clone(), id);
        id
    }

    fn value(&self, id: u32) -> Option<Vec<u8>> {
        (id != 0).then(|| self.values[id as usize - 1].clone())
    }
}

/// Drops what cannot matter and turns entries into model steps (see the module doc).
fn prepare<'a>(entries: &[&'a Entry], values: &mut Interner) -> Vec<Prepared<'a>> {
    let mut ops: Vec<Prepared<'a>> = Vec::new();
    for &e in entries {
        let step = match (&e.op, &e.outcome) {
            (_, Outcome::Failed) => continue,
            (Op::Get { .. }, Outcome::Unknown) => continue,
            (Op::Get { .. }, Outcome::Ok(Ret::Value(v))) => Step::Get(values.id(v)),
            (Op::Get { .. }, Outcome::Ok(_)) => continue,
            (Op::Put { value, .. }, _) => Step::Put(values.id(&Some(value.clone()))),
            (Op::Delete { .. }, _) => Step::Delete,
            (Op::Cas { expected, new, .. }, o) => Step::Cas {
                expected: values.id(expected),
                new: values.id(new),
                swapped: match o {
                    Outcome::Ok(Ret::Swapped(s)) => Some(*s),
                    _ => None,
                },
            },
        };
        let ret = match e.outcome {
            Outcome::Unknown => u64::MAX,
            _ => e.ret.unwrap_or(u64::MAX),
        };
        ops.push(Prepared {
            entry: e,
            step,
            ret,
        });
    }
    // Who writes each value, and the earliest return of an op that observed it.
    let mut writers: HashMap<u32, usize> = HashMap::new();
    let mut first_seen: HashMap<u32, u64> = HashMap::new();
    let mut has_cas = false;
    for p in &ops {
        match p.step {
            Step::Put(v) => *writers.entry(v).or_default() += 1,
            Step::Cas {
                expected,
                new,
                swapped,
            } => {
                has_cas = true;
                *writers.entry(new).or_default() += 1;
                if swapped == Some(true) && expected != 0 {
                    let s = first_seen.entry(expected).or_insert(u64::MAX);
                    *s = (*s).min(p.ret);
                }
            }
            Step::Get(v) if v != 0 => {
                let s = first_seen.entry(v).or_insert(u64::MAX);
                *s = (*s).min(p.ret);
            }
            _ => {}
        }
    }
    ops.retain_mut(|p| {
        if p.ret != u64::MAX {
            return true;
        }
        let written = match p.step {
            Step::Put(v) => v,
            Step::Cas { new, .. } if new != 0 => new,
            _ => return true,
        };
        if writers.get(&written) != Some(&1) {
            return true;
        }
        match first_seen.get(&written) {
            Some(&at) => {
                p.ret = at;
                true
            }
            None => has_cas || !matches!(p.step, Step::Put(_)),
        }
    });
    ops.sort_by_key(|p| (p.entry.call, p.entry.id));
    ops
}

/// A doubly linked list of call and return events; index 0 is the head sentinel.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For event `i` (from 1): the op and whether it is the call.
    what: Vec<(usize, bool)>,
    call_of: Vec<usize>,
    ret_of: Vec<usize>,
}

const NIL: usize = usize::MAX;

impl Events {
    fn new(ops: &[Prepared<'_>]) -> Events {
        // (position, calls before returns at one position, op, is_call)
        let mut evs: Vec<(u64, u8, usize, bool)> = Vec::with_capacity(ops.len() * 2);
        for (i, p) in ops.iter().enumerate() {
            evs.push((p.entry.call, 0, i, true));
            evs.push((p.ret, 1, i, false));
        }
        evs.sort();
        let n = evs.len();
        let mut e = Events {
            next: (1..=n + 1).collect(),
            prev: Vec::with_capacity(n + 1),
            what: Vec::with_capacity(n + 1),
            call_of: vec![0; ops.len()],
            ret_of: vec![0; ops.len()],
        };
        e.next[n] = NIL;
        e.prev.push(NIL);
        e.prev.extend(0..n);
        e.what.push((NIL, false));
        for (idx, (_, _, op, is_call)) in evs.into_iter().enumerate() {
            e.what.push((op, is_call));
            if is_call {
                e.call_of[op] = idx + 1;
            } else {
                e.ret_of[op] = idx + 1;
            }
        }
        e
    }

    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = i;
        if n != NIL {
            self.prev[n] = i;
        }
    }

    /// Takes an op's call and return out of the list.
    fn lift(&mut self, op: usize) {
        self.unlink(self.call_of[op]);
        self.unlink(self.ret_of[op]);
    }

    /// Puts them back (in reverse order of lifting).
    fn unlift(&mut self, op: usize) {
        self.relink(self.ret_of[op]);
        self.relink(self.call_of[op]);
    }
}

/// The set of linearized ops, as a bitset over ops in call order.
struct Linearized {
    words: Vec<u64>,
}

impl Linearized {
    fn set(&mut self, i: usize, on: bool) {
        if on {
            self.words[i / 64] |= 1 << (i % 64);
        } else {
            self.words[i / 64] &= !(1 << (i % 64));
        }
    }

    /// A compact exact key: how many leading ops are all linearized, and which later ones
    /// are (the search linearizes mostly in call order, so the tail is short).
    fn memo_key(&self, state: u32) -> (u32, Vec<u32>, u32) {
        let mut w = 0;
        while w < self.words.len() && self.words[w] == u64::MAX {
            w += 1;
        }
        let mut prefix = w * 64;
        let mut extras = Vec::new();
        if w < self.words.len() {
            prefix += self.words[w].trailing_ones() as usize;
            for (wi, &word) in self.words.iter().enumerate().skip(w) {
                let mut bits = word;
                while bits != 0 {
                    let b = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let i = wi * 64 + b;
                    if i > prefix {
                        extras.push(i as u32);
                    }
                }
            }
        }
        (prefix as u32, extras, state)
    }
}

fn check_key(key: &[u8], entries: &[&Entry], cfg: &Config) -> KeyResult {
    let mut values = Interner::default();
    let ops = prepare(entries, &mut values);
    let n = ops.len();
    let unknown = ops.iter().filter(|p| p.ret == u64::MAX).count();
    let mut finite_left = n - unknown;
    let mut events = Events::new(&ops);
    let mut lin = Linearized {
        words: vec![0; n.div_ceil(64)],
    };
    let mut seen: HashSet<(u32, Vec<u32>, u32)> = HashSet::new();
    // (op, state before it)
    let mut stack: Vec<(usize, u32)> = Vec::new();
    let mut best: Option<(Vec<(usize, u32)>, usize)> = None;
    let mut state = 0u32;
    let mut cur = events.next[0];
    let mut steps = 0u64;
    loop {
        if finite_left == 0 {
            return KeyResult::Ok {
                ops: n,
                unknown,
                steps,
            };
        }
        steps += 1;
        if steps > cfg.max_steps_per_key {
            return KeyResult::Undecided(steps);
        }
        let (op, is_call) = events.what[cur];
        if is_call {
            if let Some(next_state) = ops[op].step.apply(state) {
                lin.set(op, true);
                if seen.insert(lin.memo_key(next_state)) {
                    stack.push((op, state));
                    state = next_state;
                    events.lift(op);
                    if ops[op].ret != u64::MAX {
                        finite_left -= 1;
                    }
                    cur = events.next[0];
                    continue;
                }
                lin.set(op, false);
            }
            cur = events.next[cur];
            continue;
        }
        // The return of an op not linearized: what came before must change.
        if best.as_ref().is_none_or(|(b, _)| stack.len() > b.len()) {
            best = Some((stack.clone(), op));
        }
        let Some((top, before)) = stack.pop() else {
            let (prefix, stuck) = best.expect("recorded above");
            return KeyResult::Violation(Box::new(counterexample(
                key, &ops, &values, &prefix, stuck, cfg,
            )));
        };
        lin.set(top, false);
        state = before;
        events.unlift(top);
        if ops[top].ret != u64::MAX {
            finite_left += 1;
        }
        cur = events.next[events.call_of[top]];
    }
}

fn counterexample(
    key: &[u8],
    ops: &[Prepared<'_>],
    values: &Interner,
    prefix: &[(usize, u32)],
    stuck: usize,
    cfg: &Config,
) -> Counterexample {
    let mut state = 0;
    let mut shown = Vec::with_capacity(prefix.len());
    for &(op, _) in prefix {
        state = ops[op]
            .step
            .apply(state)
            .expect("the prefix was linearized");
        shown.push((ops[op].entry.clone(), values.value(state)));
    }
    let placed: HashSet<usize> = prefix.iter().map(|(op, _)| *op).collect();
    let stuck_ret = ops[stuck].ret;
    let pending = (0..ops.len())
        .filter(|&i| i != stuck && !placed.contains(&i) && ops[i].entry.call < stuck_ret)
        .map(|i| ops[i].entry.clone())
        .collect();
    Counterexample {
        key: key.to_vec(),
        prefix: shown,
        stuck: ops[stuck].entry.clone(),
        pending,
        show_last: cfg.report_prefix,
    }
}
