//! Clients as state machines: each issues one operation at a time through a store's router
//! and is stepped by the simulator, never blocking. Retries on region errors (not leader,
//! epoch, busy) are new attempts the simulator schedules; each operation's call, return and
//! result go into the history.
//!
//! Each client owns its keys (no other client writes them), so what a read may return is
//! known exactly: the value of the client's last acknowledged put of that key, or of a put
//! whose outcome is unknown (timed out) since then. Checking shared keys needs a
//! linearizability checker (a later stage).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use engine::{MemSnapshot, CF_DEFAULT};
use proto::errorpb;
use proto::metapb;
use proto::raft_cmdpb::{
    CmdType, GetRequest, PutRequest, RaftCmdRequest, RaftRequestHeader, Request,
};
use raftstore::CmdResponse;

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// Put `value` at `key`.
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value (never empty).
        value: Vec<u8>,
    },
    /// Read `key`.
    Get {
        /// Key.
        key: Vec<u8>,
    },
}

impl OpKind {
    /// The key the operation is on.
    pub fn key(&self) -> &[u8] {
        match self {
            OpKind::Put { key, .. } | OpKind::Get { key } => key,
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// Not returned yet.
    Pending,
    /// Acknowledged; a get carries what it read (None: no value).
    Ok(Option<Vec<u8>>),
    /// Outcome unknown (timed out, or an error after which it may still apply).
    Unknown(String),
    /// Definitely not done (gave up after retrying definite errors).
    Failed(String),
}

/// One operation of the history.
#[derive(Debug, Clone)]
pub struct OpRecord {
    /// Client that issued it.
    pub client: usize,
    /// What it asked.
    pub kind: OpKind,
    /// Simulator step and virtual time (µs) of the call.
    pub call: (u64, u64),
    /// Step and virtual time (µs) of the return.
    pub ret: Option<(u64, u64)>,
    /// How it ended.
    pub result: OpResult,
    /// Attempts sent (retries + 1).
    pub attempts: u32,
}

impl OpRecord {
    /// One line of the history text.
    pub fn line(&self, index: usize) -> String {
        let kind = match &self.kind {
            OpKind::Put { key, value } => format!("put {} {}", show(key), show(value)),
            OpKind::Get { key } => format!("get {}", show(key)),
        };
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
        format!(
            "#{index} c{} {kind} call step {} t={}us return {ret} attempts {} -> {result}",
            self.client, self.call.0, self.call.1, self.attempts
        )
    }
}

/// Bytes as text (keys and values are ASCII here).
pub fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The slot an attempt's callback fills.
pub type Slot = Arc<Mutex<Option<CmdResponse<MemSnapshot>>>>;

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

/// A client: its keys, what each may hold, and where it is.
pub struct Client {
    /// Index.
    pub id: usize,
    /// The keys it owns.
    pub keys: Vec<Vec<u8>>,
    /// For each key: the values a read may return (empty: never written).
    pub possible: BTreeMap<Vec<u8>, Vec<Vec<u8>>>,
    /// Where it is.
    pub state: ClientState,
    /// Store it believes leads the region.
    pub leader_hint: Option<u64>,
    /// Operations issued.
    pub issued: u64,
    /// Only reads from now on (the final check), or nothing more once its list is done.
    pub script: Option<Vec<OpKind>>,
}

impl Client {
    /// A client owning `keys_per_client` keys of its own.
    pub fn new(id: usize, keys_per_client: usize) -> Self {
        let keys: Vec<Vec<u8>> = (0..keys_per_client)
            .map(|k| format!("c{id}k{k}").into_bytes())
            .collect();
        Client {
            id,
            possible: keys.iter().map(|k| (k.clone(), Vec::new())).collect(),
            keys,
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

    /// Whether a response has arrived for the attempt in flight.
    pub fn has_response(&self) -> bool {
        match &self.state {
            ClientState::Waiting { slot, .. } => slot.lock().expect("slot").is_some(),
            _ => false,
        }
    }

    /// What `get` results this client accepts for `key` now.
    pub fn accepts(&self, key: &[u8], got: &Option<Vec<u8>>) -> bool {
        let possible = &self.possible[key];
        match got {
            None => possible.is_empty() || possible.iter().all(|v| v.is_empty()),
            Some(v) => possible.contains(v),
        }
    }

    /// Records that a put of `value` at `key` was acknowledged or may have applied.
    pub fn on_put(&mut self, key: &[u8], value: &[u8], acknowledged: bool) {
        let p = self.possible.get_mut(key).expect("own key");
        if acknowledged {
            p.clear();
        }
        if !p.iter().any(|v| v == value) {
            p.push(value.to_vec());
        }
    }
}

/// The request for `op` to `region` at `store`.
pub fn request(op: &OpKind, region: &metapb::Region, store: u64) -> RaftCmdRequest {
    let req = match op {
        OpKind::Put { key, value } => Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: CF_DEFAULT.to_string(),
                key: key.clone(),
                value: value.clone(),
            }),
            ..Default::default()
        },
        OpKind::Get { key } => Request {
            cmd_type: CmdType::Get as i32,
            get: Some(GetRequest {
                cf: CF_DEFAULT.to_string(),
                key: key.clone(),
            }),
            ..Default::default()
        },
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
