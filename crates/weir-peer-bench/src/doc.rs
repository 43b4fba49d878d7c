//! Rendering of `docs/benchmarks.md` and `docs/benchmarks.svg` from the run summaries.

use std::fmt::Write as _;
use weir_bench::disk::DiskProbe;
use weir_bench::hist::fmt_us;
use weir_bench::report::{fmt_mib, fmt_rate, Spread, Summary};
use weir_bench::workload::{Amount, Workload};

/// Hand-written findings, kept next to the code so that regenerating the report keeps them.
const FINDINGS: &str = include_str!("../findings.md");

/// The machine and the versions of everything measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Environment {
    /// `key: value` lines.
    pub(crate) facts: Vec<(String, String)>,
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            if s.is_empty() {
                s = String::from_utf8_lossy(&o.stderr).trim().to_owned();
            }
            s
        })
        .unwrap_or_else(|e| format!("({e})"))
}

impl Environment {
    /// Collects CPU, memory, kernel, filesystems and versions (best effort: a failed probe says so).
    pub(crate) async fn collect(weir_commit: Option<&str>) -> Environment {
        let facts = [
            ("CPU", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
            ("cores", "nproc"),
            ("memory", "free -g | awk '/Mem:/{print $2\" GiB\"}'"),
            ("kernel", "uname -sr"),
            ("load average when the report was written (1/5/15 min)", "cut -d' ' -f1-3 /proc/loadavg"),
            ("filesystem (/tmp: Weir data)", "df -T /tmp | awk 'NR==2{print $2\" on \"$1}'"),
            ("filesystem (/var/lib: peers' data)", "df -T /var/lib | awk 'NR==2{print $2\" on \"$1}'"),
            ("rustc", "rustc --version"),
            ("weir (commit of the working tree; see the command for the binary)", "git rev-parse --short HEAD"),
            ("RabbitMQ", "rabbitmqctl version 2>/dev/null | tail -1"),
            ("NATS server", "nats-server --version"),
            ("Redis", "redis-server --version | cut -d' ' -f3"),
            ("PostgreSQL", "psql -h 127.0.0.1 -U postgres -d test -Atc 'select version()' | cut -d, -f1"),
            ("PostgreSQL settings", "psql -h 127.0.0.1 -U postgres -d test -Atc \"select string_agg(name||'='||setting, ', ') from pg_settings where name in ('synchronous_commit','fsync','wal_sync_method','commit_delay','shared_buffers')\""),
            ("clients", "=amqprs 2.1, async-nats 0.38, redis-rs 0.27 (tokio), tokio-postgres 0.7, weir-client (workspace), reqwest 0.12"),
        ];
        let mut env = Environment {
            facts: facts
                .iter()
                .map(|(k, cmd)| {
                    let v = match cmd.strip_prefix('=') {
                        Some(literal) => literal.to_owned(),
                        None => sh(cmd),
                    };
                    ((*k).to_owned(), v)
                })
                .collect(),
        };
        if let Some(c) = weir_commit {
            for (k, v) in &mut env.facts {
                if k.starts_with("weir") {
                    *k = "weir".into();
                    *v = c.to_owned();
                }
            }
        }
        env
    }
}

/// Everything the report shows.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    /// Machine and versions.
    pub(crate) env: &'a Environment,
    /// The command line that produced it.
    pub(crate) command: &'a str,
    /// Runs per cell.
    pub(crate) runs: u32,
    /// The workloads, as run.
    pub(crate) workloads: &'a [Workload],
    /// Medians per (workload, target).
    pub(crate) summaries: &'a [Summary],
    /// (target label, notes).
    pub(crate) notes: &'a [(String, String)],
    /// How long the whole comparison took.
    pub(crate) wall_s: f64,
    /// The disk under Weir's data directory, measured by the same tool (W5's yardstick).
    pub(crate) disk: Option<&'a DiskProbe>,
}

/// Whether a target's confirm means "on disk" (fsynced). NATS 2.9 and Redis `everysec` do not.
pub(crate) fn durable(label: &str) -> bool {
    !(label.contains("everysec") || label.contains("nats"))
}

