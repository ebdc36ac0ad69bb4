//! Handling raft-rs's Ready for one peer, asynchronously persisted.
//!
//! Order of work for one ready (raft-rs's contract, with the log write handed off):
//! 1. leader messages go out at once (a leader may replicate before its own disk write);
//! 2. read states complete pending read-index requests;
//! 3. a snapshot goes to the region worker and the peer pauses until it is applied;
//! 4. committed entries are applied into the round's KV batch;
//! 5. new entries and the hard state are staged for the log writer, together with the
//!    messages that may only leave after they are durable;
//! 6. `advance_append_async`; the writer's notification later calls `on_persist_ready`.

use engine::Engine;
use raft::eraftpb::{Message, MessageType};
use raft::{LightReady, StateRole};

use super::{ApplyingSnapshot, Peer};
use crate::context::PollContext;
use crate::msg::RaftMessage;
use crate::storage::write::WriteTask;
use crate::transport::Transport;
use crate::worker::region::{ApplyTask, RegionTask};
use crate::Error;

impl<E: Engine> Peer<E> {
    /// Sends leader messages now, reporting failed snapshot sends back to raft (and
    /// accepted ones as finished, unless the transport reports delivery itself).
    fn send_messages<T: Transport>(&mut self, ctx: &mut PollContext<E, T>, msgs: Vec<Message>) {
        // Before anything is sent: these may carry the MsgTimeoutNow of a transfer.
        self.check_lease_before_send(&ctx.read_delegates);
        let transport_reports = ctx.transport.reports_snapshot_delivery();
        for m in msgs {
            let is_snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            let to = m.to;
            let Some(rm) = self.build_raft_message(m) else {
                continue;
            };
            match ctx.send(rm) {
                Ok(()) if is_snapshot && !transport_reports => {
                    self.raft_group
                        .report_snapshot(to, raft::SnapshotStatus::Finish);
                }
                Ok(()) => {}
                Err(e) => {
                    tracing::trace!("{} send to peer {to} failed: {e}", self.tag);
                    if is_snapshot {
                        self.raft_group
                            .report_snapshot(to, raft::SnapshotStatus::Failure);
                    }
                    self.raft_group.report_unreachable(to);
                }
            }
        }
    }

    fn wrap_messages(&self, msgs: Vec<Message>) -> Vec<RaftMessage> {
        msgs.into_iter()
            .filter_map(|m| self.build_raft_message(m))
            .collect()
    }

    /// True if `handle_ready` would do something now.
    pub fn has_actionable_ready(&self) -> bool {
        let snapshot_blocked = self.raft_group.snap().is_some()
            && (!self.unpersisted.is_empty() || self.kv_in_flight());
        self.applying_snapshot.is_none() && self.raft_group.has_ready() && !snapshot_blocked
    }

    /// Processes the peer's pending Ready, if any.
    pub fn handle_ready<T: Transport>(&mut self, ctx: &mut PollContext<E, T>) {
        if self.applying_snapshot.is_some() || !self.raft_group.has_ready() {
            return;
        }
        if self.raft_group.snap().is_some() && (!self.unpersisted.is_empty() || self.kv_in_flight())
        {
            // A snapshot replaces the log and the data; earlier log writes, and batches an
            // apply thread still writes, must land first.
            return;
        }
        let mut rd = self.raft_group.ready();
        if let Some(ss) = rd.ss() {
            self.on_role_changed(ctx, ss.raft_state);
        }
        let msgs = rd.take_messages();
        self.send_messages(ctx, msgs);
        for rs in rd.take_read_states() {
            if let Some(issued_at) = self.reads.on_read_state(rs.index, &rs.request_ctx) {
                self.renew_lease(&ctx.read_delegates, issued_at);
            }
        }

        if !rd.snapshot().is_empty() {
            self.start_apply_snapshot(ctx, rd);
            return;
        }

        let committed = rd.take_committed_entries();
        if !committed.is_empty() {
            self.apply_committed(ctx, committed);
        }

        let entries = rd.take_entries();
        for e in &entries {
            self.raft_log_size_hint += (e.data.len() + e.context.len() + 16) as u64;
        }
        let persisted_msgs = rd.take_persisted_messages();
        let must_sync = rd.must_sync() || !entries.is_empty();
        let changed =
            match self
                .raft_group
                .mut_store()
                .append(&entries, rd.hs(), &mut ctx.log_batch)
            {
                Ok(changed) => changed,
                Err(e) => crate::fatal::fatal(format_args!(
                    "{} staging raft log writes failed: {e}",
                    self.tag
                )),
            };
        if changed || !persisted_msgs.is_empty() || !self.unpersisted.is_empty() {
            let messages = self.wrap_messages(persisted_msgs);
            let number = rd.number();
            ctx.write_tasks.push(WriteTask {
                region_id: self.region_id(),
                peer_id: self.meta.id,
                ready_number: number,
                messages,
            });
            ctx.need_sync |= must_sync;
            let last = self.storage().last_index_unpersisted();
            self.unpersisted.push_back((number, last));
            self.raft_group.advance_append_async(rd);
        } else {
            // Nothing to persist and nothing in flight: finish the ready synchronously.
            let light = self.raft_group.advance_append(rd);
            self.handle_light_ready(ctx, light);
        }
    }

