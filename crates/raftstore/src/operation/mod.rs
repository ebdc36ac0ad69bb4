//! Admin operations, one file each: how they are proposed and how they are applied.

pub mod compact_log;
