//! `weir-peer-bench`: runs the weir-bench workloads against Weir and its peers (RabbitMQ, NATS
//! JetStream, Redis Streams, PostgreSQL) and writes `docs/benchmarks.md` + `docs/benchmarks.svg`.
//!
//! `cargo run --release -p weir-peer-bench -- compare --runs 3` regenerates everything;
//! `… -- run --target redis-always --workload w1 --scale 0.1` runs one cell.

mod doc;
mod nats;
mod postgres;
mod rabbit;
mod redis_streams;
mod settle;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_bench::cli::SpawnedServer;
use weir_bench::disk::DiskProbe;
use weir_bench::driver::{self, RunOptions};
use weir_bench::report::{render_table, RunResult};
use weir_bench::weir::{Transport, WeirTarget};
use weir_bench::workload::{standard, Workload};
use weir_bench::Target;

#[derive(Debug, Parser)]
#[command(about = "Weir vs RabbitMQ, NATS JetStream, Redis Streams and PostgreSQL")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, clap::Args, Clone)]
struct Common {
    /// Targets, comma-separated: weir-native, weir-http, rabbitmq-classic, rabbitmq-quorum, nats,
    /// redis-always, redis-everysec, postgres.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "weir-native,rabbitmq-classic,rabbitmq-quorum,nats,redis-always,redis-everysec,postgres"
    )]
    targets: Vec<String>,
    /// Workloads, comma-separated (w1..w5, w5x8).
    #[arg(long, value_delimiter = ',', default_value = "w1,w2,w3,w4,w5,w5x8")]
    workloads: Vec<String>,
    /// Multiply every workload's message count (or duration) by this, for quick runs.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Per-run timeout, seconds.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Start this weir binary (`serve`) for the Weir targets; otherwise use a running server.
    #[arg(long, default_value = "target/release/weir")]
    weir_bin: PathBuf,
    /// Use an already running Weir server instead of spawning `--weir-bin`.
    #[arg(long)]
    weir_running: bool,
    /// Data directory of a spawned Weir server (emptied first).
    #[arg(long, default_value = "/tmp/weir-bench-data")]
    weir_data_dir: PathBuf,
    /// Weir native address.
    #[arg(long, default_value = "127.0.0.1:7400")]
    weir_addr: String,
    /// Weir HTTP address.
    #[arg(long, default_value = "127.0.0.1:7480")]
    weir_http_addr: String,
    /// The Weir commit the measured binary was built from (default: the work tree's HEAD).
    #[arg(long)]
    weir_commit: Option<String>,
    /// Progress bars on stderr.
    #[arg(long)]
    progress: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the selected workloads against the selected targets once and print a table.
    Run {
        #[command(flatten)]
        common: Common,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run everything `--runs` times and write docs/benchmarks.md, docs/benchmarks.svg and the raw
    /// JSON in bench-out/.
    Compare {
        #[command(flatten)]
        common: Common,
        /// Runs per (workload, target); the report shows the median and the spread.
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// Where the report goes.
        #[arg(long, default_value = "docs")]
        docs_dir: PathBuf,
        /// Where raw JSON goes (gitignored).
        #[arg(long, default_value = "bench-out")]
        raw_dir: PathBuf,
    },
    /// Re-render docs/benchmarks.md and .svg from bench-out/results.jsonl without running anything
    /// (for example after editing findings.md).
    Render {
        #[command(flatten)]
        common: Common,
        /// Runs per cell that the raw file holds.
        #[arg(long, default_value_t = 3)]
        runs: u32,
        /// Where the report goes.
        #[arg(long, default_value = "docs")]
        docs_dir: PathBuf,
        /// Where the raw JSON is.
        #[arg(long, default_value = "bench-out")]
        raw_dir: PathBuf,
        /// The command line to show as the one that produced the results.
        #[arg(long)]
        produced_by: Option<String>,
        /// Wall time of the original run, seconds.
        #[arg(long, default_value_t = 0.0)]
        wall_s: f64,
    },
}

