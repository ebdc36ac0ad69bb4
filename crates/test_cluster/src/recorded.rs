//! Client operations recorded into a [`history::Recorder`], for the history checkers.
//!
//! [`Cluster::try_request`] retries a write after any retryable error, which is right for
//! a test that only needs the write done but may apply it twice: an attempt that timed out
//! can still commit after the retry did. A recorded write instead is sent again only after
//! an answer that proves the previous attempt was not applied (refused before it was
//! proposed, or failed its epoch check at apply); after anything else (no answer, the
//! store stopping, the peer destroyed, another leader's entry at its index) it is recorded
//! as `Unknown` and the client moves on. A read has no effect, so it is retried after any
//! failure and recorded as `Failed` if none succeeds in time.
//!
//! Compare-and-swap cannot be expressed: the harness sends raft commands, and a raft
//! command has no conditional write (a read then a write would not be atomic).

use std::time::{Duration, Instant};

use history::{Op, Outcome, Recorder, Ret};
use proto::errorpb;
use proto::raft_cmdpb::{
    CmdType, DeleteRequest, GetRequest, PutRequest, RaftCmdRequest, RaftCmdResponse,
    RaftRequestHeader, Request,
};

use crate::client::ATTEMPT_TIMEOUT;
use crate::cluster::Cluster;

/// What one attempt got.
#[derive(Debug)]
pub enum Attempt {
    /// A successful answer from `store`.
    Answer {
        store: u64,
        response: Box<RaftCmdResponse>,
    },
    /// A region error from `store`.
    Refused {
        store: u64,
        error: Box<errorpb::Error>,
    },
    /// Sent to `store`, no answer in time.
    NoAnswer { store: u64 },
    /// Not sent: no region or no running store for it.
    NotSent(String),
}

/// Errors that prove a write was not applied: refused before it was proposed (the
/// leadership, peer, store, epoch, key and busy checks, a full mailbox), or refused at
/// apply by the epoch or key check. Everything else about a write is ambiguous.
pub fn write_not_applied(e: &errorpb::Error) -> bool {
    e.not_leader.is_some()
        || e.epoch_not_match.is_some()
        || e.key_not_in_region.is_some()
        || e.server_is_busy.is_some()
        || e.store_not_match.is_some()
        || e.mismatch_peer_id.is_some()
}

/// The raft requests of `op`. Panics on compare-and-swap (see the module doc).
pub fn requests_for(op: &Op) -> Vec<Request> {
    let req = match op {
        Op::Put { key, value } => Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: String::new(),
                key: key.clone(),
                value: value.clone(),
            }),
            ..Default::default()
        },
        Op::Get { key } => Request {
            cmd_type: CmdType::Get as i32,
            get: Some(GetRequest {
                cf: String::new(),
                key: key.clone(),
            }),
            ..Default::default()
        },
        Op::Delete { key } => Request {
            cmd_type: CmdType::Delete as i32,
            delete: Some(DeleteRequest {
                cf: String::new(),
                key: key.clone(),
            }),
            ..Default::default()
        },
        Op::Cas { .. } => panic!("compare-and-swap is not a raft command"),
    };
    vec![req]
}

/// What a successful answer to `op` returned (a Get's empty value reads as absent: the
/// recorded workloads never write empty values).
fn result_of(op: &Op, resp: &RaftCmdResponse) -> Ret {
    match op {
        Op::Get { .. } => {
            let v = resp
                .responses
                .first()
                .and_then(|r| r.get.as_ref())
                .map(|g| g.value.clone())
                .unwrap_or_default();
            Ret::Value((!v.is_empty()).then_some(v))
        }
        _ => Ret::Done,
    }
}

impl Cluster {
    /// Sends `cmd` (its header filled in here) once, for the region holding `key`: to
    /// store `to`, or else to the believed leader (the `attempt`-th candidate without a
    /// hint). Waits up to `timeout` for the answer and learns leader hints from it.
    pub fn send_once(
        &self,
        key: &[u8],
        to: Option<u64>,
        mut cmd: RaftCmdRequest,
        timeout: Duration,
        attempt: usize,
    ) -> Attempt {
        let Some(region) = self.region_for_key(key) else {
            return Attempt::NotSent("no region for the key".into());
        };
        let Some(store) = to.or_else(|| self.candidate_store(&region, attempt)) else {
            return Attempt::NotSent("no running store holds the region".into());
        };
        let Some(router) = self.router(store) else {
            return Attempt::NotSent(format!("store {store} is not running"));
        };
        cmd.header = Some(RaftRequestHeader {
            region_id: region.id,
            peer: raftstore::util::find_peer(&region, store).copied(),
            region_epoch: region.region_epoch,
            ..Default::default()
        });
        let (tx, rx) = std::sync::mpsc::channel();
        router.send_command(
            cmd,
            Box::new(move |r| {
                let _ = tx.send(r.response);
            }),
        );
        let Ok(response) = rx.recv_timeout(timeout) else {
            self.leader_hints.lock().remove(&region.id);
            return Attempt::NoAnswer { store };
        };
        match response.header.as_ref().and_then(|h| h.error.clone()) {
            None => {
                self.leader_hints.lock().insert(region.id, store);
                Attempt::Answer {
                    store,
                    response: Box::new(response),
                }
            }
            Some(error) => {
                self.on_region_error(&region, &error);
                Attempt::Refused {
                    store,
                    error: Box::new(error),
                }
            }
        }
    }

    /// Runs `op` for `client` as the module doc describes, recording its call and outcome
    /// in `rec`; `to` pins the store it is sent to. Gives up after `deadline`.
    pub fn recorded_op(
        &self,
        rec: &Recorder,
        client: u64,
        op: Op,
        to: Option<u64>,
        deadline: Duration,
    ) -> Outcome {
        let requests = requests_for(&op);
        let key = op.key().to_vec();
        let pending = rec.invoke(client, op.clone());
        let until = Instant::now() + deadline;
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let cmd = RaftCmdRequest {
                requests: requests.clone(),
                ..Default::default()
            };
            let wait = ATTEMPT_TIMEOUT.min(until.saturating_duration_since(Instant::now()));
            let retry = match self.send_once(&key, to, cmd, wait, attempt) {
                Attempt::Answer { response, .. } => break Outcome::Ok(result_of(&op, &response)),
                Attempt::Refused { error, .. } => !op.is_write() || write_not_applied(&error),
                Attempt::NoAnswer { .. } => !op.is_write(),
                Attempt::NotSent(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    true
                }
            };
            if !retry {
                break Outcome::Unknown;
            }
            if Instant::now() >= until {
                break Outcome::Failed;
            }
        };
        rec.finish(pending, outcome.clone());
        outcome
    }
}
