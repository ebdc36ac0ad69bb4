//! Fuzz: every Raw* and Kv* method of the `tikvpb.Tikv` service (and UnsafeDestroyRange)
//! called with random fields — keys from empty to a few hundred KB, contexts addressing real
//! or made-up regions, epochs, peers, terms, API versions and keyspaces, random limits,
//! timestamps, mutations, ops, ranges, TTLs, column families and flags. Any answer, success
//! or error, is fine; a panic (in the handler or on any store thread) or a call that never
//! returns is not, and afterwards the service must still serve a normal put and get.
//!
//! The default run is short (part of the test command); `TESSERA_FUZZ_CASES=N` runs N calls
//! per API version instead.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestCaseError, TestRng, TestRunner};
use proto::kvrpcpb::*;
use proto::metapb;
use proto::tikvpb::tikv_server::Tikv;
use server::storage::key_codec::KeyCodec;
use server::{ApiVersion, StorageConfig};
use tonic::Request;

use common::{start, Env};

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("TESSERA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        // Each case changes the cluster (writes, locks, destroyed ranges): a shrunk replay
        // would not see the same state, so the first failing call is reported as it is.
        max_shrink_iters: 0,
        ..ProptestConfig::default()
    }
}

/// How many methods [`call`] knows.
const METHODS: u8 = 29;

/// Keys: near the regions' boundaries and the API V2 prefixes, empty, or large.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => (
            prop::sample::select(vec![
                &b""[..],
                b"k",
                b"r\0\0\0",
                b"x\0\0\0",
                b"r\0\0\x01",
                b"x\0\0\x01",
                b"\xff",
            ]),
            prop::collection::vec(any::<u8>(), 0..12)
        )
            .prop_map(|(p, rest)| [p, &rest].concat()),
        1 => Just(Vec::new()),
        1 => (1usize..400 * 1024, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..300),
        1 => (1usize..400 * 1024).prop_map(|n| vec![7; n]),
    ]
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..100,
        1 => Just(u64::MAX),
        1 => any::<u64>(),
    ]
}

/// A context: either the real one for the key's region (perturbed a little) or made up.
#[derive(Debug, Clone)]
struct CtxSpec {
    real: bool,
    store: u64,
    region_id: u64,
    epoch: Option<(u64, u64)>,
    peer: Option<(u64, u64)>,
    term: u64,
    api_version: i32,
    keep_api: bool,
    keyspace_id: u32,
    resolved_locks: Vec<u64>,
    committed_locks: Vec<u64>,
    isolation: i32,
    priority: i32,
}

fn ctx_spec() -> impl Strategy<Value = CtxSpec> {
    (
        prop::bool::weighted(0.7),
        1u64..=3,
        prop_oneof![0u64..6, any::<u64>()],
        prop::option::of((0u64..4, 0u64..4)),
        prop::option::of((prop_oneof![0u64..4000, any::<u64>()], 0u64..5)),
        prop_oneof![4 => Just(0u64), 1 => number()],
        (
            prop_oneof![0i32..3, any::<i32>()],
            prop::bool::weighted(0.8),
        ),
        prop_oneof![Just(0u32), 0u32..3, any::<u32>()],
        prop::collection::vec(number(), 0..3),
        prop::collection::vec(number(), 0..3),
        (-1i32..4, -1i32..4),
    )
        .prop_map(
            |(
                real,
                store,
                region_id,
                epoch,
                peer,
                term,
                (api_version, keep_api),
                keyspace_id,
                resolved_locks,
                committed_locks,
                (isolation, priority),
            )| CtxSpec {
                real,
                store,
                region_id,
                epoch,
                peer,
                term,
                api_version,
                keep_api,
                keyspace_id,
                resolved_locks,
                committed_locks,
                isolation,
                priority,
            },
        )
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (-1i32..8, key(), value(), -1i32..4).prop_map(|(op, key, value, assertion)| Mutation {
        op,
        key,
        value,
        assertion,
    })
}