fn workload(id: &str) -> anyhow::Result<Workload> {
    Ok(match id.to_ascii_lowercase().as_str() {
        "w1" => standard::w1(),
        "w2" => standard::w2(),
        "w3" => standard::w3(),
        "w4" => standard::w4(),
        "w5" => standard::w5(),
        "w5x8" => standard::w5x8(),
        other => bail!("unknown workload {other} (w1..w5, w5x8)"),
    })
}

/// The targets of a session, plus what must be undone at the end.
struct Setup {
    targets: Vec<(String, Arc<dyn Target>)>,
    redis_restore: Option<(Arc<redis_streams::RedisStreams>, (String, String))>,
    _weir: Option<SpawnedServer>,
}

async fn nats_fsync_note() -> String {
    // Checked by hand with strace (see docs/benchmarks.md); nats-server 2.9 has no per-message
    // sync option: JetStream file storage flushes to the OS on each write and fsyncs every
    // `sync_interval` (2 min default).
    "no fsync before the publish ack (nats-server 2.9 syncs file storage periodically; checked with \
     strace): NOT durable at the confirm"
        .to_owned()
}

async fn setup(c: &Common) -> anyhow::Result<Setup> {
    let mut targets: Vec<(String, Arc<dyn Target>)> = Vec::new();
    let mut redis_restore = None;
    let mut weir = None;
    for t in &c.targets {
        let target: Arc<dyn Target> = match t.as_str() {
            "weir-native" | "weir-http" => {
                if weir.is_none() && !c.weir_running {
                    weir = Some(
                        SpawnedServer::start(
                            &c.weir_bin,
                            &c.weir_data_dir,
                            &c.weir_addr,
                            &c.weir_http_addr,
                            None,
                        )
                        .await
                        .context("starting weir (build it: cargo build --release -p weir)")?,
                    );
                }
                let mut w = WeirTarget::new(if t == "weir-native" {
                    Transport::Native
                } else {
                    Transport::Http
                });
                w.addr = c.weir_addr.clone();
                w.http_addr = c.weir_http_addr.clone();
                w.pid = weir
                    .as_ref()
                    .map(SpawnedServer::pid)
                    .or_else(|| weir_bench::rss::pids_by_name("weir").first().copied());
                Arc::new(w)
            }
            "rabbitmq-classic" | "rabbitmq-quorum" => Arc::new(rabbit::Rabbit {
                queue_type: if t == "rabbitmq-classic" {
                    rabbit::QueueType::Classic
                } else {
                    rabbit::QueueType::Quorum
                },
                host: "127.0.0.1".into(),
                port: 5672,
            }),
            "nats" => Arc::new(nats::Nats {
                url: "127.0.0.1:4222".into(),
                fsync_note: nats_fsync_note().await,
            }),
            "redis-always" | "redis-everysec" => {
                let r = Arc::new(redis_streams::RedisStreams::new(
                    "redis://127.0.0.1:6379/",
                    t.trim_start_matches("redis-"),
                ));
                if redis_restore.is_none() {
                    let orig = r.get_config().await?;
                    redis_restore = Some((r.clone(), orig));
                }
                r
            }
            "postgres" => Arc::new(postgres::Postgres {
                conninfo: "host=127.0.0.1 port=5432 user=postgres dbname=test".into(),
            }),
            other => bail!("unknown target {other}"),
        };
        targets.push((t.clone(), target));
    }
    Ok(Setup {
        targets,
        redis_restore,
        _weir: weir,
    })
}

impl Setup {
    async fn restore(&self) {
        if let Some((r, (ao, af))) = &self.redis_restore {
            match r.set_config(ao, af).await {
                Ok(()) => eprintln!("redis: restored appendonly {ao}, appendfsync {af}"),
                Err(e) => {
                    eprintln!("redis: could not restore appendonly {ao} / appendfsync {af}: {e:#}")
                }
            }
        }
    }
}

