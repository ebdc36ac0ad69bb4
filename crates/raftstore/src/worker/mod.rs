//! The store's background workers, each one thread fed by a channel (the seed's
//! `split-check`, `snapshot-worker`/region, `raft-gc-worker` and `pd-worker`).
//!
//! Workers take work that would stall the poller: scanning a region, building or applying a
//! snapshot, deleting log files. A worker's thread ends when every sender of its channel is
//! dropped, which happens when the store shuts down.

pub mod pd;
pub mod raftlog_gc;
pub mod region;
pub mod split_check;

use std::thread::JoinHandle;

use crossbeam_channel::Receiver;

/// Runs `handle` on every task received, on a new thread named `name`, until the channel
/// closes.
pub fn spawn<T: Send + 'static>(
    name: &str,
    rx: Receiver<T>,
    mut handle: impl FnMut(T) + Send + 'static,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            for task in rx {
                handle(task);
            }
        })
        .expect("spawning a worker thread")
}
