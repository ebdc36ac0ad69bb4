//! Clients as state machines: each issues one operation at a time through a store's router
//! and is stepped by the simulator, never blocking. Retries on errors that prove the
//! command was not applied (not leader, epoch, busy, stale command, store down) are new
//! attempts the simulator schedules; each operation's call, return and result go into the
//! history.
//!
//! Every client works on the same few hot keys (put, get, delete), so what a read may
//! return depends on the other clients: the history goes to the linearizability checker
//! (`history::linearizability`). Compare-and-swap is not in the workload: the raft command
//! path has no conditional write (`CmdType` is Get, Put, Delete, Snap, DeleteRange...), and
//! a read followed by a put would not be atomic.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use engine::{MemSnapshot, CF_DEFAULT};
use history::{History, Op, Outcome, Ret};
use proto::errorpb;
use proto::metapb;
use proto::raft_cmdpb::{
    CmdType, DeleteRequest, GetRequest, PutRequest, RaftCmdRequest, RaftRequestHeader, Request,
};
use raftstore::CmdResponse;

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// Not returned yet.
    Pending,
    /// Acknowledged; a get carries what it read (None: no value).
    Ok(Option<Vec<u8>>),
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

/// What came back for an attempt.
pub enum Reply {
    /// The store answered.
    Answer(Box<CmdResponse<MemSnapshot>>),
    /// The store dropped the callback without answering (it crashed): the command may or
    /// may not have been applied.
    Dropped,
}

/// The slot an attempt's callback fills.
pub type Slot = Arc<Mutex<Option<Reply>>>;

/// Fills its slot with the answer, or with [`Reply::Dropped`] if it is dropped unanswered
/// (the store that held the callback crashed).
struct Responder {
    slot: Slot,
    answered: bool,
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            let mut s = self.slot.lock().expect("slot");
            if s.is_none() {
                *s = Some(Reply::Dropped);
            }
        }
    }
}

/// The callback for an attempt: it fills `slot`, also when it is dropped unanswered.
pub fn callback(slot: &Slot) -> raftstore::msg::Callback<MemSnapshot> {
    let mut r = Responder {
        slot: slot.clone(),
        answered: false,
    };
    Box::new(move |resp| {
        r.answered = true;
        *r.slot.lock().expect("slot") = Some(Reply::Answer(Box::new(resp)));
    })
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
        /// Filled by the store's callback.
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

/// The request for `op` to `region` at `store`.
pub fn request(op: &Op, region: &metapb::Region, store: u64) -> RaftCmdRequest {
    let req = match op {
        Op::Put { key, value } => Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: CF_DEFAULT.to_string(),
                key: key.clone(),
                value: value.clone(),
            }),
            ..Default::default()
        },
        Op::Get { key } => Request {
            cmd_type: CmdType::Get as i32,
            get: Some(GetRequest {
                cf: CF_DEFAULT.to_string(),
                key: key.clone(),
            }),
            ..Default::default()
        },
        Op::Delete { key } => Request {
            cmd_type: CmdType::Delete as i32,
            delete: Some(DeleteRequest {
                cf: CF_DEFAULT.to_string(),
                key: key.clone(),
            }),
            ..Default::default()
        },
        Op::Cas { .. } => unreachable!("the raft command path has no compare-and-swap"),
    };
    RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: region.id,
            peer: raftstore::util::find_peer(region, store).copied(),
            region_epoch: region.region_epoch,
            ..Default::default()
        }),
        requests: vec![req],
        ..Default::default()
    }
}

/// What to do after a response.
pub enum Verdict {
    /// Done: what a get read (None for a put or a missing key).
    Ok(Option<Vec<u8>>),
    /// Not done, try again (at the store named, if any).
    Retry(Option<u64>, String),
    /// May or may not have applied.
    Unknown(String),
}

/// Classifies a response: errors that prove the command was not applied are retried.
pub fn verdict(resp: &CmdResponse<MemSnapshot>, is_get: bool) -> Verdict {
    let err = resp.response.header.as_ref().and_then(|h| h.error.clone());
    match err {
        None => {
            if !is_get {
                return Verdict::Ok(None);
            }
            let value = resp
                .response
                .responses
                .first()
                .and_then(|r| r.get.as_ref())
                .map(|g| g.value.clone())
                .filter(|v| !v.is_empty());
            Verdict::Ok(value)
        }
        Some(e) => classify(&e),
    }
}

fn classify(e: &errorpb::Error) -> Verdict {
    if let Some(nl) = &e.not_leader {
        let hint = nl.leader.as_ref().map(|l| l.store_id).filter(|s| *s != 0);
        return Verdict::Retry(hint, format!("not leader (hint {hint:?})"));
    }
    let definite = e.region_not_found.is_some()
        || e.key_not_in_region.is_some()
        || e.epoch_not_match.is_some()
        || e.server_is_busy.is_some()
        || e.stale_command.is_some()
        || e.store_not_match.is_some()
        || e.read_index_not_ready.is_some()
        || e.mismatch_peer_id.is_some();
    let mut msg = String::new();
    let _ = write!(msg, "{}", e.message);
    if definite {
        Verdict::Retry(None, msg)
    } else {
        Verdict::Unknown(msg)
    }
}