fn is_weir(label: &str) -> bool {
    label.starts_with("weir")
}

fn spread_rate(s: &Option<Spread>) -> String {
    match s {
        None => "–".into(),
        Some(s) if s.n > 1 => format!(
            "{} ({}–{})",
            fmt_rate(s.median),
            fmt_rate(s.min),
            fmt_rate(s.max)
        ),
        Some(s) => fmt_rate(s.median),
    }
}

fn spread_us(s: &Option<Spread>) -> String {
    match s {
        None => "–".into(),
        Some(s) if s.n > 1 => format!(
            "{} ({}–{})",
            fmt_us(s.median as u64),
            fmt_us(s.min as u64),
            fmt_us(s.max as u64)
        ),
        Some(s) => fmt_us(s.median as u64),
    }
}

fn med(s: &Option<Spread>) -> Option<f64> {
    s.map(|s| s.median)
}

/// Weir's throughput divided by the peer's (or, for latency workloads, the peer's p99 divided by
/// Weir's, so that > 1 always means Weir is better).
fn ratio(weir: Option<&Summary>, peer: &Summary, latency: bool) -> String {
    let Some(weir) = weir else {
        return "–".into();
    };
    let r = if latency {
        match (med(&peer.e2e_p99_us), med(&weir.e2e_p99_us)) {
            (Some(p), Some(w)) if w > 0.0 => Some(p / w),
            _ => None,
        }
    } else {
        match (med(&weir.throughput_msg_s), med(&peer.throughput_msg_s)) {
            (Some(w), Some(p)) if p > 0.0 => Some(w / p),
            _ => None,
        }
    };
    r.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "–".into())
}

/// Weir's median append rate over the peer's (stream workloads), as a `n.nn×` cell.
fn append_ratio(weir: Option<&Summary>, peer: &Summary) -> String {
    weir.and_then(|w| med(&w.publish_msg_s))
        .zip(med(&peer.publish_msg_s))
        .filter(|(_, p)| *p > 0.0)
        .map_or_else(|| "–".into(), |(w, p)| format!("{:.2}×", w / p))
}

fn amount(w: &Workload) -> String {
    match w.amount {
        Amount::Count(n) => format!("{n} messages"),
        Amount::Duration(d) => format!(
            "{:.0} s at {} msg/s",
            d.as_secs_f64(),
            w.rate_per_s.unwrap_or(0.0)
        ),
    }
}

