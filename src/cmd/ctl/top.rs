//! `ctl top`: the busiest regions, refreshed like `top`. The load comes from the
//! scheduler's dashboard data (`GET /dashboard/api/state`): each region's read and write
//! rates from its leader's last heartbeat. That document lists the first regions in key
//! order with their load plus the hottest regions anywhere; both are merged here, so a
//! hot region is shown even in a cluster too big for the first list.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use super::output::outln;

/// Which rate sorts the list.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SortBy {
    /// Bytes written plus bytes read per second.
    Total,
    /// Bytes written per second.
    Write,
    /// Bytes read per second.
    Read,
}

#[derive(Args, Debug)]
pub struct TopArgs {
    /// The rate to sort by.
    #[arg(long, value_enum, default_value = "total")]
    by: SortBy,
    /// Regions shown.
    #[arg(long, default_value_t = 10)]
    limit: usize,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 2)]
    interval: u64,
    /// Print once and exit (with --json: always once).
    #[arg(long)]
    once: bool,
}

/// One region's line.
struct Row {
    id: u64,
    start: String,
    end: String,
    leader: Option<u64>,
    size: u64,
    write_bps: f64,
    read_bps: f64,
    write_kps: f64,
    read_kps: f64,
}

impl Row {
    fn from_json(r: &Value) -> Option<Row> {
        let load = &r["load"];
        Some(Row {
            id: r["id"].as_u64()?,
            start: r["start"].as_str().unwrap_or("").to_string(),
            end: r["end"].as_str().unwrap_or("").to_string(),
            leader: r["leader_store"].as_u64(),
            size: r["size"].as_u64().unwrap_or(0),
            write_bps: load["bytes_written"].as_f64().unwrap_or(0.0),
            read_bps: load["bytes_read"].as_f64().unwrap_or(0.0),
            write_kps: load["keys_written"].as_f64().unwrap_or(0.0),
            read_kps: load["keys_read"].as_f64().unwrap_or(0.0),
        })
    }

    fn heat(&self, by: SortBy) -> f64 {
        match by {
            SortBy::Total => self.write_bps + self.read_bps,
            SortBy::Write => self.write_bps,
            SortBy::Read => self.read_bps,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "start_key": self.start,
            "end_key": self.end,
            "leader_store": self.leader,
            "approximate_size": self.size,
            "bytes_written_per_sec": self.write_bps,
            "bytes_read_per_sec": self.read_bps,
            "keys_written_per_sec": self.write_kps,
            "keys_read_per_sec": self.read_kps,
        })
    }
}

/// The busiest `limit` regions of a dashboard state document, busiest first (ties by id);
/// regions with no load at all are left out.
fn busiest(state: &Value, by: SortBy, limit: usize) -> (Vec<Row>, u64) {
    let regions = &state["regions"];
    let mut rows: BTreeMap<u64, Row> = BTreeMap::new();
    for list in ["map", "hot"] {
        for r in regions[list].as_array().into_iter().flatten() {
            if let Some(row) = Row::from_json(r) {
                rows.insert(row.id, row);
            }
        }
    }
    let mut rows: Vec<Row> = rows.into_values().filter(|r| r.heat(by) > 0.0).collect();
    rows.sort_by(|a, b| b.heat(by).total_cmp(&a.heat(by)).then(a.id.cmp(&b.id)));
    rows.truncate(limit);
    (rows, regions["count"].as_u64().unwrap_or(0))
}

/// Bytes per second as a short figure (`12.3 KiB/s`).
fn rate(bps: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut u) = (bps, 0);
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}/s", UNITS[u])
}

/// A key cut to `width` characters for the table (the full key is in `--json`).
fn cut(key: &str, width: usize) -> String {
    if key.is_empty() {
        return "-".into();
    }
    if key.chars().count() <= width {
        return key.to_string();
    }
    let head: String = key.chars().take(width - 1).collect();
    format!("{head}…")
}

/// `clear`: first clear the screen and go home, as `top` redraws.
fn print_table(rows: &[Row], count: u64, by: SortBy, clear: bool) {
    let clear = if clear { "\x1b[H\x1b[2J" } else { "" };
    outln!(
        "{clear}{count} regions; busiest by {} (rates from the leaders' last heartbeats)",
        match by {
            SortBy::Total => "bytes written + read",
            SortBy::Write => "bytes written",
            SortBy::Read => "bytes read",
        }
    );
    outln!(
        "{:>8}  {:<18} {:<18} {:>6} {:>9} {:>13} {:>13} {:>9} {:>9}",
        "region",
        "start",
        "end",
        "leader",
        "size MiB",
        "write",
        "read",
        "wkeys/s",
        "rkeys/s"
    );
    for r in rows {
        outln!(
            "{:>8}  {:<18} {:<18} {:>6} {:>9.1} {:>13} {:>13} {:>9.0} {:>9.0}",
            r.id,
            cut(&r.start, 18),
            cut(&r.end, 18),
            r.leader.map_or("-".to_string(), |s| s.to_string()),
            r.size as f64 / f64::from(1 << 20),
            rate(r.write_bps),
            rate(r.read_bps),
            r.write_kps,
            r.read_kps
        );
    }
    if rows.is_empty() {
        outln!("(no region has reported any load)");
    }
}

/// Runs `top` against the scheduler at `pd` until interrupted (or once).
pub async fn run(
    pd: &str,
    tls: Option<&security::Tls>,
    args: TopArgs,
    json: bool,
) -> Result<(), String> {
    if args.limit == 0 || args.interval == 0 {
        return Err("--limit and --interval must be at least 1".into());
    }
    loop {
        let state = super::admin::request(pd, tls, "GET", "/dashboard/api/state", "").await?;
        let (rows, count) = busiest(&state, args.by, args.limit);
        if json {
            let list: Vec<Value> = rows.iter().map(Row::to_json).collect();
            super::output::print_json(&json!({"region_count": count, "regions": list}));
            return Ok(());
        }
        print_table(&rows, count, args.by, !args.once);
        if args.once {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(args.interval)) => {}
            _ = crate::cmd::shutdown_signal() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_merges_both_lists_and_sorts_by_the_chosen_rate() {
        let region = |id: u64, w: f64, r: f64| {
            json!({"id": id, "start": "", "end": "", "size": 0, "leader_store": 1,
                   "load": {"bytes_written": w, "bytes_read": r,
                            "keys_written": 0.0, "keys_read": 0.0}})
        };
        let state = json!({"regions": {
            "count": 5,
            "map": [region(1, 10.0, 0.0), region(2, 0.0, 50.0), region(3, 0.0, 0.0)],
            "hot": [region(9, 30.0, 30.0), region(2, 0.0, 50.0)],
        }});
        let ids =
            |by, limit| -> Vec<u64> { busiest(&state, by, limit).0.iter().map(|r| r.id).collect() };
        assert_eq!(ids(SortBy::Total, 10), [9, 2, 1]);
        assert_eq!(ids(SortBy::Write, 10), [9, 1]);
        assert_eq!(ids(SortBy::Read, 1), [2]);
        assert_eq!(busiest(&state, SortBy::Total, 10).1, 5);
    }

    #[test]
    fn rates_and_keys_are_short() {
        assert_eq!(rate(0.0), "0.0 B/s");
        assert_eq!(rate(1536.0), "1.5 KiB/s");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("", 4), "-");
    }
}
