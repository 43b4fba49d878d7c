//! The `weir bench` command line: [`BenchArgs`] and [`run`].
//!
//! Wiring into the `weir` binary (a subcommand variant holding `BenchArgs`):
//! `Command::Bench(args) => weir_bench::cli::run(args).await`.

use anyhow::{bail, Context as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::driver::{self, RunOptions};
use crate::report::{render_table, RunResult};
use crate::target::Target;
use crate::weir::{Transport, WeirTarget};
use crate::workload::{standard, Amount, Kind, Workload};

/// A standard workload to start from (the flags given override its settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// W1: durable queue, 1 producer → 1 consumer, 200k × 256 B.
    W1,
    /// W2: 8 producers → 8 consumers, 200k × 256 B.
    W2,
    /// W3: paced 2,000 msg/s for 10 s: end-to-end latency.
    W3,
    /// W4: fan-out to 4 subscriptions, 100k (needs topics).
    W4,
    /// W5: stream append in batches of 100, then read all (needs streams).
    W5,
    /// W5x8: W5 with 8 producers and 4M records.
    W5x8,
}

/// What to publish to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetKind {
    /// A queue (competing consumers).
    Queue,
    /// A topic with `--subscriptions` subscriptions (not in Weir yet).
    Topic,
    /// A stream (not in Weir yet).
    Stream,
}

/// `weir bench`: load a running Weir server (or one it spawns) and report throughput, latency
/// percentiles and server RSS.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Native protocol address of the server.
    #[arg(long, env = "WEIR_ADDR", default_value = "127.0.0.1:7400")]
    pub addr: String,
    /// HTTP address of the server.
    #[arg(long, env = "WEIR_HTTP_ADDR", default_value = "127.0.0.1:7480")]
    pub http_addr: String,
    /// Which API to load.
    #[arg(long, value_enum, default_value = "native")]
    pub transport: Transport,
    /// Start from a standard workload (W1–W5); other flags override it.
    #[arg(long, value_enum)]
    pub workload: Option<Preset>,
    /// Producer tasks, each with its own connection.
    #[arg(short = 'p', long)]
    pub producers: Option<usize>,
    /// Consumer tasks (per subscription), each with its own connection.
    #[arg(short = 'c', long)]
    pub consumers: Option<usize>,
    /// Body size in bytes (≥ 16).
    #[arg(short = 's', long)]
    pub size: Option<usize>,
    /// Messages to publish in total (default 100,000 unless `--duration`).
    #[arg(short = 'n', long, conflicts_with = "duration")]
    pub count: Option<u64>,
    /// Publish for this many seconds instead of a count.
    #[arg(short = 'd', long)]
    pub duration: Option<f64>,
    /// Messages per publish request: 1 = each message its own publish; more batches in the client.
    #[arg(short = 'b', long, default_value_t = 1)]
    pub batch: usize,
    /// Paced total publish rate (messages/s over all producers), for latency runs.
    #[arg(short = 'r', long)]
    pub rate: Option<f64>,
    /// Most unconfirmed publishes in flight per producer.
    #[arg(long)]
    pub window: Option<usize>,
    /// Consumer prefetch (credits).
    #[arg(long)]
    pub prefetch: Option<u32>,
    /// Queue, topic or stream.
    #[arg(long, value_enum, default_value = "queue")]
    pub kind: TargetKind,
    /// Subscriptions for `--kind topic`.
    #[arg(long, default_value_t = 4)]
    pub subscriptions: usize,
    /// The server's fsync policy (`always`, `interval:<ms>`, `never`): passed to a spawned server;
    /// for a running one it only labels the results (set it with `weir serve --fsync`).
    #[arg(long)]
    pub fsync: Option<String>,
    /// Queue / topic / stream name to use (it is deleted and re-created).
    #[arg(long, default_value = "weir-bench")]
    pub name: String,
    /// Repeat the run this many times.
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
    /// Give up after this many seconds per run.
    #[arg(long, default_value_t = 120.0)]
    pub timeout: f64,
    /// Print the results as JSON (one array) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Start this `weir` binary as `serve` for the run (and stop it after), so its RSS is sampled.
    #[arg(long, value_name = "WEIR_BINARY")]
    pub spawn_server: Option<PathBuf>,
    /// Data directory for `--spawn-server` (emptied first).
    #[arg(long, default_value = "/tmp/weir-bench-data")]
    pub data_dir: PathBuf,
    /// Token for a server that requires authentication (native `Authenticate`, HTTP bearer).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Also measure the disk under `--data-dir` (fdatasync'd sequential writes) after the runs;
    /// on by default for stream workloads, whose append rate is stated as a share of it.
    #[arg(long)]
    pub disk_probe: bool,
    /// Pid of a running server to sample RSS from.
    #[arg(long, conflicts_with = "spawn_server")]
    pub server_pid: Option<u32>,
}

