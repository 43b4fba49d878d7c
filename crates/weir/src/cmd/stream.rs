//! `weir stream create|list|stats|delete|produce|consume|groups`.
//!
//! A stream is a partitioned, replayable log read by offset; consumer groups commit offsets
//! (`docs/topics-and-streams.md`). Reads consume nothing, so `consume` never acknowledges.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::http_client::Api;
use super::messages::parse_header;
use super::topic::bodies_or_stdin;

/// How long one following read long-polls (the server allows up to 20 s).
const FOLLOW_WAIT_MS: u64 = 10_000;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum StreamCommand {
    /// Create a stream, or update its retention (the partition count is fixed).
    Create {
        /// Stream name: [A-Za-z0-9_.-]{1,128}, not starting with '.'.
        name: String,
        /// Partition count (1–256; default 1).
        #[arg(long)]
        partitions: Option<u32>,
        /// Retention by age, in milliseconds.
        #[arg(long)]
        retention_ms: Option<u64>,
        /// Retention by size per partition, in bytes.
        #[arg(long)]
        retention_bytes: Option<u64>,
    },
    /// List streams with their partitions, records and groups.
    List,
    /// Show one stream's config and per-partition stats as JSON.
    Stats {
        /// Stream name.
        name: String,
    },
    /// Delete a stream, its groups and its data.
    Delete {
        /// Stream name.
        name: String,
    },
    /// Append records (arguments or stdin lines); prints each record's partition and offset.
    Produce(ProduceArgs),
    /// Read records as JSON lines (reads consume nothing; replay from any offset).
    Consume(ConsumeArgs),
    /// Consumer groups: committed offset, end and lag per partition, and the members.
    Groups {
        /// Stream name.
        stream: String,
        /// One group; default: every group of the stream.
        group: Option<String>,
        /// Print the server's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Flags of `weir stream produce`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProduceArgs {
    /// Stream name.
    stream: String,
    /// Record bodies; with none, one record per line of standard input.
    bodies: Vec<String>,
    /// Key of every record: it picks the partition (`xxh3_64(key) % partitions`); without a
    /// key records are spread round-robin.
    #[arg(long)]
    key: Option<String>,
    /// A header `name=value`; repeatable.
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Records per request (1–1000).
    #[arg(long, default_value_t = 100)]
    batch: usize,
}

/// Flags of `weir stream consume`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsumeArgs {
    /// Stream name.
    stream: String,
    /// Read this partition only; default: every partition.
    #[arg(long)]
    partition: Option<u32>,
    /// Start at this offset (in every partition read); default 0, i.e. the oldest retained.
    #[arg(long, conflicts_with = "timestamp_ms")]
    offset: Option<u64>,
    /// Start at the first record at or after this time (milliseconds since the epoch).
    #[arg(long)]
    timestamp_ms: Option<u64>,
    /// Stop after this many records.
    #[arg(long)]
    count: Option<u64>,
    /// Keep reading new records as they arrive (long poll) instead of stopping at the end.
    #[arg(long)]
    follow: bool,
    /// Records per read (1–1000).
    #[arg(long, default_value_t = 100)]
    max: u64,
}

