//! Snapshot isolation of list-append transactions, checked the way Elle does it (simplified).
//!
//! Each transaction appends values to lists (each value unique within its key) and reads
//! whole lists. Appends to a key never lose their order, so a read of a list shows every
//! version of that key up to the one it saw: the longest read of a key gives its version
//! order, and every other read must be a prefix of it (else the order is "incompatible":
//! two reads disagree on history).
//!
//! From that order come the dependency edges between transactions (Adya's graph):
//! - `ww`: T wrote a version of k and U wrote the next one;
//! - `wr`: U read a list of k whose last element T appended;
//! - `rw`: U read a list of k, and T appended the element right after its end (U did not
//!   see T's write: an anti-dependency).
//!
//! Snapshot isolation forbids (Adya's phenomena, named as Elle names them):
//! - G1a, aborted read: a committed transaction read a value an aborted one appended;
//! - G1b, intermediate read: it read a list ending at a value that is not its writer's last
//!   append to that key;
//! - G0, a cycle of `ww` edges only;
//! - G1c, a cycle of `ww` and `wr` edges with at least one `wr`;
//! - G-single, a cycle with exactly one `rw` edge (a lost update or a fractured read shows
//!   up as this: two transactions read the same version and both appended after it, or one
//!   saw part of another's writes).
//!
//! Cycles with two or more `rw` edges (write skew) are allowed, as under SI. Also reported:
//! a read with a value nobody appended, a value twice in one read, and a transaction whose
//! read of a key it appended to does not end with its own appends (internal consistency).
//! Transactions of unknown outcome take part through the writes others observed.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;

/// One micro-operation of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mop {
    /// Append `value` to the list at `key`.
    Append { key: String, value: u64 },
    /// Read the list at `key`; `None` when the transaction never got an answer.
    Read {
        key: String,
        value: Option<Vec<u64>>,
    },
}

/// How a transaction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnStatus {
    /// Committed: its reads are answers, its appends happened.
    Committed,
    /// Aborted: none of its appends may ever be seen.
    Aborted,
    /// Unknown (timed out on commit): its appends may or may not have happened.
    Unknown,
}

/// One transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    /// Its index in the history.
    pub id: usize,
    /// How it ended.
    pub status: TxnStatus,
    /// Its operations, in order.
    pub mops: Vec<Mop>,
}

/// What kind of dependency an edge is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EdgeKind {
    /// Write then overwrite.
    Ww,
    /// Write then read.
    Wr,
    /// Read then overwrite (anti-dependency).
    Rw,
}

/// One edge of a cycle: `from` depends-before `to` through `key`, because of `value`
/// (the version written or read there; `None`: the empty list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub kind: EdgeKind,
    pub key: String,
    pub value: Option<u64>,
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (k, v) = (&self.key, self.value);
        let why = match (self.kind, v) {
            (EdgeKind::Ww, Some(v)) => format!("ww on {k}: T{} appended right after {v}", self.to),
            (EdgeKind::Wr, Some(v)) => format!("wr on {k}: T{} read up to {v}", self.to),
            (EdgeKind::Rw, Some(v)) => {
                format!(
                    "rw on {k}: T{} read up to {v}, T{} appended next",
                    self.from, self.to
                )
            }
            (EdgeKind::Rw, None) => format!(
                "rw on {k}: T{} read it empty, T{} appended first",
                self.from, self.to
            ),
            (kind, None) => format!("{kind:?} on {k}"),
        };
        write!(f, "T{} -> T{} ({why})", self.from, self.to)
    }
}

