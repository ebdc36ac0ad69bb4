//! Timestamps from the scheduler's oracle: `physical_ms << 18 | logical`.

/// A transaction timestamp (start, commit, for-update or min-commit ts).
pub type TimeStamp = u64;

/// Bits of a timestamp taken by the logical counter.
pub const LOGICAL_BITS: u32 = 18;

/// The physical part (milliseconds since the Unix epoch) of `ts`.
pub fn physical(ts: TimeStamp) -> u64 {
    ts >> LOGICAL_BITS
}

/// The timestamp of physical time `ms` with logical counter `logical`.
pub fn compose(ms: u64, logical: u64) -> TimeStamp {
    (ms << LOGICAL_BITS) | (logical & ((1 << LOGICAL_BITS) - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_and_logical_parts() {
        let ts = compose(1_700_000_000_000, 5);
        assert_eq!(physical(ts), 1_700_000_000_000);
        assert_eq!(ts & ((1 << LOGICAL_BITS) - 1), 5);
        // TiKV's example timestamp 400000 is 1 ms and 138,144 logical steps.
        assert_eq!(physical(400_000), 1);
    }
}
