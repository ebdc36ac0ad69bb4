//! The simulated network between in-process stores.
//!
//! Every store gets a [`SimTransport`] handle onto one shared [`SimNet`]. A message goes
//! through the net's filters when it is sent (drop, partition, isolate, delay, by message
//! type), is buffered per destination store, and is delivered into that store's router on
//! `flush`, once per poller round, like a real batching transport. Delayed messages are
//! queued by time and delivered by one background thread, which ends when the net is
//! dropped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use raftstore::{RaftMessage, Router, Transport, TransportError};

use crate::filter::{decide_all, Decision, Filter};
use crate::seed::SeededRng;

/// Counters of what the network did with the messages it was given.
#[derive(Debug, Default)]
pub struct NetStats {
    /// Messages handed to a router (directly or after a delay).
    pub delivered: AtomicU64,
    /// Messages a filter dropped.
    pub dropped: AtomicU64,
    /// Messages a filter delayed.
    pub delayed: AtomicU64,
    /// Messages addressed to a stopped store.
    pub unreachable: AtomicU64,
}

struct Delayed<S> {
    at: Instant,
    seq: u64,
    to: u64,
    msg: RaftMessage,
    _s: std::marker::PhantomData<fn() -> S>,
}

impl<S> PartialEq for Delayed<S> {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl<S> Eq for Delayed<S> {}
impl<S> PartialOrd for Delayed<S> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<S> Ord for Delayed<S> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct DelayQueue<S> {
    heap: BinaryHeap<Reverse<Delayed<S>>>,
    seq: u64,
    closed: bool,
}

struct DelayShared<S> {
    queue: Mutex<DelayQueue<S>>,
    cv: Condvar,
}

/// The shared network of one cluster: store routers, filters and the seeded RNG.
pub struct SimNet<S> {
    routers: RwLock<HashMap<u64, Router<S>>>,
    filters: RwLock<Vec<Arc<dyn Filter>>>,
    rng: SeededRng,
    delayed: Arc<DelayShared<S>>,
    stats: NetStats,
}

impl<S: Send + 'static> SimNet<S> {
    /// A network whose random choices come from `rng`; starts the delay thread.
    pub fn new(rng: SeededRng) -> Arc<SimNet<S>> {
        let delayed = Arc::new(DelayShared {
            queue: Mutex::new(DelayQueue {
                heap: BinaryHeap::new(),
                seq: 0,
                closed: false,
            }),
            cv: Condvar::new(),
        });
        let net = Arc::new(SimNet {
            routers: RwLock::new(HashMap::new()),
            filters: RwLock::new(Vec::new()),
            rng,
            delayed: delayed.clone(),
            stats: NetStats::default(),
        });
        let weak = Arc::downgrade(&net);
        std::thread::Builder::new()
            .name("sim-net-delay".into())
            .spawn(move || delivery_loop(delayed, weak))
            .expect("spawning the delay thread");
        net
    }

    /// Connects a started store.
    pub fn register(&self, store_id: u64, router: Router<S>) {
        self.routers.write().insert(store_id, router);
    }

    /// Disconnects a stopped store: messages to it are dropped as unreachable.
    pub fn unregister(&self, store_id: u64) {
        self.routers.write().remove(&store_id);
    }

    /// True while store `store_id` is connected.
    pub fn is_connected(&self, store_id: u64) -> bool {
        self.routers.read().contains_key(&store_id)
    }

    /// Adds a filter after the existing ones.
    pub fn add_filter(&self, f: Arc<dyn Filter>) {
        self.filters.write().push(f);
    }

    /// Removes every filter.
    pub fn clear_filters(&self) {
        self.filters.write().clear();
    }

    /// Number of installed filters.
    pub fn filter_count(&self) -> usize {
        self.filters.read().len()
    }

    /// The cluster's seeded RNG.
    pub fn rng(&self) -> &SeededRng {
        &self.rng
    }

