//! Fuzz: a fake peer feeds random raft messages into the stores of a running 3-store
//! cluster; no store thread may panic, and afterwards every region still takes a write and
//! serves it back.
//!
//! The fake peer sends three kinds of messages, each with random fields (message type,
//! terms, indexes, commits, entries with random data, snapshots with random or well-formed
//! bodies, rejects, hints, epochs, tombstone flags, key ranges):
//! - from peers that are not members of the region, to existing regions (real and wrong
//!   target peers) and to regions the store does not host (which may create peers there);
//! - from real members but with a term below the cluster's (late, duplicated or stale
//!   messages of any type);
//! - from real members with any term a cluster reaches, of the types that carry no log
//!   (votes, responses, leader transfer, read index).
//!
//! What is not sent: a member's log-carrying message (append, heartbeat, snapshot) with a
//! current term, or a configuration newer than the region's. Those are indistinguishable from
//! the real leader or the scheduler and can, by design, rewrite a replica or remove it; the
//! store cannot refuse them, only survive them.
//!
//! The default run is short (part of the test command); `TESSERA_FUZZ_CASES=N` runs N
//! batches of messages instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestCaseError, TestRng, TestRunner};
use proto::metapb;
use proto::raft_serverpb::{KeyValue, RaftSnapshotData};
use raft::eraftpb::{ConfState, Entry, EntryType, Message, MessageType, Snapshot};
use raftstore::RaftMessage;
use test_cluster::Cluster;

const STORES: u64 = 3;
/// Regions 1..=3 cut at these keys; region `r` has peer `r * 1000 + s` on store `s`.
const SPLITS: [&[u8]; 2] = [b"k2", b"k4"];
const REGIONS: u64 = 3;
/// Every region starts at term 5 and elects its first leader at term 6 or later, so a term
/// at or below this is stale for every member.
const STALE_TERM: u64 = 5;

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("TESSERA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        // A case is a batch of messages into a live cluster: shrinking would replay it into a
        // cluster the earlier batches already changed, so report the first failure as it is.
        max_shrink_iters: 0,
        ..ProptestConfig::default()
    }
}

fn peer_id(region: u64, store: u64) -> u64 {
    region.wrapping_mul(1000).wrapping_add(store)
}

fn all_types() -> Vec<MessageType> {
    use MessageType::*;
    vec![
        MsgHup,
        MsgBeat,
        MsgPropose,
        MsgAppend,
        MsgAppendResponse,
        MsgRequestVote,
        MsgRequestVoteResponse,
        MsgSnapshot,
        MsgHeartbeat,
        MsgHeartbeatResponse,
        MsgUnreachable,
        MsgSnapStatus,
        MsgCheckQuorum,
        MsgTransferLeader,
        MsgTimeoutNow,
        MsgReadIndex,
        MsgReadIndexResp,
        MsgRequestPreVote,
        MsgRequestPreVoteResponse,
    ]
}

/// The types a fake member may send at a current or future term: they carry no log.
fn logless_types() -> Vec<MessageType> {
    vec![
        MessageType::MsgAppendResponse,
        MessageType::MsgRequestVote,
        MessageType::MsgRequestVoteResponse,
        MessageType::MsgHeartbeatResponse,
        MessageType::MsgTransferLeader,
        MessageType::MsgTimeoutNow,
        MessageType::MsgReadIndex,
        MessageType::MsgReadIndexResp,
        MessageType::MsgRequestPreVote,
        MessageType::MsgRequestPreVoteResponse,
    ]
}

/// Numbers around the cluster's real terms and indexes, plus the edges.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        60 => 0u64..40,
        1 => Just(u64::MAX),
        1 => Just(u64::MAX - 1),
        1 => Just(1u64 << 62),
        1 => any::<u64>(),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// Peer ids the messages name: the real ones, their neighbours and strangers.
