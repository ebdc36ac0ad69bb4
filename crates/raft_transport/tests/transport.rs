//! The gRPC transport against real loopback servers: batching and order, snapshots in
//! chunks beside ordinary traffic, reconnection after a restart, unknown stores, and the
//! snapshot status callback.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use raft::eraftpb::MessageType;
use raft_transport::{
    Config, GrpcTransport, LinkStatus, ResolveFuture, StaticResolver, StoreResolver,
};
use raftstore::{RaftMessage, Transport, TransportError};
use support::{wait_until, Recorder, TestServer};

const WAIT: Duration = Duration::from_secs(10);

type Reports = Arc<Mutex<Vec<(u64, u64, bool)>>>;

/// A client runtime and a transport on it, with the snapshot reports it collects.
struct Client {
    transport: GrpcTransport,
    reports: Reports,
    resolver: Arc<CountingResolver>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Client {
    fn new(cfg: Config) -> Client {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let reports: Reports = Arc::default();
        let sink = reports.clone();
        let resolver = Arc::new(CountingResolver::default());
        let transport = GrpcTransport::new(
            cfg,
            runtime.handle().clone(),
            resolver.clone(),
            Arc::new(move |region, peer, ok| sink.lock().push((region, peer, ok))),
        )
        .unwrap();
        Client {
            transport,
            reports,
            resolver,
            runtime: Some(runtime),
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A [`StaticResolver`] that counts lookups and can answer slowly.
#[derive(Default)]
struct CountingResolver {
    table: StaticResolver,
    calls: AtomicUsize,
    delay: Mutex<Duration>,
}

impl StoreResolver for CountingResolver {
    fn resolve(&self, store_id: u64) -> ResolveFuture<'_> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.lock();
        let answer = self.table.resolve(store_id);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            answer.await
        })
    }
}

fn append(to_store: u64, index: u64) -> RaftMessage {
    let mut m = RaftMessage {
        region_id: 1,
        ..Default::default()
    };
    m.from_peer.id = 1;
    m.from_peer.store_id = 1;
    m.to_peer.id = 10 + to_store;
    m.to_peer.store_id = to_store;
    m.message.set_msg_type(MessageType::MsgAppend);
    m.message.index = index;
    m.message.term = 3;
    m
}

fn snapshot(to_store: u64, region_id: u64, data: Vec<u8>) -> RaftMessage {
    let mut m = append(to_store, 0);
    m.region_id = region_id;
    m.message.set_msg_type(MessageType::MsgSnapshot);
    let s = m.message.mut_snapshot();
    s.mut_metadata().index = 77;
    s.mut_metadata().term = 5;
    s.data = data.into();
    m
}

#[test]
fn messages_arrive_in_order_batched_per_destination_store() {
    let (rec2, rec3) = (Recorder::new(), Recorder::new());
    let (s2, s3) = (
        TestServer::start("127.0.0.1:0", rec2.clone()),
        TestServer::start("127.0.0.1:0", rec3.clone()),
    );
    let mut c = Client::new(Config::default());
    c.resolver.table.insert(2, s2.addr.to_string());
    c.resolver.table.insert(3, s3.addr.to_string());

    // 20 poller rounds of 100 messages to each of two stores.
    let n = 2000u64;
    for round in 0..20 {
        for i in 0..100 {
            let idx = round * 100 + i;
            c.transport.send(append(2, idx)).unwrap();
            c.transport.send(append(3, n + idx)).unwrap();
        }
        c.transport.flush();
    }
    assert!(wait_until(WAIT, || rec2.indexes().len() == n as usize
        && rec3.indexes().len() == n as usize));
    assert_eq!(rec2.indexes(), (0..n).collect::<Vec<_>>());
    assert_eq!(rec3.indexes(), (n..2 * n).collect::<Vec<_>>());
    for rec in [&rec2, &rec3] {
        let r = rec.received.lock();
        assert_eq!(r.frames.iter().sum::<usize>(), n as usize);
        assert!(
            r.frames.len() < n as usize / 2,
            "{} frames for {n} messages",
            r.frames.len()
        );
        // Every message went to its own store.
        let to = r.msgs[0].to_peer.as_ref().unwrap().store_id;
        assert!(r
            .msgs
            .iter()
            .all(|m| m.to_peer.as_ref().unwrap().store_id == to));
    }
    let s = c.transport.stats();
    assert_eq!(s.msgs_sent, 2 * n);
    let frames = rec2.received.lock().frames.len() + rec3.received.lock().frames.len();
    assert_eq!(s.frames_sent, frames as u64);
    assert_eq!(
        s.dropped_queue_full + s.dropped_unreachable + s.dropped_in_flight,
        0
    );
    assert_eq!(c.transport.link_status(2), Some(LinkStatus::Connected));
    drop(c);
    s2.stop();
    s3.stop();
}

#[test]
fn a_large_snapshot_arrives_in_chunks_while_raft_messages_keep_flowing() {
    let rec = Recorder::new();
    let server = TestServer::start("127.0.0.1:0", rec.clone());
    let mut c = Client::new(Config::default());
    c.resolver.table.insert(2, server.addr.to_string());

    let data: Vec<u8> = (0..5 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    // The server holds the snapshot stream after its first chunk until the gate opens.
    rec.set_snapshot_gate(false);
    c.transport.send(snapshot(2, 9, data.clone())).unwrap();
    c.transport.flush();
    assert!(wait_until(WAIT, || rec.received.lock().snapshot_streams == 1));

    for i in 0..100 {
        c.transport.send(append(2, i)).unwrap();
    }
    c.transport.flush();
    assert!(
        wait_until(WAIT, || rec.indexes().len() == 100),
        "raft messages are stuck behind the snapshot"
    );
    assert_eq!(rec.indexes(), (0..100).collect::<Vec<_>>());
    assert!(rec.received.lock().snapshots.is_empty());
    assert!(c.reports.lock().is_empty(), "reported before delivery");

    rec.set_snapshot_gate(true);
    assert!(wait_until(WAIT, || !c.reports.lock().is_empty()));
    assert_eq!(*c.reports.lock(), vec![(9, 12, true)]);
    let r = rec.received.lock();
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.snapshots.len(), 1);
    let (msg, chunks) = &r.snapshots[0];
    // 1 MiB chunks; the server's default 4 MiB message limit would refuse it whole.
    assert_eq!(*chunks, 5);
    assert_eq!(msg.region_id, 9);
    assert_eq!(msg.to_peer.as_ref().unwrap().id, 12);
    let snap = msg.message.as_ref().unwrap().snapshot.as_ref().unwrap();
    assert_eq!(snap.metadata.as_ref().unwrap().index, 77);
    assert!(snap.data == data, "snapshot data differs");
    // The snapshot never went through the BatchRaft stream.
    assert_eq!(r.msgs.len(), 100);
    drop(r);
    assert_eq!(c.transport.stats().snapshots_sent, 1);
    drop(c);
    server.stop();
}

#[test]
fn the_transport_reconnects_when_the_destination_comes_back() {
    let rec1 = Recorder::new();
    let server = TestServer::start("127.0.0.1:0", rec1.clone());
    let addr = server.addr;
    let mut c = Client::new(Config::default());
    c.resolver.table.insert(2, addr.to_string());

    for i in 0..10 {
        c.transport.send(append(2, i)).unwrap();
    }
    c.transport.flush();
    assert!(wait_until(WAIT, || rec1.indexes().len() == 10));

    server.stop();
    // The broken stream is noticed without any traffic; the store is then marked down and
    // `send` refuses messages for it, as raft should treat the peer as unreachable.
    assert!(wait_until(WAIT, || c.transport.link_status(2)
        == Some(LinkStatus::Down)));
    assert!(matches!(
        c.transport.send(append(2, 10)),
        Err(TransportError::Unreachable(2)) | Ok(())
    ));
    c.transport.flush();
    let connects_before = c.transport.stats().connects;

    let rec2 = Recorder::new();
    let server = TestServer::start(&addr.to_string(), rec2.clone());
    let started = Instant::now();
    let mut next = 100u64;
    // Raft keeps retransmitting; keep sending until the new server hears from us.
    let reached = wait_until(WAIT, || {
        let _ = c.transport.send(append(2, next));
        c.transport.flush();
        next += 1;
        !rec2.indexes().is_empty()
    });
    assert!(reached, "no message reached the restarted server");
    // Backoff is capped at 2 s, so the reconnection cannot take much longer.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(c.transport.stats().connects > connects_before);
    assert_eq!(c.transport.link_status(2), Some(LinkStatus::Connected));

    let first_new = next;
    for i in 0..50 {
        c.transport.send(append(2, first_new + i)).unwrap();
    }
    c.transport.flush();
    assert!(wait_until(WAIT, || rec2
        .indexes()
        .ends_with(&(first_new..first_new + 50).collect::<Vec<_>>())));
    let got = rec2.indexes();
    assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
    drop(c);
    server.stop();
}

#[test]
fn an_unknown_store_drops_messages_and_is_resolved_again_later() {
    let rec = Recorder::new();
    let server = TestServer::start("127.0.0.1:0", rec.clone());
    let mut c = Client::new(Config::default());

    let started = Instant::now();
    let mut refused = 0;
    let mut i = 0;
    while started.elapsed() < Duration::from_millis(1000) {
        match c.transport.send(append(99, i)) {
            Ok(()) => {}
            Err(TransportError::Unreachable(99)) => refused += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
        c.transport.flush();
        i += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(refused > 0, "send never reported the store unreachable");
    let s = c.transport.stats();
    assert_eq!(s.msgs_sent, 0);
    assert!(s.dropped_unreachable > 0);
    // Backoff 50 ms, 100 ms, 200 ms, ... : about five lookups in a second, not a loop.
    let calls = c.resolver.calls.load(Ordering::SeqCst);
    assert!((2..=8).contains(&calls), "{calls} lookups in one second");
    assert_eq!(c.transport.link_status(99), Some(LinkStatus::Down));

    // Nobody sends to the store any more: at most the retry already earned is made.
    let before = c.resolver.calls.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(2500));
    let idle_calls = c.resolver.calls.load(Ordering::SeqCst) - before;
    assert!(idle_calls <= 1, "{idle_calls} lookups while nobody sent");

    // Once the store becomes known, a later attempt finds it and messages flow.
    c.resolver.table.insert(99, server.addr.to_string());
    let reached = wait_until(WAIT, || {
        let _ = c.transport.send(append(99, i));
        c.transport.flush();
        i += 1;
        !rec.indexes().is_empty()
    });
    assert!(reached);
    drop(c);
    server.stop();
}

#[test]
fn the_snapshot_callback_reports_success_and_failure() {
    let rec = Recorder::new();
    let server = TestServer::start("127.0.0.1:0", rec.clone());
    *rec.reject_region.lock() = Some(13);
    let mut c = Client::new(Config::default());
    c.resolver.table.insert(2, server.addr.to_string());

    // Refused by the receiver, then accepted: reported in order on the store's task.
    c.transport.send(snapshot(2, 13, vec![1; 3000])).unwrap();
    c.transport.send(snapshot(2, 14, vec![2; 3000])).unwrap();
    assert!(wait_until(WAIT, || c.reports.lock().len() == 2));
    assert_eq!(*c.reports.lock(), vec![(13, 12, false), (14, 12, true)]);
    assert_eq!(rec.received.lock().snapshots.len(), 1);

    // A snapshot for a store nobody can resolve fails too. The slow lookup keeps the
    // store "connecting" (not yet known to be down), so `send` accepts the snapshot and
    // the failure must come through the callback.
    *c.resolver.delay.lock() = Duration::from_millis(300);
    c.transport.send(snapshot(5, 15, vec![3; 10])).unwrap();
    assert!(wait_until(WAIT, || c.reports.lock().len() == 3));
    assert_eq!(c.reports.lock()[2], (15, 15, false));

    let s = c.transport.stats();
    assert_eq!((s.snapshots_sent, s.snapshots_failed), (1, 2));
    drop(c);
    server.stop();
}