pub(crate) async fn run(command: StreamCommand, api: Api) -> anyhow::Result<()> {
    match command {
        StreamCommand::Create {
            name,
            partitions,
            retention_ms,
            retention_bytes,
        } => {
            let mut body = json!({});
            if let Some(p) = partitions {
                body["partitions"] = json!(p);
            }
            if let Some(r) = retention_ms {
                body["retention_ms"] = json!(r);
            }
            if let Some(r) = retention_bytes {
                body["retention_bytes"] = json!(r);
            }
            let out = api
                .call(Method::PUT, &format!("/v1/streams/{name}"), Some(&body))
                .await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        StreamCommand::List => {
            let out = api.call(Method::GET, "/v1/streams", None).await?;
            println!(
                "{:<40} {:>10} {:>12} {:>12}  GROUPS",
                "STREAM", "PARTITIONS", "RECORDS", "DISK_BYTES"
            );
            for s in out["streams"].as_array().into_iter().flatten() {
                let (mut records, mut bytes) = (0u64, 0u64);
                for p in s["partition_stats"].as_array().into_iter().flatten() {
                    let end = p["end_offset"].as_u64().unwrap_or(0);
                    records += end.saturating_sub(p["start_offset"].as_u64().unwrap_or(0));
                    bytes += p["disk_bytes"].as_u64().unwrap_or(0);
                }
                let groups: Vec<&str> = s["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "{:<40} {:>10} {:>12} {:>12}  {}",
                    s["name"].as_str().unwrap_or("?"),
                    s["partitions"],
                    records,
                    bytes,
                    if groups.is_empty() {
                        "-".to_string()
                    } else {
                        groups.join(",")
                    }
                );
            }
        }
        StreamCommand::Stats { name } => {
            let out = api
                .call(Method::GET, &format!("/v1/streams/{name}"), None)
                .await?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        StreamCommand::Delete { name } => {
            api.call(Method::DELETE, &format!("/v1/streams/{name}"), None)
                .await?;
            println!("deleted {name}");
        }
        StreamCommand::Produce(args) => produce(args, &api).await?,
        StreamCommand::Consume(args) => consume(args, Arc::new(api)).await?,
        StreamCommand::Groups {
            stream,
            group,
            json,
        } => groups(&stream, group, json, &api).await?,
    }
    Ok(())
}

async fn produce(args: ProduceArgs, api: &Api) -> anyhow::Result<()> {
    if !(1..=1000).contains(&args.batch) {
        bail!("--batch must be between 1 and 1000");
    }
    let bodies = bodies_or_stdin(args.bodies)?;
    let headers: BTreeMap<String, String> = args.headers.into_iter().collect();
    let started = Instant::now();
    let mut appended = 0u64;
    for chunk in bodies.chunks(args.batch) {
        let records: Vec<Value> = chunk
            .iter()
            .map(|body| {
                let mut r = json!({ "body": body, "headers": headers });
                if let Some(k) = &args.key {
                    r["key"] = json!(k);
                }
                r
            })
            .collect();
        let out = api
            .call(
                Method::POST,
                &format!("/v1/streams/{}/records", args.stream),
                Some(&json!({ "records": records })),
            )
            .await?;
        for r in out["records"].as_array().into_iter().flatten() {
            println!(
                "{}",
                json!({ "partition": r["partition"], "offset": r["offset"] })
            );
            appended += 1;
        }
    }
    eprintln!(
        "appended {appended} records to stream {} in {:.1?}",
        args.stream,
        started.elapsed()
    );
    Ok(())
}

/// Where a partition's read starts.
#[derive(Debug, Clone, Copy)]
enum ReadStart {
    Offset(u64),
    Timestamp(u64),
}

async fn consume(args: ConsumeArgs, api: Arc<Api>) -> anyhow::Result<()> {
    if !(1..=1000).contains(&args.max) {
        bail!("--max must be between 1 and 1000");
    }
    if args.count == Some(0) {
        return Ok(());
    }
    let stats = api
        .call(Method::GET, &format!("/v1/streams/{}", args.stream), None)
        .await?;
    let ends: BTreeMap<u32, u64> = stats["partition_stats"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                u32::try_from(p["partition"].as_u64()?).ok()?,
                p["end_offset"].as_u64()?,
            ))
        })
        .collect();
    // One reader per partition; each sends its records here, in partition order.
    let starts: Vec<(u32, ReadStart)> = match args.partition {
        Some(p) => {
            if !ends.contains_key(&p) {
                bail!(
                    "stream {} has no partition {p} (it has {})",
                    args.stream,
                    ends.len()
                );
            }
            let from = match (args.offset, args.timestamp_ms) {
                (_, Some(t)) => ReadStart::Timestamp(t),
                (o, None) => ReadStart::Offset(o.unwrap_or(0)),
            };
            vec![(p, from)]
        }
        // Every partition: an offset beyond a partition's end starts at its end.
        None => ends
            .iter()
            .map(|(&p, &end)| {
                let from = match (args.offset, args.timestamp_ms) {
                    (_, Some(t)) => ReadStart::Timestamp(t),
                    (o, None) => ReadStart::Offset(o.unwrap_or(0).min(end)),
                };
                (p, from)
            })
            .collect(),
    };
    let (tx, mut rx) = mpsc::channel::<anyhow::Result<Value>>(16);
    if args.follow {
        // Following: every partition long-polls at once; records are printed as they come.
        for (p, from) in starts {
            let (api, tx, stream) = (api.clone(), tx.clone(), args.stream.clone());
            tokio::spawn(async move {
                if let Err(e) = read_partition(&api, &stream, p, from, args.max, true, &tx).await {
                    let _ = tx.send(Err(e)).await;
                }
            });
        }
    } else {
        // To the end: one partition after the other, so the output is grouped by partition.
        let (api, tx, stream) = (api.clone(), tx.clone(), args.stream.clone());
        tokio::spawn(async move {
            for (p, from) in starts {
                if let Err(e) = read_partition(&api, &stream, p, from, args.max, false, &tx).await {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut seen = 0u64;
    while let Some(record) = rx.recv().await {
        println!("{}", serde_json::to_string(&record?)?);
        seen += 1;
        if args.count.is_some_and(|c| seen >= c) {
            break;
        }
    }
    Ok(())
}

/// Reads partition `p` from `from` and sends each record (with its `partition`) to `tx`: to the
/// end, or, when following, forever. Stops early when the receiver is gone.
async fn read_partition(
    api: &Api,
    stream: &str,
    p: u32,
    from: ReadStart,
    max: u64,
    follow: bool,
    tx: &mpsc::Sender<anyhow::Result<Value>>,
) -> anyhow::Result<()> {
    let mut from = from;
    loop {
        let wait_ms = if follow { FOLLOW_WAIT_MS } else { 0 };
        let start = match from {
            ReadStart::Offset(o) => format!("offset={o}"),
            ReadStart::Timestamp(t) => format!("timestamp_ms={t}"),
        };
        let out = api
            .call(
                Method::GET,
                &format!(
                    "/v1/streams/{stream}/partitions/{p}/records?{start}&max={max}&wait_ms={wait_ms}"
                ),
                None,
            )
            .await?;
        let next = out["next_offset"]
            .as_u64()
            .with_context(|| format!("partition {p}: the answer has no next_offset: {out}"))?;
        let records = out["records"].as_array().cloned().unwrap_or_default();
        if records.is_empty() && !follow {
            return Ok(());
        }
        for mut r in records {
            if let Some(obj) = r.as_object_mut() {
                obj.insert("partition".into(), p.into());
            }
            if tx.send(Ok(r)).await.is_err() {
                return Ok(());
            }
        }
        from = ReadStart::Offset(next);
    }
}

async fn groups(stream: &str, group: Option<String>, raw: bool, api: &Api) -> anyhow::Result<()> {
    let names: Vec<String> = match group {
        Some(g) => vec![g],
        None => {
            let out = api
                .call(Method::GET, &format!("/v1/streams/{stream}/groups"), None)
                .await?;
            out["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect()
        }
    };
    if names.is_empty() && !raw {
        println!("stream {stream} has no consumer groups");
        return Ok(());
    }
    let mut all = Vec::new();
    for name in &names {
        let g = api
            .call(
                Method::GET,
                &format!("/v1/streams/{stream}/groups/{name}"),
                None,
            )
            .await?;
        if raw {
            all.push(g);
            continue;
        }
        let members: Vec<String> = g["members"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| format!("{} {}", m["id"].as_str().unwrap_or("?"), m["partitions"]))
            .collect();
        println!(
            "group {name}: generation {}, lag {}, members: {}",
            g["generation"],
            g["lag"],
            if members.is_empty() {
                "none".to_string()
            } else {
                members.join(", ")
            }
        );
        println!(
            "  {:>9} {:<24} {:>12} {:>12} {:>10}",
            "PARTITION", "OWNER", "COMMITTED", "END", "LAG"
        );
        for p in g["partitions"].as_array().into_iter().flatten() {
            let committed = match p["committed"].as_u64() {
                Some(c) => c.to_string(),
                None => "-".to_string(),
            };
            println!(
                "  {:>9} {:<24} {:>12} {:>12} {:>10}",
                p["partition"],
                p["owner"].as_str().unwrap_or("-"),
                committed,
                p["end_offset"],
                p["lag"]
            );
        }
    }
    if raw {
        let out = if all.len() == 1 {
            all.remove(0)
        } else {
            json!({ "groups": all })
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}
