//! Network faults as filters over store-to-store raft messages.
//!
//! Every message a store sends passes through the cluster's filters in the order they were
//! added. The first filter that drops it wins; delays from several filters combine to the
//! longest one. Client commands never pass through filters (they go straight into a
//! store's router, as in TinyKV's harness).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use raft::eraftpb::MessageType;
use raftstore::RaftMessage;

/// What a filter decides for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let it through.
    Pass,
    /// Discard it (the sender sees [`raftstore::TransportError::Dropped`]).
    Drop,
    /// Deliver it after this long.
    Delay(Duration),
}

/// A rule applied to every store-to-store message.
pub trait Filter: Send + Sync {
    /// Decides the fate of `msg` going from store `from` to store `to`. Random choices must
    /// come from `rng` (the cluster's seeded RNG).
    fn decide(&self, from: u64, to: u64, msg: &RaftMessage, rng: &mut StdRng) -> Decision;
}

/// Drops each message with probability `rate`.
#[derive(Debug, Clone)]
pub struct DropFilter {
    /// Fraction of messages dropped, 0.0..=1.0.
    pub rate: f64,
}

impl Filter for DropFilter {
    fn decide(&self, _: u64, _: u64, _: &RaftMessage, rng: &mut StdRng) -> Decision {
        if rng.gen_bool(self.rate.clamp(0.0, 1.0)) {
            Decision::Drop
        } else {
            Decision::Pass
        }
    }
}

/// Drops every message between the two sets of stores, in both directions. Messages within
/// one side, or involving a store on neither side, pass.
#[derive(Debug, Clone)]
pub struct PartitionFilter {
    /// One side.
    pub s1: Vec<u64>,
    /// The other side.
    pub s2: Vec<u64>,
}

impl Filter for PartitionFilter {
    fn decide(&self, from: u64, to: u64, _: &RaftMessage, _: &mut StdRng) -> Decision {
        let crosses = (self.s1.contains(&from) && self.s2.contains(&to))
            || (self.s2.contains(&from) && self.s1.contains(&to));
        if crosses {
            Decision::Drop
        } else {
            Decision::Pass
        }
    }
}

/// Cuts one store off from every other store, both ways.
#[derive(Debug, Clone, Copy)]
pub struct IsolationFilter(pub u64);

impl Filter for IsolationFilter {
    fn decide(&self, from: u64, to: u64, _: &RaftMessage, _: &mut StdRng) -> Decision {
        if (from == self.0) != (to == self.0) {
            Decision::Drop
        } else {
            Decision::Pass
        }
    }
}

/// Delays every message by a random time in `[min, max]`. Delayed messages may overtake
/// each other, as on a real network.
#[derive(Debug, Clone, Copy)]
pub struct DelayFilter {
    /// Shortest delay.
    pub min: Duration,
    /// Longest delay.
    pub max: Duration,
}

impl Filter for DelayFilter {
    fn decide(&self, _: u64, _: u64, _: &RaftMessage, rng: &mut StdRng) -> Decision {
        let span = self.max.saturating_sub(self.min).as_micros() as u64;
        let extra = if span == 0 { 0 } else { rng.gen_range(0..=span) };
        Decision::Delay(self.min + Duration::from_micros(extra))
    }
}

/// Drops every raft message of one type, optionally only those sent to one store: for
/// targeted tests such as "this follower never receives a snapshot".
#[derive(Debug, Clone, Copy)]
pub struct MessageTypeFilter {
    /// The raft message type dropped.
    pub msg_type: MessageType,
    /// Only messages to this store (`None` = to any store).
    pub to_store: Option<u64>,
}

impl Filter for MessageTypeFilter {
    fn decide(&self, _: u64, to: u64, msg: &RaftMessage, _: &mut StdRng) -> Decision {
        let type_matches = msg.message.get_msg_type() == self.msg_type;
        if type_matches && self.to_store.is_none_or(|s| s == to) {
            Decision::Drop
        } else {
            Decision::Pass
        }
    }
}

/// A filter from a closure `(from, to, msg) -> Decision`, for one-off rules in tests.
pub struct FnFilter<F>(pub F);

