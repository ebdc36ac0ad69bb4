//! The simulated network: a transport that leaves messages in an outbox, and a queue of
//! messages in flight, delivered in virtual time.
//!
//! A store's parts (its pollers and its log writer) send through a [`SimTransport`]; it
//! only appends to the store's outbox. After every step the simulator moves each outbox
//! into the [`Net`], giving every message a delivery time drawn from the seeded RNG. A link
//! (one ordered pair of stores) stays FIFO, like the TCP stream of the real transport,
//! unless a fault says otherwise.
//!
//! # Faults
//! Each run draws its own [`NetFaults`] from the seed: the probability that a message is
//! dropped, duplicated (the copy travels on its own delay, so it may overtake or trail the
//! original) or reordered (an extra delay that ignores the link's FIFO order). Partitions
//! and crashed stores are cut links ([`Net::set_cut`]) and [`Net::set_down`] stores: a message on a
//! cut link or to a store that is down is dropped when it would be delivered (so what was
//! in flight when a partition began is lost too), and a crash drops everything in flight
//! to or from the store at once ([`Net::drop_store`]).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::{Arc, Mutex};

use raftstore::{RaftMessage, Transport, TransportError};
use rand::Rng;

/// What one store's parts sent since the simulator last looked.
pub type Outbox = Arc<Mutex<Vec<RaftMessage>>>;

/// The transport of one simulated store: every message goes to its outbox.
#[derive(Clone)]
pub struct SimTransport {
    outbox: Outbox,
}

impl SimTransport {
    /// A transport appending to `outbox`.
    pub fn new(outbox: Outbox) -> Self {
        SimTransport { outbox }
    }
}

impl Transport for SimTransport {
    fn send(&mut self, msg: RaftMessage) -> Result<(), TransportError> {
        self.outbox.lock().expect("outbox").push(msg);
        Ok(())
    }

    /// Nothing to do: the simulator takes the outbox after the step, which is when a real
    /// transport's flush at the end of a round would have sent it.
    fn flush(&mut self) {}
}

/// A message on its way.
pub struct InFlight {
    /// Virtual time of delivery, nanoseconds.
    pub at: u64,
    /// Tie-breaker: the order messages were sent in.
    pub seq: u64,
    /// Sending store.
    pub from: u64,
    /// The message (its `to_peer.store_id` is the destination).
    pub msg: RaftMessage,
}

impl PartialEq for InFlight {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for InFlight {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// The per-message faults of one run, drawn from its seed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetFaults {
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub dup: f64,
    /// Probability that a message gets an extra delay that ignores FIFO order.
    pub reorder: f64,
    /// Longest extra delay of a reordered message, nanoseconds.
    pub reorder_extra: u64,
}

impl NetFaults {
    /// No faults: every message arrives once, in order.
    pub fn none() -> Self {
        NetFaults {
            drop: 0.0,
            dup: 0.0,
            reorder: 0.0,
            reorder_extra: 0,
        }
    }

    /// Rates drawn from `rng`: up to 5% drops, 3% duplicates, 5% reordered by up to 30 ms.
    pub fn draw(rng: &mut impl Rng) -> Self {
        NetFaults {
            drop: rng.gen_range(0.0..0.05),
            dup: rng.gen_range(0.0..0.03),
            reorder: rng.gen_range(0.0..0.05),
            reorder_extra: rng.gen_range(1..=30) * 1_000_000,
        }
    }
}

/// What became of a message put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// On its way, in order.
    Sent,
    /// Lost.
    Dropped,
    /// On its way twice.
    Duplicated,
    /// On its way, possibly overtaking earlier messages of its link.
    Reordered,
}

/// Messages in flight between the simulated stores.
pub struct Net {
    queue: BinaryHeap<Reverse<InFlight>>,
    /// Latest delivery time scheduled on each (from, to) link, which keeps links FIFO.
    link_last: BTreeMap<(u64, u64), u64>,
    seq: u64,
    /// Shortest and longest one-way delay, nanoseconds.
    delay: (u64, u64),
    faults: NetFaults,
    /// Links (from, to) a partition cuts.
    cut: BTreeSet<(u64, u64)>,
    /// Stores that are down (crashed, not restarted yet).
    down: BTreeSet<u64>,
}

