//! Runs the engine conformance suite against every engine.

use engine::{
    conformance, Engine, FjallConfig, FjallEngine, MemEngine, WriteBatch, CF_DEFAULT, CF_RAFT,
};

#[test]
fn mem_engine_conforms() {
    conformance::run_all(MemEngine::new);
}

#[test]
fn fjall_engine_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    conformance::run_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        FjallEngine::open(&dir.path().join(n.to_string()), &FjallConfig::default()).unwrap()
    });
}

#[test]
fn fjall_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let e = FjallEngine::open(dir.path(), &FjallConfig::default()).unwrap();
        let mut wb = e.write_batch();
        wb.put(CF_DEFAULT, b"synced", b"1");
        e.write(wb, true).unwrap();
        let mut wb = e.write_batch();
        wb.put(CF_RAFT, b"later", b"2");
        wb.delete(CF_DEFAULT, b"never");
        e.write(wb, false).unwrap();
        e.sync().unwrap();
        assert!(e.disk_usage() > 0 || cfg!(not(target_os = "linux")));
    }
    let e = FjallEngine::open(dir.path(), &FjallConfig::default()).unwrap();
    assert_eq!(e.get(CF_DEFAULT, b"synced").unwrap(), Some(b"1".to_vec()));
    assert_eq!(e.get(CF_RAFT, b"later").unwrap(), Some(b"2".to_vec()));
    assert_eq!(e.get(CF_DEFAULT, b"never").unwrap(), None);
}
