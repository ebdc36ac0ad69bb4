//! Apply threads: writing a round's KV batch off the poller (`[raftstore] apply_pool_size`).
//!
//! With apply threads, a poller still decides everything about applying (it decodes the
//! committed entries, checks them against the region, stages their writes and updates the
//! peer's view of its region), but it hands the round's KV batch and the callbacks that
//! wait for it to an apply thread as a [`KvJob`], and goes on to its next round while the
//! batch is written. The apply thread writes the batch, fires the callbacks (a client
//! hears "done" only for data in the engine) and tells the poller, which then runs what
//! had to wait for the write (split peers started, reads served, log GC, destroys): see
//! `Poller::finish_round`.
//!
//! Each poller always uses the same apply thread, which writes its jobs in the order they
//! were handed over, so a region's batches reach the engine in log order. A poller that
//! must read the engine as of its staged writes (a DeleteRange finds its keys by scanning)
//! first waits for its jobs to be written ([`KvProgress::wait_for`]).
//!
//! Without apply threads (`apply_pool_size = 0`, the default on small machines, and the
//! simulator's set-up) the poller writes the batch itself at the same point of the round
//! and runs the same follow-up at once.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use crossbeam_channel::Receiver;
use engine::Engine;

use crate::context::PendingCallback;
use crate::msg::StoreMsg;
use crate::router::Router;

/// How far a poller's jobs have been written: the sequence number of the last one.
#[derive(Default)]
pub struct KvProgress {
    written: Mutex<u64>,
    changed: Condvar,
}

impl KvProgress {
    fn mark(&self, seq: u64) {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        *w = (*w).max(seq);
        self.changed.notify_all();
    }

    /// Blocks until job `seq` and every job before it are written.
    pub fn wait_for(&self, seq: u64) {
        let mut w = self.written.lock().unwrap_or_else(|e| e.into_inner());
        while *w < seq {
            w = self.changed.wait(w).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// One poller round's KV batch and the callbacks waiting for it.
pub struct KvJob<E: Engine> {
    /// The poller that staged it, and is told once it is written.
    pub poller: usize,
    /// Its number among that poller's jobs (from 1).
    pub seq: u64,
    /// The round's applied writes and apply states.
    pub wb: E::WriteBatch,
    /// Fired once `wb` is in the engine.
    pub callbacks: Vec<PendingCallback<E::Snapshot>>,
    /// Where the poller watches its jobs being written.
    pub progress: Arc<KvProgress>,
}

/// Writes KV jobs into the engine; run by an apply thread ([`spawn_applier`]).
pub struct KvApplier<E: Engine> {
    engine: E,
    router: Router<E::Snapshot>,
    store_id: u64,
}

impl<E: Engine> KvApplier<E> {
    /// An applier writing into `engine` and reporting to the pollers through `router`.
    pub fn new(engine: E, router: Router<E::Snapshot>, store_id: u64) -> Self {
        KvApplier {
            engine,
            router,
            store_id,
        }
    }

    /// Writes `job`'s batch, fires its callbacks and tells its poller. False once the
    /// pollers are gone.
    pub fn write(&mut self, job: KvJob<E>) -> bool {
        let KvJob {
            poller,
            seq,
            wb,
            callbacks,
            progress,
        } = job;
        let start = Instant::now();
        if let Err(e) = self.engine.write(wb, false) {
            // As on the poller: acknowledging writes that are not in the engine would lose
            // them, and apply checked every key, so this is the disk.
            crate::fatal::fatal(format_args!(
                "store {}: writing applied data failed: {e}",
                self.store_id
            ));
        }
        let done = Instant::now();
        crate::metrics::KV_WRITE.observe(crate::metrics::secs(start, done));
        fire_callbacks(callbacks, done);
        progress.mark(seq);
        self.router
            .send_store(StoreMsg::KvWritten { poller, seq })
            .is_ok()
    }
}

/// Answers the commands of a written batch; each write's apply stage ends at `written`.
pub fn fire_callbacks<S>(callbacks: Vec<PendingCallback<S>>, written: Instant) {
    for (cb, mut resp, trace) in callbacks {
        if let Some(t) = trace {
            resp.stages = t.on_applied(written);
        }
        cb(resp);
    }
}

/// Runs `applier` on its own thread until every poller has dropped its sender.
pub fn spawn_applier<E: Engine>(
    mut applier: KvApplier<E>,
    rx: Receiver<KvJob<E>>,
    name: String,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(move || {
        // After a `false` (the pollers are gone) the jobs still queued are written: they
        // hold applied entries whose callbacks wait.
        while let Ok(job) = rx.recv() {
            applier.write(job);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_for_a_job_returns_once_it_and_every_one_before_it_is_written() {
        let progress = Arc::new(KvProgress::default());
        progress.wait_for(0);
        let p = progress.clone();
        let waiter = std::thread::spawn(move || {
            p.wait_for(3);
            *p.written.lock().unwrap()
        });
        progress.mark(1);
        progress.mark(2);
        progress.mark(3);
        assert_eq!(waiter.join().unwrap(), 3);
        // Marks never go back.
        progress.mark(2);
        assert_eq!(*progress.written.lock().unwrap(), 3);
    }
}
