//! Command-line parsing and dispatch.

mod http_client;
mod messages;
mod queue;
mod serve;

use clap::{Parser, Subcommand};

/// Weir: a durable message broker and task queue.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a running server is, for the client commands.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// The server's HTTP address.
    #[arg(long, env = "WEIR_HTTP_ADDR", default_value = weir_server::ServerConfig::DEFAULT_HTTP_ADDR, global = true)]
    http_addr: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker with embedded storage.
    Serve(serve::ServeArgs),
    /// Create, inspect, purge and delete queues.
    Queue {
        #[command(subcommand)]
        command: queue::QueueCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Publish messages (arguments, stdin lines or a file) and wait for their confirms.
    Publish {
        #[command(flatten)]
        args: messages::PublishArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Transactional outbox: create the table, relay committed rows into Weir.
    Outbox {
        #[command(subcommand)]
        command: weir_outbox::cli::OutboxCommand,
    },
    /// Receive messages as JSON lines, acknowledging each.
    Consume {
        #[command(flatten)]
        args: messages::ConsumeArgs,
        #[command(flatten)]
        target: Target,
    },
}

pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Queue { command, target } => {
            queue::run(command, &http_client::Api::new(&target.http_addr)?).await
        }
        Command::Publish { args, target } => {
            messages::publish(args, &http_client::Api::new(&target.http_addr)?).await
        }
        Command::Outbox { command } => weir_outbox::cli::run(command).await,
        Command::Consume { args, target } => {
            messages::consume(args, &http_client::Api::new(&target.http_addr)?).await
        }
    }
}
