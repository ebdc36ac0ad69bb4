//! Latency recording and the final report.
//!
//! Each client records the latency of its successful operations in its own HDR histogram
//! (microseconds, 3 significant digits), so recording never contends; the histograms are
//! merged once at the end. Failed operations are only counted: their latency is mostly a
//! timeout or a refused connection and would distort the percentiles.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::{Config, Target, TxnMode};
use crate::backend::BankSum;
use crate::workload::{Workload, INITIAL_BALANCE};

/// Highest latency tracked exactly: one hour. Anything slower is recorded as one hour.
const MAX_TRACKED_US: u64 = 3_600_000_000;

/// One client's latencies, or several clients' merged.
pub struct Latencies {
    hist: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

impl Latencies {
    pub fn new() -> Self {
        Latencies {
            hist: Histogram::new_with_bounds(1, MAX_TRACKED_US, 3)
                .expect("constant histogram bounds are valid"),
        }
    }

    /// Records one successful operation. Sub-microsecond latencies count as 1 µs.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.hist.saturating_record(us.clamp(1, MAX_TRACKED_US));
    }

    pub fn merge(&mut self, other: &Latencies) {
        // Both have the same bounds, so adding cannot fail.
        self.hist
            .add(&other.hist)
            .expect("histograms with equal bounds merge");
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    pub fn summary(&self) -> LatencySummary {
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            p50_us: self.hist.value_at_quantile(0.50),
            p99_us: self.hist.value_at_quantile(0.99),
            p999_us: self.hist.value_at_quantile(0.999),
            max_us: self.hist.max(),
            mean_us: self.hist.mean(),
        }
    }
}

/// Latency percentiles in microseconds (all zero when nothing succeeded). Values are HDR
/// bucket edges, accurate to 3 significant digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

/// The result of a run: what was measured, and how.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub target: Target,
    pub workload: Workload,
    pub endpoints: usize,
    pub clients: usize,
    pub value_size: usize,
    /// Wall time of the measured phase: from the end of warmup until the last client stopped.
    pub elapsed_s: f64,
    /// Successful operations in the measured phase.
    pub ops: u64,
    pub ops_per_sec: f64,
    /// Failed operations in the measured phase (for txn-transfer: failed attempts other than
    /// conflicts; each was retried).
    pub errors: u64,
    /// The first error seen, if any, to tell what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// txn-transfer: attempts in the measured phase that lost to another transaction (write
    /// conflict, lock, failed compare), each followed by a retry. Always 0 otherwise.
    pub conflicts: u64,
    /// The first conflict seen, to tell which kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_conflict: Option<String>,
    /// txn-transfer on tikv: the transaction mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txn_mode: Option<TxnMode>,
    /// Latency of a successful operation; for txn-transfer, from the transfer's first attempt
    /// to its successful commit (retries included).
    pub latency: LatencySummary,
    /// txn-transfer: the balance check at the end of the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invariant: Option<Invariant>,
    /// tikv: the stores' per-stage latencies over the measured window (from their
    /// `/metrics`), when their status ports could be scraped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<crate::cluster_metrics::StageBreakdown>,
    /// Successful operations per whole second of the measured window: the slowest second
    /// against the median shows stalls that the mean hides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_second: Option<PerSecond>,
}

/// Throughput of each whole second of a run, summarized.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PerSecond {
    /// Whole seconds counted.
    pub seconds: usize,
    pub min: u64,
    /// Which second (from 0, the first of the measured window) was the slowest.
    pub min_at: usize,
    pub median: u64,
    pub max: u64,
    /// Seconds below half the median.
    pub below_half_median: usize,
}

impl PerSecond {
    /// `None` for a run shorter than a second.
    pub fn of(series: &[u64]) -> Option<PerSecond> {
        let (min_at, &min) = series.iter().enumerate().min_by_key(|&(i, v)| (*v, i))?;
        let mut sorted = series.to_vec();
        sorted.sort_unstable();
        let median = sorted[sorted.len() / 2];
        Some(PerSecond {
            seconds: series.len(),
            min,
            min_at,
            median,
            max: sorted[sorted.len() - 1],
            below_half_median: series.iter().filter(|&&v| v * 2 < median).count(),
        })
    }
}

