//! The raw workload's client steps: start an operation, send an attempt (a task that runs
//! it through the store's real raw storage layer), take its answer, retry or finish.

use history::Op;
use rand::Rng;

use crate::client::{self, ClientState, OpRecord, OpResult, Reply, Verdict};
use crate::world::{Phase, Sim};

impl Sim {
    pub(crate) fn step_client(&mut self, c: usize) {
        let state = std::mem::replace(&mut self.clients[c].state, ClientState::Done);
        match state {
            ClientState::Idle { .. } => self.start_op(c),
            ClientState::Backoff { op, deadline, .. } => self.send_attempt(c, op, deadline),
            ClientState::Waiting {
                op,
                store,
                slot,
                deadline,
            } => {
                let resp = slot.lock().expect("slot").take();
                match resp {
                    Some(reply) => self.on_reply(c, op, store, reply, deadline),
                    None => {
                        // The deadline passed without an answer.
                        self.finish(c, op, OpResult::Unknown("timed out".into()));
                    }
                }
            }
            ClientState::Done => {}
        }
    }

    fn start_op(&mut self, c: usize) {
        let op = match &mut self.clients[c].script {
            Some(script) => match script.pop() {
                Some(k) => k,
                None => {
                    self.clients[c].state = ClientState::Done;
                    return;
                }
            },
            None => {
                if self.phase != Phase::Load {
                    self.clients[c].state = ClientState::Done;
                    return;
                }
                let key = self.keys[self.rng.gen_range(0..self.keys.len())].clone();
                let client = &mut self.clients[c];
                let r: f64 = self.rng.gen();
                let (put, delete, cas) = (
                    self.cfg.put_ratio,
                    self.cfg.delete_ratio,
                    self.cfg.cas_ratio,
                );
                if r < put {
                    client.issued += 1;
                    let value = format!("c{c}v{}", client.issued).into_bytes();
                    Op::Put { key, value }
                } else if r < put + delete {
                    Op::Delete { key }
                } else if r < put + delete + cas {
                    client.issued += 1;
                    let new = Some(format!("c{c}v{}", client.issued).into_bytes());
                    // Mostly what this client last saw there (which may be stale), else
                    // "absent".
                    let expected = match client.seen.get(&key) {
                        Some(v) if self.rng.gen_bool(0.8) => v.clone(),
                        _ => None,
                    };
                    Op::Cas { key, expected, new }
                } else {
                    Op::Get { key }
                }
            }
        };
        let index = self.history.len();
        self.log(format_args!("c{c} call #{index} {op}"));
        self.history.push(OpRecord {
            client: c,
            op,
            call: (self.step, self.now / 1000),
            ret: None,
            result: OpResult::Pending,
            attempts: 0,
            served_by: None,
        });
        let deadline = self.now + self.cfg.op_timeout_ms * 1_000_000;
        self.send_attempt(c, index, deadline);
    }

    fn send_attempt(&mut self, c: usize, op: usize, deadline: u64) {
        let store = match self.clients[c].leader_hint {
            Some(s) if !self.rng.gen_bool(self.stale_route) => s,
            _ => self.rng.gen_range(1..=self.cfg.stores),
        };
        let region = self.region_for_key(self.history[op].op.key());
        let record = &mut self.history[op];
        record.attempts += 1;
        let attempt = record.attempts;
        let what = record.op.clone();
        self.log(format_args!("c{c} attempt #{op}.{attempt} -> s{store}"));
        let Some(live) = &self.stores[(store - 1) as usize].live else {
            // Connection refused: never sent, so certainly not applied.
            self.retry(c, op, store, None, "store down".into(), deadline);
            return;
        };
        let (raw, ctx) = (live.raw.clone(), client::context(&region, store));
        let slot = client::Slot::default();
        let fill = slot.clone();
        self.tasks.spawn(async move {
            let reply = client::run_raw(&raw, &ctx, what).await;
            *fill.lock().expect("slot") = Some(reply);
        });
        self.clients[c].state = ClientState::Waiting {
            op,
            store,
            slot,
            deadline,
        };
    }

    fn on_reply(&mut self, c: usize, op: usize, store: u64, reply: Reply, deadline: u64) {
        match client::verdict(reply) {
            Verdict::Ok(result) => {
                self.clients[c].leader_hint = Some(store);
                self.history[op].served_by = Some(store);
                self.note_seen(c, op, &result);
                self.finish(c, op, result);
            }
            Verdict::Retry(hint, why) => self.retry(c, op, store, hint, why, deadline),
            Verdict::Unknown(why) => {
                self.clients[c].leader_hint = None;
                self.history[op].served_by = Some(store);
                self.finish(c, op, OpResult::Unknown(why));
            }
            Verdict::Broken(why) => {
                self.violations.push(format!(
                    "op #{op}: the storage layer of s{store} failed: {why}"
                ));
                self.history[op].served_by = Some(store);
                self.finish(c, op, OpResult::Unknown(why));
            }
        }
    }

    /// Remembers what client `c` learned of its key from operation `op`.
    fn note_seen(&mut self, c: usize, op: usize, result: &OpResult) {
        let seen = match (&self.history[op].op, result) {
            (Op::Get { .. }, OpResult::Ok(v)) => v.clone(),
            (Op::Put { value, .. }, _) => Some(value.clone()),
            (Op::Delete { .. }, _) => None,
            (Op::Cas { new, .. }, OpResult::Swapped { swapped: true, .. }) => new.clone(),
            (Op::Cas { .. }, OpResult::Swapped { previous, .. }) => previous.clone(),
            _ => return,
        };
        let key = self.history[op].op.key().to_vec();
        self.clients[c].seen.insert(key, seen);
    }

    /// Attempt `op` of client `c` at `store` was certainly not applied: try again, or fail
    /// the operation past its deadline or attempts.
    fn retry(
        &mut self,
        c: usize,
        op: usize,
        store: u64,
        hint: Option<u64>,
        why: String,
        deadline: u64,
    ) {
        self.clients[c].leader_hint = hint;
        self.log(format_args!("c{c} retry #{op} after s{store}: {why}"));
        if hint.is_none() {
            // Epoch not match, key not in region, region not found...: the region may
            // have split or changed members; learn it again.
            self.refresh_regions();
        }
        if self.now >= deadline || self.history[op].attempts >= self.cfg.max_attempts {
            self.finish(c, op, OpResult::Failed(why));
            return;
        }
        // Straight to a named leader; a short pause when none is known.
        let pause = if hint.is_some() {
            1
        } else {
            self.rng.gen_range(5..=50)
        };
        self.clients[c].state = ClientState::Backoff {
            op,
            at: self.now + pause * 1_000_000,
            deadline,
        };
    }

    /// Ends operation `op` of client `c` with `result` and schedules the next.
    fn finish(&mut self, c: usize, op: usize, result: OpResult) {
        if self.phase == Phase::Verify && !matches!(result, OpResult::Ok(_)) {
            self.violations.push(format!(
                "op #{op}: c{c} could not read {} back: {result:?}",
                client::show(self.history[op].op.key())
            ));
        }
        let record = &mut self.history[op];
        record.ret = Some((self.step, self.now / 1000));
        record.result = result;
        let line = record.line(op);
        self.log(format_args!("c{c} return {line}"));
        let think = self.rng.gen_range(0..=self.cfg.think_ms * 1000) * 1000;
        self.clients[c].state = ClientState::Idle {
            at: self.now + think,
        };
    }
}