    /// What the network has done so far.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    fn decide(&self, from: u64, to: u64, msg: &RaftMessage) -> Decision {
        let filters = self.filters.read();
        if filters.is_empty() {
            return Decision::Pass;
        }
        self.rng.with(|rng| decide_all(&filters, from, to, msg, rng))
    }

    fn deliver(&self, to: u64, msgs: Vec<RaftMessage>) {
        let router = self.routers.read().get(&to).cloned();
        let Some(router) = router else {
            self.stats
                .unreachable
                .fetch_add(msgs.len() as u64, Ordering::Relaxed);
            return;
        };
        for m in msgs {
            if router.send_raft_message(m).is_ok() {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            } else {
                self.stats.unreachable.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn delay(&self, to: u64, msg: RaftMessage, d: Duration) {
        self.stats.delayed.fetch_add(1, Ordering::Relaxed);
        let mut q = self.delayed.queue.lock();
        q.seq += 1;
        let seq = q.seq;
        q.heap.push(Reverse(Delayed {
            at: Instant::now() + d,
            seq,
            to,
            msg,
            _s: std::marker::PhantomData,
        }));
        self.delayed.cv.notify_one();
    }
}

impl<S> Drop for SimNet<S> {
    fn drop(&mut self) {
        self.delayed.queue.lock().closed = true;
        self.delayed.cv.notify_all();
    }
}

fn delivery_loop<S: Send + 'static>(shared: Arc<DelayShared<S>>, net: Weak<SimNet<S>>) {
    let mut q = shared.queue.lock();
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
                q = shared.queue.lock();
            }
            Some(Reverse(d)) => {
                let wait = d.at - now;
                shared.cv.wait_for(&mut q, wait);
            }
            None => {
                shared.cv.wait_for(&mut q, Duration::from_millis(200));
            }
        }
    }
}

/// One store's handle onto the [`SimNet`]: filters on send, buffers per destination,
/// delivers on flush. Each clone (the poller's, the log writer's) has its own buffers.
pub struct SimTransport<S> {
    store_id: u64,
    net: Arc<SimNet<S>>,
    buffers: HashMap<u64, Vec<RaftMessage>>,
}

impl<S> Clone for SimTransport<S> {
    fn clone(&self) -> Self {
        SimTransport {
            store_id: self.store_id,
            net: self.net.clone(),
            buffers: HashMap::new(),
        }
    }
}

impl<S: Send + 'static> SimTransport<S> {
    /// The transport of store `store_id`.
    pub fn new(store_id: u64, net: Arc<SimNet<S>>) -> Self {
        SimTransport {
            store_id,
            net,
            buffers: HashMap::new(),
        }
    }

    /// The store this transport sends from.
    pub fn store_id(&self) -> u64 {
        self.store_id
    }
}

impl<S: Send + 'static> Transport for SimTransport<S> {
    fn send(&mut self, msg: RaftMessage) -> Result<(), TransportError> {
        let to = msg.to_peer.store_id;
        if !self.net.is_connected(to) {
            self.net.stats.unreachable.fetch_add(1, Ordering::Relaxed);
            return Err(TransportError::Unreachable(to));
        }
        match self.net.decide(self.store_id, to, &msg) {
            Decision::Drop => {
                self.net.stats.dropped.fetch_add(1, Ordering::Relaxed);
                Err(TransportError::Dropped)
            }
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
        for (to, msgs) in self.buffers.iter_mut() {
            if !msgs.is_empty() {
                self.net.deliver(*to, std::mem::take(msgs));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::MessageType;
    use raftstore::msg::{PeerMsg, PollerMsg};

    use super::*;
    use crate::filter::{DelayFilter, IsolationFilter};

    type Snap = engine::MemSnapshot;

    fn msg_to(store: u64, region: u64) -> RaftMessage {
        let mut m = RaftMessage {
            region_id: region,
            ..Default::default()
        };
        m.to_peer.store_id = store;
        m.message.set_msg_type(MessageType::MsgHeartbeat);
        m
    }

    fn region_of(m: PollerMsg<Snap>) -> u64 {
        match m {
            PollerMsg::Peer(region, PeerMsg::RaftMessage(_)) => region,
            _ => panic!("expected a raft message"),
        }
    }

    #[test]
    fn buffers_until_flush_and_filters() {
        let net = SimNet::<Snap>::new(SeededRng::new(3));
        let (router, rx) = Router::new();
        net.register(2, router);
        let mut t = SimTransport::new(1, net.clone());
        t.send(msg_to(2, 7)).unwrap();
        assert!(rx.try_recv().is_err(), "nothing arrives before flush");
        t.flush();
        assert_eq!(region_of(rx.try_recv().unwrap()), 7);

        assert!(matches!(
            t.send(msg_to(9, 1)),
            Err(TransportError::Unreachable(9))
        ));
        net.add_filter(Arc::new(IsolationFilter(2)));
        assert!(matches!(t.send(msg_to(2, 1)), Err(TransportError::Dropped)));
        net.clear_filters();

        net.add_filter(Arc::new(DelayFilter {
            min: Duration::from_millis(30),
            max: Duration::from_millis(30),
        }));
        let start = Instant::now();
        t.send(msg_to(2, 8)).unwrap();
        t.flush();
        let got = rx.recv_timeout(Duration::from_secs(2)).unwrap();
        assert_eq!(region_of(got), 8);
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert_eq!(net.stats().delayed.load(Ordering::Relaxed), 1);
    }
}