/// The markdown report.
pub(crate) fn markdown(r: &Report<'_>) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Benchmarks: Weir vs RabbitMQ, NATS JetStream, Redis Streams, PostgreSQL\n"
    );
    let _ = writeln!(
        o,
        "Generated by one command (peers must be running on 127.0.0.1; it builds nothing, so first \
         `cargo build --release -p weir`):\n\n```sh\ncargo run --release -p weir-peer-bench -- compare --runs {}\n```\n",
        r.runs
    );
    let _ = writeln!(o, "This file was produced by `{}` in {:.0} s. Raw per-run JSON: `bench-out/results.jsonl` (not committed).", r.command, r.wall_s);
    let _ = writeln!(o, "Every number is the **median of {} runs**, with the spread (min–max) in parentheses. Runs are interleaved (run 1 of every workload and target, then run 2, …), and each starts once the machine was ≥ 85 % idle for 250 ms (at most 10 s of waiting), so one target's background work does not land on the next. \"Ratio\" is Weir ÷ peer for throughput and peer ÷ Weir for the latency workload, so > 1× means Weir is better.\n", r.runs);
    let _ = writeln!(o, "![throughput and p99 per workload](benchmarks.svg)\n");

    let _ = writeln!(o, "## Targets check\n");
    for line in targets_check(r.summaries, r.disk) {
        let _ = writeln!(o, "- {line}");
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "## Findings\n\n{}\n", FINDINGS.trim());

    let _ = writeln!(o, "## Results\n");
    for w in r.workloads {
        let rows: Vec<&Summary> = r.summaries.iter().filter(|s| s.workload == w.id).collect();
        let _ = writeln!(o, "### {} — {}\n", w.id, w.title);
        let _ = writeln!(
            o,
            "{} producer(s), {} consumer(s) per subscription, {} B bodies, {}, window {} per producer, prefetch {}{}.\n",
            w.producers,
            w.consumers,
            w.body_bytes,
            amount(w),
            w.window,
            w.prefetch,
            if w.batch > 1 { format!(", batches of {}", w.batch) } else { String::new() }
        );
        let latency = w.rate_per_s.is_some();
        let stream = w.kind == weir_bench::Kind::Stream;
        let weir = rows
            .iter()
            .copied()
            .find(|s| is_weir(&s.target) && s.ok_runs > 0);
        if stream {
            let _ = writeln!(o, "| target | durable confirm | append records/s | read records/s | append batch confirm p99 | RSS max | ratio (append) | ratio (read) | runs ok |");
            let _ = writeln!(o, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        } else {
            let _ = writeln!(o, "| target | durable confirm | msg/s end to end | publish msg/s | confirm p99 | e2e p50 | e2e p99 | e2e p99.9 | e2e max | RSS max | ratio | runs ok |");
            let _ = writeln!(
                o,
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
            );
        }
        for s in rows {
            let na = s.not_applicable();
            let runs_ok = if na {
                "n/a yet".to_owned()
            } else {
                let bad: Vec<String> = s
                    .statuses
                    .iter()
                    .filter(|st| **st != weir_bench::report::Status::Ok)
                    .map(|st| st.short())
                    .collect();
                if bad.is_empty() {
                    format!("{}/{}", s.ok_runs, s.statuses.len())
                } else {
                    format!(
                        "{}/{} ({})",
                        s.ok_runs,
                        s.statuses.len(),
                        bad.join("; ").replace('|', "/")
                    )
                }
            };
            let dur = if durable(&s.target) { "yes" } else { "**no**" };
            let ratio_cell = if is_weir(&s.target) || na {
                "–".into()
            } else {
                ratio(weir, s, latency)
            };
            let append_ratio_cell = if is_weir(&s.target) || na {
                "–".into()
            } else {
                append_ratio(weir, s)
            };
            if na {
                let cols = if stream { 6 } else { 9 };
                let why = if is_weir(&s.target) {
                    "n/a yet"
                } else {
                    "not measured"
                };
                let _ = writeln!(o, "| {} | {dur} |{} {why} |", s.target, " – |".repeat(cols));
                continue;
            }
            if stream {
                let _ = writeln!(
                    o,
                    "| {} | {dur} | {} | {} | {} | {} | {} | {} | {} |",
                    s.target,
                    spread_rate(&s.publish_msg_s),
                    spread_rate(&s.throughput_msg_s),
                    spread_us(&s.confirm_p99_us),
                    med(&s.rss_max_bytes)
                        .map(|b| fmt_mib(b as u64))
                        .unwrap_or_else(|| "–".into()),
                    append_ratio_cell,
                    ratio_cell,
                    runs_ok
                );
            } else {
                let _ = writeln!(
                    o,
                    "| {} | {dur} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    s.target,
                    spread_rate(&s.throughput_msg_s),
                    spread_rate(&s.publish_msg_s),
                    spread_us(&s.confirm_p99_us),
                    spread_us(&s.e2e_p50_us),
                    spread_us(&s.e2e_p99_us),
                    spread_us(&s.e2e_p999_us),
                    spread_us(&s.e2e_max_us),
                    med(&s.rss_max_bytes)
                        .map(|b| fmt_mib(b as u64))
                        .unwrap_or_else(|| "–".into()),
                    ratio_cell,
                    runs_ok
                );
            }
        }
        let _ = writeln!(o);
    }

    let _ = writeln!(o, "## What each target's confirm means\n");
    for (label, note) in r.notes {
        let _ = writeln!(o, "- **{label}**: {note}.");
    }
    let _ = writeln!(o, "\nSame client rules for every target: each message is its own publish (PostgreSQL excepted, see above), at most 1,000 unconfirmed publishes in flight per producer (Weir native: also at most the server's `max_in_flight` per connection), each delivery acked on its own, prefetch 1,000. Every producer and consumer has its own connection. Bodies carry their publish time; \"e2e\" is publish → delivery in the consumer, measured in the same process. In paced runs (W3) latency is measured from the scheduled send time (no coordinated omission). \"RSS max\" is the largest resident set sampled every 200 ms (PostgreSQL: summed over all its processes, so shared buffers count several times; RabbitMQ: the beam.smp VM).\n");

    let _ = writeln!(o, "## Machine and versions\n");
    for (k, v) in &r.env.facts {
        let _ = writeln!(o, "- {k}: {}", v.replace('\n', " "));
    }
    let _ = writeln!(o, "\nThe machine has 2 cores that clients and servers share (and that other work on the machine may use): absolute numbers are low and noisy; the ratios are the point.");
    o
}

