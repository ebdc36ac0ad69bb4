//! The live progress line.
//!
//! On a terminal: a bar and the current rate, redrawn in place with `\r` four times a second.
//! Anywhere else (a pipe, a log file): one plain line per second, so logs stay readable.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counters the clients bump and the progress reporter reads (warmup included).
#[derive(Default)]
pub struct Counters {
    pub ops: AtomicU64,
    pub errors: AtomicU64,
    /// txn-transfer attempts that lost to another transaction.
    pub conflicts: AtomicU64,
}

/// Width of the bar between its brackets.
pub const BAR_WIDTH: usize = 30;

/// `[#########.....................]` for `fraction` of the way (clamped to 0..=1).
pub fn bar(fraction: f64, width: usize) -> String {
    let fraction = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    let filled = ((fraction * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// One progress line: phase, bar (terminal only), time, current rate, errors, and conflicts
/// once there are any.
pub fn line(
    warmup: bool,
    elapsed: Duration,
    total: Duration,
    rate: f64,
    errors: u64,
    conflicts: u64,
    with_bar: bool,
) -> String {
    let fraction = if total.is_zero() {
        1.0
    } else {
        elapsed.as_secs_f64() / total.as_secs_f64()
    };
    let phase = if warmup { "warmup" } else { "run" };
    let bar = if with_bar {
        format!("{} ", bar(fraction, BAR_WIDTH))
    } else {
        String::new()
    };
    let conflicts = if conflicts > 0 {
        format!("  conflicts {conflicts}")
    } else {
        String::new()
    };
    format!(
        "{phase:>6} {bar}{:>6.1}/{:.1} s {:>10.0} ops/s  errors {errors}{conflicts}",
        elapsed.as_secs_f64().min(total.as_secs_f64()),
        total.as_secs_f64(),
        rate
    )
}

/// Where and how often progress is drawn.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    /// Redraw in place with a bar (the output is a terminal).
    pub terminal: bool,
    /// Write to stderr instead of stdout (stdout is reserved for `--json`).
    pub stderr: bool,
}

impl Style {
    pub fn interval(self) -> Duration {
        if self.terminal {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(1)
        }
    }
}

fn emit(style: Style, text: &str) {
    // A failed write (closed pipe) must not stop the benchmark; progress is best effort.
    if style.stderr {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(text.as_bytes());
        let _ = e.flush();
    } else {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(text.as_bytes());
        let _ = o.flush();
    }
}

/// Draws progress until `stop` fires. `start` is when the warmup began; the whole run lasts
/// `warmup + duration`.
pub async fn report(
    counters: Arc<Counters>,
    start: Instant,
    warmup: Duration,
    duration: Duration,
    style: Style,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let total = warmup + duration;
    let mut ticker = tokio::time::interval(style.interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate
    let (mut last_ops, mut last_at) = (0u64, start);
    let mut drew = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => break,
        }
        let now = Instant::now();
        let ops = counters.ops.load(Ordering::Relaxed);
        let errors = counters.errors.load(Ordering::Relaxed);
        let conflicts = counters.conflicts.load(Ordering::Relaxed);
        let dt = now.duration_since(last_at).as_secs_f64();
        let rate = if dt > 0.0 {
            (ops - last_ops) as f64 / dt
        } else {
            0.0
        };
        (last_ops, last_at) = (ops, now);
        let elapsed = now.duration_since(start);
        let text = line(
            elapsed < warmup,
            elapsed,
            total,
            rate,
            errors,
            conflicts,
            style.terminal,
        );
        if style.terminal {
            // Trailing spaces wipe leftovers of a longer previous line.
            emit(style, &format!("\r{text}   "));
            drew = true;
        } else {
            emit(style, &format!("{text}\n"));
        }
    }
    if drew {
        emit(style, "\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_fills_proportionally_and_clamps() {
        assert_eq!(bar(0.0, 10), "[..........]");
        assert_eq!(bar(0.5, 10), "[#####.....]");
        assert_eq!(bar(1.0, 10), "[##########]");
        assert_eq!(bar(1.7, 10), "[##########]");
        assert_eq!(bar(-1.0, 10), "[..........]");
        assert_eq!(bar(f64::NAN, 4), "[....]");
    }

    #[test]
    fn line_shows_phase_time_rate_and_errors() {
        let l = line(
            false,
            Duration::from_secs(5),
            Duration::from_secs(10),
            12_345.4,
            2,
            0,
            true,
        );
        assert!(l.contains("run"), "{l}");
        assert!(l.contains(&bar(0.5, BAR_WIDTH)), "{l}");
        assert!(l.contains("5.0/10.0 s"), "{l}");
        assert!(l.contains("12345 ops/s"), "{l}");
        assert!(l.contains("errors 2"), "{l}");
        assert!(!l.contains("conflicts"), "{l}");
        let plain = line(
            true,
            Duration::from_secs(1),
            Duration::from_secs(10),
            1.0,
            0,
            31,
            false,
        );
        assert!(plain.contains("errors 0  conflicts 31"), "{plain}");
        assert!(plain.contains("warmup"), "{plain}");
        assert!(!plain.contains('['), "{plain}");
        assert!(!plain.contains('\r') && !plain.contains('\n'));
    }

    #[test]
    fn terminal_redraws_at_most_four_times_a_second() {
        let tty = Style {
            terminal: true,
            stderr: false,
        };
        let pipe = Style {
            terminal: false,
            stderr: false,
        };
        assert!(tty.interval() >= Duration::from_millis(250));
        assert_eq!(pipe.interval(), Duration::from_secs(1));
    }
}
