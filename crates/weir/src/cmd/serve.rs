//! `weir serve`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use weir_server::ServerConfig;
use weir_store::{FsyncPolicy, LogConfig};

/// Flags of `weir serve`; each also from a `WEIR_*` variable.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Data directory.
    #[arg(long, env = "WEIR_DATA_DIR", default_value = ServerConfig::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Native protocol address.
    #[arg(long, env = "WEIR_ADDR", default_value = ServerConfig::DEFAULT_NATIVE_ADDR)]
    addr: SocketAddr,
    /// HTTP address.
    #[arg(long, env = "WEIR_HTTP_ADDR", default_value = ServerConfig::DEFAULT_HTTP_ADDR)]
    http_addr: SocketAddr,
    /// Durability: `always` (fsync before confirming, group commit), `interval:<ms>`, or `never`.
    #[arg(long, env = "WEIR_FSYNC", default_value = "always", value_parser = parse_fsync)]
    fsync: FsyncPolicy,
    /// Largest message body, in bytes.
    #[arg(long, env = "WEIR_MAX_BODY_BYTES", default_value_t = weir_proto::limits::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Segment size, in bytes.
    #[arg(long, env = "WEIR_SEGMENT_BYTES", default_value_t = LogConfig::DEFAULT_SEGMENT_BYTES)]
    segment_bytes: u64,
    /// Token file (JSON) enabling authentication; see `weir_server::auth`.
    #[arg(long, env = "WEIR_AUTH_FILE")]
    auth_file: Option<PathBuf>,
    /// Allow a non-loopback listener without authentication.
    #[arg(long, env = "WEIR_INSECURE")]
    insecure: bool,
    /// Most concurrent connections per listener.
    #[arg(long, env = "WEIR_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// TLS certificate chain (PEM, leaf first): with --tls-key, both listeners accept TLS only.
    #[arg(long, env = "WEIR_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1) of the --tls-cert leaf.
    #[arg(long, env = "WEIR_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    match s {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        other => match other.strip_prefix("interval:").map(str::parse::<u64>) {
            Some(Ok(ms)) if ms > 0 => Ok(FsyncPolicy::Interval { ms }),
            _ => Err(format!(
                "unknown fsync policy {other:?}: use always, never or interval:<ms>"
            )),
        },
    }
}

pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = ServerConfig {
        data_dir: args.data_dir,
        native_addr: args.addr,
        http_addr: args.http_addr,
        max_connections: args.max_connections,
        insecure: args.insecure,
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(weir_server::tls::TlsConfig::new(cert, key)),
            // clap requires both or neither.
            _ => None,
        },
        ..ServerConfig::default()
    };
    if let Some(path) = &args.auth_file {
        config.auth = Some(std::sync::Arc::new(weir_server::auth::AuthConfig::load(
            path,
        )?));
    }
    if args.max_body_bytes > weir_proto::limits::MAX_BODY_BYTES_CEILING {
        anyhow::bail!("--max-body-bytes is at most 16 MiB");
    }
    config.broker.max_body_bytes = args.max_body_bytes;
    config.broker.log.fsync = args.fsync;
    config.broker.log.segment_bytes = args.segment_bytes;
    let tls = config.tls.is_some();
    let server = weir_server::start(config).await.context("starting weir")?;
    eprintln!(
        "weir serving: native {}{} · http {}://{}",
        server.native_addr(),
        if tls { " (TLS)" } else { "" },
        if tls { "https" } else { "http" },
        server.http_addr()
    );
    server.wait().await;
    Ok(())
}
