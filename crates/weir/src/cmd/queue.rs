//! `weir queue create|list|stats|purge|delete`.

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::http_client::Api;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum QueueCommand {
    /// Create a queue (and its `<name>.dlq`), or update its config.
    Create {
        /// Queue name: [A-Za-z0-9_.-]{1,128}, not starting with '.'.
        name: String,
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
        /// Dead-letter queue (default `<name>.dlq`).
        #[arg(long)]
        dead_letter_queue: Option<String>,
        /// At most one message per key in flight.
        #[arg(long)]
        ordered_by_key: bool,
        /// Any other config keys as a JSON object, e.g. '{"backoff_base_ms": 500}'.
        #[arg(long)]
        config: Option<String>,
    },
    /// List queues with their depth.
    List,
    /// Show one queue's stats and config as JSON.
    Stats {
        /// Queue name.
        name: String,
    },
    /// Drop a queue's ready and delayed messages.
    Purge {
        /// Queue name.
        name: String,
    },
    /// Delete a queue and its data.
    Delete {
        /// Queue name.
        name: String,
    },
}

pub(crate) async fn run(command: QueueCommand, api: &Api) -> anyhow::Result<()> {
    match command {
        QueueCommand::Create {
            name,
            max_depth,
            max_bytes,
            max_latency_ms,
            lease_ms,
            max_attempts,
            dead_letter_queue,
            ordered_by_key,
            config,
        } => {
            let mut body: Map<String, Value> = match config {
                Some(text) => {
                    serde_json::from_str(&text).context("--config is not a JSON object")?
                }
                None => Map::new(),
            };
            let mut set = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    body.insert(k.to_string(), v);
                }
            };
            set("max_depth", max_depth.map(Value::from));
            set("max_bytes", max_bytes.map(Value::from));
            set("max_latency_ms", max_latency_ms.map(Value::from));
            set("lease_ms", lease_ms.map(Value::from));
            set("max_attempts", max_attempts.map(Value::from));
            set("dead_letter_queue", dead_letter_queue.map(Value::from));
            set(
                "ordered_by_key",
                ordered_by_key.then_some(Value::Bool(true)),
            );
            let out = api
                .call(
                    Method::PUT,
                    &format!("/v1/queues/{name}"),
                    Some(&Value::Object(body)),
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        QueueCommand::List => {
            let out = api.call(Method::GET, "/v1/queues", None).await?;
            println!(
                "{:<40} {:>10} {:>10} {:>10} {:>10}",
                "QUEUE", "READY", "IN_FLIGHT", "DELAYED", "TOTAL"
            );
            for q in out["queues"].as_array().into_iter().flatten() {
                println!(
                    "{:<40} {:>10} {:>10} {:>10} {:>10}",
                    q["name"].as_str().unwrap_or("?"),
                    q["ready"],
                    q["in_flight"],
                    q["delayed"],
                    q["total"]
                );
            }
        }
        QueueCommand::Stats { name } => {
            let out = api
                .call(Method::GET, &format!("/v1/queues/{name}"), None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        QueueCommand::Purge { name } => {
            let out = api
                .call(
                    Method::POST,
                    &format!("/v1/queues/{name}/purge"),
                    Some(&json!({})),
                )
                .await?;
            println!("purged {}", out["purged"]);
        }
        QueueCommand::Delete { name } => {
            api.call(Method::DELETE, &format!("/v1/queues/{name}"), None)
                .await?;
            println!("deleted {name}");
        }
    }
    Ok(())
}
