//! The log writer: one thread that makes raft log writes durable for every region at once.
//!
//! The poller never waits for disk. Each round it stages the entries and hard states of
//! every peer's ready into one [`LogWriteBatch`] and hands it here. The writer merges every
//! batch that queued up while it was busy, writes them with ONE fsync, then sends the
//! messages that had to wait for durability (votes, append responses) and tells the poller
//! which readies are now persisted. Under load this is group commit: the more regions
//! propose at once, the more entries share each fsync.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crossbeam_channel::Receiver;

use super::{LogWriteBatch, RaftLogEngine};
use crate::msg::{Persisted, RaftMessage, StoreMsg};
use crate::router::Router;
use crate::stats::StoreStats;
use crate::transport::Transport;

/// What one peer's ready needs once its writes are durable.
pub struct WriteTask {
    /// Region of the peer.
    pub region_id: u64,
    /// Peer id.
    pub peer_id: u64,
    /// Ready number to report.
    pub ready_number: u64,
    /// Messages raft allows out only after the ready is persisted.
    pub messages: Vec<RaftMessage>,
}

/// One poller round's worth of log writes.
pub struct WriteMsg {
    /// Entries and raft states of all peers in the round.
    pub batch: LogWriteBatch,
    /// Per-peer follow-ups.
    pub tasks: Vec<WriteTask>,
    /// Whether durability is required (new entries, or a changed term or vote).
    pub sync: bool,
}

/// The writer's state: one [`LogWriter::write_round`] per batch of queued rounds. The
/// writer thread ([`spawn_writer`]) and a simulator both call it.
pub struct LogWriter<S, T> {
    raft_engine: RaftLogEngine,
    router: Router<S>,
    transport: T,
    stats: Arc<StoreStats>,
}

impl<S: Send + 'static, T: Transport> LogWriter<S, T> {
    /// A writer into `raft_engine` that reports to the pollers through `router`.
    pub fn new(
        raft_engine: RaftLogEngine,
        router: Router<S>,
        transport: T,
        stats: Arc<StoreStats>,
    ) -> Self {
        LogWriter {
            raft_engine,
            router,
            transport,
            stats,
        }
    }

    /// Writes every round in `msgs` as one batch (one fsync if any needs it), then sends
    /// the messages that waited for durability and tells the pollers. False once the
    /// pollers are gone (the store stopped).
    pub fn write_round(&mut self, msgs: Vec<WriteMsg>) -> bool {
        let stats = &self.stats;
        let mut batch = LogWriteBatch::default();
        let mut tasks = Vec::new();
        let mut sync = false;
        for mut m in msgs {
            batch.merge(&mut m.batch);
            tasks.append(&mut m.tasks);
            sync |= m.sync;
        }
        stats.rounds.fetch_add(1, Ordering::Relaxed);
        if !batch.is_empty() {
            let start = std::time::Instant::now();
            let written = self.raft_engine.write(&mut batch, sync);
            let took = start.elapsed().as_secs_f64();
            crate::metrics::APPEND_LOG.observe(took);
            match written {
                Ok(bytes) => {
                    if sync {
                        stats.fsyncs.fetch_add(1, Ordering::Relaxed);
                        crate::metrics::FSYNC_TOTAL
                            .with_label_values(&["raft"])
                            .inc();
                        crate::metrics::FSYNC_DURATION
                            .with_label_values(&["raft"])
                            .observe(took);
                    }
                    stats.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    // Nothing can be acknowledged if the log is not durable; a store
                    // that cannot write its log must stop rather than lie.
                    crate::fatal::fatal(format_args!("raft log write failed: {e}"));
                }
            }
        }
        stats
            .readies
            .fetch_add(tasks.len() as u64, Ordering::Relaxed);
        let mut persisted = Vec::with_capacity(tasks.len());
        for t in tasks {
            for m in t.messages {
                let _ = self.transport.send(m);
            }
            persisted.push(Persisted {
                region_id: t.region_id,
                peer_id: t.peer_id,
                ready_number: t.ready_number,
            });
        }
        self.transport.flush();
        self.router
            .send_store(StoreMsg::Persisted(persisted))
            .is_ok()
    }
}

/// Runs `writer` on its own thread: each wake-up takes every round queued and writes them
/// as one. It exits when the pollers drop their senders or stop.
pub fn spawn_writer<S: Send + 'static, T: Transport>(
    mut writer: LogWriter<S, T>,
    rx: Receiver<WriteMsg>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("raft-log-writer".into())
        .spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut msgs = vec![first];
                msgs.extend(rx.try_iter());
                if !writer.write_round(msgs) {
                    break;
                }
            }
        })
        .expect("spawning the raft log writer")
}
