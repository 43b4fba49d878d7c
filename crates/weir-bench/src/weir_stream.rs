//! Weir streams as a benchmark [`StreamTarget`] (workload W5): batched appends, each answered
//! once durable, then one full read from offset 0 — over the native protocol (`Append` / `Read`
//! frames) or over HTTP (`POST …/records`, `GET …/partitions/0/records`).
//!
//! The stream has one partition, like the peers' single stream key, so the read is one ordered
//! scan and the numbers compare like for like.

use anyhow::{bail, Context as _};
use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::json;

use crate::target::{Confirm, StreamTarget};
use crate::weir::{http_ok, Transport, WeirTarget};

/// Most records one read asks for (the server's ceiling per read).
const READ_MAX: u64 = 1_000;
/// How long one read waits for records that are not there yet.
const READ_WAIT_MS: u64 = 1_000;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Deletes and re-creates stream `name` with one partition.
pub(crate) async fn prepare(target: &WeirTarget, name: &str) -> anyhow::Result<()> {
    if target.transport == Transport::Native {
        let c = target.native().await?;
        // Ignore "not found": the stream may not exist yet.
        let _ = c.delete_stream(name).await;
        let options = weir_client::StreamOptions {
            partitions: Some(1),
            ..Default::default()
        };
        c.create_stream(name, options)
            .await
            .with_context(|| format!("creating stream {name}"))?;
        return Ok(());
    }
    let h = target.http()?;
    let url = stream_url(target, name);
    let _ = h.delete(&url).send().await;
    http_ok(h.put(&url).json(&json!({ "partitions": 1 })).send().await?)
        .await
        .with_context(|| format!("PUT {url}"))?;
    Ok(())
}

/// Deletes stream `name`.
pub(crate) async fn cleanup(target: &WeirTarget, name: &str) -> anyhow::Result<()> {
    if target.transport == Transport::Native {
        target.native().await?.delete_stream(name).await?;
        return Ok(());
    }
    target
        .http()?
        .delete(stream_url(target, name))
        .send()
        .await?;
    Ok(())
}

/// A writer/reader of stream `name` over the target's transport.
pub(crate) async fn open(target: &WeirTarget, name: &str) -> anyhow::Result<Box<dyn StreamTarget>> {
    if target.transport == Transport::Native {
        return Ok(Box::new(NativeStream {
            client: target.native().await?,
            name: name.to_owned(),
        }));
    }
    Ok(Box::new(HttpStream {
        http: target.http()?,
        url: stream_url(target, name),
    }))
}

fn stream_url(target: &WeirTarget, name: &str) -> String {
    format!("{}/v1/streams/{name}", target.http_base())
}

struct HttpStream {
    http: reqwest::Client,
    url: String,
}

#[async_trait]
impl StreamTarget for HttpStream {
    async fn append(&mut self, records: Vec<Bytes>) -> anyhow::Result<Confirm> {
        let n = records.len();
        let records: Vec<_> = records
            .iter()
            .map(|r| json!({ "body_base64": B64.encode(r) }))
            .collect();
        let request = self
            .http
            .post(format!("{}/records", self.url))
            .json(&json!({ "records": records }));
        // Spawned so the request is sent now, not when the confirm is first polled.
        let sent = tokio::spawn(async move {
            let answer = http_ok(request.send().await?).await?;
            let confirmed = answer["records"].as_array().map_or(0, Vec::len);
            if confirmed != n {
                bail!("append confirmed {confirmed} of {n} records");
            }
            Ok(())
        });
        Ok(Box::pin(async move { sent.await.context("append task")? }))
    }

    async fn read_all(&mut self, expected: u64) -> anyhow::Result<u64> {
        let mut cursor = ReadCursor::default();
        while cursor.read < expected {
            let url = format!(
                "{}/partitions/0/records?offset={}&max={READ_MAX}&wait_ms={READ_WAIT_MS}",
                self.url, cursor.next
            );
            let answer = http_ok(self.http.get(&url).send().await?)
                .await
                .with_context(|| format!("GET {url}"))?;
            let offsets = answer["records"]
                .as_array()
                .with_context(|| format!("GET {url}: no records array"))?
                .iter()
                .map(|r| r["offset"].as_u64())
                .collect::<Option<Vec<u64>>>()
                .with_context(|| format!("GET {url}: a record without an offset"))?;
            cursor.take(offsets, expected)?;
        }
        Ok(cursor.read)
    }
}

/// Where a full read of one partition is: the next offset to ask for and the records read.
#[derive(Default)]
struct ReadCursor {
    next: u64,
    read: u64,
}

impl ReadCursor {
    /// Counts one answer's offsets: an empty answer before `expected` records is an error, and so
    /// is an offset below the one asked for.
    fn take(&mut self, offsets: Vec<u64>, expected: u64) -> anyhow::Result<()> {
        if offsets.is_empty() {
            bail!("the stream ended after {} of {expected} records", self.read);
        }
        for offset in offsets {
            if offset < self.next {
                bail!("offset {offset} went backwards (expected ≥ {})", self.next);
            }
            self.next = offset + 1;
            self.read += 1;
        }
        Ok(())
    }
}

struct NativeStream {
    client: weir_client::Client,
    name: String,
}

#[async_trait]
impl StreamTarget for NativeStream {
    async fn append(&mut self, records: Vec<Bytes>) -> anyhow::Result<Confirm> {
        let n = records.len();
        let records = records.into_iter().map(weir_client::Record::new).collect();
        let client = self.client.clone();
        let name = self.name.clone();
        // Spawned so the request is sent now, not when the confirm is first polled.
        let sent = tokio::spawn(async move {
            let at = client.append(&name, records).await?;
            if at.len() != n {
                bail!("append confirmed {} of {n} records", at.len());
            }
            Ok(())
        });
        Ok(Box::pin(async move { sent.await.context("append task")? }))
    }

    async fn read_all(&mut self, expected: u64) -> anyhow::Result<u64> {
        let mut cursor = ReadCursor::default();
        let wait = std::time::Duration::from_millis(READ_WAIT_MS);
        while cursor.read < expected {
            let from = weir_client::ReadFrom::Offset(cursor.next);
            let batch = self
                .client
                .read_stream(&self.name, 0, from, READ_MAX as u32, wait)
                .await
                .with_context(|| format!("reading {} from offset {}", self.name, cursor.next))?;
            cursor.take(batch.records.iter().map(|r| r.offset).collect(), expected)?;
        }
        Ok(cursor.read)
    }
}
