//! Transport settings: queue sizes, batching, reconnection backoff, connection options
//! (TLS among them) and snapshot chunking.

use std::time::Duration;

/// Settings of a [`crate::GrpcTransport`]. [`Config::default`] suits production;
/// tests shorten the backoff.
#[derive(Clone, Debug)]
pub struct Config {
    /// Raft messages that may wait for one store's connection task. When the queue is
    /// full, `flush` drops the rest of the batch (raft retransmits) and counts it.
    pub queue_capacity: usize,
    /// Snapshot messages that may wait for one store's snapshot task. Raft sends at most
    /// one snapshot per follower until its outcome is reported, so this bounds the number
    /// of regions whose snapshots can wait, each holding its data in memory.
    pub snapshot_queue_capacity: usize,
    /// Most raft messages in one `BatchRaftMessage` frame.
    pub max_batch_messages: usize,
    /// A frame is closed once its encoded messages reach this many bytes; a single
    /// larger message still goes alone, up to `max_message_size`.
    pub max_batch_bytes: usize,
    /// Largest gRPC message sent or accepted. A raft message that does not fit even
    /// alone is dropped (raftstore's entry and per-message limits keep them far below).
    pub max_message_size: usize,
    /// Frames handed to a stream but not yet written to the connection; when the
    /// connection is slower than the poller, messages back up into the queue instead.
    pub frames_in_flight: usize,
    /// First wait before reconnecting after a failure.
    pub backoff_initial: Duration,
    /// Longest wait between reconnection attempts. A stream that stayed up at least this
    /// long resets the wait to `backoff_initial`.
    pub backoff_max: Duration,
    /// Limit on resolving an address and opening the TCP + HTTP/2 connection.
    pub connect_timeout: Duration,
    /// Interval of HTTP/2 keepalive pings, so a silently dead peer is noticed.
    pub keepalive_interval: Duration,
    /// A keepalive ping unanswered for this long closes the connection.
    pub keepalive_timeout: Duration,
    /// Bytes of snapshot data per `SnapshotChunk`.
    pub snapshot_chunk_size: usize,
    /// Limit on sending one whole snapshot; past it the send is reported as failed.
    pub snapshot_timeout: Duration,
    /// Mutual TLS to the other stores (`https://`, this store's certificate presented);
    /// `None`: plaintext.
    pub tls: Option<security::Tls>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            queue_capacity: 8192,
            snapshot_queue_capacity: 8,
            max_batch_messages: 512,
            max_batch_bytes: 2 * 1024 * 1024,
            max_message_size: 16 * 1024 * 1024,
            frames_in_flight: 4,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(3),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(3),
            snapshot_chunk_size: 1024 * 1024,
            snapshot_timeout: Duration::from_secs(600),
            tls: None,
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A size, count or duration is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// Two settings contradict each other.
    #[error("{0}")]
    Inconsistent(&'static str),
}

impl Config {
    /// Rejects settings that would make the transport stall or never send.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let nonzero = [
            ("queue_capacity", self.queue_capacity),
            ("snapshot_queue_capacity", self.snapshot_queue_capacity),
            ("max_batch_messages", self.max_batch_messages),
            ("max_batch_bytes", self.max_batch_bytes),
            ("max_message_size", self.max_message_size),
            ("frames_in_flight", self.frames_in_flight),
            ("snapshot_chunk_size", self.snapshot_chunk_size),
        ];
        for (name, v) in nonzero {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        let durations = [
            ("backoff_initial", self.backoff_initial),
            ("backoff_max", self.backoff_max),
            ("connect_timeout", self.connect_timeout),
            ("keepalive_interval", self.keepalive_interval),
            ("keepalive_timeout", self.keepalive_timeout),
            ("snapshot_timeout", self.snapshot_timeout),
        ];
        for (name, d) in durations {
            if d.is_zero() {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.backoff_initial > self.backoff_max {
            return Err(ConfigError::Inconsistent(
                "backoff_initial must not exceed backoff_max",
            ));
        }
        if self.max_batch_bytes > self.max_message_size {
            return Err(ConfigError::Inconsistent(
                "max_batch_bytes must not exceed max_message_size",
            ));
        }
        // A chunk also carries the snapshot's raft message (metadata, no data) on the
        // first frame; leave room for it.
        if self.snapshot_chunk_size > self.max_message_size / 2 {
            return Err(ConfigError::Inconsistent(
                "snapshot_chunk_size must be at most half of max_message_size",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_settings_are_rejected() {
        assert_eq!(Config::default().validate(), Ok(()));
        let cfg = Config {
            queue_capacity: 0,
            ..Config::default()
        };
        assert_eq!(cfg.validate(), Err(ConfigError::Zero("queue_capacity")));
        let cfg = Config {
            backoff_initial: Duration::from_secs(5),
            ..Config::default()
        };
        assert!(matches!(cfg.validate(), Err(ConfigError::Inconsistent(_))));
        let cfg = Config {
            snapshot_chunk_size: 16 * 1024 * 1024,
            ..Config::default()
        };
        assert!(matches!(cfg.validate(), Err(ConfigError::Inconsistent(_))));
    }
}