/// One violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// Two reads of `key` are not prefixes of one order.
    IncompatibleOrder {
        key: String,
        a: (usize, Vec<u64>),
        b: (usize, Vec<u64>),
    },
    /// A read shows a value no transaction appended.
    Garbage {
        key: String,
        value: u64,
        reader: usize,
    },
    /// A read shows a value twice.
    Duplicate {
        key: String,
        value: u64,
        reader: usize,
    },
    /// A transaction's read of a key it appended to does not end with its own appends.
    Internal {
        txn: usize,
        key: String,
        read: Vec<u64>,
        own: Vec<u64>,
    },
    /// G1a: a committed read saw an aborted transaction's append.
    AbortedRead {
        key: String,
        value: u64,
        writer: usize,
        reader: usize,
    },
    /// G1b: a read ended at a value its writer later followed with another append.
    IntermediateRead {
        key: String,
        value: u64,
        writer: usize,
        reader: usize,
    },
    /// G0: a cycle of ww edges.
    G0(Vec<Edge>),
    /// G1c: a cycle of ww and wr edges, at least one wr.
    G1c(Vec<Edge>),
    /// G-single: a cycle with exactly one rw edge.
    GSingle(Vec<Edge>),
}

impl Anomaly {
    /// The anomaly's short name (G0, G1a, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Anomaly::IncompatibleOrder { .. } => "incompatible-order",
            Anomaly::Garbage { .. } => "garbage-read",
            Anomaly::Duplicate { .. } => "duplicate-elements",
            Anomaly::Internal { .. } => "internal",
            Anomaly::AbortedRead { .. } => "G1a",
            Anomaly::IntermediateRead { .. } => "G1b",
            Anomaly::G0(_) => "G0",
            Anomaly::G1c(_) => "G1c",
            Anomaly::GSingle(_) => "G-single",
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name())?;
        match self {
            Anomaly::IncompatibleOrder { key, a, b } => write!(
                f,
                "key {key}: T{} read {:?} but T{} read {:?}",
                a.0, a.1, b.0, b.1
            ),
            Anomaly::Garbage { key, value, reader } => {
                write!(f, "T{reader} read {value} in {key}, which nobody appended")
            }
            Anomaly::Duplicate { key, value, reader } => {
                write!(f, "T{reader} read {value} twice in {key}")
            }
            Anomaly::Internal {
                txn,
                key,
                read,
                own,
            } => write!(f, "T{txn} appended {own:?} to {key} and then read {read:?}"),
            Anomaly::AbortedRead {
                key,
                value,
                writer,
                reader,
            } => write!(
                f,
                "T{reader} read {value} in {key}, appended by T{writer}, which aborted"
            ),
            Anomaly::IntermediateRead {
                key,
                value,
                writer,
                reader,
            } => write!(
                f,
                "T{reader} read {key} up to {value}, which T{writer} followed with another append"
            ),
            Anomaly::G0(c) | Anomaly::G1c(c) | Anomaly::GSingle(c) => {
                let parts: Vec<String> = c.iter().map(|e| e.to_string()).collect();
                write!(f, "{}", parts.join(", "))
            }
        }
    }
}

/// A list of transactions.
#[derive(Clone, Debug, Default)]
pub struct TxnHistory {
    txns: Vec<Txn>,
}

impl TxnHistory {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a transaction; returns its id.
    pub fn push(&mut self, status: TxnStatus, mops: Vec<Mop>) -> usize {
        let id = self.txns.len();
        self.txns.push(Txn { id, status, mops });
        id
    }

    /// The transactions.
    pub fn txns(&self) -> &[Txn] {
        &self.txns
    }
}

/// Where each key's data came from: writer of each value (txn, is its last append to the
/// key), the version order, and the external reads (reader, list).
#[derive(Default)]
struct KeyInfo {
    writer: HashMap<u64, (usize, bool)>,
    order: Vec<u64>,
    reads: Vec<(usize, Vec<u64>)>,
}