/// The bank's invariant after a txn-transfer run: every account is there and the balances
/// add up to what the preload put in.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Invariant {
    /// Accounts in the bank (`--keys`).
    pub accounts: u64,
    /// Accounts read back.
    pub found: u64,
    /// `accounts` x the initial balance.
    pub expected_total: u128,
    /// The sum of the balances read back.
    pub total: u128,
    pub ok: bool,
    /// Why the balances could not be read, if they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Invariant {
    /// Compares what was read (or why it could not be) with the bank of `accounts`.
    pub fn check(accounts: u64, read: Result<BankSum, String>) -> Invariant {
        let expected_total = u128::from(accounts) * u128::from(INITIAL_BALANCE);
        match read {
            Ok(sum) => Invariant {
                accounts,
                found: sum.accounts,
                expected_total,
                total: sum.total,
                ok: sum.accounts == accounts && sum.total == expected_total,
                error: None,
            },
            Err(e) => Invariant {
                accounts,
                found: 0,
                expected_total,
                total: 0,
                ok: false,
                error: Some(e),
            },
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = &self.error {
            return write!(f, "could not read the {} accounts: {e}", self.accounts);
        }
        write!(
            f,
            "{} of {} accounts, total {} (expected {}): {}",
            self.found,
            self.accounts,
            self.total,
            self.expected_total,
            if self.ok { "ok" } else { "MISMATCH" }
        )
    }
}

impl Report {
    pub fn new(
        config: &Config,
        latencies: &Latencies,
        errors: u64,
        first_error: Option<String>,
        elapsed: Duration,
    ) -> Report {
        let ops = latencies.count();
        let secs = elapsed.as_secs_f64();
        Report {
            target: config.target,
            workload: config.workload,
            endpoints: config.endpoints.len(),
            clients: config.clients,
            value_size: config.value_size,
            elapsed_s: secs,
            ops,
            ops_per_sec: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
            errors,
            first_error,
            conflicts: 0,
            first_conflict: None,
            txn_mode: config.txn_mode,
            latency: latencies.summary(),
            invariant: None,
            stages: None,
            per_second: None,
        }
    }

    /// What is wrong with the bank after a txn-transfer run, if anything: a run that broke
    /// the invariant (or could not check it) has failed, whatever its throughput.
    pub fn invariant_violation(&self) -> Option<String> {
        self.invariant
            .as_ref()
            .filter(|i| !i.ok)
            .map(|i| format!("balance invariant violated: {i}"))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report always serializes")
    }
}