async fn run_cells(
    c: &Common,
    s: &Setup,
    runs: u32,
    mut on_result: impl FnMut(&RunResult),
) -> anyhow::Result<Vec<RunResult>> {
    let workloads: Vec<Workload> = c
        .workloads
        .iter()
        .map(|w| workload(w))
        .collect::<anyhow::Result<_>>()?;
    let mut out = Vec::new();
    // Runs are interleaved (run 1 of everything, then run 2 …) so slow drift on the shared
    // machine spreads over every target instead of favouring one. Before each run the machine
    // gets up to SETTLE_MAX to become quiet (settle.rs).
    for run in 1..=runs.max(1) {
        for w in &workloads {
            let mut w = w.scaled(c.scale);
            w.timeout = Duration::from_secs_f64(c.timeout);
            for (key, t) in &s.targets {
                let opts = RunOptions {
                    name: format!("bench-{}", w.id.to_ascii_lowercase()),
                    run,
                    progress: c.progress,
                    ..RunOptions::default()
                };
                // Every target starts on a quiet machine: the previous one's background work
                // (vacuum, GC, compaction) must not land on it.
                let settled = settle::until_quiet(SETTLE_MAX).await;
                let t0 = Instant::now();
                let r = driver::run(t.clone(), &w, &opts).await;
                eprintln!(
                    "run {run} {} {key}: {} {:.0} msg/s e2e p99 {} ({:.1} s; settled {:.1} s, idle {})",
                    w.id,
                    r.status.short(),
                    r.throughput_msg_s,
                    r.e2e_latency
                        .map(|p| weir_bench::hist::fmt_us(p.p99_us))
                        .unwrap_or_else(|| "–".into()),
                    t0.elapsed().as_secs_f64(),
                    settled.waited.as_secs_f64(),
                    settled
                        .idle
                        .map_or_else(|| "?".into(), |i| format!("{:.0} %", i * 100.0)),
                );
                on_result(&r);
                out.push(r);
            }
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn write_docs(
    common: &Common,
    s: &Setup,
    results: &[RunResult],
    runs: u32,
    docs_dir: &std::path::Path,
    raw_dir: &std::path::Path,
    command: &str,
    wall_s: f64,
) -> anyhow::Result<()> {
    let notes: Vec<(String, String)> = s
        .targets
        .iter()
        .map(|(_, t)| (t.label(), t.notes()))
        .collect();
    let workloads: Vec<Workload> = common
        .workloads
        .iter()
        .map(|w| workload(w).map(|w| w.scaled(common.scale)))
        .collect::<anyhow::Result<_>>()?;
    let env = doc::Environment::collect(common.weir_commit.as_deref()).await;
    let summaries = weir_bench::report::summarize(results);
    // Written by `compare` (see `probe_disk`); `render` finds it beside the raw results.
    let disk: Option<DiskProbe> = std::fs::read_to_string(raw_dir.join(DISK_JSON))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let md = doc::markdown(&doc::Report {
        env: &env,
        command,
        runs,
        workloads: &workloads,
        summaries: &summaries,
        notes: &notes,
        wall_s,
        disk: disk.as_ref(),
    });
    std::fs::write(docs_dir.join("benchmarks.md"), md)?;
    std::fs::write(
        docs_dir.join("benchmarks.svg"),
        doc::svg(&summaries, &workloads),
    )?;
    std::fs::write(
        raw_dir.join("summary.json"),
        serde_json::to_string_pretty(&summaries)?,
    )?;
    Ok(())
}

async fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run { common, json } => {
            let s = setup(&common).await?;
            let results = run_cells(&common, &s, 1, |_| {}).await;
            s.restore().await;
            let results = results?;
            if json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                print!("{}", render_table(&results));
            }
        }
        Cmd::Compare {
            common,
            runs,
            docs_dir,
            raw_dir,
        } => {
            std::fs::create_dir_all(&raw_dir)?;
            std::fs::create_dir_all(&docs_dir)?;
            let started = Instant::now();
            let s = setup(&common).await?;
            let raw_path = raw_dir.join("results.jsonl");
            let mut raw = std::fs::File::create(&raw_path)?;
            let results = run_cells(&common, &s, runs, |r| {
                use std::io::Write as _;
                if let Ok(line) = serde_json::to_string(r) {
                    let _ = writeln!(raw, "{line}");
                }
            })
            .await;
            s.restore().await;
            let results = results?;
            probe_disk(&common, &raw_dir).await?;
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            write_docs(
                &common,
                &s,
                &results,
                runs,
                &docs_dir,
                &raw_dir,
                &command,
                started.elapsed().as_secs_f64(),
            )
            .await?;
            eprintln!(
                "wrote {}/benchmarks.md, {}/benchmarks.svg, {} ({:.0} s)",
                docs_dir.display(),
                docs_dir.display(),
                raw_path.display(),
                started.elapsed().as_secs_f64()
            );
        }
        Cmd::Render {
            common,
            runs,
            docs_dir,
            raw_dir,
            produced_by,
            wall_s,
        } => render(common, runs, docs_dir, raw_dir, produced_by, wall_s).await?,
    }
    Ok(())
}

