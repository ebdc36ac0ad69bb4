//! Operations on a key-value store as clients saw them, and the recorder that collects them.
//!
//! A history is a list of operations, each with the client that issued it, the logical
//! position at which it was called and at which it returned, and its outcome. Positions
//! come from one counter shared by every client (the [`Recorder`]), so "A returned before
//! B was called" is `a.ret < b.call`: the only real-time order a checker may rely on.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

/// One operation a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Set `key` to `value`.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Read `key`.
    Get { key: Vec<u8> },
    /// Remove `key`.
    Delete { key: Vec<u8> },
    /// If `key` holds `expected` (`None`: absent), set it to `new` (`None`: remove it).
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    },
}

impl Op {
    /// The key the operation touches.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Get { key } | Op::Delete { key } | Op::Cas { key, .. } => key,
        }
    }

    /// True for operations that may change the store.
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Get { .. })
    }
}

/// What a successful operation returned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ret {
    /// A write was applied (Put, Delete).
    Done,
    /// A Get's value (`None`: absent).
    Value(Option<Vec<u8>>),
    /// Whether a compare-and-swap found its expected value and swapped.
    Swapped(bool),
}

/// How an operation ended, as far as its client knows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It took effect once, between its call and its return, and returned this.
    Ok(Ret),
    /// It definitely took no effect (refused before it was proposed).
    Failed,
    /// No answer, or an ambiguous one: it may take effect at any point after its call, or
    /// never. Its return position is infinite.
    Unknown,
}

/// One recorded operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Index in the history (stable, for reports).
    pub id: usize,
    /// The client (thread) that issued it; one client has one operation in flight.
    pub client: u64,
    /// Logical position of the call.
    pub call: u64,
    /// Logical position of the return; `None` = never returned (+infinity).
    pub ret: Option<u64>,
    /// What was asked.
    pub op: Op,
    /// How it ended.
    pub outcome: Outcome,
}

/// A byte string for humans: printable ASCII as is, other bytes `\xNN`.
pub fn show(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

/// An optional value for humans (`None` prints as `absent`).
pub fn show_opt(v: &Option<Vec<u8>>) -> String {
    v.as_deref().map_or_else(|| "absent".to_string(), show)
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put { key, value } => write!(f, "put {} = {}", show(key), show(value)),
            Op::Get { key } => write!(f, "get {}", show(key)),
            Op::Delete { key } => write!(f, "delete {}", show(key)),
            Op::Cas { key, expected, new } => write!(
                f,
                "cas {} {} -> {}",
                show(key),
                show_opt(expected),
                show_opt(new)
            ),
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ret = self
            .ret
            .map_or_else(|| "inf".to_string(), |r| r.to_string());
        write!(
            f,
            "#{} client {} [{}, {}] {} -> ",
            self.id, self.client, self.call, ret, self.op
        )?;
        match &self.outcome {
            Outcome::Ok(Ret::Done) => write!(f, "ok"),
            Outcome::Ok(Ret::Value(v)) => write!(f, "{}", show_opt(v)),
            Outcome::Ok(Ret::Swapped(s)) => write!(f, "{}", if *s { "swapped" } else { "no swap" }),
            Outcome::Failed => write!(f, "failed"),
            Outcome::Unknown => write!(f, "unknown"),
        }
    }
}

/// A list of recorded operations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    entries: Vec<Entry>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an operation by hand (tests, or a simulator that keeps its own clock). `ret`
    /// is ignored (infinite) for an `Unknown` outcome. Returns its id.
    pub fn push(
        &mut self,
        client: u64,
        call: u64,
        ret: Option<u64>,
        op: Op,
        outcome: Outcome,
    ) -> usize {
        let id = self.entries.len();
        let ret = if outcome == Outcome::Unknown {
            None
        } else {
            ret
        };
        self.entries.push(Entry {
            id,
            client,
            call,
            ret,
            op,
            outcome,
        });
        id
    }

    /// Every entry, in the order recorded.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries of each key, in the order recorded.
    pub fn by_key(&self) -> BTreeMap<Vec<u8>, Vec<&Entry>> {
        let mut out: BTreeMap<Vec<u8>, Vec<&Entry>> = BTreeMap::new();
        for e in &self.entries {
            out.entry(e.op.key().to_vec()).or_default().push(e);
        }
        out
    }

    /// How many entries ended each way: (ok, failed, unknown).
    pub fn outcome_counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for e in &self.entries {
            match e.outcome {
                Outcome::Ok(_) => c.0 += 1,
                Outcome::Failed => c.1 += 1,
                Outcome::Unknown => c.2 += 1,
            }
        }
        c
    }

    /// Checks the history is well formed: every finished operation returns after its call,
    /// a successful one returns what its kind returns, and one client never has two
    /// operations in flight at once (one it gave up on, `Unknown`, is abandoned: the
    /// client may go on). An error names the first bad entry.
    pub fn validate(&self) -> Result<(), String> {
        let mut by_client: BTreeMap<u64, Vec<&Entry>> = BTreeMap::new();
        for e in &self.entries {
            if let Some(r) = e.ret {
                if r <= e.call {
                    return Err(format!("{e}: returns at or before its call"));
                }
            } else if e.outcome != Outcome::Unknown {
                return Err(format!("{e}: finished but has no return position"));
            }
            let fits = match (&e.op, &e.outcome) {
                (Op::Put { .. } | Op::Delete { .. }, Outcome::Ok(r)) => *r == Ret::Done,
                (Op::Get { .. }, Outcome::Ok(r)) => matches!(r, Ret::Value(_)),
                (Op::Cas { .. }, Outcome::Ok(r)) => matches!(r, Ret::Swapped(_)),
                _ => true,
            };
            if !fits {
                return Err(format!("{e}: result does not fit the operation"));
            }
            by_client.entry(e.client).or_default().push(e);
        }
        for (client, mut ops) in by_client {
            ops.sort_by_key(|e| e.call);
            for w in ops.windows(2) {
                if w[0].ret.is_some_and(|r| r > w[1].call) {
                    return Err(format!(
                        "client {client} has two operations in flight: {} and {}",
                        w[0], w[1]
                    ));
                }
            }
        }
        Ok(())
    }
}

/// An operation called but not yet finished, as handed out by [`Recorder::invoke`].
#[derive(Debug)]
#[must_use = "finish the operation, or it stays Unknown"]
pub struct Pending(usize);

/// Records operations from many threads; one logical clock orders every call and return.
/// Each call and return takes the next tick under one lock, so if a thread sees an
/// operation's return before it calls another, the positions say so too.
#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<(u64, History)>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the call of `op` by `client`, just before it is sent.
    pub fn invoke(&self, client: u64, op: Op) -> Pending {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        let call = g.0;
        let id = g.1.push(client, call, None, op, Outcome::Unknown);
        Pending(id)
    }

    /// Records how the operation ended, just after the answer arrived (or the client gave
    /// up: then `Outcome::Unknown`, and its return stays infinite).
    pub fn finish(&self, p: Pending, outcome: Outcome) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.0 += 1;
        let tick = g.0;
        let e = &mut g.1.entries[p.0];
        e.ret = (outcome != Outcome::Unknown).then_some(tick);
        e.outcome = outcome;
    }

    /// The history so far; operations not finished yet are Unknown.
    pub fn history(&self) -> History {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }
}
