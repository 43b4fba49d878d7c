//! The `weir outbox init|relay` commands, for the `weir` binary to mount:
//!
//! ```ignore
//! #[derive(clap::Subcommand)]
//! enum Command {
//!     /// Transactional outbox: create the table, run the relay.
//!     #[command(subcommand)]
//!     Outbox(weir_outbox::cli::OutboxCommand),
//! }
//! // …
//! Command::Outbox(cmd) => weir_outbox::cli::run(cmd).await?,
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::metrics::RelayMetrics;
use crate::relay::{Relay, RelayConfig};
use crate::schema::{self, TableName};

/// `weir outbox …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum OutboxCommand {
    /// Create (or complete) the outbox table in the application's database.
    Init(InitArgs),
    /// Move committed outbox rows into Weir until stopped (SIGINT / SIGTERM).
    Relay(RelayArgs),
}

/// Runs one `weir outbox` subcommand.
pub async fn run(command: OutboxCommand) -> anyhow::Result<()> {
    match command {
        OutboxCommand::Init(args) => run_init(args).await,
        OutboxCommand::Relay(args) => run_relay(args).await,
    }
}

/// Arguments of `weir outbox init`.
#[derive(Clone, Debug, clap::Args)]
pub struct InitArgs {
    /// The application's database: `postgres://user@host/db`, `host=… user=… dbname=…`, or
    /// `sqlite:PATH`.
    #[arg(long, env = "WEIR_OUTBOX_DATABASE_URL")]
    pub database_url: String,
    /// Name of the outbox table.
    #[arg(long, env = "WEIR_OUTBOX_TABLE", default_value = schema::DEFAULT_TABLE)]
    pub table: String,
    /// Print the DDL instead of running it.
    #[arg(long)]
    pub print: bool,
}

/// Arguments of `weir outbox relay`.
#[derive(Clone, Debug, clap::Args)]
pub struct RelayArgs {
    /// The application's database: `postgres://user@host/db`, `host=… user=… dbname=…`, or
    /// `sqlite:PATH`.
    #[arg(long, env = "WEIR_OUTBOX_DATABASE_URL")]
    pub database_url: String,
    /// Weir's HTTP address.
    #[arg(long, env = "WEIR_URL", default_value = "http://127.0.0.1:7480")]
    pub weir_url: String,
    /// Name of the outbox table.
    #[arg(long, env = "WEIR_OUTBOX_TABLE", default_value = schema::DEFAULT_TABLE)]
    pub table: String,
    /// Rows per batch (one transaction, published in id order).
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Longest sleep without a commit notification (PostgreSQL) / poll interval (SQLite).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// Delete sent rows older than this.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// How often to delete sent rows past retention.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub cleanup_interval: Duration,
    /// Prefix of message ids (message id = prefix + row id); set it when several outbox tables
    /// feed the same queue.
    #[arg(long, env = "WEIR_OUTBOX_ID_PREFIX", default_value = "")]
    pub id_prefix: String,
    /// Longest time one batch keeps its rows locked while Weir is busy or down.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub max_hold: Duration,
    /// First retry delay while Weir is busy or down (exponential, full jitter).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    pub backoff_base: Duration,
    /// Largest retry delay.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub backoff_max: Duration,
    /// Serve Prometheus metrics on this address (`GET /metrics`).
    #[arg(long, env = "WEIR_OUTBOX_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Publish everything pending, then exit (instead of running until stopped).
    #[arg(long)]
    pub once: bool,
}

impl RelayArgs {
    /// The relay config these arguments describe.
    pub fn to_config(&self) -> anyhow::Result<RelayConfig> {
        let mut config = RelayConfig::new(&self.database_url, &self.weir_url);
        config.table = TableName::new(&self.table)?;
        config.batch_size = self.batch_size;
        config.poll_interval = self.poll_interval;
        config.retention = self.retention;
        config.cleanup_interval = self.cleanup_interval;
        config.id_prefix = self.id_prefix.clone();
        config.max_hold = self.max_hold;
        config.backoff_base = self.backoff_base;
        config.backoff_max = self.backoff_max;
        Ok(config)
    }
}

/// `weir outbox init`: creates the outbox table (idempotent).
pub async fn run_init(args: InitArgs) -> anyhow::Result<()> {
    let table = TableName::new(&args.table)?;
    let sqlite_path = crate::sqlite::path_from_url(&args.database_url);
    if args.print {
        let ddl = match sqlite_path {
            Some(_) => schema::sqlite_ddl(&table),
            None => schema::postgres_ddl(&table),
        };
        println!("{}", ddl.trim());
        return Ok(());
    }
    match sqlite_path {
        Some(path) => {
            let conn = crate::sqlite::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            schema::migrate_sqlite(&conn, &table)?;
            println!("outbox table {table} ready in {}", path.display());
        }
        None => {
            let client = crate::pg::connect(&args.database_url)
                .await
                .context("connecting to PostgreSQL")?;
            schema::migrate_postgres(&client, &table).await?;
            println!("outbox table {table} ready");
        }
    }
    Ok(())
}

/// `weir outbox relay`: runs the relay until SIGINT/SIGTERM (or, with `--once`, until nothing is
/// pending).
pub async fn run_relay(args: RelayArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    let mut relay = Relay::new(config)?;
    if let Some(addr) = args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics listener on {addr}"))?;
        tracing::info!(%addr, "outbox relay metrics on /metrics");
        tokio::spawn(serve_metrics(listener, relay.metrics()));
    }
    if args.once {
        let n = relay.drain().await?;
        println!("published {n} rows");
        return Ok(());
    }
    relay.run(shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A minimal HTTP endpoint: any request gets the Prometheus text. Bounded: one small read per
/// connection, connections handled one at a time.
pub async fn serve_metrics(listener: tokio::net::TcpListener, metrics: Arc<RelayMetrics>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let mut request = [0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut request)).await;
        let body = metrics.render_prometheus();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            socket.write_all(response.as_bytes()),
        )
        .await;
    }
}
