//! The simulated network between in-process stores.
//!
//! Every store gets a [`SimTransport`] handle onto one shared [`SimNet`]. A message goes
//! through the net's filters when it is sent (drop, partition, isolate, delay, by message
//! type), is buffered per destination store, and is delivered into that store's router on
//! `flush` — once per poller round, like a real batching transport.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use raft::eraftpb::MessageType;
use raftstore::{RaftMessage, Router, Transport, TransportError};
use rand::rngs::StdRng;
use rand::Rng;

/// The router type of an in-process store.
pub type StoreRouter = Router<engine::FjallSnapshot>;

/// What a filter decides for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let it through.
    Pass,
    /// Discard it.
    Drop,
    /// Deliver it after this long.
    Delay(Duration),
}

/// A rule applied to every store-to-store message.
pub trait Filter: Send + Sync {
    /// Decides the fate of `msg` going from store `from` to store `to`.
    fn decide(&self, from: u64, to: u64, msg: &RaftMessage, rng: &mut StdRng) -> Decision;

    /// Changes `msg` on the wire before it is decided on (a faulty link or peer); most
    /// filters leave it alone.
    fn rewrite(&self, _from: u64, _to: u64, _msg: &mut RaftMessage) {}
}

/// Drops each message with probability `rate`.
pub struct DropFilter {
    /// Fraction of messages dropped, 0.0..=1.0.
    pub rate: f64,
}

impl Filter for DropFilter {
    fn decide(&self, _: u64, _: u64, _: &RaftMessage, rng: &mut StdRng) -> Decision {
        if rng.gen_bool(self.rate.clamp(0.0, 1.0)) {
            Decision::Drop
        } else {
            Decision::Pass
        }
    }
}

/// Drops every message between the two sets of stores, both ways.
pub struct PartitionFilter {
    /// One side.
    pub s1: Vec<u64>,
    /// The other side.
    pub s2: Vec<u64>,
}

impl Filter for PartitionFilter {
    fn decide(&self, from: u64, to: u64, _: &RaftMessage, _: &mut StdRng) -> Decision {
        let crosses = (self.s1.contains(&from) && self.s2.contains(&to))
            || (self.s2.contains(&from) && self.s1.contains(&to));
        if crosses {
            Decision::Drop
        } else {
            Decision::Pass
        }
    }
}

/// Cuts one store off from all others.
pub struct IsolationFilter(pub u64);

impl Filter for IsolationFilter {
    fn decide(&self, from: u64, to: u64, _: &RaftMessage, _: &mut StdRng) -> Decision {
        if (from == self.0) != (to == self.0) {
            Decision::Drop
        } else {
            Decision::Pass
        }
    }
}

/// Delays every message by a random time in `[min, max]`.
pub struct DelayFilter {
    /// Shortest delay.
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Filter for DelayFilter {
    fn decide(&self, _: u64, _: u64, _: &RaftMessage, rng: &mut StdRng) -> Decision {
        let span = self.max.saturating_sub(self.min).as_micros() as u64;
        let extra = if span == 0 {
            0
        } else {
            rng.gen_range(0..=span)
        };
        Decision::Delay(self.min + Duration::from_micros(extra))
    }
}

/// Drops messages of one raft type, optionally only those to one store.
pub struct MessageTypeFilter {
    /// The type dropped.
    pub msg_type: MessageType,
    /// Only messages to this store (None = any).
    pub to_store: Option<u64>,
}

impl Filter for MessageTypeFilter {
    fn decide(&self, _: u64, to: u64, msg: &RaftMessage, _: &mut StdRng) -> Decision {
        if msg.message.get_msg_type() == self.msg_type && self.to_store.is_none_or(|s| s == to) {
            Decision::Drop
        } else {
            Decision::Pass
        }
    }
}

struct Delayed {
    at: Instant,
    seq: u64,
    to: u64,
    msg: RaftMessage,
}

impl PartialEq for Delayed {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Delayed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

#[derive(Default)]
struct DelayQueue {
    heap: BinaryHeap<Reverse<Delayed>>,
    seq: u64,
    closed: bool,
}

/// The shared network: store routers, filters and the harness's seeded RNG.
pub struct SimNet {
    routers: RwLock<HashMap<u64, StoreRouter>>,
    /// Stores stopped or crashed and not started since: nothing they send goes out.
    cut_off: RwLock<std::collections::HashSet<u64>>,
    filters: RwLock<Vec<Arc<dyn Filter>>>,
    rng: Mutex<StdRng>,
    delayed: Arc<(Mutex<DelayQueue>, Condvar)>,
}

impl SimNet {
    /// A network whose random choices come from `rng`.
    pub fn new(rng: StdRng) -> Arc<SimNet> {
        let net = Arc::new(SimNet {
            routers: RwLock::new(HashMap::new()),
            cut_off: RwLock::new(Default::default()),
            filters: RwLock::new(Vec::new()),
            rng: Mutex::new(rng),
            delayed: Arc::new((Mutex::new(DelayQueue::default()), Condvar::new())),
        });
        let weak = Arc::downgrade(&net);
        let delayed = net.delayed.clone();
        std::thread::Builder::new()
            .name("sim-net-delay".into())
            .spawn(move || delivery_loop(delayed, weak))
            .expect("spawning the delay thread");
        net
    }

