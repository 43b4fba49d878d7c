//! Command-line parsing and dispatch.

mod http_client;
mod messages;
mod queue;
mod serve;
mod stream;
mod topic;

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
    /// Bearer token, when the server has authentication on.
    #[arg(long, env = "WEIR_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
}

impl Target {
    fn api(&self) -> anyhow::Result<http_client::Api> {
        http_client::Api::new(&self.http_addr, self.token.clone())
    }
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
    /// Submit tasks, follow their state, cancel them.
    Task {
        #[command(subcommand)]
        command: weir_tasks::cli::TaskCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Create, list, pause, resume and delete schedules.
    Schedule {
        #[command(subcommand)]
        command: weir_tasks::cli::ScheduleCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Measure throughput and latency against a running (or spawned) Weir.
    Bench(weir_bench::cli::BenchArgs),
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
    /// Topics (every subscription gets each message): create, subscribe, publish, consume.
    Topic {
        #[command(subcommand)]
        command: topic::TopicCommand,
        #[command(flatten)]
        target: Target,
    },
    /// Streams (partitioned, replayable logs): create, produce, consume, consumer groups.
    Stream {
        #[command(subcommand)]
        command: stream::StreamCommand,
        #[command(flatten)]
        target: Target,
    },
}

pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Queue { command, target } => queue::run(command, &target.api()?).await,
        Command::Publish { args, target } => messages::publish(args, &target.api()?).await,
        Command::Task { command, target } => {
            let api = target.api()?;
            Ok(weir_tasks::cli::run_task(command, api.tasks()).await?)
        }
        Command::Schedule { command, target } => {
            let api = target.api()?;
            Ok(weir_tasks::cli::run_schedule(command, api.tasks()).await?)
        }
        Command::Bench(args) => weir_bench::cli::run(args).await,
        Command::Outbox { command } => weir_outbox::cli::run(command).await,
        Command::Consume { args, target } => messages::consume(args, &target.api()?).await,
        Command::Topic { command, target } => topic::run(command, &target.api()?).await,
        Command::Stream { command, target } => stream::run(command, target.api()?).await,
    }
}
