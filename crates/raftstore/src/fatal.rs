//! Errors a store cannot go on after.
//!
//! A failed raft log write, a KV batch the engine refuses after every command in it was
//! checked, a snapshot that cannot be applied, a tombstone that cannot be written: in each
//! case the store's state on disk is no longer known, and answering clients from it could
//! acknowledge data that is not there. Such a site calls [`fatal`], which logs the reason
//! and panics with a message starting with [`FATAL_PREFIX`].
//!
//! What a panic does is the process's choice: the `tessera` binary installs a panic hook
//! that records the reason and ends the whole process with a non-zero exit code, so a store
//! is never left half alive (gRPC up, poller dead); the in-process test harness keeps the
//! default behaviour (the thread dies) and restarts the store on its data.
//!
//! Content of a command never reaches here: apply refuses what the engine would refuse
//! before it is staged (see [`crate::apply`]).

use std::fmt::Display;

/// Start of the panic message of every fatal error.
pub const FATAL_PREFIX: &str = "fatal error, the store stops:";

/// Logs `what` and stops the current thread (and, in the `tessera` binary, the process).
#[track_caller]
pub fn fatal(what: impl Display) -> ! {
    let msg = format!("{FATAL_PREFIX} {what}");
    tracing::error!("{msg}");
    panic!("{msg}");
}
