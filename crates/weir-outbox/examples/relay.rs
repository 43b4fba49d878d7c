//! The relay of the outbox example, as a standalone program: the same arguments and code as
//! `weir outbox relay` (see `docs/outbox.md`).
//!
//! ```text
//! cargo run -p weir-outbox --example relay -- --database-url "host=127.0.0.1 user=postgres dbname=test"
//! ```

use clap::Parser;

#[derive(Debug, Parser)]
struct Args {
    #[command(flatten)]
    relay: weir_outbox::cli::RelayArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    weir_outbox::cli::run_relay(Args::parse().relay).await
}
