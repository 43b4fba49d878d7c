//! Weir's network front: the HTTP/JSON API ([`http`]) and the native binary protocol (`native`)
//! over one shared [`weir_broker::Broker`], plus the background ticker that drives lease expiry,
//! delayed delivery, snapshots and space reclamation.
//!
//! Architecture invariant: this is the only crate that speaks JSON or opens sockets for the
//! broker. The broker underneath is synchronous and knows nothing of either.

pub mod auth;
pub mod http;
mod metrics;
mod native;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_broker::{Broker, BrokerOptions, SystemClock};

pub use metrics::Metrics;

/// How often the broker's [`Broker::tick`] runs (lease expiry, delayed delivery, snapshots).
pub const TICK_INTERVAL: Duration = Duration::from_millis(50);

/// Everything `weir serve` can be told.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where the embedded storage keeps its files.
    pub data_dir: PathBuf,
    /// Native protocol listener (default `127.0.0.1:7400`).
    pub native_addr: SocketAddr,
    /// HTTP listener (default `127.0.0.1:7480`).
    pub http_addr: SocketAddr,
    /// Broker settings (body limit, fsync policy, segment size).
    pub broker: BrokerOptions,
    /// Most concurrent connections per listener.
    pub max_connections: usize,
    /// Largest HTTP request body, in bytes.
    pub max_http_body_bytes: usize,
    /// Longest time an HTTP client may take to send a request's head (slowloris guard).
    pub http_header_read_timeout: Duration,
    /// Tokens and permissions; `None` serves without authentication (loopback only, unless
    /// `insecure`).
    pub auth: Option<Arc<auth::AuthConfig>>,
    /// Allow a non-loopback listener without authentication.
    pub insecure: bool,
    /// Certificate chain and private key: when set, both listeners accept TLS only.
    pub tls: Option<tls::TlsConfig>,
}

impl ServerConfig {
    /// Default native protocol address.
    pub const DEFAULT_NATIVE_ADDR: &'static str = "127.0.0.1:7400";
    /// Default HTTP address.
    pub const DEFAULT_HTTP_ADDR: &'static str = "127.0.0.1:7480";
    /// Default data directory.
    pub const DEFAULT_DATA_DIR: &'static str = "./weir-data";

    /// A config for tests: a given data directory, ephemeral loopback ports, defaults otherwise.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> ServerConfig {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        ServerConfig {
            data_dir: data_dir.into(),
            native_addr: any,
            http_addr: any,
            ..ServerConfig::default()
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            data_dir: PathBuf::from(Self::DEFAULT_DATA_DIR),
            native_addr: SocketAddr::from(([127, 0, 0, 1], 7400)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 7480)),
            broker: BrokerOptions::default(),
            max_connections: 1024,
            max_http_body_bytes: 64 * 1024 * 1024,
            http_header_read_timeout: Duration::from_secs(10),
            auth: None,
            insecure: false,
            tls: None,
        }
    }
}

/// A started server. Drop it only after [`RunningServer::shutdown`] for a clean stop.
#[derive(Debug)]
pub struct RunningServer {
    native_addr: SocketAddr,
    http_addr: SocketAddr,
    broker: Arc<Broker>,
    shutdown_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Opens the storage under `config.data_dir`, recovers the broker, binds both listeners and starts
/// serving. Returns once the listeners are bound (so the addresses are known). With
/// `config.tls`, the certificate and key are loaded first: an unreadable or invalid file fails
/// the start with an error naming it ([`tls::TlsError`]).
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    let exposed = [config.native_addr, config.http_addr]
        .into_iter()
        .filter(|a| !a.ip().is_loopback())
        .collect::<Vec<_>>();
    if !exposed.is_empty() && config.auth.is_none() && !config.insecure {
        anyhow::bail!(
            "refusing to listen on {exposed:?} (not loopback) without authentication: \
             give a token file (--auth-file) or, knowingly, --insecure"
        );
    }
    let tls = config.tls.as_ref().map(tls::load).transpose()?;
    if !exposed.is_empty() && tls.is_none() {
        tracing::warn!(
            ?exposed,
            "listening beyond loopback without TLS: tokens and messages cross the network in \
             clear (give --tls-cert and --tls-key)"
        );
    }
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let store = weir_log::FileStore::open(&config.data_dir, weir_log::FileStoreOptions::default())
        .with_context(|| format!("opening storage in {}", config.data_dir.display()))?;
    let store: Arc<dyn weir_store::Store> = Arc::new(store);
    let broker = Broker::open(store.clone(), Arc::new(SystemClock), config.broker.clone())
        .context("recovering the broker's queues")?;
    let broker = Arc::new(broker);
    let (task_service, scheduler) = open_tasks(&broker, &store)?;
    let metrics = Arc::new(Metrics::with_store(store.clone()));

