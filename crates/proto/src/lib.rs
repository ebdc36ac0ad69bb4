//! Tessera's wire types: the protobuf messages every component shares.
//!
//! The `.proto` files under `proto/` are our own, written to be wire-compatible with
//! TiKV's kvproto for the subset Tessera uses: same package, message and enum names, same
//! field numbers and types. Fields we do not use are left out, which keeps the encoding
//! compatible (unknown fields are skipped by both sides). Code is generated at build time by
//! protox (pure Rust) and tonic-prost-build; nothing here is written by hand.
//!
//! Inside a store, raft messages are raft-rs's own (rust-protobuf) types; they are turned
//! into [`eraftpb`] only at the transport boundary, by re-decoding their bytes.

pub use prost;

/// Raft log entries, messages, hard state and configuration (matches raft-rs).
pub mod eraftpb {
    include!(concat!(env!("OUT_DIR"), "/eraftpb.rs"));
}
/// Cluster, store, region and peer metadata.
pub mod metapb {
    include!(concat!(env!("OUT_DIR"), "/metapb.rs"));
}
/// Region errors returned to clients.
pub mod errorpb {
    include!(concat!(env!("OUT_DIR"), "/errorpb.rs"));
}
/// Client request context and KV RPC messages.
pub mod kvrpcpb {
    include!(concat!(env!("OUT_DIR"), "/kvrpcpb.rs"));
}
/// Store-to-store raft messages and on-disk raft state.
pub mod raft_serverpb {
    include!(concat!(env!("OUT_DIR"), "/raft_serverpb.rs"));
}
/// Commands replicated through raft.
pub mod raft_cmdpb {
    include!(concat!(env!("OUT_DIR"), "/raft_cmdpb.rs"));
}
/// The placement driver's gRPC API (service `PD`): ids, timestamps, stores, regions.
pub mod pdpb {
    include!(concat!(env!("OUT_DIR"), "/pdpb.rs"));
}
/// Keyspace lookup (service `Keyspace`).
pub mod keyspacepb {
    include!(concat!(env!("OUT_DIR"), "/keyspacepb.rs"));
}

/// The `tikvpb.Tikv` gRPC service (transactional and raw KV APIs, store-to-store raft
/// traffic): [`tikvpb::tikv_client::TikvClient`] and [`tikvpb::tikv_server::Tikv`].
pub mod tikvpb {
    include!(concat!(env!("OUT_DIR"), "/tikvpb.rs"));
}
