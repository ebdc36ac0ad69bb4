//! Our on-disk raw value format: a flags byte, an optional expiry, the user value.
//!
//! ```text
//! 0x00 ‖ user value                          no expiry
//! 0x01 ‖ expire_at (u64 big-endian) ‖ value  expires at `expire_at`, Unix seconds
//! ```
//! Expiry is whole seconds, as TTLs are: a value written at time `t` with TTL `n`
//! expires at `t + n` and is invisible from that second on.

use std::time::{SystemTime, UNIX_EPOCH};

const FLAG_PLAIN: u8 = 0x00;
const FLAG_EXPIRES: u8 = 0x01;
const EXPIRY_LEN: usize = 8;

/// A decoded stored value, borrowing the user value.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    /// The user's value.
    pub value: &'a [u8],
    /// When it expires, in Unix seconds; `None` for never.
    pub expire_at: Option<u64>,
}

impl Decoded<'_> {
    /// True once `now` (Unix seconds) has reached the expiry.
    pub fn is_expired(&self, now: u64) -> bool {
        self.expire_at.is_some_and(|at| at <= now)
    }

    /// Seconds left before expiry at `now`: `Some(0)` for a value without TTL, `None` if
    /// already expired.
    pub fn ttl_left(&self, now: u64) -> Option<u64> {
        match self.expire_at {
            None => Some(0),
            Some(at) if at > now => Some(at - now),
            Some(_) => None,
        }
    }
}

/// Current time in Unix seconds (0 if the clock is before 1970, which then expires
/// nothing early).
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The expiry of a value written at `now` with `ttl` seconds; `None` for ttl 0. A TTL so
/// large that the sum overflows means "never in practice" and saturates.
pub fn expire_at(now: u64, ttl: u64) -> Option<u64> {
    (ttl != 0).then(|| now.saturating_add(ttl))
}

/// Encodes `value` with an optional expiry.
pub fn encode(value: &[u8], expire_at: Option<u64>) -> Vec<u8> {
    match expire_at {
        None => {
            let mut out = Vec::with_capacity(1 + value.len());
            out.push(FLAG_PLAIN);
            out.extend_from_slice(value);
            out
        }
        Some(at) => {
            let mut out = Vec::with_capacity(1 + EXPIRY_LEN + value.len());
            out.push(FLAG_EXPIRES);
            out.extend_from_slice(&at.to_be_bytes());
            out.extend_from_slice(value);
            out
        }
    }
}

/// Decodes a stored value; the error says what is malformed.
pub fn decode(stored: &[u8]) -> Result<Decoded<'_>, String> {
    let (&flags, rest) = stored
        .split_first()
        .ok_or_else(|| "empty stored value (no flags byte)".to_string())?;
    match flags {
        FLAG_PLAIN => Ok(Decoded {
            value: rest,
            expire_at: None,
        }),
        FLAG_EXPIRES => {
            if rest.len() < EXPIRY_LEN {
                return Err(format!(
                    "expiring value of {} bytes has no room for its expiry",
                    stored.len()
                ));
            }
            let (at, value) = rest.split_at(EXPIRY_LEN);
            let mut buf = [0u8; EXPIRY_LEN];
            buf.copy_from_slice(at);
            Ok(Decoded {
                value,
                expire_at: Some(u64::from_be_bytes(buf)),
            })
        }
        other => Err(format!("unknown flags byte {other:#04x}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_expiry() {
        for value in [&b""[..], b"v", &[0u8, 1, 0xff][..]] {
            let plain = encode(value, None);
            assert_eq!(plain[0], FLAG_PLAIN);
            assert_eq!(
                decode(&plain).unwrap(),
                Decoded {
                    value,
                    expire_at: None
                }
            );
            let expiring = encode(value, Some(1_700_000_000));
            assert_eq!(expiring.len(), 1 + 8 + value.len());
            assert_eq!(
                decode(&expiring).unwrap(),
                Decoded {
                    value,
                    expire_at: Some(1_700_000_000)
                }
            );
        }
    }

    #[test]
    fn expiry_is_inclusive_of_the_deadline_second() {
        let stored = encode(b"v", expire_at(100, 5));
        let d = decode(&stored).unwrap();
        assert_eq!(d.expire_at, Some(105));
        assert!(!d.is_expired(104));
        assert_eq!(d.ttl_left(104), Some(1));
        assert!(d.is_expired(105));
        assert_eq!(d.ttl_left(105), None);
        let stored = encode(b"v", expire_at(100, 0));
        let forever = decode(&stored).unwrap();
        assert!(!forever.is_expired(u64::MAX));
        assert_eq!(forever.ttl_left(u64::MAX), Some(0));
        assert_eq!(expire_at(u64::MAX - 1, 10), Some(u64::MAX));
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        assert!(decode(b"").is_err());
        assert!(decode(&[FLAG_EXPIRES, 0, 0, 0]).is_err());
        assert!(decode(&[0x7f, 1, 2]).is_err());
    }
}
