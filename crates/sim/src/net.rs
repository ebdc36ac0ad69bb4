//! The simulated network: a transport that leaves messages in an outbox, and a queue of
//! messages in flight, delivered in virtual time.
//!
//! A store's parts (its pollers and its log writer) send through a [`SimTransport`]; it
//! only appends to the store's outbox. After every step the simulator moves each outbox
//! into the [`Net`], giving every message a delivery time drawn from the seeded RNG. A link
//! (one ordered pair of stores) stays FIFO, like the TCP stream of the real transport:
//! reordering, loss and duplication are faults, which a later stage adds here.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
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

/// Messages in flight between the simulated stores.
pub struct Net {
    queue: BinaryHeap<Reverse<InFlight>>,
    /// Latest delivery time scheduled on each (from, to) link, which keeps links FIFO.
    link_last: BTreeMap<(u64, u64), u64>,
    seq: u64,
    /// Shortest and longest one-way delay, nanoseconds.
    delay: (u64, u64),
}

impl Net {
    /// An empty network whose one-way delays are drawn in `[min, max]` nanoseconds.
    pub fn new(min_delay: u64, max_delay: u64) -> Self {
        Net {
            queue: BinaryHeap::new(),
            link_last: BTreeMap::new(),
            seq: 0,
            delay: (min_delay, max_delay.max(min_delay)),
        }
    }

    /// Puts `msg` from store `from` on the wire at `now`.
    pub fn send(&mut self, now: u64, from: u64, msg: RaftMessage, rng: &mut impl Rng) {
        let to = msg.to_peer.store_id;
        let drawn = now + rng.gen_range(self.delay.0..=self.delay.1);
        let last = self.link_last.entry((from, to)).or_insert(0);
        // FIFO per link: never before what this link already carries.
        let at = drawn.max(*last);
        *last = at;
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            at,
            seq: self.seq,
            from,
            msg,
        }));
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
