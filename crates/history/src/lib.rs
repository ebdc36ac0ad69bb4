//! Client histories of a key-value store and the checkers that judge them.
//!
//! # What it owns
//! Pure data and algorithms, no store inside: the real-thread test cluster
//! (`test_cluster`) records histories today, and a deterministic simulator can feed the
//! same types tomorrow.
//! - [`history`]: operations (put, get, delete, compare-and-swap), their outcomes (`Ok`,
//!   `Failed` = certainly not applied, `Unknown` = may apply at any later point or never),
//!   and the [`Recorder`] that threads share to log calls and returns on one logical clock;
//! - [`linearizability`]: per-key linearizability (Wing & Gong's search with Lowe's and
//!   Porcupine's memo of explored (linearized set, state) pairs), bounded by a step budget;
//! - [`bank`]: every snapshot of the accounts adds up to the opening total, none negative;
//! - [`list_append`]: Elle-style snapshot-isolation check of list-append transactions
//!   (version orders from reads; G0, G1a, G1b, G1c, G-single).
//!
//! # How a history flows in
//! A client thread calls [`Recorder::invoke`] just before it sends an operation and
//! [`Recorder::finish`] just after the answer (or when it gives up: `Unknown`); positions
//! come from one counter under one lock, so they respect real time. `Recorder::history`
//! hands the result to [`linearizability::check`]. A simulator, or a test, can build a
//! [`History`] by hand with its own positions ([`History::push`]).
//!
//! # What a verdict says
//! [`linearizability::Verdict`]: `Linearizable` (with what was covered), `Violation` with a
//! [`linearizability::Counterexample`] (the key, the longest linearizable prefix found, the
//! operation that could not be placed after it and the others in flight, printed
//! readably), or `Undecided` when the step budget ran out: never a hang. The bank and
//! list-append checkers return every violation they find; an empty list passes.

pub mod bank;
pub mod history;
pub mod linearizability;
pub mod list_append;

pub use history::{Entry, History, Op, Outcome, Pending, Recorder, Ret};
