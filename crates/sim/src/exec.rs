//! A thread of its own for each store incarnation, on which every piece of that store's
//! work runs, one job at a time, while the simulator waits.
//!
//! Why: raft-engine (0.4.2, `engine.rs`, `BLOCK_CACHE`) caches the last block of entries
//! it read in a **thread-local** keyed by (file id, offset, length), without the engine's
//! identity. Every store's log starts at file 1 and writes similar batches, so several
//! engines read on one thread hand each other's blocks back: a store read entry 235 where
//! it asked for 234 and raft-engine's own assertion fired (seed 474 of the first sweep). A
//! restarted store must not see the block its previous incarnation cached either (the
//! crash may have rolled that block back, and new writes may fill the same offset with the
//! same length). Production runs one engine per process and a restart is a new process, so
//! this is a property of the simulation's single thread, not a bug of the store.
//!
//! Determinism is kept: the simulator hands one job at a time to one thread and waits for
//! it to finish, so the order of everything is still the RNG's.
//!
//! A panic in a job comes back to the caller as a `String` payload that ends with where it
//! happened (` [at file:line]`, recorded by a panic hook this module chains in front of
//! the existing one): the simulator tells an injected I/O error's designed stop
//! (`raftstore::fatal`, or raft-engine's own panic on a failed sync) from any other panic
//! by it.

use std::cell::RefCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Once;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, unbounded, Sender};

type Job = Box<dyn FnOnce() + Send + 'static>;

thread_local! {
    /// Where the last panic on this thread happened.
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Chains a hook that records each panic's location for its thread, then runs the hook
/// that was there (so panics print as before).
fn record_panic_locations() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(l) = info.location() {
                let at = format!("{}:{}", l.file(), l.line());
                PANIC_AT.with(|p| *p.borrow_mut() = Some(at));
            }
            previous(info);
        }));
    });
}

/// The suffix [`Executor::run`] appends to the message of a panic in a job.
pub fn location_of(msg: &str) -> Option<&str> {
    let start = msg.rfind(" [at ")?;
    msg[start + 5..].strip_suffix(']')
}

/// A thread that runs jobs handed to it, one at a time.
pub struct Executor {
    tx: Option<Sender<Job>>,
    handle: Option<JoinHandle<()>>,
}

impl Executor {
    /// Starts a thread named `name`.
    pub fn new(name: String) -> Executor {
        record_panic_locations();
        let (tx, rx) = unbounded::<Job>();
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("spawn a store's simulation thread");
        Executor {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    /// Runs `f` on the thread and returns its result; a panic in `f` is resumed here, its
    /// message ending with where it happened.
    pub fn run<'a, R: Send + 'a>(&self, f: impl FnOnce() -> R + Send + 'a) -> R {
        let (rtx, rrx) = bounded(1);
        let job: Box<dyn FnOnce() + Send + 'a> = Box::new(move || {
            PANIC_AT.with(|p| p.borrow_mut().take());
            let r = catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
                let at = PANIC_AT.with(|p| p.borrow_mut().take()).unwrap_or_default();
                let msg = crate::chaos::panic_message(&panic);
                Box::new(format!("{msg} [at {at}]")) as Box<dyn std::any::Any + Send>
            });
            let _ = rtx.send(r);
        });
        // SAFETY: the job may borrow data that lives for 'a only. This function does not
        // return before the job has run to its end (it catches its own panic and sends
        // its result), or before the job is dropped unrun (the thread is gone and the
        // channel disconnected), so nothing the job borrows is used after 'a.
        let job: Job = unsafe { std::mem::transmute::<Box<dyn FnOnce() + Send + 'a>, Job>(job) };
        self.tx
            .as_ref()
            .expect("executor running")
            .send(job)
            .expect("a store's simulation thread is alive");
        match rrx.recv().expect("the job ran") {
            Ok(r) => r,
            Err(panic) => resume_unwind(panic),
        }
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
