//! One run's result, the human table, and medians over repeated runs.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

use crate::hist::{fmt_us, Percentiles};

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum Status {
    /// Everything published was confirmed and delivered.
    Ok,
    /// The workload's timeout passed first; the numbers cover what was done until then.
    TimedOut,
    /// The target does not support this kind of workload (yet).
    NotApplicable,
    /// A client or broker error stopped the run.
    Error(String),
}

impl Status {
    /// Short text for tables.
    pub fn short(&self) -> String {
        match self {
            Status::Ok => "ok".to_owned(),
            Status::TimedOut => "timed out".to_owned(),
            Status::NotApplicable => "n/a".to_owned(),
            Status::Error(e) => format!("error: {}", e.chars().take(80).collect::<String>()),
        }
    }
}

/// The measurements of one run of one workload against one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Target label.
    pub target: String,
    /// Workload id (`W1` …).
    pub workload: String,
    /// 1-based run number.
    pub run: u32,
    /// How it ended.
    pub status: Status,
    /// Messages (or stream records) handed to the client.
    pub sent: u64,
    /// Of those, confirmed by the broker.
    pub confirmed: u64,
    /// Deliveries received by consumers (all subscriptions together).
    pub delivered: u64,
    /// Seconds from the start to the last confirm.
    pub publish_elapsed_s: f64,
    /// Seconds from the start to the last delivery (stream workloads: the read phase alone).
    pub elapsed_s: f64,
    /// Confirmed messages per second over `publish_elapsed_s`.
    pub publish_msg_s: f64,
    /// End-to-end messages per second: published messages fully delivered (every copy) per second
    /// of `elapsed_s`. For stream workloads, records read per second.
    pub throughput_msg_s: f64,
    /// Publish → confirm latency (per message; per batch for streams).
    pub confirm_latency: Option<Percentiles>,
    /// Publish → deliver latency (paced runs measure from the scheduled send time).
    pub e2e_latency: Option<Percentiles>,
    /// Largest server RSS sampled, bytes.
    pub rss_max_bytes: Option<u64>,
    /// Mean server RSS sampled, bytes.
    pub rss_mean_bytes: Option<u64>,
}

impl RunResult {
    /// A result for a workload the target does not support.
    pub fn not_applicable(target: &str, workload: &str, run: u32) -> RunResult {
        RunResult {
            target: target.to_owned(),
            workload: workload.to_owned(),
            run,
            status: Status::NotApplicable,
            sent: 0,
            confirmed: 0,
            delivered: 0,
            publish_elapsed_s: 0.0,
            elapsed_s: 0.0,
            publish_msg_s: 0.0,
            throughput_msg_s: 0.0,
            confirm_latency: None,
            e2e_latency: None,
            rss_max_bytes: None,
            rss_mean_bytes: None,
        }
    }
}

/// Formats a rate: `35.2k`, `1.20M`, `850`.
pub fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Formats bytes as MiB.
pub fn fmt_mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn lat(p: &Option<Percentiles>, f: fn(&Percentiles) -> u64) -> String {
    p.as_ref()
        .map(|p| fmt_us(f(p)))
        .unwrap_or_else(|| "–".to_owned())
}

/// Renders results as a plain-text table (one row per run).
pub fn render_table(results: &[RunResult]) -> String {
    let header = [
        "target",
        "workload",
        "run",
        "status",
        "msg/s e2e",
        "publish msg/s",
        "confirm p50",
        "confirm p99",
        "e2e p50",
        "e2e p90",
        "e2e p99",
        "e2e p99.9",
        "e2e max",
        "RSS max",
    ];
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let applicable = r.status != Status::NotApplicable;
            vec![
                r.target.clone(),
                r.workload.clone(),
                r.run.to_string(),
                r.status.short(),
                if applicable {
                    fmt_rate(r.throughput_msg_s)
                } else {
                    "–".into()
                },
                if applicable {
                    fmt_rate(r.publish_msg_s)
                } else {
                    "–".into()
                },
                lat(&r.confirm_latency, |p| p.p50_us),
                lat(&r.confirm_latency, |p| p.p99_us),
                lat(&r.e2e_latency, |p| p.p50_us),
                lat(&r.e2e_latency, |p| p.p90_us),
                lat(&r.e2e_latency, |p| p.p99_us),
                lat(&r.e2e_latency, |p| p.p999_us),
                lat(&r.e2e_latency, |p| p.max_us),
                r.rss_max_bytes.map(fmt_mib).unwrap_or_else(|| "–".into()),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = w - cell.chars().count();
            // Text columns left-aligned, numbers right-aligned.
            if i < 4 {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            }
        }
        let _ = writeln!(out, "{}", s.trim_end());
    };
    line(&mut out, &header.map(str::to_owned));
    for row in &rows {
        line(&mut out, row);
    }
    out
}

/// Median and spread of a set of values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

/// The median and spread of `values`, or `None` when empty (NaNs are ignored).
pub fn spread(values: &[f64]) -> Option<Spread> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Spread {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// Medians over repeated runs of one workload against one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Target label.
    pub target: String,
    /// Workload id.
    pub workload: String,
    /// Runs that completed (`ok`); the spreads cover these.
    pub ok_runs: usize,
    /// All runs, with the status of those that did not complete.
    pub statuses: Vec<Status>,
    /// End-to-end throughput, messages/s.
    pub throughput_msg_s: Option<Spread>,
    /// Publish (confirmed) rate, messages/s.
    pub publish_msg_s: Option<Spread>,
    /// Publish → confirm p99, µs.
    pub confirm_p99_us: Option<Spread>,
    /// Publish → deliver p50, µs.
    pub e2e_p50_us: Option<Spread>,
    /// Publish → deliver p99, µs.
    pub e2e_p99_us: Option<Spread>,
    /// Publish → deliver p99.9, µs.
    pub e2e_p999_us: Option<Spread>,
    /// Publish → deliver max, µs.
    pub e2e_max_us: Option<Spread>,
    /// Largest RSS sampled, bytes.
    pub rss_max_bytes: Option<Spread>,
}

