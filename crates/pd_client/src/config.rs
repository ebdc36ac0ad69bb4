//! How patient the client is: dial, call and retry timeouts, backoff, keep-alive, and which
//! runtime runs its network tasks.

use std::time::Duration;

/// Client settings. `Config::default()` suits a store talking to a PD on the same network.
#[derive(Clone, Debug)]
pub struct Config {
    /// Longest wait for one TCP + HTTP/2 handshake with one endpoint.
    pub connect_timeout: Duration,
    /// Longest wait for one attempt of one call (a TSO round trip counts as one call).
    pub rpc_timeout: Duration,
    /// Longest a call keeps retrying after transport errors, reconnecting in between; also
    /// how long [`crate::PdClient::connect`] keeps trying the endpoints.
    pub retry_timeout: Duration,
    /// First pause between retries; doubled after each failure up to `backoff_max`.
    pub backoff_base: Duration,
    /// Longest pause between retries.
    pub backoff_max: Duration,
    /// HTTP/2 ping interval, so a silent dead server is noticed on the long-lived streams.
    pub keep_alive_interval: Duration,
    /// How long an unanswered ping may wait before the connection counts as dead.
    pub keep_alive_timeout: Duration,
    /// Region heartbeats queued for the stream before `region_heartbeat` refuses more (the
    /// queue only fills while the stream is down or the server falls behind).
    pub heartbeat_queue: usize,
    /// Runtime for the client's network tasks. Must be a multi-thread runtime (blocking
    /// callers on other threads wait for tasks it runs). `None`: the client starts its own
    /// one-worker runtime and stops it when the last clone of the client is dropped.
    pub runtime: Option<tokio::runtime::Handle>,
    /// Mutual TLS to the scheduler (`https://`, our certificate presented); `None`:
    /// plaintext.
    pub tls: Option<security::Tls>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            connect_timeout: Duration::from_secs(2),
            rpc_timeout: Duration::from_secs(5),
            retry_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(3),
            heartbeat_queue: 1024,
            runtime: None,
            tls: None,
        }
    }
}

/// Exponential backoff between `base` and `max`.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(cfg: &Config) -> Backoff {
        Backoff {
            next: cfg.backoff_base.max(Duration::from_millis(1)),
            max: cfg.backoff_max.max(cfg.backoff_base),
        }
    }

    /// The pause to take now; the next one is twice as long, up to the maximum.
    pub(crate) fn step(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let cfg = Config {
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(35),
            ..Config::default()
        };
        let mut b = Backoff::new(&cfg);
        let steps: Vec<u128> = (0..5).map(|_| b.step().as_millis()).collect();
        assert_eq!(steps, vec![10, 20, 35, 35, 35]);
    }
}