fn some_peer_id() -> impl Strategy<Value = u64> {
    prop_oneof![
        (1..=REGIONS + 1, 1..=STORES + 1).prop_map(|(r, s)| peer_id(r, s)),
        0u64..10,
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        prop::sample::select(vec![
            EntryType::EntryNormal,
            EntryType::EntryConfChange,
            EntryType::EntryConfChangeV2,
        ]),
        number(),
        number(),
        bytes(64),
        bytes(8),
        any::<bool>(),
    )
        .prop_map(|(ty, term, index, data, context, sync_log)| {
            let mut e = Entry::default();
            e.set_entry_type(ty);
            e.term = term;
            e.index = index;
            e.data = data.into();
            e.context = context.into();
            e.sync_log = sync_log;
            e
        })
}

fn region() -> impl Strategy<Value = metapb::Region> {
    (
        prop_oneof![1..=REGIONS + 2, any::<u64>()],
        prop_oneof![Just(Vec::new()), bytes(3)],
        prop_oneof![Just(Vec::new()), bytes(3)],
        prop::collection::vec((some_peer_id(), 0..=STORES + 1, any::<bool>()), 0..5),
        0u64..3,
        0u64..3,
    )
        .prop_map(
            |(id, start_key, end_key, peers, conf_ver, version)| metapb::Region {
                id,
                start_key,
                end_key,
                region_epoch: Some(metapb::RegionEpoch { conf_ver, version }),
                peers: peers
                    .into_iter()
                    .map(|(id, store_id, learner)| metapb::Peer {
                        id,
                        store_id,
                        role: if learner {
                            metapb::PeerRole::Learner as i32
                        } else {
                            metapb::PeerRole::Voter as i32
                        },
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            },
        )
}

/// Snapshot bodies: random bytes, or a decodable body for some region (whose records and
/// size may or may not agree with it).
fn snapshot_data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        bytes(128),
        (
            region(),
            prop::collection::vec((0u8..6, bytes(6), bytes(6)), 0..4),
            any::<bool>(),
            0u64..3,
        )
            .prop_map(|(region, records, honest_size, version)| {
                let data: Vec<KeyValue> = records
                    .into_iter()
                    .map(|(cf, key, value)| {
                        let mut k = vec![cf, b'z'];
                        k.extend_from_slice(&key);
                        KeyValue { key: k, value }
                    })
                    .collect();
                let size: u64 = data
                    .iter()
                    .map(|kv| (kv.key.len() + kv.value.len()) as u64)
                    .sum();
                let body = RaftSnapshotData {
                    region: Some(region),
                    file_size: if honest_size { size } else { size + 1 },
                    data,
                    version,
                    ..Default::default()
                };
                proto::prost::Message::encode_to_vec(&body)
            }),
    ]
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (
        snapshot_data(),
        number(),
        number(),
        prop::collection::vec(some_peer_id(), 0..4),
        prop::collection::vec(some_peer_id(), 0..2),
        prop::collection::vec(some_peer_id(), 0..2),
        any::<bool>(),
    )
        .prop_map(
            |(data, index, term, voters, learners, outgoing, auto_leave)| {
                let mut s = Snapshot {
                    data: data.into(),
                    ..Default::default()
                };
                let meta = s.mut_metadata();
                meta.index = index;
                meta.term = term;
                meta.set_conf_state(ConfState {
                    voters,
                    learners,
                    voters_outgoing: outgoing,
                    auto_leave,
                    ..Default::default()
                });
                s
            },
        )
}

/// The raft payload, with `from`/`to` filled in later.
#[allow(clippy::too_many_arguments)]
fn payload(types: Vec<MessageType>, term: BoxedStrategy<u64>) -> impl Strategy<Value = Message> {
    (
        prop::sample::select(types),
        term,
        (number(), number(), number(), number()),
        prop::collection::vec(entry(), 0..4),
        any::<bool>(),
        prop::option::weighted(0.2, snapshot()),
        (any::<bool>(), number(), number(), bytes(10), any::<i64>()),
    )
        .prop_map(
            |(
                ty,
                term,
                (log_term, index, commit, commit_term),
                entries,
                consecutive,
                snapshot,
                (reject, reject_hint, request_snapshot, context, priority),
            )| {
                let mut m = Message::default();
                m.set_msg_type(ty);
                m.term = term;
                m.log_term = log_term;
                m.index = index;
                m.commit = commit;
                m.commit_term = commit_term;
                // Entries that follow `index` as a leader's would, or as they came.
                let mut entries = entries;
                if consecutive {
                    for (i, e) in entries.iter_mut().enumerate() {
                        e.index = index.wrapping_add(1 + i as u64);
                        e.term = e.term.min(term);
                    }
                }
                m.set_entries(entries.into());
                if let Some(s) = snapshot {
                    m.set_snapshot(s);
                }
                m.reject = reject;
                m.reject_hint = reject_hint;
                m.request_snapshot = request_snapshot;
                m.context = context.into();
                m.priority = priority;
                m
            },
        )
}

