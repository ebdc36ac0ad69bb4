//! [`MvccTxn`]: the changes one command makes, buffered until the caller writes them
//! through Raft as one batch.

use engine::{CfName, CF_DEFAULT, CF_LOCK, CF_WRITE};

use crate::concurrency::KeyHandleGuard;
use crate::{Key, Lock, TimeStamp, Write};

/// One change to a region's data; keys are stored keys (see the crate doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Modify {
    /// Set `key` in `cf` to `value`.
    Put {
        cf: CfName,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Remove `key` from `cf`.
    Delete { cf: CfName, key: Vec<u8> },
}

/// What a write command produced: the changes to persist and the reply to send once they
/// are applied. `guards` are memory locks (async commit, 1PC) that must stay in the lock
/// table until the changes are applied; drop them after that, not before.
pub struct WriteResult<R> {
    pub modifies: Vec<Modify>,
    pub response: R,
    pub guards: Vec<KeyHandleGuard>,
}

impl<R> WriteResult<R> {
    /// A result that changes nothing.
    pub fn read_only(response: R) -> WriteResult<R> {
        WriteResult {
            modifies: Vec::new(),
            response,
            guards: Vec::new(),
        }
    }
}

/// The write buffer of one command on behalf of transaction `start_ts`.
pub struct MvccTxn {
    /// The transaction the changes belong to.
    pub start_ts: TimeStamp,
    modifies: Vec<Modify>,
    guards: Vec<KeyHandleGuard>,
}

impl MvccTxn {
    /// An empty buffer for transaction `start_ts`.
    pub fn new(start_ts: TimeStamp) -> MvccTxn {
        MvccTxn {
            start_ts,
            modifies: Vec::new(),
            guards: Vec::new(),
        }
    }

    /// Writes `lock` on `key` (CF lock).
    pub fn put_lock(&mut self, key: Key, lock: &Lock) {
        self.modifies.push(Modify::Put {
            cf: CF_LOCK,
            key: key.into_encoded(),
            value: lock.to_bytes(),
        });
    }

    /// Removes the lock on `key`.
    pub fn unlock_key(&mut self, key: Key) {
        self.modifies.push(Modify::Delete {
            cf: CF_LOCK,
            key: key.into_encoded(),
        });
    }

    /// Stores a long value of this transaction (CF default at `start_ts`).
    pub fn put_value(&mut self, key: Key, ts: TimeStamp, value: Vec<u8>) {
        self.modifies.push(Modify::Put {
            cf: CF_DEFAULT,
            key: key.append_ts(ts).into_encoded(),
            value,
        });
    }

    /// Removes the long value stored at `(key, ts)`.
    pub fn delete_value(&mut self, key: Key, ts: TimeStamp) {
        self.modifies.push(Modify::Delete {
            cf: CF_DEFAULT,
            key: key.append_ts(ts).into_encoded(),
        });
    }

    /// Writes a commit record at `(key, commit_ts)`.
    pub fn put_write(&mut self, key: Key, commit_ts: TimeStamp, write: &Write) {
        self.modifies.push(Modify::Put {
            cf: CF_WRITE,
            key: key.append_ts(commit_ts).into_encoded(),
            value: write.to_bytes(),
        });
    }

    /// Removes the commit record at `(key, commit_ts)`.
    pub fn delete_write(&mut self, key: Key, commit_ts: TimeStamp) {
        self.modifies.push(Modify::Delete {
            cf: CF_WRITE,
            key: key.append_ts(commit_ts).into_encoded(),
        });
    }

    /// Keeps a memory lock until the changes are applied.
    pub fn hold(&mut self, guard: KeyHandleGuard) {
        self.guards.push(guard);
    }

    /// Number of buffered changes.
    pub fn len(&self) -> usize {
        self.modifies.len()
    }

    /// True if nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.modifies.is_empty()
    }

    /// The buffered changes, in order.
    pub fn modifies(&self) -> &[Modify] {
        &self.modifies
    }

    /// Turns the buffer into a result carrying `response`.
    pub fn into_result<R>(self, response: R) -> WriteResult<R> {
        WriteResult {
            modifies: self.modifies,
            response,
            guards: self.guards,
        }
    }
}
