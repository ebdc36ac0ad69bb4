//! What the runner needs from a target: put, get and scan, each one request.
//!
//! Implemented by [`crate::tikv::TikvBackend`] and [`crate::etcd::EtcdBackend`] (and by an
//! in-memory stand-in in the runner's tests). Errors are plain strings: the runner only
//! counts them and shows the first one.

use std::future::Future;

/// A connected client for one target.
pub trait Backend: Send + Sync + Sized + 'static {
    /// The handle client number `index` uses: the etcd backend pins each client to one of its
    /// endpoints (round robin); the tikv backend shares one client, which routes by region.
    fn for_client(&self, index: usize) -> Self;

    /// Writes `value` under `key`.
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> impl Future<Output = Result<(), String>> + Send;

    /// Reads `key`; `Ok(true)` if it exists.
    fn get(&self, key: Vec<u8>) -> impl Future<Output = Result<bool, String>> + Send;

    /// Reads up to `limit` keys in `[start, end)`; returns how many came back.
    fn scan(
        &self,
        start: Vec<u8>,
        end: Vec<u8>,
        limit: u32,
    ) -> impl Future<Output = Result<usize, String>> + Send;
}