/// One message and the store it is delivered to.
#[derive(Debug, Clone)]
struct Delivery {
    store: u64,
    msg: RaftMessage,
}

/// An envelope: where it goes and what it says about the sender.
fn envelope(
    from_member: bool,
) -> impl Strategy<
    Value = (
        u64,
        u64,
        metapb::Peer,
        metapb::Peer,
        metapb::RegionEpoch,
        bool,
    ),
> {
    (
        1..=STORES,
        // Mostly the cluster's regions; sometimes one the store does not host.
        prop_oneof![4 => 1..=REGIONS, 1 => any::<u64>(), 1 => 0u64..10],
        prop_oneof![4 => Just(None), 1 => some_peer_id().prop_map(Some)],
        (1..=STORES, some_peer_id(), 0..=STORES + 2),
        // Never newer than the regions' own (1, 1): see the module docs.
        (0u64..=1, 0u64..=1),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            move |(store, region, to_id, (from_store, stranger, stranger_store), (cv, v), tomb)| {
                let to_peer = metapb::Peer {
                    id: to_id.unwrap_or(peer_id(region, store)),
                    store_id: store,
                    ..Default::default()
                };
                let from_peer = if from_member {
                    let from_store = if from_store == store {
                        from_store % STORES + 1
                    } else {
                        from_store
                    };
                    metapb::Peer {
                        id: peer_id(region, from_store),
                        store_id: from_store,
                        ..Default::default()
                    }
                } else {
                    // Not a member of any real region (ids r*1000+s for r, s <= 3 are).
                    let id = if (1001..=3003).contains(&stranger) {
                        stranger + 10_000
                    } else {
                        stranger
                    };
                    metapb::Peer {
                        id,
                        store_id: stranger_store,
                        ..Default::default()
                    }
                };
                let epoch = metapb::RegionEpoch {
                    conf_ver: cv,
                    version: v,
                };
                (store, region, to_peer, from_peer, epoch, tomb)
            },
        )
}

fn delivery(kind: u8) -> impl Strategy<Value = Delivery> {
    let (from_member, types, term): (bool, Vec<MessageType>, BoxedStrategy<u64>) = match kind {
        0 => (false, all_types(), number().boxed()),
        1 => (true, all_types(), (0..=STALE_TERM).boxed()),
        // Terms a cluster reaches: a member claiming one near 2^64 would take the region to
        // the end of the term space (see `MAX_RAFT_NUMBER` in raftstore), a disruption no
        // store can tell from a real one.
        _ => (true, logless_types(), (0u64..40).boxed()),
    };
    (
        envelope(from_member),
        payload(types, term),
        prop_oneof![Just(Vec::new()), bytes(3)],
        prop_oneof![Just(Vec::new()), bytes(3)],
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.9),
    )
        .prop_map(
            |(
                (store, region_id, to_peer, from_peer, region_epoch, is_tombstone),
                mut message,
                start_key,
                end_key,
                keep_from,
                keep_to,
            )| {
                // Usually the raft ids agree with the envelope, as a real peer's would.
                if keep_from {
                    message.from = from_peer.id;
                }
                if keep_to {
                    message.to = to_peer.id;
                }
                Delivery {
                    store,
                    msg: RaftMessage {
                        region_id,
                        from_peer,
                        to_peer,
                        region_epoch,
                        is_tombstone,
                        start_key,
                        end_key,
                        message,
                        // Unchecked, as from a peer's raft stream: the store checks it.
                        ..Default::default()
                    },
                }
            },
        )
}