impl Summary {
    /// Whether the target could not run this workload at all.
    pub fn not_applicable(&self) -> bool {
        self.statuses.iter().all(|s| *s == Status::NotApplicable)
    }
}

/// Groups `results` by (workload, target) in first-seen order and takes medians over the runs
/// whose status is `ok`.
pub fn summarize(results: &[RunResult]) -> Vec<Summary> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in results {
        let k = (r.workload.clone(), r.target.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(workload, target)| {
            let runs: Vec<&RunResult> = results
                .iter()
                .filter(|r| r.workload == workload && r.target == target)
                .collect();
            let ok: Vec<&RunResult> = runs
                .iter()
                .copied()
                .filter(|r| r.status == Status::Ok)
                .collect();
            let s = |f: &dyn Fn(&RunResult) -> Option<f64>| {
                spread(&ok.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
            };
            Summary {
                ok_runs: ok.len(),
                statuses: runs.iter().map(|r| r.status.clone()).collect(),
                throughput_msg_s: s(&|r| Some(r.throughput_msg_s)),
                publish_msg_s: s(&|r| Some(r.publish_msg_s)),
                confirm_p99_us: s(&|r| r.confirm_latency.map(|p| p.p99_us as f64)),
                e2e_p50_us: s(&|r| r.e2e_latency.map(|p| p.p50_us as f64)),
                e2e_p99_us: s(&|r| r.e2e_latency.map(|p| p.p99_us as f64)),
                e2e_p999_us: s(&|r| r.e2e_latency.map(|p| p.p999_us as f64)),
                e2e_max_us: s(&|r| r.e2e_latency.map(|p| p.max_us as f64)),
                rss_max_bytes: s(&|r| r.rss_max_bytes.map(|b| b as f64)),
                target,
                workload,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(target: &str, run: u32, tput: f64, p99: u64, status: Status) -> RunResult {
        RunResult {
            status,
            sent: 100,
            confirmed: 100,
            delivered: 100,
            publish_elapsed_s: 1.0,
            elapsed_s: 1.0,
            publish_msg_s: tput,
            throughput_msg_s: tput,
            e2e_latency: Some(Percentiles {
                count: 100,
                p50_us: p99 / 2,
                p90_us: p99 / 2,
                p99_us: p99,
                p999_us: p99,
                max_us: p99,
                mean_us: 1.0,
            }),
            rss_max_bytes: Some(64 << 20),
            ..RunResult::not_applicable(target, "W1", run)
        }
    }

    #[test]
    fn spread_median_odd_even_and_empty() {
        let s = spread(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(spread(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(spread(&[]).is_none());
        assert_eq!(spread(&[f64::NAN, 5.0]).unwrap().median, 5.0);
    }

    #[test]
    fn summarize_takes_medians_over_ok_runs_only() {
        let rs = vec![
            result("a", 1, 100.0, 900, Status::Ok),
            result("a", 2, 300.0, 1_100, Status::Ok),
            result("a", 3, 200.0, 1_000, Status::Ok),
            result("a", 4, 1.0, 99_999, Status::TimedOut),
            RunResult::not_applicable("b", "W1", 1),
        ];
        let sums = summarize(&rs);
        assert_eq!(sums.len(), 2);
        let a = &sums[0];
        assert_eq!(a.ok_runs, 3);
        assert_eq!(a.statuses.len(), 4);
        assert_eq!(a.throughput_msg_s.unwrap().median, 200.0);
        assert_eq!(a.throughput_msg_s.unwrap().min, 100.0);
        assert_eq!(a.e2e_p99_us.unwrap().median, 1_000.0);
        assert!(!a.not_applicable());
        assert!(sums[1].not_applicable());
        assert!(sums[1].throughput_msg_s.is_none());
    }

    #[test]
    fn table_has_a_row_per_run_and_aligned_columns() {
        let rs = vec![
            result("weir (native)", 1, 71_234.0, 1_250, Status::Ok),
            RunResult::not_applicable("weir (native)", "W4", 1),
        ];
        let t = render_table(&rs);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("target"));
        assert!(lines[1].contains("71.2k"));
        assert!(lines[1].contains("1.25 ms"));
        assert!(lines[1].contains("64 MiB"));
        assert!(lines[2].contains("n/a"));
        // The status column starts at the same character offset on every line.
        let col = |l: &str| {
            l.find("ok")
                .or_else(|| l.find("n/a"))
                .or_else(|| l.find("status"))
        };
        assert_eq!(col(lines[0]), col(lines[1]));
        assert_eq!(col(lines[1]), col(lines[2]));
    }

    #[test]
    fn json_round_trip() {
        let r = result("x", 1, 10.0, 5, Status::Error("boom".into()));
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.contains("\"state\":\"error\""));
        let back: RunResult = serde_json::from_str(&s).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn rates_format() {
        assert_eq!(fmt_rate(850.4), "850");
        assert_eq!(fmt_rate(35_210.0), "35.2k");
        assert_eq!(fmt_rate(1_200_000.0), "1.20M");
    }
}
