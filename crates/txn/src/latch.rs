//! Per-key latches: a write that reads before it writes (a transactional command, a raw
//! compare-and-swap) holds its keys' latches from before its snapshot until its changes
//! are applied, so no other write to those keys on this store lands in between.
//!
//! A transactional command decides from a snapshot (is there a lock? a newer commit?)
//! and then proposes its changes; a second command on the same key must not read the
//! snapshot before the first one's changes are applied, or both could succeed where only
//! one may. The guard is moved into the raft command's callback, so even a client that
//! hangs up mid-request cannot release a latch while its write is still in flight.
//! The raw API and the transactional API each have their own table.
//!
//! Keys hash onto a fixed set of slots (an unrelated key may share a slot: that only
//! costs a wait). Slots are always taken in ascending order, so two writers never wait
//! on each other in a cycle. A range delete cannot name its keys, so it takes the gate
//! exclusively; every keyed write holds the gate shared before its slots.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard, OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// The latch table of one store.
pub struct Latches {
    gate: Arc<RwLock<()>>,
    slots: Vec<Arc<Mutex<()>>>,
}

/// Held latches; dropping it releases them.
pub struct LatchGuard {
    // Field order is drop order: slots before the gate, the reverse of acquisition.
    _slots: Vec<OwnedMutexGuard<()>>,
    _gate: GateGuard,
}

enum GateGuard {
    Shared(#[allow(dead_code)] OwnedRwLockReadGuard<()>),
    Exclusive(#[allow(dead_code)] OwnedRwLockWriteGuard<()>),
}

impl Latches {
    /// A table with `slots` slots (at least one).
    pub fn new(slots: usize) -> Latches {
        Latches {
            gate: Arc::new(RwLock::new(())),
            slots: (0..slots.max(1))
                .map(|_| Arc::new(Mutex::new(())))
                .collect(),
        }
    }

    fn slot_of(&self, key: &[u8]) -> usize {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() % self.slots.len() as u64) as usize
    }

    /// Waits for the latches of `keys` (duplicates allowed).
    pub async fn acquire<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> LatchGuard {
        let mut idx: Vec<usize> = keys.into_iter().map(|k| self.slot_of(k)).collect();
        idx.sort_unstable();
        idx.dedup();
        let gate = GateGuard::Shared(self.gate.clone().read_owned().await);
        let mut slots = Vec::with_capacity(idx.len());
        for i in idx {
            slots.push(self.slots[i].clone().lock_owned().await);
        }
        LatchGuard {
            _slots: slots,
            _gate: gate,
        }
    }

    /// Waits until no keyed write holds latches and excludes new ones (range writes).
    pub async fn acquire_all(&self) -> LatchGuard {
        LatchGuard {
            _slots: Vec::new(),
            _gate: GateGuard::Exclusive(self.gate.clone().write_owned().await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn same_key_waits_until_release() {
        let l = Arc::new(Latches::new(64));
        let g = l.acquire([&b"k"[..]]).await;
        let l2 = l.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.acquire([&b"k"[..], b"k"]).await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "second writer got the latch early");
        drop(g);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("released latch is taken")
            .unwrap();
    }

    #[tokio::test]
    async fn range_latch_excludes_keyed_writers() {
        let l = Arc::new(Latches::new(64));
        let keyed = l.acquire([&b"a"[..]]).await;
        let l2 = l.clone();
        let range = tokio::spawn(async move {
            let _g = l2.acquire_all().await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !range.is_finished(),
            "range writer ran beside a keyed writer"
        );
        drop(keyed);
        tokio::time::timeout(Duration::from_secs(5), range)
            .await
            .expect("range latch taken once keyed writers leave")
            .unwrap();
        // Disjoint keys never wait for each other (with one slot per key here).
        let many = Latches::new(1 << 16);
        let _a = many.acquire([&b"x"[..]]).await;
        tokio::time::timeout(Duration::from_secs(1), many.acquire([&b"y"[..]]))
            .await
            .expect("other key is free");
    }
}