/// Checks `h` for the anomalies snapshot isolation forbids (see the module doc). Empty:
/// none found. At most `MAX_CYCLES` cycles of each kind are reported.
pub fn check(h: &TxnHistory) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut keys: BTreeMap<String, KeyInfo> = BTreeMap::new();
    for t in &h.txns {
        let mut own: HashMap<&str, Vec<u64>> = HashMap::new();
        for m in &t.mops {
            match m {
                Mop::Append { key, value } => {
                    own.entry(key).or_default().push(*value);
                }
                Mop::Read {
                    key,
                    value: Some(list),
                } if t.status == TxnStatus::Committed => match own.get(key.as_str()) {
                    None => keys
                        .entry(key.clone())
                        .or_default()
                        .reads
                        .push((t.id, list.clone())),
                    Some(mine) => {
                        if !list.ends_with(mine) {
                            out.push(Anomaly::Internal {
                                txn: t.id,
                                key: key.clone(),
                                read: list.clone(),
                                own: mine.clone(),
                            });
                        }
                    }
                },
                Mop::Read { .. } => {}
            }
        }
        // Aborted transactions are writers too, so a read of their values is named G1a.
        for (key, values) in own {
            let info = keys.entry(key.to_string()).or_default();
            for (i, v) in values.iter().enumerate() {
                info.writer.insert(*v, (t.id, i + 1 == values.len()));
            }
        }
    }
    let status = |id: usize| h.txns[id].status;
    let mut edges: Vec<Edge> = Vec::new();
    for (key, info) in keys.iter_mut() {
        // Per-read checks; the longest well-formed read gives the order.
        let mut longest: Option<&(usize, Vec<u64>)> = None;
        for r in &info.reads {
            let mut seen = HashSet::new();
            for &v in &r.1 {
                if !seen.insert(v) {
                    out.push(Anomaly::Duplicate {
                        key: key.clone(),
                        value: v,
                        reader: r.0,
                    });
                }
                match info.writer.get(&v) {
                    None => out.push(Anomaly::Garbage {
                        key: key.clone(),
                        value: v,
                        reader: r.0,
                    }),
                    Some(&(w, _)) if status(w) == TxnStatus::Aborted => {
                        out.push(Anomaly::AbortedRead {
                            key: key.clone(),
                            value: v,
                            writer: w,
                            reader: r.0,
                        })
                    }
                    _ => {}
                }
            }
            if let Some(&last) = r.1.last() {
                if let Some(&(w, false)) = info.writer.get(&last) {
                    if w != r.0 {
                        out.push(Anomaly::IntermediateRead {
                            key: key.clone(),
                            value: last,
                            writer: w,
                            reader: r.0,
                        });
                    }
                }
            }
            if longest.is_none_or(|l| r.1.len() > l.1.len()) {
                longest = Some(r);
            }
        }
        let Some(longest) = longest.cloned() else {
            continue;
        };
        let mut compatible = true;
        for r in &info.reads {
            if !longest.1.starts_with(&r.1) {
                out.push(Anomaly::IncompatibleOrder {
                    key: key.clone(),
                    a: longest.clone(),
                    b: r.clone(),
                });
                compatible = false;
                break;
            }
        }
        if !compatible {
            continue;
        }
        info.order = longest.1;
        let writer_of = |v: u64| info.writer.get(&v).map(|w| w.0);
        for w in info.order.windows(2) {
            if let (Some(a), Some(b)) = (writer_of(w[0]), writer_of(w[1])) {
                edges.push(Edge {
                    from: a,
                    to: b,
                    kind: EdgeKind::Ww,
                    key: key.clone(),
                    value: Some(w[0]),
                });
            }
        }
        for (reader, list) in &info.reads {
            if let Some(w) = list.last().and_then(|&v| writer_of(v)) {
                edges.push(Edge {
                    from: w,
                    to: *reader,
                    kind: EdgeKind::Wr,
                    key: key.clone(),
                    value: list.last().copied(),
                });
            }
            if let Some(w) = info.order.get(list.len()).and_then(|&v| writer_of(v)) {
                edges.push(Edge {
                    from: *reader,
                    to: w,
                    kind: EdgeKind::Rw,
                    key: key.clone(),
                    value: list.last().copied(),
                });
            }
        }
    }
    // Aborted transactions' writes are reported as G1a above, not part of the graph; and
    // an edge from a transaction to itself is no dependency.
    edges.retain(|e| {
        e.from != e.to && status(e.from) != TxnStatus::Aborted && status(e.to) != TxnStatus::Aborted
    });
    out.extend(find_cycles(h.txns.len(), &edges));
    out
}

/// How many cycles of each kind [`check`] reports at most.
pub const MAX_CYCLES: usize = 10;