/// Lines saying whether the issue's targets are met.
pub(crate) fn targets_check(summaries: &[Summary], disk: Option<&DiskProbe>) -> Vec<String> {
    let mut out = Vec::new();
    for wid in ["W1", "W2", "W4"] {
        let rows: Vec<&Summary> = summaries.iter().filter(|s| s.workload == wid).collect();
        if rows.is_empty() {
            continue;
        }
        // PostgreSQL batches on the client side (see its notes), so it is not held to the same
        // rules; it is reported on its own line below.
        let best_peer = rows
            .iter()
            .filter(|s| {
                !is_weir(&s.target) && durable(&s.target) && !s.target.starts_with("postgres")
            })
            .filter_map(|s| med(&s.throughput_msg_s).map(|t| (t, s.target.clone())))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let weir = rows
            .iter()
            .find(|s| s.target.starts_with("weir (native"))
            .and_then(|s| med(&s.throughput_msg_s));
        match (weir, best_peer) {
            (Some(w), Some((p, name))) => out.push(format!(
                "{wid} throughput ≥ 2× the best durable peer: Weir {} vs {name} {} = {:.2}× — **{}**",
                fmt_rate(w),
                fmt_rate(p),
                w / p,
                if w >= 2.0 * p { "met" } else { "not met" }
            )),
            _ => out.push(format!("{wid}: no complete Weir or durable-peer runs, target not evaluated")),
        }
        let pg = rows
            .iter()
            .find(|s| s.target.starts_with("postgres"))
            .and_then(|s| med(&s.throughput_msg_s));
        if let (Some(w), Some(p)) = (weir, pg) {
            out.push(format!(
                "{wid} against PostgreSQL (durable, but batched on the client side): Weir {} vs {} = {:.2}×",
                fmt_rate(w),
                fmt_rate(p),
                w / p
            ));
        }
    }
    if let Some(w3) = summaries
        .iter()
        .find(|s| s.workload == "W3" && s.target.starts_with("weir (native"))
    {
        match med(&w3.e2e_p99_us) {
            Some(p99) => out.push(format!(
                "W3 end-to-end p99 ≤ 1.5 ms: Weir {} — **{}**",
                fmt_us(p99 as u64),
                if p99 <= 1_500.0 { "met" } else { "not met" }
            )),
            None => out.push("W3: no complete Weir runs, target not evaluated".into()),
        }
    }
    for (wid, producers) in [("W5", "1 producer"), ("W5x8", "8 producers")] {
        let weir = summaries
            .iter()
            .find(|s| s.workload == wid && s.target.starts_with("weir (native"))
            .and_then(|s| med(&s.publish_msg_s));
        match (weir, disk) {
            (Some(records_s), Some(d)) => {
                // W5 records carry 100-byte bodies; counted as payload, not as bytes on disk.
                let payload = records_s * W5_RECORD_BYTES;
                let share = payload / d.large_synced_bytes_per_s;
                out.push(format!(
                    "{wid} ({producers}) append ≥ 50 % of the disk's fsync'd sequential-write \
                     bandwidth: Weir {} records/s = {:.1} MiB/s of payload vs {:.0} MiB/s (1 MiB \
                     writes, each fdatasync'd) = {:.0} % — **{}**; against one writer \
                     fdatasyncing each {} B batch ({:.1} MiB/s): {:.0} %",
                    fmt_rate(records_s),
                    payload / MIB,
                    d.large_synced_bytes_per_s / MIB,
                    100.0 * share,
                    if share >= 0.5 { "met" } else { "not met" },
                    d.small_block_bytes,
                    d.small_synced_bytes_per_s / MIB,
                    100.0 * payload / d.small_synced_bytes_per_s,
                ));
            }
            (Some(_), None) => out.push(format!(
                "{wid}: the disk was not probed, target not evaluated"
            )),
            (None, _) => {}
        }
    }
    out
}