impl BenchArgs {
    /// The workload these flags describe.
    pub fn workload(&self) -> Workload {
        let mut w = match self.workload {
            Some(Preset::W1) => standard::w1(),
            Some(Preset::W2) => standard::w2(),
            Some(Preset::W3) => standard::w3(),
            Some(Preset::W4) => standard::w4(),
            Some(Preset::W5) => standard::w5(),
            Some(Preset::W5x8) => standard::w5x8(),
            None => Workload {
                id: "custom".into(),
                title: "custom".into(),
                amount: Amount::Count(100_000),
                ..standard::w1()
            },
        };
        if self.workload.is_none() || self.kind != TargetKind::Queue {
            w.kind = match self.kind {
                TargetKind::Queue => Kind::Queue,
                TargetKind::Topic => Kind::FanOut {
                    subscriptions: self.subscriptions.max(1),
                },
                TargetKind::Stream => Kind::Stream,
            };
        }
        if let Some(p) = self.producers {
            w.producers = p.max(1);
        }
        if let Some(c) = self.consumers {
            w.consumers = c.max(1);
        }
        if let Some(s) = self.size {
            w.body_bytes = s;
        }
        if let Some(n) = self.count {
            w.amount = Amount::Count(n);
        }
        if let Some(d) = self.duration {
            w.amount = Amount::Duration(Duration::from_secs_f64(d.max(0.001)));
        }
        if self.rate.is_some() {
            w.rate_per_s = self.rate.filter(|r| *r > 0.0);
        }
        if let Some(win) = self.window {
            w.window = win.max(1);
        }
        if let Some(p) = self.prefetch {
            w.prefetch = p.max(1);
        }
        if w.kind == Kind::Stream {
            w.batch = self.batch.max(1).max(w.batch);
        }
        w.timeout = Duration::from_secs_f64(self.timeout.max(1.0));
        w
    }
}

/// A `weir serve` child process, killed when dropped.
#[derive(Debug)]
pub struct SpawnedServer {
    child: std::process::Child,
}

