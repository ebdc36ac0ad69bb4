//! The bridge from async request handlers to a store's raftstore.
//!
//! raftstore answers through a callback run on its poller thread; [`RaftKv`] turns that
//! into a future by handing the callback the sending half of a oneshot channel, so a
//! tokio worker awaiting a read or a write is never blocked. Requests are addressed with
//! the client's `kvrpcpb::Context` (region id, epoch, peer, term) and every check
//! raftstore does (store, leader, peer, epoch, keys in region, entry size) comes back as
//! a region error.

use engine::CfName;
use proto::kvrpcpb::Context;
use proto::raft_cmdpb::{
    CmdType, DeleteRangeRequest, DeleteRequest, PutRequest, RaftCmdRequest, RaftRequestHeader,
    Request, SnapRequest,
};
use raftstore::{CmdResponse, RegionSnapshot, Router};
use std::time::Instant;
use tokio::sync::oneshot;

use crate::metrics;

use super::{Error, Result};

/// One change to the store's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Modify {
    /// Set `key` to `value` (already in our value encoding).
    Put {
        /// Column family.
        cf: CfName,
        /// User key.
        key: Vec<u8>,
        /// Stored value.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// Column family.
        cf: CfName,
        /// User key.
        key: Vec<u8>,
    },
    /// Remove every key in `[start, end)` (empty `end` = to the region's end).
    DeleteRange {
        /// Column family.
        cf: CfName,
        /// First key removed.
        start: Vec<u8>,
        /// First key kept.
        end: Vec<u8>,
    },
}

impl Modify {
    fn into_request(self) -> Request {
        match self {
            Modify::Put { cf, key, value } => Request {
                cmd_type: CmdType::Put as i32,
                put: Some(PutRequest {
                    cf: cf.to_string(),
                    key,
                    value,
                }),
                ..Default::default()
            },
            Modify::Delete { cf, key } => Request {
                cmd_type: CmdType::Delete as i32,
                delete: Some(DeleteRequest {
                    cf: cf.to_string(),
                    key,
                }),
                ..Default::default()
            },
            Modify::DeleteRange { cf, start, end } => Request {
                cmd_type: CmdType::DeleteRange as i32,
                delete_range: Some(DeleteRangeRequest {
                    cf: cf.to_string(),
                    start_key: start,
                    end_key: end,
                    notify_only: false,
                }),
                ..Default::default()
            },
        }
    }
}

/// Sends reads and writes for client-named regions to one store's raftstore.
pub struct RaftKv<S> {
    router: Router<S>,
}

impl<S> Clone for RaftKv<S> {
    fn clone(&self) -> Self {
        RaftKv {
            router: self.router.clone(),
        }
    }
}

fn header(ctx: &Context) -> RaftRequestHeader {
    RaftRequestHeader {
        region_id: ctx.region_id,
        peer: ctx.peer,
        region_epoch: ctx.region_epoch,
        term: ctx.term,
        ..Default::default()
    }
}

impl<S: engine::Snapshot> RaftKv<S> {
    /// Talks to the store behind `router`.
    pub fn new(router: Router<S>) -> Self {
        RaftKv { router }
    }

    /// The router this sends through.
    pub fn router(&self) -> &Router<S> {
        &self.router
    }

    /// A linearizable read view of the context's region (served after a ReadIndex round
    /// and bounded to the region's range as of the read).
    pub async fn snapshot(&self, ctx: &Context) -> Result<RegionSnapshot<S>> {
        self.snapshot_with_term(ctx).await.map(|(snap, _)| snap)
    }

