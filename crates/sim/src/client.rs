//! Clients as state machines: each issues one operation at a time through a store's real
//! raw storage layer (`server::storage::RawStorage`, the code behind the store's RawPut,
//! RawGet, RawDelete and RawCompareAndSwap handlers) and is stepped by the simulator, never
//! blocking. An attempt is a task on the simulator's executor ([`crate::tasks`]) that
//! fills the attempt's slot with the storage layer's answer. Retries on errors that prove
//! the command was not applied (not leader, epoch, busy, stale command, store down) are
//! new attempts the simulator schedules; each operation's call, return and result go into
//! the history.
//!
//! Every client works on the same few hot keys (put, get, delete, compare-and-swap), so
//! what a read may return depends on the other clients: the history goes to the
//! linearizability checker (`history::linearizability`). A compare-and-swap expects the
//! value its client last saw at the key, so some swap and some find another value.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use engine::MemSnapshot;
use history::{History, Op, Outcome, Ret};
use proto::errorpb;
use proto::kvrpcpb::Context;
use proto::metapb;
use server::storage::{CasOutcome, RawStorage};

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// Not returned yet.
    Pending,
    /// Acknowledged; a get carries what it read (None: no value).
    Ok(Option<Vec<u8>>),
    /// A compare-and-swap answered: whether it swapped, and the value it found.
    Swapped {
        /// Whether the new value was written.
        swapped: bool,
        /// The value before the call.
        previous: Option<Vec<u8>>,
    },
    /// Outcome unknown (timed out, the store crashed, or an error after which it may still
    /// apply).
    Unknown(String),
    /// Definitely not done (gave up after retrying errors that prove it was not applied).
    Failed(String),
}

/// One operation of the history.
#[derive(Debug, Clone)]
pub struct OpRecord {
    /// Client that issued it.
    pub client: usize,
    /// What it asked.
    pub op: Op,
    /// Simulator step and virtual time (µs) of the call.
    pub call: (u64, u64),
    /// Step and virtual time (µs) of the return.
    pub ret: Option<(u64, u64)>,
    /// How it ended.
    pub result: OpResult,
    /// Attempts sent (retries + 1).
    pub attempts: u32,
    /// The store whose answer ended it (or that crashed holding it).
    pub served_by: Option<u64>,
}

impl OpRecord {
    /// One line of the history text.
    pub fn line(&self, index: usize) -> String {
        let ret = self
            .ret
            .map_or("-".to_string(), |(s, t)| format!("step {s} t={t}us"));
        let result = match &self.result {
            OpResult::Pending => "pending".to_string(),
            OpResult::Ok(None) => "ok".to_string(),
            OpResult::Ok(Some(v)) => format!("ok {}", show(v)),
            OpResult::Swapped { swapped, previous } => format!(
                "{} (found {})",
                if *swapped { "swapped" } else { "not swapped" },
                previous.as_deref().map_or("nothing".into(), show)
            ),
            OpResult::Unknown(e) => format!("unknown: {e}"),
            OpResult::Failed(e) => format!("failed: {e}"),
        };
        let by = self.served_by.map_or(String::new(), |s| format!(" (s{s})"));
        format!(
            "#{index} c{} {} call step {} t={}us return {ret} attempts {} -> {result}{by}",
            self.client, self.op, self.call.0, self.call.1, self.attempts
        )
    }

    /// The operation for the checker: call and return positions are simulator steps;
    /// `Pending` counts as `Unknown`.
    pub fn to_history(&self, h: &mut History) {
        let outcome = match &self.result {
            OpResult::Ok(v) => match self.op {
                Op::Get { .. } => Outcome::Ok(Ret::Value(v.clone())),
                _ => Outcome::Ok(Ret::Done),
            },
            OpResult::Swapped { swapped, .. } => Outcome::Ok(Ret::Swapped(*swapped)),
            OpResult::Failed(_) => Outcome::Failed,
            OpResult::Unknown(_) | OpResult::Pending => Outcome::Unknown,
        };
        h.push(
            self.client as u64,
            self.call.0,
            self.ret.map(|r| r.0),
            self.op.clone(),
            outcome,
        );
    }
}

/// Bytes as text (keys and values are ASCII here).
pub fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// What came back for an attempt: the storage layer's answer.
pub type Reply = server::storage::Result<Done>;

/// What a raw operation returned.
pub enum Done {
    /// A put or delete was applied.
    Written,
    /// What a get read.
    Value(Option<Vec<u8>>),
    /// What a compare-and-swap found and did.
    Cas(CasOutcome),
}

/// The raw storage layer of one store.
pub type Raw = RawStorage<MemSnapshot>;

/// The slot an attempt's task fills.
pub type Slot = Arc<Mutex<Option<Reply>>>;