fn batch() -> impl Strategy<Value = Vec<Delivery>> {
    prop::collection::vec(
        prop_oneof![3 => delivery(0), 3 => delivery(1), 2 => delivery(2)],
        1..40,
    )
}

/// Counts panics on every thread (store pollers, workers, this one) while keeping the
/// default report.
fn count_panics() -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        c.fetch_add(1, Ordering::SeqCst);
        default(info);
    }));
    count
}

fn region_keys() -> Vec<Vec<u8>> {
    // One key inside each region: ["", k2), [k2, k4), [k4, "").
    vec![b"k1".to_vec(), b"k3".to_vec(), b"k5".to_vec()]
}

#[test]
fn random_raft_messages_do_not_crash_a_store() {
    let panics = count_panics();
    let cluster = Cluster::new(STORES, raftstore::Config::for_tests());
    let splits: Vec<Vec<u8>> = SPLITS.iter().map(|k| k.to_vec()).collect();
    cluster.run_with_regions(&splits);
    for k in region_keys() {
        cluster.must_put(&k, b"before");
    }

    // The cluster's seed (TESSERA_TEST_SEED) also seeds the messages, so a failure replays.
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&cluster.seed.to_le_bytes());
    let mut runner =
        TestRunner::new_with_rng(config(48), TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let sent = AtomicUsize::new(0);
    let result = runner.run(&batch(), |deliveries| {
        for d in deliveries {
            let router = cluster
                .router(d.store)
                .ok_or_else(|| TestCaseError::fail(format!("store {} is gone", d.store)))?;
            // The router only fails once its store has stopped.
            router
                .send_raft_message(d.msg.clone())
                .map_err(|e| TestCaseError::fail(format!("store {} stopped: {e}", d.store)))?;
            sent.fetch_add(1, Ordering::Relaxed);
        }
        // Let the stores digest the batch; a panic on any thread fails the case.
        std::thread::sleep(Duration::from_millis(20));
        if panics.load(Ordering::SeqCst) > 0 {
            return Err(TestCaseError::fail("a thread panicked"));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("fuzzing raft messages: {e}");
    }
    eprintln!(
        "delivered {} random raft messages",
        sent.load(Ordering::Relaxed)
    );

    // The fake peer is gone: every region must still take a write and serve it back.
    for k in region_keys() {
        cluster.must_put(&k, b"after");
        assert_eq!(cluster.must_get(&k), Some(b"after".to_vec()));
    }
    for s in 1..=STORES {
        assert!(cluster.is_running(s), "store {s} stopped");
    }
    assert_eq!(panics.load(Ordering::SeqCst), 0, "a thread panicked");
}

/// The wire form (`raft_serverpb.RaftMessage`, what the transport carries) round-trips every
/// message, and arbitrary bytes on the wire decode to a message or an error, never a panic.
#[test]
fn wire_form_round_trips_and_garbage_is_refused() {
    use proto::prost::Message as _;
    let mut runner = TestRunner::new(config(512));
    runner
        .run(
            &(batch(), prop::collection::vec(any::<u8>(), 0..200)),
            |(deliveries, junk)| {
                for d in deliveries {
                    let back = RaftMessage::from_proto(d.msg.to_proto())
                        .map_err(|e| TestCaseError::fail(format!("round trip: {e}")))?;
                    prop_assert_eq!(back.region_id, d.msg.region_id);
                    prop_assert_eq!(back.from_peer, d.msg.from_peer);
                    prop_assert_eq!(back.to_peer, d.msg.to_peer);
                    prop_assert_eq!(back.region_epoch, d.msg.region_epoch);
                    prop_assert_eq!(back.is_tombstone, d.msg.is_tombstone);
                    prop_assert_eq!(&back.start_key, &d.msg.start_key);
                    prop_assert_eq!(&back.end_key, &d.msg.end_key);
                    prop_assert_eq!(&back.message, &d.msg.message);
                }
                if let Ok(wire) = proto::raft_serverpb::RaftMessage::decode(junk.as_slice()) {
                    let _ = RaftMessage::from_proto(wire);
                }
                Ok(())
            },
        )
        .unwrap();
}
