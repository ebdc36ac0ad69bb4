//! Snapshot-isolation reads at a timestamp: point gets and scans, and the rule for when a
//! lock blocks a read.
//!
//! A lock blocks a read at `ts` iff it was taken at or below `ts`, is a Put or Delete
//! lock, its min_commit_ts is at or below `ts`, and its transaction is not in the
//! request's `resolved_locks` (transactions the client already knows are committed or
//! rolled back). Everything else is read through: the newest Put or Delete committed at
//! or below `ts` decides the value.

pub mod point;
pub mod scan;