/// Microseconds as a short human figure: `850 µs`, `1.23 ms`, `2.50 s`.
pub fn format_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = serde_json::to_value(self.target).unwrap_or_default();
        let workload = serde_json::to_value(self.workload).unwrap_or_default();
        let mode = match self.txn_mode {
            Some(m) => format!(
                " ({})",
                serde_json::to_value(m)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("?")
            ),
            None => String::new(),
        };
        let sizes = if self.workload.is_transactional() {
            "decimal balances".to_string()
        } else {
            format!("{}-byte values", self.value_size)
        };
        writeln!(
            f,
            "{} {}{mode}: {} clients over {} endpoint(s), {sizes}, {:.1} s measured",
            target.as_str().unwrap_or("?"),
            workload.as_str().unwrap_or("?"),
            self.clients,
            self.endpoints,
            self.elapsed_s
        )?;
        writeln!(f, "  ops      {}", self.ops)?;
        writeln!(f, "  ops/s    {:.1}", self.ops_per_sec)?;
        writeln!(f, "  errors   {}", self.errors)?;
        if self.workload.is_transactional() || self.conflicts > 0 {
            writeln!(f, "  conflicts {} (each retried)", self.conflicts)?;
        }
        let l = &self.latency;
        write!(
            f,
            "  latency  p50 {}  p99 {}  p999 {}  max {}  (mean {})",
            format_us(l.p50_us),
            format_us(l.p99_us),
            format_us(l.p999_us),
            format_us(l.max_us),
            format_us(l.mean_us.round() as u64)
        )?;
        if let Some(p) = &self.per_second {
            write!(
                f,
                "\n  per second: min {} (second {})  median {}  max {}  ({} of {} s below half the median)",
                p.min, p.min_at, p.median, p.max, p.below_half_median, p.seconds
            )?;
        }
        if let Some(e) = &self.first_error {
            write!(f, "\n  first error: {e}")?;
        }
        if let Some(c) = &self.first_conflict {
            write!(f, "\n  first conflict: {c}")?;
        }
        if let Some(i) = &self.invariant {
            write!(f, "\n  balances {i}")?;
        }
        if let Some(s) = &self.stages {
            write!(f, "\n{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::parse_from;

    fn within(actual: u64, expected: u64) -> bool {
        // 3 significant digits: relative error below 0.1%.
        (actual as f64 - expected as f64).abs() <= expected as f64 * 0.001 + 1.0
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut l = Latencies::new();
        // 1..=10_000 µs, once each.
        for us in 1..=10_000u64 {
            l.record(Duration::from_micros(us));
        }
        let s = l.summary();
        assert_eq!(l.count(), 10_000);
        assert!(within(s.p50_us, 5_000), "{s:?}");
        assert!(within(s.p99_us, 9_900), "{s:?}");
        assert!(within(s.p999_us, 9_990), "{s:?}");
        assert!(within(s.max_us, 10_000), "{s:?}");
        assert!((s.mean_us - 5_000.5).abs() < 10.0, "{s:?}");
    }

    #[test]
    fn a_rare_slow_outlier_shows_in_p999_and_max_only() {
        let mut l = Latencies::new();
        // 20 of 10 000 slow: above the 99.9th percentile's rank (9 990), below the 99th's.
        for _ in 0..9_980 {
            l.record(Duration::from_micros(500));
        }
        for _ in 0..20 {
            l.record(Duration::from_millis(250));
        }
        let s = l.summary();
        assert!(within(s.p50_us, 500));
        assert!(within(s.p99_us, 500));
        assert!(within(s.p999_us, 250_000), "{s:?}");
        assert!(within(s.max_us, 250_000), "{s:?}");
    }

    #[test]
    fn merge_adds_counts_and_extremes() {
        let mut a = Latencies::new();
        let mut b = Latencies::new();
        for _ in 0..100 {
            a.record(Duration::from_micros(100));
            b.record(Duration::from_micros(300));
        }
        b.record(Duration::from_secs(2));
        a.merge(&b);
        assert_eq!(a.count(), 201);
        let s = a.summary();
        assert!(within(s.p50_us, 300), "{s:?}");
        assert!(within(s.max_us, 2_000_000), "{s:?}");
    }

    #[test]
    fn extremes_are_clamped_not_lost() {
        let mut l = Latencies::new();
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(100_000));
        assert_eq!(l.count(), 2);
        let s = l.summary();
        assert_eq!(s.p50_us, 1);
        assert!(within(s.max_us, MAX_TRACKED_US));
    }

    #[test]
    fn empty_summary_is_zero() {
        assert_eq!(Latencies::new().summary(), LatencySummary::default());
    }

    fn config() -> Config {
        parse_from([
            "tessera-bench",
            "--target",
            "etcd",
            "--endpoints",
            "a:1,b:2,c:3",
            "--workload",
            "write",
            "--clients",
            "16",
        ])
        .unwrap()
    }

    #[test]
    fn report_rate_and_json() {
        let mut l = Latencies::new();
        for _ in 0..5_000 {
            l.record(Duration::from_micros(1_500));
        }
        let r = Report::new(
            &config(),
            &l,
            3,
            Some("boom".into()),
            Duration::from_secs(2),
        );
        assert_eq!(r.ops, 5_000);
        assert_eq!(r.ops_per_sec, 2_500.0);
        assert_eq!(r.errors, 3);
        assert_eq!(r.endpoints, 3);
        let json = r.to_json();
        assert!(!json.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["target"], "etcd");
        assert_eq!(v["workload"], "write");
        assert_eq!(v["clients"], 16);
        assert_eq!(v["ops"], 5000);
        assert_eq!(v["errors"], 3);
        assert_eq!(v["ops_per_sec"], 2500.0);
        assert_eq!(v["first_error"], "boom");
        assert_eq!(v["conflicts"], 0);
        assert!(v.get("invariant").is_none() && v.get("txn_mode").is_none());
        assert!(within(v["latency"]["p99_us"].as_u64().unwrap(), 1_500));
        let text = r.to_string();
        assert!(
            text.starts_with("etcd write: 16 clients over 3 endpoint(s)"),
            "{text}"
        );
        assert!(text.contains("ops/s    2500.0"), "{text}");
        assert!(text.contains("p99 1.50 ms"), "{text}");
        assert!(!text.contains("conflicts"), "{text}");
        assert!(r.invariant_violation().is_none());
    }

    fn transfer_report(invariant: Invariant) -> Report {
        let c = parse_from([
            "tessera-bench",
            "--target",
            "tikv",
            "--endpoints",
            "a:1",
            "--workload",
            "txn-transfer",
            "--txn-mode",
            "async-commit",
            "--keys",
            "4",
        ])
        .unwrap();
        let mut l = Latencies::new();
        l.record(Duration::from_millis(3));
        let mut r = Report::new(&c, &l, 1, None, Duration::from_secs(1));
        r.conflicts = 17;
        r.first_conflict = Some("write conflict".into());
        r.invariant = Some(invariant);
        r
    }

    #[test]
    fn transfer_report_shows_conflicts_mode_and_balances() {
        let ok = Invariant::check(
            4,
            Ok(BankSum {
                accounts: 4,
                total: 4000,
            }),
        );
        assert!(ok.ok);
        let r = transfer_report(ok);
        assert!(r.invariant_violation().is_none());
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["workload"], "txn-transfer");
        assert_eq!(v["txn_mode"], "async-commit");
        assert_eq!(v["conflicts"], 17);
        assert_eq!(v["first_conflict"], "write conflict");
        assert_eq!(v["invariant"]["ok"], true);
        assert_eq!(v["invariant"]["accounts"], 4);
        assert_eq!(v["invariant"]["found"], 4);
        assert_eq!(v["invariant"]["total"], 4000);
        assert_eq!(v["invariant"]["expected_total"], 4000);
        let text = r.to_string();
        assert!(
            text.starts_with("tikv txn-transfer (async-commit): 1 clients"),
            "{text}"
        );
        assert!(text.contains("decimal balances"), "{text}");
        assert!(text.contains("conflicts 17"), "{text}");
        assert!(
            text.contains("balances 4 of 4 accounts, total 4000 (expected 4000): ok"),
            "{text}"
        );
    }

    #[test]
    fn a_wrong_sum_a_missing_account_or_a_failed_read_is_a_violation() {
        for read in [
            Ok(BankSum {
                accounts: 4,
                total: 3999,
            }),
            Ok(BankSum {
                accounts: 3,
                total: 4000,
            }),
            Err("timeout".to_string()),
        ] {
            let i = Invariant::check(4, read.clone());
            assert!(!i.ok, "{read:?}");
            let r = transfer_report(i);
            let msg = r.invariant_violation().expect("a violation");
            assert!(msg.contains("balance invariant violated"), "{msg}");
            let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
            assert_eq!(v["invariant"]["ok"], false);
            if read.is_err() {
                assert!(msg.contains("timeout"), "{msg}");
                assert_eq!(v["invariant"]["error"], "timeout");
            } else {
                assert!(r.to_string().contains("MISMATCH"));
            }
        }
    }

    #[test]
    fn report_with_no_time_has_zero_rate() {
        let r = Report::new(&config(), &Latencies::new(), 0, None, Duration::ZERO);
        assert_eq!(r.ops_per_sec, 0.0);
        assert!(!r.to_json().contains("first_error"));
    }

    #[test]
    fn per_second_finds_the_stall() {
        assert_eq!(PerSecond::of(&[]), None);
        let p = PerSecond::of(&[100, 90, 110, 30, 100, 40, 105]).unwrap();
        assert_eq!(p.seconds, 7);
        assert_eq!((p.min, p.min_at), (30, 3));
        assert_eq!(p.median, 100);
        assert_eq!(p.max, 110);
        assert_eq!(p.below_half_median, 2);
        let mut r = Report::new(&config(), &Latencies::new(), 0, None, Duration::ZERO);
        r.per_second = Some(p);
        assert!(r
            .to_string()
            .contains("per second: min 30 (second 3)  median 100"));
        assert!(r.to_json().contains("\"below_half_median\":2"));
    }

    #[test]
    fn human_units() {
        assert_eq!(format_us(850), "850 µs");
        assert_eq!(format_us(1_234), "1.23 ms");
        assert_eq!(format_us(2_500_000), "2.50 s");
    }
}
