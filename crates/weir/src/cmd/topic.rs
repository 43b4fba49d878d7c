//! `weir topic create|list|stats|delete|subscribe|unsubscribe|publish|consume`.
//!
//! A topic stores each message once; every subscription is a full queue over it
//! (`docs/topics-and-streams.md`). Publish and consume behave like `weir publish` / `weir consume`.

use std::io::BufRead;
use std::time::Instant;

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::http_client::Api;
use super::messages::{consume_loop, ConsumeFlags, MessageFlags};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic, or update its config.
    Create {
        /// Topic name: [A-Za-z0-9_.-]{1,128}, not starting with '.'.
        name: String,
        /// Dedup window of client-supplied message ids.
        #[arg(long)]
        dedup_window_ms: Option<u64>,
    },
    /// List topics with their subscriptions and the slowest one.
    List,
    /// Show one topic's stats, config and every subscription's stats as JSON.
    Stats {
        /// Topic name.
        name: String,
    },
    /// Delete a topic, its subscriptions and its data.
    Delete {
        /// Topic name.
        name: String,
    },
    /// Create a subscription (a full queue over the topic), or update its config.
    Subscribe {
        /// Topic name.
        topic: String,
        /// Subscription name.
        subscription: String,
        /// Where a new subscription starts: only messages published from now on, or the oldest
        /// message the topic still retains. Ignored when the subscription exists.
        #[arg(long, value_enum)]
        start: Option<Start>,
        #[command(flatten)]
        config: SubscriptionConfig,
    },
    /// Delete a subscription and its state.
    Unsubscribe {
        /// Topic name.
        topic: String,
        /// Subscription name.
        subscription: String,
    },
    /// Publish messages (arguments or stdin lines) to every subscription; waits for the confirms.
    Publish(PublishArgs),
    /// Receive from a subscription as JSON lines, acknowledging each.
    Consume(ConsumeArgs),
}

/// `--start` of `weir topic subscribe`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Start {
    /// Only messages published after the subscription was created.
    Now,
    /// The oldest message the topic still retains.
    Oldest,
}

/// A subscription's queue config (the flags of `weir queue create`).
#[derive(Debug, clap::Args)]
pub(crate) struct SubscriptionConfig {
    /// Most messages held.
    #[arg(long)]
    max_depth: Option<u64>,
    /// Most body bytes held.
    #[arg(long)]
    max_bytes: Option<u64>,
    /// Refuse publishes when the predicted wait exceeds this.
    #[arg(long)]
    max_latency_ms: Option<u64>,
    /// Default lease.
    #[arg(long)]
    lease_ms: Option<u64>,
    /// Deliveries before dead-lettering.
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Dead-letter queue (default `<topic>.<subscription>.dlq`).
    #[arg(long)]
    dead_letter_queue: Option<String>,
    /// At most one message per key in flight.
    #[arg(long)]
    ordered_by_key: bool,
    /// Any other config keys as a JSON object, e.g. '{"backoff_base_ms": 500}'.
    #[arg(long)]
    config: Option<String>,
}

impl SubscriptionConfig {
    fn into_body(self, start: Option<Start>) -> anyhow::Result<Value> {
        let mut body: Map<String, Value> = match self.config {
            Some(text) => serde_json::from_str(&text).context("--config is not a JSON object")?,
            None => Map::new(),
        };
        let mut set = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                body.insert(k.to_string(), v);
            }
        };
        set("max_depth", self.max_depth.map(Value::from));
        set("max_bytes", self.max_bytes.map(Value::from));
        set("max_latency_ms", self.max_latency_ms.map(Value::from));
        set("lease_ms", self.lease_ms.map(Value::from));
        set("max_attempts", self.max_attempts.map(Value::from));
        set("dead_letter_queue", self.dead_letter_queue.map(Value::from));
        set(
            "ordered_by_key",
            self.ordered_by_key.then_some(Value::Bool(true)),
        );
        set(
            "start",
            start.map(|s| match s {
                Start::Now => Value::from("now"),
                Start::Oldest => Value::from("oldest"),
            }),
        );
        Ok(Value::Object(body))
    }
}