/// Body bytes of one W5 record.
const W5_RECORD_BYTES: f64 = 100.0;
const MIB: f64 = 1024.0 * 1024.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A bar chart per workload: end-to-end throughput (left) and e2e p99 (right), one bar per target.
pub(crate) fn svg(summaries: &[Summary], workloads: &[Workload]) -> String {
    const W: f64 = 1000.0;
    const LABEL: f64 = 230.0;
    const BAR_H: f64 = 14.0;
    const GAP: f64 = 4.0;
    const HEAD: f64 = 26.0;
    let chart_w = (W - 2.0 * LABEL - 140.0) / 2.0;
    let mut body = String::new();
    let mut y = 40.0;
    for w in workloads {
        let rows: Vec<&Summary> = summaries.iter().filter(|s| s.workload == w.id).collect();
        if rows.is_empty() {
            continue;
        }
        let stream = w.kind == weir_bench::Kind::Stream;
        let left_title = if stream {
            "read records/s"
        } else {
            "msg/s end to end (higher is better)"
        };
        let right_title = if stream {
            "append batch confirm p99 (lower is better)"
        } else {
            "e2e p99 (lower is better)"
        };
        let _ = writeln!(
            body,
            r#"<text x="10" y="{:.0}" font-size="14" font-weight="bold">{} — {}</text>"#,
            y,
            esc(&w.id),
            esc(&w.title)
        );
        y += 8.0;
        let left: Vec<Option<f64>> = rows.iter().map(|s| med(&s.throughput_msg_s)).collect();
        let right: Vec<Option<f64>> = rows
            .iter()
            .map(|s| {
                if stream {
                    med(&s.confirm_p99_us)
                } else {
                    med(&s.e2e_p99_us)
                }
            })
            .collect();
        for (col, (title, vals, is_lat)) in
            [(left_title, &left, false), (right_title, &right, true)]
                .into_iter()
                .enumerate()
        {
            let x0 = 10.0 + col as f64 * (LABEL + chart_w + 60.0);
            let _ = writeln!(
                body,
                r##"<text x="{:.0}" y="{:.0}" font-size="11" fill="#444">{}</text>"##,
                x0 + LABEL,
                y + 12.0,
                esc(title)
            );
            let max = vals
                .iter()
                .flatten()
                .copied()
                .fold(0.0_f64, f64::max)
                .max(1e-9);
            for (i, (s, v)) in rows.iter().zip(vals.iter()).enumerate() {
                let by = y + HEAD + i as f64 * (BAR_H + GAP) - 6.0;
                let _ = writeln!(
                    body,
                    r#"<text x="{:.0}" y="{:.0}" font-size="11" text-anchor="end">{}</text>"#,
                    x0 + LABEL - 6.0,
                    by + BAR_H - 3.0,
                    esc(&s.target)
                );
                let colour = if is_weir(&s.target) {
                    "#1f6feb"
                } else if durable(&s.target) {
                    "#8b949e"
                } else {
                    "#d0d7de"
                };
                match v {
                    Some(v) if !s.not_applicable() => {
                        let len = (v / max * chart_w).max(1.0);
                        let text = if is_lat {
                            fmt_us(*v as u64)
                        } else {
                            fmt_rate(*v)
                        };
                        let _ = writeln!(
                            body,
                            r#"<rect x="{:.0}" y="{:.0}" width="{:.1}" height="{BAR_H}" fill="{colour}"/><text x="{:.0}" y="{:.0}" font-size="10">{}</text>"#,
                            x0 + LABEL,
                            by,
                            len,
                            x0 + LABEL + len + 4.0,
                            by + BAR_H - 3.0,
                            esc(&text)
                        );
                    }
                    _ => {
                        let _ = writeln!(
                            body,
                            r##"<text x="{:.0}" y="{:.0}" font-size="10" fill="#888">{}</text>"##,
                            x0 + LABEL + 4.0,
                            by + BAR_H - 3.0,
                            if is_weir(&s.target) {
                                "n/a yet"
                            } else {
                                "not measured"
                            }
                        );
                    }
                }
            }
        }
        y += HEAD + rows.len() as f64 * (BAR_H + GAP) + 24.0;
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W:.0}" height="{:.0}" viewBox="0 0 {W:.0} {:.0}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="16" font-weight="bold">Weir vs peers: median of runs (blue: Weir; dark grey: durable peer; light grey: confirm without fsync)</text>
{body}</svg>
"##,
        y, y
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_bench::report::{summarize, RunResult, Status};
    use weir_bench::workload::standard;

    fn ok(target: &str, workload: &str, run: u32, tput: f64, p99: u64) -> RunResult {
        RunResult {
            status: Status::Ok,
            throughput_msg_s: tput,
            publish_msg_s: tput,
            e2e_latency: Some(weir_bench::hist::Percentiles {
                count: 10,
                p50_us: p99 / 2,
                p90_us: p99,
                p99_us: p99,
                p999_us: p99,
                max_us: p99,
                mean_us: 1.0,
            }),
            ..RunResult::not_applicable(target, workload, run)
        }
    }

    fn sample() -> Vec<Summary> {
        let mut rs = Vec::new();
        for run in 1..=3 {
            rs.push(ok("weir (native)", "W1", run, 70_000.0 + run as f64, 900));
            rs.push(ok(
                "redis streams (appendfsync always)",
                "W1",
                run,
                35_000.0,
                2_000,
            ));
            rs.push(ok(
                "redis streams (appendfsync everysec)",
                "W1",
                run,
                90_000.0,
                800,
            ));
            rs.push(RunResult::not_applicable("weir (native)", "W4", run));
            rs.push(ok("nats jetstream (file)", "W4", run, 50_000.0, 3_000));
            rs.push(ok("weir (native)", "W3", run, 2_000.0, 1_200));
        }
        summarize(&rs)
    }

    #[test]
    fn durability_labels() {
        assert!(durable("redis streams (appendfsync always)"));
        assert!(!durable("redis streams (appendfsync everysec)"));
        assert!(!durable("nats jetstream (file)"));
        assert!(durable("rabbitmq (quorum)"));
    }

    #[test]
    fn targets_check_uses_best_durable_peer_only() {
        let lines = targets_check(&sample(), None);
        // everysec is faster but not durable: the comparison is against appendfsync always.
        assert!(
            lines[0].contains("redis streams (appendfsync always)"),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("2.00×"), "{}", lines[0]);
        assert!(lines[0].contains("**met**"));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("W3") && l.contains("1.20 ms") && l.contains("**met**")));
    }

    #[test]
    fn w5_is_judged_against_the_probed_disk() {
        let mut rs = Vec::new();
        for run in 1..=3 {
            rs.push(ok("weir (native)", "W5", run, 900_000.0, 0));
            rs.push(ok("weir (native)", "W5x8", run, 1_200_000.0, 0));
        }
        let sums = summarize(&rs);
        let disk = DiskProbe {
            large_bytes_per_s: 400.0 * MIB,
            large_synced_bytes_per_s: 200.0 * MIB,
            small_block_bytes: 10_000,
            small_synced_bytes_per_s: 20.0 * MIB,
            fdatasync_p50_us: 300.0,
            fdatasync_p99_us: 900.0,
        };
        // 900k records/s × 100 B = 85.8 MiB/s: 43 % of 200 MiB/s, 429 % of 20 MiB/s.
        let lines = targets_check(&sums, Some(&disk));
        let w5 = lines
            .iter()
            .find(|l| l.starts_with("W5 (1 producer)"))
            .expect("a W5 line");
        assert!(w5.contains("43 %") && w5.contains("**not met**"), "{w5}");
        assert!(w5.contains("429 %"), "{w5}");
        // 1.2M × 100 B = 114.4 MiB/s: 57 % of 200 MiB/s.
        let w5x8 = lines
            .iter()
            .find(|l| l.starts_with("W5x8 (8 producers)"))
            .expect("a W5x8 line");
        assert!(w5x8.contains("57 %") && w5x8.contains("**met**"), "{w5x8}");
        let lines = targets_check(&sums, None);
        assert!(lines.iter().any(|l| l.contains("not probed")), "{lines:?}");
    }

    #[test]
    fn markdown_has_ratios_na_and_the_command() {
        let env = Environment {
            facts: vec![("cores".into(), "2".into())],
        };
        let workloads = vec![standard::w1(), standard::w3(), standard::w4()];
        let sums = sample();
        let md = markdown(&Report {
            env: &env,
            command: "weir-peer-bench compare --runs 3",
            runs: 3,
            workloads: &workloads,
            summaries: &sums,
            notes: &[("weir (native)".into(), "confirm after fsync".into())],
            wall_s: 1.0,
            disk: None,
        });
        assert!(md.contains("cargo run --release -p weir-peer-bench -- compare --runs 3"));
        // Weir W1 median 70,002 / redis always 35,000 = 2.00×.
        let redis_row = md
            .lines()
            .find(|l| l.starts_with("| redis streams (appendfsync always)"))
            .unwrap();
        assert!(redis_row.contains("2.00×"), "{redis_row}");
        assert!(redis_row.contains("70.0k") || md.contains("70.0k (70.0k–70.0k)"));
        let na_row = md
            .lines()
            .find(|l| l.starts_with("| weir (native)") && l.contains("n/a yet"))
            .unwrap();
        // Same number of cells as the header of its table.
        assert_eq!(na_row.matches('|').count(), 13, "{na_row}");
        assert!(md.contains("- cores: 2"));
    }

    #[test]
    fn stream_tables_give_the_append_ratio_and_the_read_ratio() {
        let env = Environment {
            facts: vec![("cores".into(), "2".into())],
        };
        let mut rs = Vec::new();
        for run in 1..=3 {
            // Appends 600k vs 200k (3.00×), reads 800k vs 400k (2.00×): the two ratios differ,
            // so each cell is checked for its own.
            let mut weir = ok("weir (native)", "W5", run, 800_000.0, 0);
            weir.publish_msg_s = 600_000.0;
            let mut redis = ok(
                "redis streams (appendfsync always)",
                "W5",
                run,
                400_000.0,
                0,
            );
            redis.publish_msg_s = 200_000.0;
            rs.push(weir);
            rs.push(redis);
            rs.push(RunResult::not_applicable("rabbitmq (classic)", "W5", run));
        }
        let sums = summarize(&rs);
        let md = markdown(&Report {
            env: &env,
            command: "weir-peer-bench compare --runs 3",
            runs: 3,
            workloads: &[standard::w5()],
            summaries: &sums,
            notes: &[],
            wall_s: 1.0,
            disk: None,
        });
        let header = md
            .lines()
            .find(|l| l.contains("ratio (append)"))
            .expect("a stream table header");
        assert!(header.contains("ratio (read)"), "{header}");
        let redis = md
            .lines()
            .find(|l| l.starts_with("| redis streams (appendfsync always)"))
            .expect("the redis row");
        assert!(redis.contains("| 3.00× | 2.00× |"), "{redis}");
        let na = md
            .lines()
            .find(|l| l.starts_with("| rabbitmq (classic)"))
            .expect("the n/a row");
        assert_eq!(na.matches('|').count(), header.matches('|').count(), "{na}");
    }

    #[test]
    fn svg_is_well_formed_enough() {
        let s = svg(&sample(), &[standard::w1(), standard::w4()]);
        assert!(s.starts_with("<svg"));
        assert!(s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<rect").count(), 1 + 3 * 2 + 2);
        assert!(s.contains("n/a yet"));
        assert!(!s.contains("NaN"));
    }
}