impl SpawnedServer {
    /// Starts `binary serve` on the given addresses and data directory (emptied first), with
    /// `--fsync` when given, and waits until the native port accepts connections.
    pub async fn start(
        binary: &std::path::Path,
        data_dir: &std::path::Path,
        addr: &str,
        http_addr: &str,
        fsync: Option<&str>,
    ) -> anyhow::Result<SpawnedServer> {
        if data_dir.exists() {
            std::fs::remove_dir_all(data_dir)
                .with_context(|| format!("emptying {}", data_dir.display()))?;
        }
        let mut cmd = std::process::Command::new(binary);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--addr")
            .arg(addr)
            .arg("--http-addr")
            .arg(http_addr)
            .env("WEIR_LOG", "warn")
            .stdin(std::process::Stdio::null());
        if let Some(f) = fsync {
            cmd.arg("--fsync").arg(f);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut server = SpawnedServer { child };
        let until = Instant::now() + Duration::from_secs(15);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("{} serve exited early: {status}", binary.display());
            }
            if Instant::now() > until {
                bail!(
                    "{} serve did not listen on {addr} within 15 s",
                    binary.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `weir bench`.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let w = args.workload();
    let server = match &args.spawn_server {
        Some(bin) => Some(
            SpawnedServer::start(
                bin,
                &args.data_dir,
                &args.addr,
                &args.http_addr,
                args.fsync.as_deref(),
            )
            .await?,
        ),
        None => None,
    };
    let mut target = WeirTarget::new(args.transport);
    target.addr = args.addr.clone();
    target.http_addr = args.http_addr.clone();
    target.pid = server.as_ref().map(SpawnedServer::pid).or(args.server_pid);
    target.batch = args.batch.max(1);
    target.token = args.token.clone();
    if let Some(f) = &args.fsync {
        target.label_suffix = format!(", fsync {f}");
    }
    let target: Arc<dyn Target> = Arc::new(target);
    if !args.json {
        eprintln!(
            "{}: {} producer(s), {} consumer(s), {} B bodies, {}{}, window {}, prefetch {}",
            target.label(),
            w.producers,
            w.consumers,
            w.body_bytes,
            match w.amount {
                Amount::Count(n) => format!("{n} messages"),
                Amount::Duration(d) => format!("{:.1} s", d.as_secs_f64()),
            },
            w.rate_per_s
                .map(|r| format!(" paced at {r} msg/s"))
                .unwrap_or_default(),
            w.window,
            w.prefetch,
        );
    }
    let mut results: Vec<RunResult> = Vec::new();
    for run in 1..=args.runs.max(1) {
        let opts = RunOptions {
            name: args.name.clone(),
            run,
            progress: !args.quiet && !args.json,
            ..RunOptions::default()
        };
        results.push(driver::run(target.clone(), &w, &opts).await);
    }
    drop(server);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print!("{}", render_table(&results));
    }
    if args.disk_probe || w.kind == Kind::Stream {
        let dir = args.data_dir.clone();
        let batch_bytes = w.batch.max(1) * w.body_bytes;
        let probe = tokio::task::spawn_blocking(move || crate::disk::probe(&dir, batch_bytes))
            .await
            .context("disk probe task")??;
        let rates: Vec<f64> = results
            .iter()
            .filter(|r| r.status == crate::report::Status::Ok)
            .map(|r| r.publish_msg_s * w.body_bytes as f64)
            .collect();
        let payload = crate::report::spread(&rates).map(|s| s.median);
        // On stderr with --json, so stdout stays one JSON document.
        let line = format!(
            "{} [{}; run = median confirmed payload bytes/s]",
            probe.describe(payload),
            args.data_dir.display()
        );
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    if let Some(bad) = results
        .iter()
        .find(|r| matches!(r.status, crate::report::Status::Error(_)))
    {
        bail!("run {} failed: {}", bad.run, bad.status.short());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn flags_override_a_preset() {
        let cli = Cli::parse_from(["weir", "--workload", "w2", "-n", "20000", "--window", "10"]);
        let w = cli.bench.workload();
        assert_eq!(w.producers, 8);
        assert_eq!(w.total_messages(), 20_000);
        assert_eq!(w.window, 10);
        assert_eq!(w.kind, Kind::Queue);
    }

    #[test]
    fn custom_paced_duration_topic() {
        let cli = Cli::parse_from([
            "weir",
            "--kind",
            "topic",
            "--subscriptions",
            "3",
            "-d",
            "2",
            "-r",
            "500",
        ]);
        let w = cli.bench.workload();
        assert_eq!(w.kind, Kind::FanOut { subscriptions: 3 });
        assert_eq!(w.total_messages(), 1_000);
        assert_eq!(w.id, "custom");
    }
}