impl Net {
    /// An empty network whose one-way delays are drawn in `[min, max]` nanoseconds and
    /// whose messages meet `faults`.
    pub fn new(min_delay: u64, max_delay: u64, faults: NetFaults) -> Self {
        Net {
            queue: BinaryHeap::new(),
            link_last: BTreeMap::new(),
            seq: 0,
            delay: (min_delay, max_delay.max(min_delay)),
            faults,
            cut: BTreeSet::new(),
            down: BTreeSet::new(),
        }
    }

    /// Puts `msg` from store `from` on the wire at `now`; says what became of it. Every
    /// message draws its delay and three fault dice from the RNG (a reordered or
    /// duplicated one draws once more for its extra delay).
    pub fn send(&mut self, now: u64, from: u64, msg: RaftMessage, rng: &mut impl Rng) -> Fate {
        let to = msg.to_peer.store_id;
        let drawn = now + rng.gen_range(self.delay.0..=self.delay.1);
        let (lose, dup, reorder) = (rng.gen::<f64>(), rng.gen::<f64>(), rng.gen::<f64>());
        if lose < self.faults.drop {
            return Fate::Dropped;
        }
        let mut fate = Fate::Sent;
        let at = if reorder < self.faults.reorder {
            fate = Fate::Reordered;
            drawn + rng.gen_range(0..=self.faults.reorder_extra)
        } else {
            let last = self.link_last.entry((from, to)).or_insert(0);
            // FIFO per link: never before what this link already carries.
            let at = drawn.max(*last);
            *last = at;
            at
        };
        if dup < self.faults.dup {
            fate = Fate::Duplicated;
            let again = now + rng.gen_range(self.delay.0..=self.delay.1 * 4);
            self.push(again, from, msg.clone());
        }
        self.push(at, from, msg);
        fate
    }

    fn push(&mut self, at: u64, from: u64, msg: RaftMessage) {
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            at,
            seq: self.seq,
            from,
            msg,
        }));
    }

    /// Cuts (or, with `cut == false`, restores) the link from `from` to `to`.
    pub fn set_cut(&mut self, from: u64, to: u64, cut: bool) {
        if cut {
            self.cut.insert((from, to));
        } else {
            self.cut.remove(&(from, to));
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Whether the link from `from` to `to` is cut.
    pub fn is_cut(&self, from: u64, to: u64) -> bool {
        self.cut.contains(&(from, to))
    }

    /// Marks store `id` down (crashed) or up again.
    pub fn set_down(&mut self, id: u64, down: bool) {
        if down {
            self.down.insert(id);
        } else {
            self.down.remove(&id);
        }
    }

    /// Whether a message of this link must be dropped at delivery: the link is cut or the
    /// receiver is down.
    pub fn blocked(&self, from: u64, to: u64) -> bool {
        self.is_cut(from, to) || self.down.contains(&to) || self.down.contains(&from)
    }

    /// Drops every message in flight to or from store `id` (it crashed); returns how many.
    pub fn drop_store(&mut self, id: u64) -> usize {
        let before = self.queue.len();
        self.queue
            .retain(|Reverse(m)| m.from != id && m.msg.to_peer.store_id != id);
        before - self.queue.len()
    }

    /// When the next message arrives, if any is in flight.
    pub fn next_at(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse(m)| m.at)
    }

    /// Takes the next message if it has arrived by `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<InFlight> {
        if self.next_at()? <= now {
            self.queue.pop().map(|Reverse(m)| m)
        } else {
            None
        }
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }
}

/// One line describing a delivered message, for the trace.
pub fn describe(m: &InFlight) -> String {
    let r = &m.msg;
    let raft = &r.message;
    let kind = match r.extra {
        Some(extra) => format!("{extra:?}"),
        None => format!("{:?}", raft.get_msg_type()),
    };
    format!(
        "deliver s{}->s{} r{} {kind} term={} index={} log_term={} commit={} entries={} reject={}",
        m.from,
        r.to_peer.store_id,
        r.region_id,
        raft.term,
        raft.index,
        raft.log_term,
        raft.commit,
        raft.entries.len(),
        raft.reject
    )
}