/// Everything a request may need; each method takes the fields it has.
#[derive(Debug, Clone)]
struct Fields {
    method: u8,
    ctx: CtxSpec,
    keys: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
    ts: [u64; 4],
    limit: u32,
    flags: [bool; 6],
    cf: String,
    mutations: Vec<Mutation>,
    small: [i64; 3],
    ttls: Vec<u64>,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        0..METHODS,
        ctx_spec(),
        prop::collection::vec(key(), 0..6),
        prop::collection::vec(value(), 0..4),
        [number(), number(), number(), number()],
        prop_oneof![0u32..20, any::<u32>()],
        any::<[bool; 6]>(),
        prop::sample::select(vec!["", "default", "write", "lock", "raft", "nope"]),
        prop::collection::vec(mutation(), 0..5),
        (-2i64..5, -2i64..5, any::<i64>()).prop_map(|(a, b, c)| [a, b, c]),
        prop::collection::vec(number(), 0..4),
    )
        .prop_map(
            |(method, ctx, keys, values, ts, limit, flags, cf, mutations, small, ttls)| Fields {
                method,
                ctx,
                keys,
                values,
                ts,
                limit,
                flags,
                cf: cf.to_string(),
                mutations,
                small,
                ttls,
            },
        )
}

impl Fields {
    fn key(&self, i: usize) -> Vec<u8> {
        self.keys.get(i).cloned().unwrap_or_default()
    }

    fn value(&self, i: usize) -> Vec<u8> {
        self.values.get(i).cloned().unwrap_or_default()
    }

    fn ranges(&self) -> Vec<KeyRange> {
        self.keys
            .chunks(2)
            .map(|c| KeyRange {
                start_key: c[0].clone(),
                end_key: c.get(1).cloned().unwrap_or_default(),
            })
            .collect()
    }

