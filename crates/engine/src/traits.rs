//! The engine contract every KV engine implements.
//!
//! To ensure correctness, an implementation must guarantee:
//! - a [`WriteBatch`] is applied atomically across all column families by [`Engine::write`]:
//!   after a crash either all of it is visible or none of it is;
//! - [`Engine::write`] with `sync = true` (and [`Engine::sync`]) returns only once every write
//!   acknowledged so far is on stable storage; with `sync = false` a crash may lose a suffix of
//!   the writes, never a middle part (writes are recovered in the order they were made);
//! - a [`Snapshot`] is a consistent point-in-time view of every column family that later
//!   writes never change;
//! - keys are 1 to [`MAX_KEY_LEN`] bytes; a batch holding any other key is rejected by
//!   [`Engine::write`] as a whole, with an error;
//! - scans return keys in byte-wise ascending order (descending for reverse scans), and an
//!   empty upper bound means "unbounded".

use crate::Result;

/// Column family names. Percolator uses `default`, `lock` and `write`; `raft` holds the
/// per-region metadata (apply state, region state) that must be written atomically with data.
pub type CfName = &'static str;

/// Values of committed Percolator transactions and raw KV data.
pub const CF_DEFAULT: CfName = "default";
/// Percolator locks.
pub const CF_LOCK: CfName = "lock";
/// Percolator commit records.
pub const CF_WRITE: CfName = "write";
/// Region metadata: apply state and region local state, and store-level metadata.
pub const CF_RAFT: CfName = "raft";

/// The column families that hold user data (what a region snapshot carries).
pub const DATA_CFS: &[CfName] = &[CF_DEFAULT, CF_LOCK, CF_WRITE];
/// Every column family an engine must provide.
pub const ALL_CFS: &[CfName] = &[CF_DEFAULT, CF_LOCK, CF_WRITE, CF_RAFT];

/// Longest key an engine accepts (fjall's limit).
pub const MAX_KEY_LEN: usize = u16::MAX as usize;

/// One key-value pair owned by the caller.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// A boxed iterator over key-value pairs of one column family.
pub type KvIter<'a> = Box<dyn Iterator<Item = Result<KvPair>> + Send + 'a>;

/// A key-value engine with column families, atomic batches and consistent snapshots.
///
/// Engines are cheap to clone handles to one shared store.
pub trait Engine: Clone + Send + Sync + 'static {
    /// The read view type.
    type Snapshot: Snapshot;
    /// The write batch type.
    type WriteBatch: WriteBatch;

    /// Reads the latest value of `key` in `cf`.
    fn get(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Takes a consistent read view of all column families.
    fn snapshot(&self) -> Self::Snapshot;

    /// Creates an empty write batch for this engine.
    fn write_batch(&self) -> Self::WriteBatch;

    /// Applies `batch` atomically. With `sync` the write is durable when this returns.
    fn write(&self, batch: Self::WriteBatch, sync: bool) -> Result<()>;

    /// Makes every write acknowledged so far durable.
    fn sync(&self) -> Result<()>;

    /// Adds to `batch` a delete of every key of `cf` in `[start, end)` (empty `end` =
    /// unbounded), as seen now. Returns how many deletes were added.
    fn delete_range_into(
        &self,
        batch: &mut Self::WriteBatch,
        cf: CfName,
        start: &[u8],
        end: &[u8],
    ) -> Result<usize> {
        let snap = self.snapshot();
        let mut n = 0;
        for kv in snap.scan(cf, start, end, false) {
            let (k, _) = kv?;
            batch.delete(cf, &k);
            n += 1;
        }
        Ok(n)
    }

    /// Approximate number of bytes of keys plus values stored in `cf` within `[start, end)`.
    fn approximate_size(&self, cf: CfName, start: &[u8], end: &[u8]) -> Result<u64> {
        let snap = self.snapshot();
        let mut size = 0u64;
        for kv in snap.scan(cf, start, end, false) {
            let (k, v) = kv?;
            size += (k.len() + v.len()) as u64;
        }
        Ok(size)
    }

    /// Bytes this engine occupies on disk (0 for memory engines).
    fn disk_usage(&self) -> u64;
}

/// A consistent, immutable view of an engine.
pub trait Snapshot: Clone + Send + Sync + 'static {
    /// Reads `key` in `cf` as of this snapshot.
    fn get(&self, cf: CfName, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Iterates `cf` over `[start, end)` (empty `end` = unbounded), ascending, or
    /// descending when `reverse` is set.
    fn scan<'a>(&'a self, cf: CfName, start: &[u8], end: &[u8], reverse: bool) -> KvIter<'a>;
}

/// A set of writes applied atomically by [`Engine::write`].
pub trait WriteBatch: Send + 'static {
    /// Adds a put.
    fn put(&mut self, cf: CfName, key: &[u8], value: &[u8]);
    /// Adds a delete.
    fn delete(&mut self, cf: CfName, key: &[u8]);
    /// Number of operations in the batch.
    fn count(&self) -> usize;
    /// Approximate payload size (keys plus values) in bytes.
    fn data_size(&self) -> usize;
    /// True when the batch holds no operation.
    fn is_empty(&self) -> bool {
        self.count() == 0
    }
}