/// Flags of `weir topic publish`.
#[derive(Debug, clap::Args)]
pub(crate) struct PublishArgs {
    /// Topic name.
    topic: String,
    /// Message bodies; with none, one message per line of standard input.
    bodies: Vec<String>,
    #[command(flatten)]
    flags: MessageFlags,
}

/// Flags of `weir topic consume`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsumeArgs {
    /// Topic name.
    topic: String,
    /// Subscription name.
    subscription: String,
    #[command(flatten)]
    flags: ConsumeFlags,
}

/// The bodies given as arguments, else one per line of standard input.
pub(crate) fn bodies_or_stdin(bodies: Vec<String>) -> anyhow::Result<Vec<String>> {
    if !bodies.is_empty() {
        return Ok(bodies);
    }
    std::io::stdin()
        .lock()
        .lines()
        .collect::<Result<_, _>>()
        .context("reading standard input")
}

pub(crate) async fn run(command: TopicCommand, api: &Api) -> anyhow::Result<()> {
    match command {
        TopicCommand::Create {
            name,
            dedup_window_ms,
        } => {
            let mut body = json!({});
            if let Some(w) = dedup_window_ms {
                body["dedup_window_ms"] = json!(w);
            }
            let out = api
                .call(Method::PUT, &format!("/v1/topics/{name}"), Some(&body))
                .await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        TopicCommand::List => {
            let out = api.call(Method::GET, "/v1/topics", None).await?;
            println!(
                "{:<40} {:>6} {:>12} {:>12}  SLOWEST",
                "TOPIC", "SUBS", "PUBLISHED", "DISK_BYTES"
            );
            for t in out["topics"].as_array().into_iter().flatten() {
                let subs = t["subscriptions"].as_array().map_or(0, Vec::len);
                println!(
                    "{:<40} {:>6} {:>12} {:>12}  {}",
                    t["name"].as_str().unwrap_or("?"),
                    subs,
                    t["published"],
                    t["disk_bytes"],
                    t["slowest_subscription"].as_str().unwrap_or("-"),
                );
            }
        }
        TopicCommand::Stats { name } => {
            let out = api
                .call(Method::GET, &format!("/v1/topics/{name}"), None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        TopicCommand::Delete { name } => {
            api.call(Method::DELETE, &format!("/v1/topics/{name}"), None)
                .await?;
            println!("deleted {name}");
        }
        TopicCommand::Subscribe {
            topic,
            subscription,
            start,
            config,
        } => {
            let body = config.into_body(start)?;
            let out = api
                .call(
                    Method::PUT,
                    &format!("/v1/topics/{topic}/subscriptions/{subscription}"),
                    Some(&body),
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        TopicCommand::Unsubscribe {
            topic,
            subscription,
        } => {
            api.call(
                Method::DELETE,
                &format!("/v1/topics/{topic}/subscriptions/{subscription}"),
                None,
            )
            .await?;
            println!("deleted {topic}/{subscription}");
        }
        TopicCommand::Publish(args) => publish(args, api).await?,
        TopicCommand::Consume(args) => consume(args, api).await?,
    }
    Ok(())
}

async fn publish(args: PublishArgs, api: &Api) -> anyhow::Result<()> {
    args.flags.check_batch()?;
    let bodies = bodies_or_stdin(args.bodies)?;
    let started = Instant::now();
    let path = format!("/v1/topics/{}/messages", args.topic);
    let (stored, duplicates) = args.flags.publish(api, &path, &bodies).await?;
    eprintln!(
        "confirmed {stored} messages ({duplicates} duplicates) to topic {} in {:.1?}",
        args.topic,
        started.elapsed()
    );
    Ok(())
}

async fn consume(args: ConsumeArgs, api: &Api) -> anyhow::Result<()> {
    let base = format!(
        "/v1/topics/{}/subscriptions/{}",
        args.topic, args.subscription
    );
    consume_loop(api, &base, &args.flags).await
}