    /// Connects a started store.
    pub fn register(&self, store_id: u64, router: StoreRouter) {
        self.routers.write().insert(store_id, router);
    }

    /// Disconnects a stopped store: messages to it fail as unreachable, and nothing it
    /// still sends while it shuts down goes out.
    pub fn unregister(&self, store_id: u64) {
        self.cut_off.write().insert(store_id);
        self.routers.write().remove(&store_id);
    }

    /// Lets a store that is starting again send (before it can receive: its router is
    /// registered once it has started).
    pub fn reconnect(&self, store_id: u64) {
        self.cut_off.write().remove(&store_id);
    }

    fn is_cut_off(&self, store_id: u64) -> bool {
        self.cut_off.read().contains(&store_id)
    }

    /// Adds a filter.
    pub fn add_filter(&self, f: Arc<dyn Filter>) {
        self.filters.write().push(f);
    }

    /// Removes every filter.
    pub fn clear_filters(&self) {
        self.filters.write().clear();
    }

    /// Runs `f` with the harness RNG.
    pub fn with_rng<R>(&self, f: impl FnOnce(&mut StdRng) -> R) -> R {
        f(&mut self.rng.lock().unwrap())
    }

    fn decide(&self, from: u64, to: u64, msg: &RaftMessage) -> Decision {
        let filters = self.filters.read();
        if filters.is_empty() {
            return Decision::Pass;
        }
        let mut rng = self.rng.lock().unwrap();
        let mut delay = Duration::ZERO;
        for f in filters.iter() {
            match f.decide(from, to, msg, &mut rng) {
                Decision::Drop => return Decision::Drop,
                Decision::Delay(d) => delay = delay.max(d),
                Decision::Pass => {}
            }
        }
        if delay.is_zero() {
            Decision::Pass
        } else {
            Decision::Delay(delay)
        }
    }

    fn deliver(&self, to: u64, msgs: Vec<RaftMessage>) {
        let router = self.routers.read().get(&to).cloned();
        if let Some(r) = router {
            for m in msgs {
                let _ = r.send_raft_message(m);
            }
        }
    }

    fn delay(&self, to: u64, msg: RaftMessage, d: Duration) {
        let (lock, cv) = &*self.delayed;
        let mut q = lock.lock().unwrap();
        q.seq += 1;
        let seq = q.seq;
        q.heap.push(Reverse(Delayed {
            at: Instant::now() + d,
            seq,
            to,
            msg,
        }));
        cv.notify_one();
    }
}

impl Drop for SimNet {
    fn drop(&mut self) {
        let (lock, cv) = &*self.delayed;
        lock.lock().unwrap().closed = true;
        cv.notify_all();
    }
}

fn delivery_loop(delayed: Arc<(Mutex<DelayQueue>, Condvar)>, net: std::sync::Weak<SimNet>) {
    let (lock, cv) = &*delayed;
    let mut q = lock.lock().unwrap();
    loop {
        if q.closed {
            return;
        }
        let now = Instant::now();
        match q.heap.peek() {
            Some(Reverse(d)) if d.at <= now => {
                let Reverse(d) = q.heap.pop().expect("peeked");
                drop(q);
                match net.upgrade() {
                    Some(net) => net.deliver(d.to, vec![d.msg]),
                    None => return,
                }
                q = lock.lock().unwrap();
            }
            Some(Reverse(d)) => {
                let wait = d.at - now;
                q = cv.wait_timeout(q, wait).unwrap().0;
            }
            None => {
                q = cv.wait_timeout(q, Duration::from_millis(200)).unwrap().0;
            }
        }
    }
}

/// One store's handle onto the [`SimNet`].
#[derive(Clone)]
pub struct SimTransport {
    store_id: u64,
    net: Arc<SimNet>,
    buffers: HashMap<u64, Vec<RaftMessage>>,
}

impl SimTransport {
    /// The transport of store `store_id`.
    pub fn new(store_id: u64, net: Arc<SimNet>) -> Self {
        SimTransport {
            store_id,
            net,
            buffers: HashMap::new(),
        }
    }
}

impl Transport for SimTransport {
    fn send(&mut self, mut msg: RaftMessage) -> Result<(), TransportError> {
        let to = msg.to_peer.store_id;
        // A store that was stopped or crashed is off the network both ways: what it does
        // while it shuts down (after a crash, answers claiming writes its dead disk
        // dropped) must reach no one.
        if self.net.is_cut_off(self.store_id) {
            return Err(TransportError::Dropped);
        }
        if !self.net.routers.read().contains_key(&to) {
            return Err(TransportError::Unreachable(to));
        }
        for f in self.net.filters.read().iter() {
            f.rewrite(self.store_id, to, &mut msg);
        }
        match self.net.decide(self.store_id, to, &msg) {
            Decision::Drop => Err(TransportError::Dropped),
            Decision::Delay(d) => {
                self.net.delay(to, msg, d);
                Ok(())
            }
            Decision::Pass => {
                self.buffers.entry(to).or_default().push(msg);
                Ok(())
            }
        }
    }

    fn flush(&mut self) {
        if self.net.is_cut_off(self.store_id) {
            self.buffers.clear();
            return;
        }
        for (to, msgs) in self.buffers.iter_mut() {
            if !msgs.is_empty() {
                self.net.deliver(*to, std::mem::take(msgs));
            }
        }
    }
}