impl<F> Filter for FnFilter<F>
where
    F: Fn(u64, u64, &RaftMessage) -> Decision + Send + Sync,
{
    fn decide(&self, from: u64, to: u64, msg: &RaftMessage, _: &mut StdRng) -> Decision {
        (self.0)(from, to, msg)
    }
}

/// Runs `msg` through `filters` in order: the first drop wins, delays take the maximum.
pub fn decide_all(
    filters: &[std::sync::Arc<dyn Filter>],
    from: u64,
    to: u64,
    msg: &RaftMessage,
    rng: &mut StdRng,
) -> Decision {
    let mut delay = Duration::ZERO;
    for f in filters {
        match f.decide(from, to, msg, rng) {
            Decision::Drop => return Decision::Drop,
            Decision::Delay(d) => delay = delay.max(d),
            Decision::Pass => {}
        }
    }
    if delay.is_zero() {
        Decision::Pass
    } else {
        Decision::Delay(delay)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::SeedableRng;

    use super::*;

    fn msg(t: MessageType) -> RaftMessage {
        let mut m = RaftMessage::default();
        m.message.set_msg_type(t);
        m
    }

    #[test]
    fn partition_cuts_both_ways_only_across() {
        let f = PartitionFilter {
            s1: vec![1, 2],
            s2: vec![3],
        };
        let mut rng = StdRng::seed_from_u64(1);
        let m = msg(MessageType::MsgAppend);
        assert_eq!(f.decide(1, 3, &m, &mut rng), Decision::Drop);
        assert_eq!(f.decide(3, 2, &m, &mut rng), Decision::Drop);
        assert_eq!(f.decide(1, 2, &m, &mut rng), Decision::Pass);
        assert_eq!(f.decide(4, 3, &m, &mut rng), Decision::Pass);
    }

    #[test]
    fn isolation_and_message_type() {
        let mut rng = StdRng::seed_from_u64(1);
        let app = msg(MessageType::MsgAppend);
        let snap = msg(MessageType::MsgSnapshot);
        let iso = IsolationFilter(2);
        assert_eq!(iso.decide(2, 1, &app, &mut rng), Decision::Drop);
        assert_eq!(iso.decide(1, 2, &app, &mut rng), Decision::Drop);
        assert_eq!(iso.decide(1, 3, &app, &mut rng), Decision::Pass);
        let only_snap_to_3 = MessageTypeFilter {
            msg_type: MessageType::MsgSnapshot,
            to_store: Some(3),
        };
        assert_eq!(only_snap_to_3.decide(1, 3, &snap, &mut rng), Decision::Drop);
        assert_eq!(only_snap_to_3.decide(1, 2, &snap, &mut rng), Decision::Pass);
        assert_eq!(only_snap_to_3.decide(1, 3, &app, &mut rng), Decision::Pass);
    }

    #[test]
    fn drop_rate_and_combination() {
        let mut rng = StdRng::seed_from_u64(42);
        let m = msg(MessageType::MsgAppend);
        let drop = DropFilter { rate: 0.25 };
        let dropped = (0..4000)
            .filter(|_| drop.decide(1, 2, &m, &mut rng) == Decision::Drop)
            .count();
        assert!((800..1200).contains(&dropped), "{dropped} of 4000 dropped at rate 0.25");

        let filters: Vec<Arc<dyn Filter>> = vec![
            Arc::new(DelayFilter {
                min: Duration::from_millis(5),
                max: Duration::from_millis(5),
            }),
            Arc::new(DelayFilter {
                min: Duration::from_millis(9),
                max: Duration::from_millis(9),
            }),
        ];
        assert_eq!(
            decide_all(&filters, 1, 2, &m, &mut rng),
            Decision::Delay(Duration::from_millis(9))
        );
        let mut with_iso = filters.clone();
        with_iso.push(Arc::new(IsolationFilter(1)));
        assert_eq!(decide_all(&with_iso, 1, 2, &m, &mut rng), Decision::Drop);
        assert_eq!(decide_all(&[], 1, 2, &m, &mut rng), Decision::Pass);
    }
}
