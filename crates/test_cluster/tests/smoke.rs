//! The smallest end-to-end checks: a cluster elects a leader, replicates, and serves reads.

use test_cluster::Cluster;

#[test]
fn put_get_delete_on_three_stores() {
    let cluster = Cluster::new(3, raftstore::Config::for_tests());
    cluster.run();
    cluster.must_put(b"k1", b"v1");
    assert_eq!(cluster.must_get(b"k1"), Some(b"v1".to_vec()));
    for s in 1..=3 {
        cluster.must_get_equal(s, b"k1", b"v1");
    }
    cluster.must_delete(b"k1");
    assert_eq!(cluster.must_get(b"k1"), None);
    for s in 1..=3 {
        cluster.must_get_none(s, b"k1");
    }
    cluster.must_put_cf("lock", b"k2", b"l");
    assert_eq!(cluster.must_get_cf("lock", b"k2"), Some(b"l".to_vec()));
    assert_eq!(cluster.must_get(b"k2"), None, "CFs are separate");
    let all = cluster.scan(b"", b"");
    assert!(all.is_empty(), "default CF is empty: {all:?}");
}