/// Runs `op` through the store's real raw storage layer, as its gRPC handler would (no
/// TTL: an expiry would read the wall clock).
pub async fn run_raw(raw: &Raw, ctx: &Context, op: Op) -> Reply {
    match op {
        Op::Put { key, value } => raw.put(ctx, "", key, value, 0).await.map(|_| Done::Written),
        Op::Get { key } => raw.get(ctx, "", key).await.map(Done::Value),
        Op::Delete { key } => raw.delete(ctx, "", key).await.map(|_| Done::Written),
        Op::Cas { key, expected, new } => raw
            .compare_and_swap(ctx, "", key, expected, new.unwrap_or_default(), 0)
            .await
            .map(Done::Cas),
    }
}

/// The request context for `region` at `store` (term 0: raftstore checks no term).
pub fn context(region: &metapb::Region, store: u64) -> Context {
    Context {
        region_id: region.id,
        region_epoch: region.region_epoch,
        peer: raftstore::util::find_peer(region, store).copied(),
        ..Default::default()
    }
}

/// Where a client is.
pub enum ClientState {
    /// Waiting until `at` (ns) to issue its next operation.
    Idle {
        /// When.
        at: u64,
    },
    /// An attempt of operation `op` was sent to `store`; it gives up at `deadline`.
    Waiting {
        /// Index in the history.
        op: usize,
        /// Store the attempt went to.
        store: u64,
        /// Filled by the attempt's task.
        slot: Slot,
        /// When the operation times out (ns).
        deadline: u64,
    },
    /// Operation `op` will be retried at `at`.
    Backoff {
        /// Index in the history.
        op: usize,
        /// When (ns).
        at: u64,
        /// When the operation times out (ns).
        deadline: u64,
    },
    /// Issues nothing more.
    Done,
}

/// A client and where it is.
pub struct Client {
    /// Index.
    pub id: usize,
    /// Where it is.
    pub state: ClientState,
    /// Store it believes leads the region.
    pub leader_hint: Option<u64>,
    /// Writes issued (values are `c<id>v<n>`, unique).
    pub issued: u64,
    /// The value this client last saw at each key (what its compare-and-swaps expect).
    pub seen: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Only these operations from now on (the final read-back), nothing once done.
    pub script: Option<Vec<Op>>,
}

impl Client {
    /// A new client.
    pub fn new(id: usize) -> Self {
        Client {
            id,
            state: ClientState::Idle { at: 0 },
            leader_hint: None,
            issued: 0,
            seen: Default::default(),
            script: None,
        }
    }

    /// When this client next acts, if it is waiting on a timer.
    pub fn next_time(&self) -> Option<u64> {
        match &self.state {
            ClientState::Idle { at } => Some(*at),
            ClientState::Waiting { deadline, .. } => Some(*deadline),
            ClientState::Backoff { at, .. } => Some(*at),
            ClientState::Done => None,
        }
    }

    /// Whether a reply has arrived for the attempt in flight.
    pub fn has_response(&self) -> bool {
        match &self.state {
            ClientState::Waiting { slot, .. } => slot.lock().expect("slot").is_some(),
            _ => false,
        }
    }
}

/// What to do after an answer.
pub enum Verdict {
    /// Done, with this result.
    Ok(OpResult),
    /// Not done, try again (at the store named, if any).
    Retry(Option<u64>, String),
    /// May or may not have applied.
    Unknown(String),
    /// An error the storage layer must not give for these requests (a corrupt value, a
    /// failed task): a finding; the outcome is unknown.
    Broken(String),
}

/// Classifies an answer: region errors that prove the command was not applied are
/// retried (a store that stopped holding the command, `StoreStopped`, is not one).
pub fn verdict(reply: Reply) -> Verdict {
    match reply {
        Ok(Done::Written) => Verdict::Ok(OpResult::Ok(None)),
        Ok(Done::Value(v)) => Verdict::Ok(OpResult::Ok(v)),
        Ok(Done::Cas(o)) => Verdict::Ok(OpResult::Swapped {
            swapped: o.succeed,
            previous: o.previous,
        }),
        Err(server::storage::Error::Region(e)) => classify(&e),
        Err(e) => Verdict::Broken(e.to_string()),
    }
}

/// Classifies a region error: retried if it proves the request was not applied.
pub fn classify(e: &errorpb::Error) -> Verdict {
    if let Some(nl) = &e.not_leader {
        let hint = nl.leader.as_ref().map(|l| l.store_id).filter(|s| *s != 0);
        return Verdict::Retry(hint, format!("not leader (hint {hint:?})"));
    }
    // not_leader, a refusal too, was handled above (it may name the leader).
    let definite = raftstore::error::is_refusal(e) || e.read_index_not_ready.is_some();
    let mut msg = String::new();
    let _ = write!(msg, "{}", e.message);
    if definite {
        Verdict::Retry(None, msg)
    } else {
        Verdict::Unknown(msg)
    }
}