/// Longest wait for a quiet machine before each run of the comparison.
const SETTLE_MAX: Duration = Duration::from_secs(10);
/// File (in the raw results directory) holding the disk probe of a comparison.
const DISK_JSON: &str = "disk.json";

/// Measures the disk under Weir's data directory with the bench tool's probe (W5 is stated as a
/// share of it) and keeps the figures beside the raw results.
async fn probe_disk(common: &Common, raw_dir: &std::path::Path) -> anyhow::Result<()> {
    let dir = common.weir_data_dir.clone();
    let batch_bytes = standard::w5().batch * standard::w5().body_bytes;
    let probe = tokio::task::spawn_blocking(move || weir_bench::disk::probe(&dir, batch_bytes))
        .await
        .context("disk probe task")??;
    eprintln!("{}", probe.describe(None));
    std::fs::write(
        raw_dir.join(DISK_JSON),
        serde_json::to_string_pretty(&probe)?,
    )?;
    Ok(())
}

async fn render(
    mut common: Common,
    runs: u32,
    docs_dir: PathBuf,
    raw_dir: PathBuf,
    produced_by: Option<String>,
    wall_s: f64,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(raw_dir.join("results.jsonl"))
        .with_context(|| format!("reading {}/results.jsonl", raw_dir.display()))?;
    let results: Vec<RunResult> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    // Targets are only needed for their labels and notes: no Weir server is started.
    common.weir_running = true;
    let s = setup(&common).await?;
    let command = produced_by.unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
    write_docs(
        &common, &s, &results, runs, &docs_dir, &raw_dir, &command, wall_s,
    )
    .await
}

/// The same allocator as the `weir` binary, so the peers' client code runs under the same
/// conditions as Weir's own bench client.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match real_main().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir-peer-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod live_tests {
    use super::*;

    #[tokio::test]
    #[ignore = "needs Redis on 127.0.0.1:6379; run with --ignored"]
    async fn redis_always_small_w1_delivers_everything() {
        let r = Arc::new(redis_streams::RedisStreams::new(
            "redis://127.0.0.1:6379/",
            "always",
        ));
        let orig = r.get_config().await.unwrap();
        let mut w = standard::w1().scaled(0.005); // 1,000 messages
        w.timeout = Duration::from_secs(30);
        let opts = RunOptions {
            name: "bench-live-test".into(),
            progress: false,
            ..RunOptions::default()
        };
        let result = driver::run(r.clone(), &w, &opts).await;
        r.set_config(&orig.0, &orig.1).await.unwrap();
        assert_eq!(result.status, weir_bench::report::Status::Ok, "{result:?}");
        assert_eq!(result.confirmed, 1_000);
        assert_eq!(result.delivered, 1_000);
    }
}
