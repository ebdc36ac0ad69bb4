//! The list-append workload (Elle's): transactional clients ([`crate::txn_client`]) read a
//! few lists at their start_ts and append unique numbers to some of them; the history of
//! transactions is checked for snapshot isolation with `history::list_append` (no G0,
//! G1a, G1b, G1c or G-single; every read a prefix of the key's version order).
//!
//! A list is stored as its numbers joined by commas. A transaction that appends commits
//! with the client's prewrite/commit; one that only reads counts as committed (its reads
//! come from one snapshot). A transaction whose primary commit got no definite answer is
//! recorded as unknown, never as aborted.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use history::list_append::{Mop, TxnHistory, TxnStatus};

use crate::client::show;
use crate::txn_client::{TxnEnd, TxnEnv, TXN_TIMEOUT_NS};
use crate::world::Sim;

/// The lists and the history of the transactions on them.
pub struct Lists {
    /// List keys.
    pub keys: Vec<Vec<u8>>,
    /// The next value to append (unique in the run).
    next: Cell<u64>,
    /// Every transaction, as the checker wants it.
    pub history: RefCell<TxnHistory>,
}

impl Lists {
    /// `n` lists spread over `keys` hot keys (`k<i>-list<j>`, so a split at a hot key
    /// puts lists in different regions).
    pub fn new(n: usize, keys: usize) -> Lists {
        Lists {
            keys: (0..n)
                .map(|j| format!("k{}-list{j}", (j + 1) % keys.max(1)).into_bytes())
                .collect(),
            next: Cell::new(1),
            history: RefCell::new(TxnHistory::new()),
        }
    }
}

fn decode(v: &[u8]) -> Vec<u64> {
    show(v)
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(u64::MAX))
        .collect()
}

fn encode(list: &[u64]) -> Vec<u8> {
    list.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

/// One transaction: reads 1 to 3 drawn lists, appends to about half of them.
async fn transaction(env: &TxnEnv, lists: &Lists) {
    let deadline = env.clock.now() + TXN_TIMEOUT_NS;
    let n = lists.keys.len() as u64;
    let count = env.draw(1, 3.min(n));
    let first = env.draw(0, n - 1);
    let picked: Vec<usize> = (0..count).map(|i| ((first + i) % n) as usize).collect();
    let Some(t) = env.begin(deadline).await else {
        return;
    };
    let mut mops = Vec::new();
    let mut writes = Vec::new();
    for k in picked {
        let key = &lists.keys[k];
        let name = show(key);
        let mut list = match env.get(key, t.ts, deadline).await {
            Ok(v) => v.as_deref().map(decode).unwrap_or_default(),
            Err(why) => {
                env.log(format!(
                    "lists: txn at {} could not read {name}: {why}",
                    t.ts
                ));
                lists.history.borrow_mut().push(TxnStatus::Aborted, mops);
                return;
            }
        };
        mops.push(Mop::Read {
            key: name.clone(),
            value: Some(list.clone()),
        });
        if env.chance(0.5) {
            let v = lists.next.get();
            lists.next.set(v + 1);
            list.push(v);
            mops.push(Mop::Append {
                key: name.clone(),
                value: v,
            });
            writes.push((key.clone(), encode(&list)));
        }
    }
    let status = if writes.is_empty() {
        TxnStatus::Committed
    } else {
        let end = env.write(&writes, t.ts, deadline).await;
        env.log(format!("lists: txn at {}: {end:?}", t.ts));
        match end {
            TxnEnd::Committed(_) => TxnStatus::Committed,
            TxnEnd::Aborted(_) => TxnStatus::Aborted,
            TxnEnd::Unknown(_) => TxnStatus::Unknown,
        }
    };
    lists.history.borrow_mut().push(status, mops);
}

/// A list-append client: transactions until the load phase ends.
pub async fn client(env: Rc<TxnEnv>, lists: Rc<Lists>) {
    env.active.set(env.active.get() + 1);
    while env.load.get() {
        transaction(&env, &lists).await;
        env.pause(0, 20).await;
    }
    env.active.set(env.active.get() - 1);
}

impl Sim {
    /// Checks the list-append history for snapshot isolation.
    pub(crate) fn check_lists(&mut self) {
        let Some(lists) = self.lists.clone() else {
            return;
        };
        let anomalies = history::list_append::check(&lists.history.borrow());
        for a in anomalies.iter().take(10) {
            self.violations.push(format!("list-append: {a}"));
        }
    }
}
