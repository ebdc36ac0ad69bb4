//! A read-then-write command (compare-and-swap, a transactional write) decides its write on
//! a snapshot served by a leader in some term. If its store lost leadership and regained
//! it before the write is proposed, another leader may have written meanwhile, and the
//! decision no longer holds: the write must be refused (StaleCommand, not applied) rather
//! than applied over what that leader accepted.

mod common;

use std::time::Duration;

use server::storage::{Error, Modify, RaftKv};
use server::StorageConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_decided_before_leadership_left_and_came_back_is_refused() {
    let env = common::start(&[], StorageConfig::default(), |_| {});
    let (leader, ctx) = env.leader(b"k").await;
    let kv = RaftKv::new(env.cluster.router(leader).expect("leader running"));
    let (_snap, term) = kv.snapshot_with_term(&ctx).await.expect("snapshot");
    assert!(term > 0, "a leader's read names its term");

    // Leadership moves to another store and comes back: at least two terms later.
    let region = env.region(b"k");
    let mine = *raftstore::util::find_peer(&region, leader).expect("leader's peer");
    let other = *region
        .peers
        .iter()
        .find(|p| p.store_id != leader)
        .expect("another peer");
    tokio::task::block_in_place(|| {
        env.cluster.must_transfer_leader(region.id, other);
        env.cluster.must_transfer_leader(region.id, mine);
    });

    let put = |v: &[u8]| {
        vec![Modify::Put {
            cf: engine::CF_DEFAULT,
            key: env.stored_key(b"k"),
            value: v.to_vec(),
        }]
    };
    // The store may need a moment to accept proposals as leader again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let now = loop {
        match kv.snapshot_with_term(&ctx).await {
            Ok((_, t)) => break t,
            Err(e) => {
                assert!(std::time::Instant::now() < deadline, "no leader again: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(
        now >= term + 2,
        "leadership left and came back: {term} -> {now}"
    );

    match kv.write_in_term(&ctx, term, put(b"late"), ()).await {
        Err(Error::Region(e)) => assert!(e.stale_command.is_some(), "{e:?}"),
        other => panic!("a write decided in term {term} went through in term {now}: {other:?}"),
    }
    // Decided in the current term, the same write goes through.
    kv.write_in_term(&ctx, now, put(b"now"), ())
        .await
        .expect("a write in the current term");
    let (snap, _) = kv.snapshot_with_term(&ctx).await.expect("snapshot");
    assert_eq!(
        snap.get(engine::CF_DEFAULT, &env.stored_key(b"k")).unwrap(),
        Some(b"now".to_vec())
    );
}