/// G0, G1c and G-single cycles among `edges` over `n` transactions.
fn find_cycles(n: usize, edges: &[Edge]) -> Vec<Anomaly> {
    let comp = components(n, edges);
    let inner: Vec<&Edge> = edges
        .iter()
        .filter(|e| comp[e.from] == comp[e.to])
        .collect();
    let mut out = Vec::new();
    // (the kind of the cycle's first edge, the kinds the way back may use, the anomaly)
    type Search = (EdgeKind, &'static [EdgeKind], fn(Vec<Edge>) -> Anomaly);
    let searches: [Search; 3] = [
        (EdgeKind::Ww, &[EdgeKind::Ww], Anomaly::G0),
        (EdgeKind::Wr, &[EdgeKind::Ww, EdgeKind::Wr], Anomaly::G1c),
        (
            EdgeKind::Rw,
            &[EdgeKind::Ww, EdgeKind::Wr],
            Anomaly::GSingle,
        ),
    ];
    for (first, rest, make) in searches {
        let mut adj: HashMap<usize, Vec<&Edge>> = HashMap::new();
        for e in inner.iter().filter(|e| rest.contains(&e.kind)) {
            adj.entry(e.from).or_default().push(e);
        }
        let mut found: HashSet<Vec<usize>> = HashSet::new();
        for e in inner.iter().filter(|e| e.kind == first) {
            if found.len() >= MAX_CYCLES {
                break;
            }
            let Some(path) = shortest_path(&adj, e.to, e.from) else {
                continue;
            };
            let mut cycle = vec![(*e).clone()];
            cycle.extend(path.into_iter().cloned());
            let mut nodes: Vec<usize> = cycle.iter().map(|e| e.from).collect();
            nodes.sort_unstable();
            if found.insert(nodes) {
                out.push(make(cycle));
            }
        }
    }
    out
}

/// The edges of a shortest path from `from` to `to` (breadth first), if any.
fn shortest_path<'a>(
    adj: &HashMap<usize, Vec<&'a Edge>>,
    from: usize,
    to: usize,
) -> Option<Vec<&'a Edge>> {
    let mut came: HashMap<usize, &'a Edge> = HashMap::new();
    let mut queue = VecDeque::from([from]);
    let mut visited = HashSet::from([from]);
    while let Some(n) = queue.pop_front() {
        if n == to {
            let mut path = Vec::new();
            let mut at = to;
            while at != from {
                let e = came[&at];
                path.push(e);
                at = e.from;
            }
            path.reverse();
            return Some(path);
        }
        for e in adj.get(&n).into_iter().flatten() {
            if visited.insert(e.to) {
                came.insert(e.to, e);
                queue.push_back(e.to);
            }
        }
    }
    None
}

/// Strongly connected component of each node (Kosaraju, iterative): only edges inside one
/// component can lie on a cycle.
fn components(n: usize, edges: &[Edge]) -> Vec<usize> {
    let mut fwd = vec![Vec::new(); n];
    let mut back = vec![Vec::new(); n];
    for e in edges {
        fwd[e.from].push(e.to);
        back[e.to].push(e.from);
    }
    let mut order = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    for s in 0..n {
        if seen[s] {
            continue;
        }
        seen[s] = true;
        let mut stack = vec![(s, 0usize)];
        while let Some((v, i)) = stack.pop() {
            if let Some(&w) = fwd[v].get(i) {
                stack.push((v, i + 1));
                if !seen[w] {
                    seen[w] = true;
                    stack.push((w, 0));
                }
            } else {
                order.push(v);
            }
        }
    }
    let mut comp = vec![usize::MAX; n];
    for (c, &s) in order.iter().rev().enumerate() {
        if comp[s] != usize::MAX {
            continue;
        }
        comp[s] = c;
        let mut stack = vec![s];
        while let Some(v) = stack.pop() {
            for &w in &back[v] {
                if comp[w] == usize::MAX {
                    comp[w] = c;
                    stack.push(w);
                }
            }
        }
    }
    comp
}
