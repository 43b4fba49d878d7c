//! `weir publish` and `weir consume`.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};

use super::http_client::Api;

/// Flags of `weir publish`.
#[derive(Debug, clap::Args)]
pub(crate) struct PublishArgs {
    /// Queue name.
    queue: String,
    /// Message bodies; with none and no --file, one message per line of standard input.
    bodies: Vec<String>,
    /// Read one message per line from this file.
    #[arg(long, conflicts_with = "bodies")]
    file: Option<PathBuf>,
    #[command(flatten)]
    flags: MessageFlags,
}

/// The message flags `weir publish` and `weir topic publish` share.
#[derive(Debug, clap::Args)]
pub(crate) struct MessageFlags {
    /// Ordering key for every message.
    #[arg(long)]
    key: Option<String>,
    /// Priority 0–9 for every message.
    #[arg(long, default_value_t = 0)]
    priority: u8,
    /// Delay delivery by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// A header `name=value`; repeatable.
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Message id (dedup key); only with a single message.
    #[arg(long)]
    id: Option<String>,
    /// Messages per request (1–1000).
    #[arg(long, default_value_t = 100)]
    batch: usize,
}

impl MessageFlags {
    /// Refuses a batch size outside 1–1000 (checked before any body is read).
    pub(crate) fn check_batch(&self) -> anyhow::Result<()> {
        if !(1..=1000).contains(&self.batch) {
            bail!("--batch must be between 1 and 1000");
        }
        Ok(())
    }

    /// Publishes `bodies` to `path` with these flags; returns (stored, duplicates).
    pub(crate) async fn publish(
        self,
        api: &Api,
        path: &str,
        bodies: &[String],
    ) -> anyhow::Result<(u64, u64)> {
        if self.id.is_some() && bodies.len() != 1 {
            bail!("--id needs exactly one message");
        }
        let headers: BTreeMap<String, String> = self.headers.into_iter().collect();
        let fields = MessageFields {
            priority: self.priority,
            delay_ms: self.delay_ms,
            headers: &headers,
            key: self.key.as_deref(),
            id: self.id.as_deref(),
        };
        publish_in_batches(api, path, bodies, self.batch, &fields).await
    }
}

pub(crate) fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("header {s:?} is not name=value"))
}

/// Flags of `weir consume`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsumeArgs {
    /// Queue name.
    queue: String,
    #[command(flatten)]
    flags: ConsumeFlags,
}

/// The flags `weir consume` and `weir topic consume` share.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsumeFlags {
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this long without a message (milliseconds); default: wait forever.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Leave messages unacknowledged (they are redelivered after their lease).
    #[arg(long)]
    no_ack: bool,
    /// Messages per receive (1–1000).
    #[arg(long, default_value_t = 100)]
    max: u64,
}

pub(crate) async fn publish(args: PublishArgs, api: &Api) -> anyhow::Result<()> {
    args.flags.check_batch()?;
    let bodies: Vec<String> = if !args.bodies.is_empty() {
        args.bodies
    } else if let Some(path) = &args.file {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        std::io::BufReader::new(f)
            .lines()
            .collect::<Result<_, _>>()
            .with_context(|| format!("reading {}", path.display()))?
    } else {
        std::io::stdin()
            .lock()
            .lines()
            .collect::<Result<_, _>>()
            .context("reading standard input")?
    };
    let started = Instant::now();
    let path = format!("/v1/queues/{}/messages", args.queue);
    let (stored, duplicates) = args.flags.publish(api, &path, &bodies).await?;
    eprintln!(
        "confirmed {stored} messages ({duplicates} duplicates) in {:.1?}",
        started.elapsed()
    );
    Ok(())
}

/// Per-message fields shared by every message of one `publish` command.
#[derive(Debug)]
pub(crate) struct MessageFields<'a> {
    pub(crate) priority: u8,
    pub(crate) delay_ms: u64,
    pub(crate) headers: &'a BTreeMap<String, String>,
    pub(crate) key: Option<&'a str>,
    pub(crate) id: Option<&'a str>,
}

/// Publishes `bodies` to `path` (a queue's or topic's `/messages`) in batches of `batch`, waiting
/// for each confirm; returns (stored, duplicates).
pub(crate) async fn publish_in_batches(
    api: &Api,
    path: &str,
    bodies: &[String],
    batch: usize,
    fields: &MessageFields<'_>,
) -> anyhow::Result<(u64, u64)> {
    let (mut stored, mut duplicates) = (0u64, 0u64);
    for chunk in bodies.chunks(batch) {
        let messages: Vec<Value> = chunk
            .iter()
            .map(|body| {
                let mut m = json!({ "body": body, "priority": fields.priority,
                                    "delay_ms": fields.delay_ms, "headers": fields.headers });
                if let Some(k) = fields.key {
                    m["key"] = json!(k);
                }
                if let Some(id) = fields.id {
                    m["id"] = json!(id);
                }
                m
            })
            .collect();
        let out = api
            .call(Method::POST, path, Some(&json!({ "messages": messages })))
            .await?;
        for m in out["messages"].as_array().into_iter().flatten() {
            if m["duplicate"].as_bool() == Some(true) {
                duplicates += 1;
            } else {
                stored += 1;
            }
        }
    }
    Ok((stored, duplicates))
}

pub(crate) async fn consume(args: ConsumeArgs, api: &Api) -> anyhow::Result<()> {
    consume_loop(api, &format!("/v1/queues/{}", args.queue), &args.flags).await
}

/// Receives from `base` (a queue's or a subscription's path) with `{base}/receive`, prints each
/// message as a JSON line and, unless `--no-ack`, acknowledges the batch with `{base}/ack`; stops
/// after `--count` messages or `--timeout-ms` without one.
pub(crate) async fn consume_loop(
    api: &Api,
    base: &str,
    flags: &ConsumeFlags,
) -> anyhow::Result<()> {
    if !(1..=1000).contains(&flags.max) {
        bail!("--max must be between 1 and 1000");
    }
    let mut seen = 0u64;
    let mut last_message = Instant::now();
    loop {
        if flags.count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
        let max = flags.count.map_or(flags.max, |c| (c - seen).min(flags.max));
        let mut wait_ms = 5_000;
        if let Some(t) = flags.timeout_ms {
            let left = t.saturating_sub(last_message.elapsed().as_millis() as u64);
            if left == 0 {
                eprintln!("no message for {t} ms; {seen} consumed");
                return Ok(());
            }
            wait_ms = wait_ms.min(left);
        }
        let out = api
            .call(
                Method::POST,
                &format!("{base}/receive"),
                Some(&json!({ "max": max, "wait_ms": wait_ms })),
            )
            .await?;
        let messages = out["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            continue;
        }
        last_message = Instant::now();
        let mut receipts = Vec::new();
        for m in &messages {
            println!("{}", serde_json::to_string(m)?);
            receipts.push(m["receipt"].clone());
        }
        seen += messages.len() as u64;
        if !flags.no_ack {
            api.call(
                Method::POST,
                &format!("{base}/ack"),
                Some(&json!({ "receipts": receipts })),
            )
            .await?;
        }
        tokio::task::yield_now().await;
    }
}
