//! Admin operations, one file each: how they are proposed and how they are applied.

pub mod compact_log;
pub mod conf_change;
pub mod split;
pub mod transfer_leader;