    fn handle_light_ready<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        mut light: LightReady,
    ) {
        let msgs = light.take_messages();
        self.send_messages(ctx, msgs);
        let committed = light.take_committed_entries();
        if !committed.is_empty() {
            self.apply_committed(ctx, committed);
        }
    }

    /// The log writer persisted every ready up to `number`.
    pub fn on_persisted<T: Transport>(&mut self, ctx: &mut PollContext<E, T>, number: u64) {
        let mut last_index = None;
        while let Some(&(n, last)) = self.unpersisted.front() {
            if n > number {
                break;
            }
            last_index = Some(last);
            self.unpersisted.pop_front();
        }
        let Some(last_index) = last_index else {
            return;
        };
        self.raft_group.on_persist_ready(number);
        self.raft_group.mut_store().on_persisted(last_index);
        // The proposals now durable in the leader's log end their persist stage. Those not
        // yet persisted are the newest, at the back: stop at the first one already marked.
        let mut now = None;
        for p in self.proposals.iter_mut().rev() {
            let Some(trace) = p.trace.as_mut() else {
                continue;
            };
            if trace.persisted.is_some() {
                break;
            }
            if p.index <= last_index {
                trace.on_persisted(*now.get_or_insert_with(std::time::Instant::now));
            }
        }
        let _ = ctx;
    }

    fn start_apply_snapshot<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        mut rd: raft::Ready,
    ) {
        let snap = rd.snapshot().clone();
        let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
        let checked = match self.received_snapshot.take() {
            Some((i, t, c)) if i == index && t == term => c,
            other => {
                // raft keeps only the newest snapshot it accepted, and every snapshot it
                // was given was checked and kept here; an older one may still be kept.
                self.received_snapshot = other;
                match crate::storage::snapshot::decode(snap.get_data()) {
                    Ok(c) => std::sync::Arc::new(c),
                    Err(e) => crate::fatal::fatal(format_args!(
                        "{} raft asks to apply snapshot {index}/{term}, which was never \
                         checked and does not decode: {e}",
                        self.tag
                    )),
                }
            }
        };
        let region = checked.region().clone();
        let entries = rd.take_entries();
        let store = self.raft_group.mut_store();
        let old_region = if store.is_initialized() {
            Some(store.region().clone())
        } else {
            None
        };
        let raft_state = store.reset_to_snapshot(region.clone(), rd.hs(), index, term, &entries);
        let messages = self.wrap_messages(rd.take_persisted_messages());
        let number = rd.number();
        tracing::info!(
            "{} applying snapshot at index {index} term {term}",
            self.tag
        );
        let task = ApplyTask {
            region_id: self.region_id(),
            ready_number: number,
            snapshot: checked,
            index,
            term,
            old_region,
            raft_state,
            entries,
        };
        if ctx
            .region_scheduler
            .send(RegionTask::Apply(Box::new(task)))
            .is_err()
        {
            crate::fatal::fatal(format_args!("{} region worker is gone", self.tag));
        }
        self.applying_snapshot = Some(ApplyingSnapshot {
            ready_number: number,
            region,
            index,
            term,
            messages,
        });
        self.raft_group.advance_append_async(rd);
    }

    /// The region worker finished applying the snapshot of ready `number`.
    pub fn on_snapshot_applied<T: Transport>(
        &mut self,
        ctx: &mut PollContext<E, T>,
        number: u64,
        result: Result<(), String>,
    ) {
        let Some(applying) = self.applying_snapshot.take() else {
            return;
        };
        if applying.ready_number != number {
            self.applying_snapshot = Some(applying);
            return;
        }
        if let Err(e) = result {
            // The data may be half replaced; serving from it would be wrong.
            crate::fatal::fatal(format_args!("{} could not apply snapshot: {e}", self.tag));
        }
        // Crash window: the snapshot is on disk (data and log), the peer's memory is not updated.
        fail::fail_point!("snapshot_applied_before_peer_update");
        for p in &applying.region.peers {
            self.peer_cache.insert(p.id, *p);
        }
        ctx.store_meta.set_region(&applying.region);
        let last = self.storage().last_index_unpersisted();
        self.raft_group.on_persist_ready(number);
        self.raft_group.mut_store().on_persisted(last);
        self.raft_group.advance_apply_to(applying.index);
        self.flushed = (applying.index, applying.term);
        self.raft_log_size_hint = 0;
        for m in applying.messages {
            let _ = ctx.send(m);
        }
        tracing::info!("{} snapshot at index {} applied", self.tag, applying.index);
    }

    fn on_role_changed<T: Transport>(&mut self, ctx: &mut PollContext<E, T>, role: StateRole) {
        // A new term or role: whatever lease there was belongs to the past.
        self.expire_lease(&ctx.read_delegates);
        if role != StateRole::Leader {
            let leader = self.leader();
            let region_id = self.region_id();
            self.reads
                .fail_all(|| Error::NotLeader { region_id, leader });
        } else {
            tracing::debug!("{} became leader at term {}", self.tag, self.term());
            crate::metrics::LEADERS_ELECTED.inc();
            // Tell the scheduler at once, so clients asking it find the new leader now
            // rather than at the next heartbeat interval.
            self.heartbeat_pd(ctx);
        }
    }
}