    /// Like [`RaftKv::snapshot`], with the term of the leader that served the read (the
    /// raft response header's `current_term`). A leader's term names its reign: two reads
    /// answered with the same term were served by the same leader with no other leader in
    /// between (the transactional layer uses this to know when `max_ts` needs a sync).
    pub async fn snapshot_with_term(&self, ctx: &Context) -> Result<(RegionSnapshot<S>, u64)> {
        let request = Request {
            cmd_type: CmdType::Snap as i32,
            snap: Some(SnapRequest {}),
            ..Default::default()
        };
        let resp = self.exec(ctx, vec![request], ()).await?;
        let term = resp.response.header.as_ref().map_or(0, |h| h.current_term);
        let snap = resp.snapshot.ok_or_else(|| {
            Error::Other("raftstore answered a Snap read without a snapshot".into())
        })?;
        Ok((snap, term))
    }

    /// Proposes `modifies` as one raft command (atomic within the region) and resolves
    /// once it is applied. `keep` is dropped only when raftstore has answered, whatever
    /// happens to this future, and before this future resolves (used to hold latches and
    /// memory locks for exactly the write's lifetime).
    pub async fn write<K: Send + 'static>(
        &self,
        ctx: &Context,
        modifies: Vec<Modify>,
        keep: K,
    ) -> Result<()> {
        let requests = modifies.into_iter().map(Modify::into_request).collect();
        self.exec(ctx, requests, keep).await.map(|_| ())
    }

    /// Like [`RaftKv::write`], for a write decided on a snapshot served in leader term
    /// `term` (from [`RaftKv::snapshot_with_term`]): raftstore refuses it with StaleCommand
    /// (not applied, so the client retries) unless this store still leads in that term or
    /// the next. Without it, a read-then-write command (compare-and-swap, a transactional
    /// write) whose store lost and regained leadership in between would write over what
    /// another leader accepted meanwhile, decided on a read that no longer holds. One term
    /// later is still safe: a term has one leader, so nobody else led between the two.
    pub async fn write_in_term<K: Send + 'static>(
        &self,
        ctx: &Context,
        term: u64,
        modifies: Vec<Modify>,
        keep: K,
    ) -> Result<()> {
        if term == 0 {
            return self.write(ctx, modifies, keep).await;
        }
        let ctx = Context {
            term,
            ..ctx.clone()
        };
        self.write(&ctx, modifies, keep).await
    }

    async fn exec<K: Send + 'static>(
        &self,
        ctx: &Context,
        requests: Vec<Request>,
        keep: K,
    ) -> Result<CmdResponse<S>> {
        let is_read = requests.iter().any(|r| r.cmd_type == CmdType::Snap as i32);
        let cmd = RaftCmdRequest {
            header: Some(header(ctx)),
            requests,
            ..Default::default()
        };
        let kind = if is_read {
            metrics::Kind::Read
        } else {
            metrics::Kind::Write
        };
        let (tx, rx) = oneshot::channel();
        let region_id = ctx.region_id;
        let sent = Instant::now();
        let start = metrics::command_start();
        self.router.send_command_since(
            cmd,
            Box::new(move |resp: CmdResponse<S>| {
                // When raftstore answered: the answer stage starts here.
                let answered = metrics::Answered {
                    kind,
                    at: Instant::now(),
                    region_id,
                    stages: resp.stages,
                };
                // Released before the answer is handed over: whoever acts on the answer
                // (the client's next request) finds the latches free and the memory locks
                // of an applied transactional write gone.
                drop(keep);
                // The receiver may be gone (the client hung up); the result is then moot.
                let _ = tx.send((resp, answered));
            }),
            start,
        );
        let (resp, answered) = rx
            .await
            // raftstore promises to call every callback; a dropped one means the poller
            // went away with the command, which is the store stopping.
            .map_err(|_| Error::from(raftstore::Error::StoreStopped))?;
        metrics::note_answered(answered);
        let label = if is_read { "snapshot" } else { "write" };
        metrics::ENGINE_REQUEST
            .with_label_values(&[label])
            .observe(raftstore::metrics::secs(sent, answered.at));
        if let Some(err) = resp.response.header.as_ref().and_then(|h| h.error.clone()) {
            return Err(Error::from(err));
        }
        Ok(resp)
    }
}