    let native_listener = tokio::net::TcpListener::bind(config.native_addr)
        .await
        .with_context(|| {
            format!(
                "binding the native protocol listener on {}",
                config.native_addr
            )
        })?;
    let http_listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("binding the HTTP listener on {}", config.http_addr))?;
    let native_addr = native_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(tick_loop(broker.clone(), shutdown_rx.clone())));
    tasks.push(tokio::spawn(tasks_tick_loop(
        task_service.clone(),
        scheduler.clone(),
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(native::serve(
        native_listener,
        native::Services {
            broker: broker.clone(),
            tasks: task_service.clone(),
            metrics: metrics.clone(),
        },
        native::NativeLimits {
            max_connections: config.max_connections,
            max_body_bytes: config.broker.max_body_bytes,
            ..native::NativeLimits::default()
        },
        config.auth.clone(),
        tls.as_ref().map(|t| t.native.clone()),
        shutdown_rx.clone(),
    )));
    let state = http::AppState::new(
        broker.clone(),
        metrics,
        config.max_http_body_bytes,
        task_service,
        scheduler,
    );
    tasks.push(tokio::spawn(http::serve_with_tls(
        http_listener,
        state,
        http::HttpServeLimits {
            max_connections: config.max_connections,
            header_read_timeout: config.http_header_read_timeout,
        },
        config.auth.clone(),
        tls.map(|t| t.http),
        shutdown_rx,
    )));
    tracing::info!(
        %native_addr,
        %http_addr,
        tls = config.tls.is_some(),
        data_dir = %config.data_dir.display(),
        "weir is serving"
    );
    Ok(RunningServer {
        native_addr,
        http_addr,
        broker,
        shutdown_tx,
        tasks,
    })
}

impl RunningServer {
    /// The bound native protocol address.
    pub fn native_addr(&self) -> SocketAddr {
        self.native_addr
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The broker behind both listeners.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops accepting, lets in-flight requests finish (bounded by a grace period), and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        let grace = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(grace);
        for task in self.tasks {
            tokio::select! {
                _ = task => {}
                _ = &mut grace => { tracing::warn!("grace period over; stopping anyway"); break; }
            }
        }
        tracing::info!("weir stopped");
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn wait(self) {
        shutdown_signal().await;
        tracing::info!("shutdown signal received");
        self.shutdown().await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

async fn tick_loop(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(TICK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => break,
        }
        let b = broker.clone();
        // tick may write a snapshot or delete segments: keep that off the async workers.
        if let Err(e) = tokio::task::spawn_blocking(move || b.tick()).await {
            tracing::error!("broker tick panicked: {e}");
        }
        for event in broker.events() {
            tracing::info!(?event, "broker event");
        }
    }
}

/// Opens the task service and the scheduler over the broker's store (journals `tasks/state` and
/// `schedules/state`).
fn open_tasks(
    broker: &Arc<Broker>,
    store: &Arc<dyn weir_store::Store>,
) -> anyhow::Result<(Arc<weir_tasks::TaskService>, Arc<weir_tasks::Scheduler>)> {
    let tasks = Arc::new(
        weir_tasks::TaskService::open(
            broker.clone(),
            store.clone(),
            Arc::new(SystemClock),
            weir_tasks::TaskOptions::default(),
        )
        .context("recovering tasks")?,
    );
    let scheduler = Arc::new(
        weir_tasks::Scheduler::open(
            broker.clone(),
            tasks.clone(),
            store.clone(),
            Arc::new(SystemClock),
        )
        .context("recovering schedules")?,
    );
    Ok((tasks, scheduler))
}

/// The task service's and the scheduler's periodic work (lease expiry, TTL, due ticks), at the
/// broker's pace.
async fn tasks_tick_loop(
    tasks: Arc<weir_tasks::TaskService>,
    scheduler: Arc<weir_tasks::Scheduler>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(TICK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shutdown.changed() => break,
        }
        tasks.tick().await;
        scheduler.tick().await;
    }
}