    /// The request context: the real one for the first key's region, or the made-up one.
    fn context(&self, env: &Env) -> Context {
        let c = &self.ctx;
        let mut ctx = if c.real {
            // Real keys are the first key as the API version stores it (where it is valid).
            let stored = KeyCodec::new(env.api).encode(self.key(0));
            env.cluster.refresh_regions();
            let region = env
                .cluster
                .region_for_key(&stored)
                .unwrap_or_else(|| env.region(b""));
            env.ctx(&region, c.store)
        } else {
            Context {
                region_id: c.region_id,
                region_epoch: c
                    .epoch
                    .map(|(conf_ver, version)| metapb::RegionEpoch { conf_ver, version }),
                peer: c.peer.map(|(id, store_id)| metapb::Peer {
                    id,
                    store_id,
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
        if !c.real || !c.keep_api {
            ctx.api_version = c.api_version;
        }
        ctx.term = c.term;
        ctx.keyspace_id = c.keyspace_id;
        ctx.resolved_locks = c.resolved_locks.clone();
        ctx.committed_locks = c.committed_locks.clone();
        ctx.isolation_level = c.isolation;
        ctx.priority = c.priority;
        ctx
    }
}

/// How a call ended (all are acceptable; the counts show how deep the run got).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Outcome {
    /// A response without a region error (it may still carry a key error).
    Answered,
    RegionError,
    Status,
}

/// Calls method `f.method` on `svc`; returns the method's name and how it ended.
async fn call(svc: &common::Service, env: &Env, f: &Fields) -> (&'static str, Outcome) {
    let context = Some(f.context(env));
    let [t0, t1, t2, t3] = f.ts;
    let [b0, b1, b2, b3, b4, _] = f.flags;
    let [s0, s1, s2] = f.small;
    macro_rules! go {
        ($name:literal, $method:ident, $req:expr) => {{
            let outcome = match svc.$method(Request::new($req)).await {
                Ok(r) if r.get_ref().region_error.is_some() => Outcome::RegionError,
                Ok(_) => Outcome::Answered,
                Err(_) => Outcome::Status,
            };
            ($name, outcome)
        }};
    }
    match f.method {
        0 => go!(
            "KvGet",
            kv_get,
            GetRequest {
                context,
                key: f.key(0),
                version: t0,
            }
        ),
        1 => go!(
            "KvScan",
            kv_scan,
            ScanRequest {
                context,
                start_key: f.key(0),
                end_key: f.key(1),
                limit: f.limit,
                version: t0,
                key_only: b0,
                reverse: b1,
                sample_step: s0 as u32,
            }
        ),
        2 => go!(
            "KvPrewrite",
            kv_prewrite,
            PrewriteRequest {
                context,
                mutations: f.mutations.clone(),
                primary_lock: f.key(0),
                start_version: t0,
                lock_ttl: t1,
                skip_constraint_check: b0,
                pessimistic_actions: vec![s0 as i32, s1 as i32],
                txn_size: t2,
                for_update_ts: t3,
                min_commit_ts: f.ttls.first().copied().unwrap_or_default(),
                use_async_commit: b1,
                secondaries: f.keys.clone(),
                try_one_pc: b2,
                max_commit_ts: f.ttls.get(1).copied().unwrap_or_default(),
                assertion_level: s1 as i32,
                ..Default::default()
            }
        ),
        3 => go!(
            "KvPessimisticLock",
            kv_pessimistic_lock,
            PessimisticLockRequest {
                context,
                mutations: f.mutations.clone(),
                primary_lock: f.key(0),
                start_version: t0,
                lock_ttl: t1,
                for_update_ts: t2,
                is_first_lock: b0,
                // Waiting is not served; keep any wait short in case it ever is.
                wait_timeout: s0.min(10),
                force: b1,
                return_values: b2,
                min_commit_ts: t3,
                check_existence: b3,
                lock_only_if_exists: b4,
                wake_up_mode: s1 as i32,
            }
        ),
        4 => go!(
            "KVPessimisticRollback",
            kv_pessimistic_rollback,
            PessimisticRollbackRequest {
                context,
                start_version: t0,
                for_update_ts: t1,
                keys: f.keys.clone(),
            }
        ),
        5 => go!(
            "KvTxnHeartBeat",
            kv_txn_heart_beat,
            TxnHeartBeatRequest {
                context,
                primary_lock: f.key(0),
                start_version: t0,
                advise_lock_ttl: t1,
                is_txn_file: b0,
            }
        ),
        6 => go!(
            "KvCheckTxnStatus",
            kv_check_txn_status,
            CheckTxnStatusRequest {
                context,
                primary_key: f.key(0),
                lock_ts: t0,
                caller_start_ts: t1,
                current_ts: t2,
                rollback_if_not_exist: b0,
                force_sync_commit: b1,
                resolving_pessimistic_lock: b2,
                verify_is_primary: b3,
                is_txn_file: b4,
            }
        ),
        7 => go!(
            "KvCheckSecondaryLocks",
            kv_check_secondary_locks,
            CheckSecondaryLocksRequest {
                context,
                keys: f.keys.clone(),
                start_version: t0,
            }
        ),
        8 => go!(
            "KvCommit",
            kv_commit,
            CommitRequest {
                context,
                start_version: t0,
                keys: f.keys.clone(),
                commit_version: t1,
                is_txn_file: b0,
            }
        ),
        9 => go!(
            "KvCleanup",
            kv_cleanup,
            CleanupRequest {
                context,
                key: f.key(0),
                start_version: t0,
                current_ts: t1,
            }
        ),
        10 => go!(
            "KvBatchGet",
            kv_batch_get,
            BatchGetRequest {
                context,
                keys: f.keys.clone(),
                version: t0,
            }
        ),
        11 => go!(
            "KvBatchRollback",
            kv_batch_rollback,
            BatchRollbackRequest {
                context,
                start_version: t0,
                keys: f.keys.clone(),
                is_txn_file: b0,
            }
        ),
        12 => go!(
            "KvScanLock",
            kv_scan_lock,
            ScanLockRequest {
                context,
                max_version: t0,
                start_key: f.key(0),
                limit: f.limit,
                end_key: f.key(1),
            }
        ),
        13 => go!(
            "KvResolveLock",
            kv_resolve_lock,
            ResolveLockRequest {
                context,
                start_version: t0,
                commit_version: t1,
                txn_infos: f
                    .ttls
                    .iter()
                    .map(|&t| TxnInfo {
                        txn: t,
                        status: t2,
                        is_txn_file: b1,
                    })
                    .collect(),
                keys: f.keys.clone(),
                is_txn_file: b0,
            }
        ),
        14 => go!(
            "KvGC",
            kv_gc,
            GcRequest {
                context,
                safe_point: t0,
            }
        ),
        15 => go!(
            "KvDeleteRange",
            kv_delete_range,
            DeleteRangeRequest {
                context,
                start_key: f.key(0),
                end_key: f.key(1),
                notify_only: b0,
            }
        ),
        16 => go!(
            "RawGet",
            raw_get,
            RawGetRequest {
                context,
                key: f.key(0),
                cf: f.cf.clone(),
            }
        ),
        17 => go!(
            "RawBatchGet",
            raw_batch_get,
            RawBatchGetRequest {
                context,
                keys: f.keys.clone(),
                cf: f.cf.clone(),
            }
        ),
        18 => go!(
            "RawPut",
            raw_put,
            RawPutRequest {
                context,
                key: f.key(0),
                value: f.value(0),
                cf: f.cf.clone(),
                ttl: t0,
                for_cas: b0,
            }
        ),
        19 => go!(
            "RawBatchPut",
            raw_batch_put,
            RawBatchPutRequest {
                context,
                pairs: f
                    .keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| KvPair {
                        key: k.clone(),
                        value: f.value(i),
                        error: None,
                    })
                    .collect(),
                cf: f.cf.clone(),
                ttl: t0,
                for_cas: b0,
                ttls: f.ttls.clone(),
            }
        ),
        20 => go!(
            "RawDelete",
            raw_delete,
            RawDeleteRequest {
                context,
                key: f.key(0),
                cf: f.cf.clone(),
                for_cas: b0,
            }
        ),
        21 => go!(
            "RawBatchDelete",
            raw_batch_delete,
            RawBatchDeleteRequest {
                context,
                keys: f.keys.clone(),
                cf: f.cf.clone(),
                for_cas: b0,
            }
        ),
        22 => go!(
            "RawScan",
            raw_scan,
            RawScanRequest {
                context,
                start_key: f.key(0),
                limit: f.limit,
                key_only: b0,
                cf: f.cf.clone(),
                reverse: b1,
                end_key: f.key(1),
            }
        ),
        23 => go!(
            "RawDeleteRange",
            raw_delete_range,
            RawDeleteRangeRequest {
                context,
                start_key: f.key(0),
                end_key: f.key(1),
                cf: f.cf.clone(),
            }
        ),
        24 => go!(
            "RawBatchScan",
            raw_batch_scan,
            RawBatchScanRequest {
                context,
                ranges: f.ranges(),
                each_limit: f.limit,
                key_only: b0,
                cf: f.cf.clone(),
                reverse: b1,
            }
        ),
        25 => go!(
            "RawGetKeyTTL",
            raw_get_key_ttl,
            RawGetKeyTtlRequest {
                context,
                key: f.key(0),
                cf: f.cf.clone(),
            }
        ),
        26 => go!(
            "RawCompareAndSwap",
            raw_compare_and_swap,
            RawCasRequest {
                context,
                key: f.key(0),
                value: f.value(0),
                previous_not_exist: b0,
                previous_value: f.value(1),
                cf: f.cf.clone(),
                ttl: t0,
            }
        ),
        27 => go!(
            "RawChecksum",
            raw_checksum,
            RawChecksumRequest {
                context,
                algorithm: s2 as i32,
                ranges: f.ranges(),
            }
        ),
        _ => go!(
            "UnsafeDestroyRange",
            unsafe_destroy_range,
            UnsafeDestroyRangeRequest {
                context,
                start_key: f.key(0),
                end_key: f.key(1),
            }
        ),
    }
}

/// Counts panics on every thread while keeping the default report.
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

/// A normal put and get through the leader of `key`'s region.
async fn must_put_get(env: &Env, key: &[u8]) {
    let (store, ctx) = env.leader(key).await;
    let put = env
        .svc(store)
        .raw_put(Request::new(RawPutRequest {
            context: Some(ctx.clone()),
            key: key.to_vec(),
            value: b"after the fuzz".to_vec(),
            ..Default::default()
        }))
        .await
        .expect("raw_put answers")
        .into_inner();
    assert!(
        put.region_error.is_none() && put.error.is_empty(),
        "put after the fuzz: {put:?}"
    );
    let got = env
        .svc(store)
        .raw_get(Request::new(RawGetRequest {
            context: Some(ctx),
            key: key.to_vec(),
            ..Default::default()
        }))
        .await
        .expect("raw_get answers")
        .into_inner();
    assert_eq!(got.value, b"after the fuzz", "get after the fuzz: {got:?}");
}

fn fuzz(api: ApiVersion, splits: &[&[u8]], probe_keys: &[&[u8]]) {
    let panics = count_panics();
    let env = start(splits, StorageConfig::with_api_version(api), |_| {});
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&env.cluster.seed.to_le_bytes());
    let mut runner =
        TestRunner::new_with_rng(config(400), TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let outcomes = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let result = runner.run(&fields(), |f| {
        let svc = env.svc(f.ctx.store);
        let answered = rt.block_on(async {
            // Generous: a call may wait out a region without a leader; one that never
            // returns is a hung store.
            tokio::time::timeout(Duration::from_secs(60), call(svc, &env, &f)).await
        });
        let (name, outcome) = match answered {
            Ok(r) => r,
            Err(_) => return Err(TestCaseError::fail("the call never returned")),
        };
        *outcomes.lock().unwrap().entry((name, outcome)).or_insert(0) += 1;
        if panics.load(Ordering::SeqCst) > 0 {
            return Err(TestCaseError::fail(format!(
                "a thread panicked during {name}"
            )));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("fuzzing the Tikv service ({api:?}): {e}");
    }
    let outcomes = outcomes.into_inner().unwrap();
    eprintln!("{api:?}: outcomes of the random calls: {outcomes:?}");
    let answered: usize = outcomes
        .iter()
        .filter(|((_, o), _)| *o == Outcome::Answered)
        .map(|(_, n)| n)
        .sum();
    let all: usize = outcomes.values().sum();
    // The run must get past the region checks, or it fuzzes nothing but them.
    assert!(
        answered * 3 >= all,
        "too few calls answered without a region error: {outcomes:?}"
    );
    rt.block_on(async {
        for k in probe_keys {
            must_put_get(&env, k).await;
        }
    });
    for s in 1..=3 {
        assert!(env.cluster.is_running(s), "store {s} stopped");
    }
    assert_eq!(panics.load(Ordering::SeqCst), 0, "a thread panicked");
}

#[test]
fn random_requests_api_v1() {
    fuzz(ApiVersion::V1, &[b"k", b"x\0\0\0"], &[b"a", b"k1", b"z"]);
}

#[test]
fn random_requests_api_v2() {
    let enc = |k: &[u8]| codec::bytes::encode_bytes(k);
    let (r, x) = (enc(b"r\0\0\0"), enc(b"x\0\0\0"));
    fuzz(
        ApiVersion::V2,
        &[&r, &x],
        &[b"r\0\0\0a", b"r\0\0\x01a", b"r\0\0\0k"],
    );
}

/// The API V2 key codec: stored keys decode back, garbage is refused without a panic.
#[test]
fn v2_key_codec_round_trips_and_refuses_garbage() {
    let mut runner = TestRunner::new(config(2000));
    let c = KeyCodec::new(ApiVersion::V2);
    runner
        .run(
            &(
                prop::collection::vec(any::<u8>(), 0..40),
                prop::collection::vec(any::<u8>(), 0..40),
            ),
            |(key, junk)| {
                let stored = c.encode(key.clone());
                prop_assert_eq!(c.stored(&key).into_owned(), stored.clone());
                prop_assert_eq!(c.decode(&stored).unwrap().into_owned(), key.clone());
                if !key.is_empty() {
                    prop_assert_eq!(c.encode_bound(key.clone()), stored);
                }
                prop_assert!(c.encode_bound(Vec::new()).is_empty());
                if let Ok(k) = c.decode(&junk) {
                    prop_assert_eq!(c.encode(k.into_owned()), junk.clone());
                }
                let v1 = KeyCodec::new(ApiVersion::V1);
                prop_assert_eq!(v1.decode(&junk).unwrap().into_owned(), junk.clone());
                Ok(())
            },
        )
        .unwrap();
}
