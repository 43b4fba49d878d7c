//! Weir as a benchmark [`Target`]: over the native protocol (`weir-client`) or over HTTP/JSON.

use anyhow::{bail, Context as _};
use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

use crate::target::{AckToken, Confirm, Consumer, Delivery, Producer, StreamTarget, Target};
use crate::workload::{Kind, Workload};

/// Lease given to benchmark deliveries: long enough that nothing is redelivered during a run.
const LEASE: Duration = Duration::from_secs(120);
/// Most acks a native consumer keeps in flight before waiting for one (each ack is a request
/// answered once durable, so this is what lets acks share a group commit); also kept below the
/// server's per-connection `max_in_flight`.
const MAX_ACKS_IN_FLIGHT: usize = 1_000;
/// Most HTTP requests one producer keeps in flight (each is a pooled HTTP/1.1 connection).
pub const HTTP_MAX_IN_FLIGHT: usize = 64;

/// Which of Weir's two APIs a target uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// The binary protocol (`--addr`, default 127.0.0.1:7400) through `weir-client`.
    Native,
    /// The HTTP/JSON API (`--http-addr`, default 127.0.0.1:7480).
    Http,
}

/// A running Weir server.
#[derive(Debug, Clone)]
pub struct WeirTarget {
    /// Which API to use.
    pub transport: Transport,
    /// Native protocol address.
    pub addr: String,
    /// HTTP address (`host:port`).
    pub http_addr: String,
    /// Server pid, for RSS sampling, when known.
    pub pid: Option<u32>,
    /// Messages per publish request (1 = each message its own publish, the comparison's rule;
    /// more uses the client's batching producer on the native transport).
    pub batch: usize,
    /// Extra label text, e.g. the fsync policy.
    pub label_suffix: String,
    /// Extra queue settings sent when the queue is created (HTTP JSON object keys).
    pub queue_config: serde_json::Map<String, serde_json::Value>,
    /// Token for a server with authentication (native `Authenticate`, HTTP bearer).
    pub token: Option<String>,
}

impl WeirTarget {
    /// A target with default addresses and no pid.
    pub fn new(transport: Transport) -> Self {
        Self {
            transport,
            addr: "127.0.0.1:7400".to_owned(),
            http_addr: "127.0.0.1:7480".to_owned(),
            pid: None,
            batch: 1,
            label_suffix: String::new(),
            queue_config: serde_json::Map::new(),
            token: None,
        }
    }

    pub(crate) fn http_base(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    pub(crate) fn http(&self) -> anyhow::Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &self.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the token is not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(reqwest::Client::builder()
            .pool_max_idle_per_host(HTTP_MAX_IN_FLIGHT * 2)
            // The server closes a keep-alive connection idle for its header-read timeout (10 s by
            // default); dropping ours sooner avoids sending a request down one it is closing.
            .pool_idle_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .default_headers(headers)
            .build()?)
    }

    pub(crate) async fn native(&self) -> anyhow::Result<weir_client::Client> {
        let connected = match &self.token {
            Some(token) => {
                weir_client::Client::connect_with_token(self.addr.as_str(), token.as_str()).await
            }
            None => weir_client::Client::connect(self.addr.as_str()).await,
        };
        connected.with_context(|| format!("connecting to weir at {}", self.addr))
    }

    /// The HTTP base path of what a workload publishes to: a queue, or a topic (fan-out).
    fn http_path(&self, name: &str, w: &Workload) -> String {
        match w.kind {
            Kind::FanOut { .. } => format!("{}/v1/topics/{name}", self.http_base()),
            _ => format!("{}/v1/queues/{name}", self.http_base()),
        }
    }
}

pub(crate) async fn http_ok(resp: reqwest::Response) -> anyhow::Result<serde_json::Value> {
    let status = resp.status();
    let text = resp.text().await?;
    if !status.is_success() {
        bail!("HTTP {status}: {text}");
    }
    if text.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    Ok(serde_json::from_str(&text)?)
}

#[async_trait]
impl Target for WeirTarget {
    fn label(&self) -> String {
        let t = match self.transport {
            Transport::Native => "native",
            Transport::Http => "HTTP",
        };
        let batch = if self.batch > 1 {
            format!(", batch {}", self.batch)
        } else {
            String::new()
        };
        format!("weir ({t}{batch}{})", self.label_suffix)
    }

    fn notes(&self) -> String {
        let mut n = "confirm = publish answered once durable under the queue's fsync policy \
                     (default `always`, group commit)"
            .to_owned();
        if self.transport == Transport::Http {
            n.push_str(&format!(
                "; HTTP: at most {HTTP_MAX_IN_FLIGHT} requests in flight per producer"
            ));
        } else {
            n.push_str("; native: in flight per connection capped by the server's max_in_flight");
        }
        n
    }

    fn server_pids(&self) -> Vec<u32> {
        self.pid.into_iter().collect()
    }

    fn supports(&self, kind: &Kind) -> bool {
        // Queues, topics (fan-out) and streams, over either transport.
        matches!(kind, Kind::Queue | Kind::FanOut { .. } | Kind::Stream)
    }

    async fn prepare(&self, name: &str, w: &Workload) -> anyhow::Result<()> {
        if w.kind == Kind::Stream {
            return crate::weir_stream::prepare(self, name).await;
        }
        if let (Kind::FanOut { subscriptions }, Transport::Http) = (&w.kind, self.transport) {
            let h = self.http()?;
            let url = self.http_path(name, w);
            let _ = h.delete(&url).send().await;
            http_ok(h.put(&url).json(&serde_json::json!({})).send().await?)
                .await
                .with_context(|| format!("PUT {url}"))?;
            for sub in 0..*subscriptions {
                let mut config = self.queue_config.clone();
                config.insert("lease_ms".into(), (LEASE.as_millis() as u64).into());
                config.insert("start".into(), "oldest".into());
                let sub_url = format!("{url}/subscriptions/s{sub}");
                http_ok(h.put(&sub_url).json(&config).send().await?)
                    .await
                    .with_context(|| format!("PUT {sub_url}"))?;
            }
            return Ok(());
        }
        if let (Kind::FanOut { subscriptions }, Transport::Native) = (&w.kind, self.transport) {
            let c = self.native().await?;
            // Ignore "not found": the topic may not exist yet.
            let _ = c.delete_topic(name).await;
            c.create_topic(name, weir_client::TopicOptions::default())
                .await
                .with_context(|| format!("creating topic {name}"))?;
            for sub in 0..*subscriptions {
                let options = weir_client::QueueOptions {
                    lease_ms: Some(LEASE.as_millis() as u64),
                    ..Default::default()
                };
                let start = weir_client::SubscriptionStart::Oldest;
                c.create_subscription(name, &format!("s{sub}"), start, options)
                    .await
                    .with_context(|| format!("creating subscription s{sub} of {name}"))?;
            }
            return Ok(());
        }
        match self.transport {
            Transport::Native => {
                let c = self.native().await?;
                // Ignore "not found": the queue may not exist yet.
                let _ = c.delete_queue(name).await;
                let options = weir_client::QueueOptions {
                    lease_ms: Some(LEASE.as_millis() as u64),
                    ..Default::default()
                };
                c.create_queue(name, options)
                    .await
                    .with_context(|| format!("creating queue {name}"))?;
            }
            Transport::Http => {
                let h = self.http()?;
                let url = format!("{}/v1/queues/{name}", self.http_base());
                let _ = h.delete(&url).send().await;
                let mut config = self.queue_config.clone();
                config.insert("lease_ms".into(), (LEASE.as_millis() as u64).into());
                http_ok(h.put(&url).json(&config).send().await?)
                    .await
                    .with_context(|| format!("PUT {url}"))?;
            }
        }
        Ok(())
    }

    async fn producer(&self, name: &str, w: &Workload) -> anyhow::Result<Box<dyn Producer>> {
        match self.transport {
            Transport::Native => {
                let client = self.native().await?;
                let max = client.server_limits().max_in_flight.max(1) as usize;
                let topic = matches!(w.kind, Kind::FanOut { .. });
                let batcher = (self.batch > 1).then(|| {
                    let options = weir_client::ProducerOptions {
                        batch_size: self.batch,
                        max_in_flight_batches: (max / 2).max(1),
                        linger: Duration::from_millis(1),
                        ..Default::default()
                    };
                    if topic {
                        client.topic_producer(name, options)
                    } else {
                        client.producer(name, options)
                    }
                });
                let room = max.saturating_sub(8).max(1);
                Ok(Box::new(NativeProducer {
                    client,
                    batcher: batcher.map(Arc::new),
                    queue: Arc::from(name),
                    topic,
                    // The driver keeps at most `window` confirms pending and polls them while
                    // it waits; a permit is only ever short when the server allows less.
                    direct: w.window.max(1) <= room,
                    // The workload's window (1,000 like the peers), within the server's
                    // max_in_flight less room for the odd other request on the connection.
                    permits: Arc::new(Semaphore::new(
                        w.window.max(1).min(max.saturating_sub(8).max(1)),
                    )),
                }))
            }
            Transport::Http => Ok(Box::new(HttpProducer {
                client: self.http()?,
                url: Arc::from(format!("{}/messages", self.http_path(name, w))),
                permits: Arc::new(Semaphore::new(HTTP_MAX_IN_FLIGHT)),
            })),
        }
    }

    async fn consumer(
        &self,
        name: &str,
        sub: usize,
        w: &Workload,
    ) -> anyhow::Result<Box<dyn Consumer>> {
        match self.transport {
            Transport::Native => {
                let client = self.native().await?;
                let max = client.server_limits().max_in_flight.max(2) as usize;
                let target = match w.kind {
                    Kind::FanOut { .. } => {
                        weir_client::Target::subscription(name, format!("s{sub}"))
                    }
                    _ => weir_client::Target::from(name),
                };
                let sub = client
                    .subscribe(
                        target,
                        weir_client::ConsumerOptions {
                            prefetch: w.prefetch.max(1),
                            lease: LEASE,
                            auto_extend: false,
                        },
                    )
                    .await
                    .with_context(|| format!("subscribing to {name}"))?;
                Ok(Box::new(NativeConsumer {
                    sub,
                    acks: FuturesUnordered::new(),
                    max_acks: MAX_ACKS_IN_FLIGHT.min(max.saturating_sub(16).max(1)),
                }))
            }
            Transport::Http => {
                let base = match w.kind {
                    Kind::FanOut { .. } => {
                        format!("{}/subscriptions/s{sub}", self.http_path(name, w))
                    }
                    _ => self.http_path(name, w),
                };
                Ok(Box::new(HttpConsumer {
                    client: self.http()?,
                    receive_url: format!("{base}/receive"),
                    ack_url: Arc::from(format!("{base}/ack")),
                    max: w.prefetch.clamp(1, 1000),
                    acks: FuturesUnordered::new(),
                }))
            }
        }
    }

    async fn stream(&self, name: &str) -> anyhow::Result<Box<dyn StreamTarget>> {
        crate::weir_stream::open(self, name).await
    }

    async fn cleanup(&self, name: &str, w: &Workload) -> anyhow::Result<()> {
        if w.kind == Kind::Stream {
            return crate::weir_stream::cleanup(self, name).await;
        }
        if let (Kind::FanOut { .. }, Transport::Native) = (&w.kind, self.transport) {
            self.native().await?.delete_topic(name).await?;
            return Ok(());
        }
        if let (Kind::FanOut { .. }, Transport::Http) = (&w.kind, self.transport) {
            self.http()?.delete(self.http_path(name, w)).send().await?;
            return Ok(());
        }
        match self.transport {
            Transport::Native => {
                self.native().await?.delete_queue(name).await?;
            }
            Transport::Http => {
                let h = self.http()?;
                h.delete(format!("{}/v1/queues/{name}", self.http_base()))
                    .send()
                    .await?;
            }
        }
        Ok(())
    }
}

fn join_confirm(handle: tokio::task::JoinHandle<anyhow::Result<()>>) -> Confirm {
    Box::pin(async move { handle.await.context("publish task")? })
}

struct NativeProducer {
    client: weir_client::Client,
    batcher: Option<Arc<weir_client::Producer>>,
    /// The queue's or the topic's name.
    queue: Arc<str>,
    /// Whether `queue` names a topic (fan-out).
    topic: bool,
    permits: Arc<Semaphore>,
    /// Send from `publish` itself (no task): the window fits the server's in-flight limit, so
    /// waiting for a permit never waits on a confirm the driver is not polling.
    direct: bool,
}

impl std::fmt::Debug for NativeProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeProducer")
            .field("queue", &self.queue)
            .finish()
    }
}

#[async_trait]
impl Producer for NativeProducer {
    async fn publish(&mut self, body: Bytes) -> anyhow::Result<Confirm> {
        let message = weir_client::Message::new(body);
        if let Some(batcher) = &self.batcher {
            let batcher = batcher.clone();
            return Ok(join_confirm(tokio::spawn(async move {
                batcher.send(message).await?;
                Ok(())
            })));
        }
        // One request per message, sent now (no task per publish); the permit keeps us within
        // the window and the server's in-flight limit.
        let permit = self.permits.clone().acquire_owned().await?;
        if !self.direct {
            // An older server with a smaller max_in_flight: a task per publish, so permits come
            // back without the driver polling.
            let client = self.client.clone();
            let queue = self.queue.clone();
            let topic = self.topic;
            return Ok(join_confirm(tokio::spawn(async move {
                let r = if topic {
                    client.publish_topic(&queue, vec![message]).await
                } else {
                    client.publish(&queue, vec![message]).await
                };
                drop(permit);
                r?;
                Ok(())
            })));
        }
        let answer = if self.topic {
            self.client
                .start_publish_topic(&self.queue, vec![message])
                .await?
        } else {
            self.client
                .start_publish(&self.queue, vec![message])
                .await?
        };
        Ok(Box::pin(async move {
            let r = answer.await;
            drop(permit);
            r?;
            Ok(())
        }))
    }
}

struct NativeConsumer {
    sub: weir_client::Consumer,
    acks: FuturesUnordered<weir_client::PendingSettle>,
    max_acks: usize,
}

impl std::fmt::Debug for NativeConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeConsumer").finish_non_exhaustive()
    }
}

impl NativeConsumer {
    fn reap(&mut self) -> anyhow::Result<()> {
        while let Some(Some(done)) = self.acks.next().now_or_never() {
            done?;
        }
        Ok(())
    }
}

#[async_trait]
impl Consumer for NativeConsumer {
    async fn recv(&mut self, wait: Duration) -> anyhow::Result<Vec<Delivery>> {
        self.reap()?;
        let first = match tokio::time::timeout(wait, self.sub.next()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(None) => bail!("the subscription ended"),
            Ok(Some(d)) => d?,
        };
        let mut out = Vec::with_capacity(16);
        let wrap = |d: weir_client::Delivery| Delivery {
            body: d.body.clone(),
            token: AckToken::Other(Box::new(d)),
        };
        out.push(wrap(first));
        // Take whatever else is already buffered, without waiting.
        while out.len() < 256 {
            match self.sub.next().now_or_never() {
                Some(Some(d)) => out.push(wrap(d?)),
                Some(None) => break,
                None => break,
            }
        }
        Ok(out)
    }

    async fn ack(&mut self, token: AckToken) -> anyhow::Result<()> {
        let AckToken::Other(any) = token else {
            bail!("weir: unexpected ack token");
        };
        let d = any
            .downcast::<weir_client::Delivery>()
            .map_err(|_| anyhow::anyhow!("weir: unexpected ack token type"))?;
        while self.acks.len() >= self.max_acks {
            if let Some(done) = self.acks.next().await {
                done?;
            }
        }
        // Sent now (no task per ack); the answer is collected later.
        self.acks.push(d.start_ack().await?);
        Ok(())
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        while let Some(done) = self.acks.next().await {
            done?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct HttpProducer {
    client: reqwest::Client,
    url: Arc<str>,
    permits: Arc<Semaphore>,
}

#[async_trait]
impl Producer for HttpProducer {
    async fn publish(&mut self, body: Bytes) -> anyhow::Result<Confirm> {
        let permit = self.permits.clone().acquire_owned().await?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&body);
        let req = self
            .client
            .post(&*self.url)
            .json(&serde_json::json!({"messages": [{"body_base64": b64}]}));
        Ok(join_confirm(tokio::spawn(async move {
            let r = http_ok(req.send().await?).await;
            drop(permit);
            r.map(|_| ())
        })))
    }
}

#[derive(Debug)]
struct HttpConsumer {
    client: reqwest::Client,
    receive_url: String,
    ack_url: Arc<str>,
    max: u32,
    acks: FuturesUnordered<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

#[async_trait]
impl Consumer for HttpConsumer {
    async fn recv(&mut self, wait: Duration) -> anyhow::Result<Vec<Delivery>> {
        while let Some(Some(done)) = self.acks.next().now_or_never() {
            done??;
        }
        let v = http_ok(
            self.client
                .post(&self.receive_url)
                .json(&serde_json::json!({"max": self.max, "wait_ms": wait.as_millis() as u64}))
                .send()
                .await?,
        )
        .await?;
        let mut out = Vec::new();
        for m in v["messages"].as_array().into_iter().flatten() {
            let body = base64::engine::general_purpose::STANDARD
                .decode(m["body_base64"].as_str().unwrap_or_default())
                .context("body_base64")?;
            let receipt = m["receipt"].as_str().context("receipt")?.to_owned();
            out.push(Delivery {
                body: Bytes::from(body),
                token: AckToken::Text(receipt),
            });
        }
        Ok(out)
    }

    async fn ack(&mut self, token: AckToken) -> anyhow::Result<()> {
        let AckToken::Text(receipt) = token else {
            bail!("weir http: unexpected ack token");
        };
        while self.acks.len() >= HTTP_MAX_IN_FLIGHT {
            if let Some(done) = self.acks.next().await {
                done??;
            }
        }
        let req = self
            .client
            .post(&*self.ack_url)
            .json(&serde_json::json!({"receipts": [receipt]}));
        self.acks.push(tokio::spawn(async move {
            http_ok(req.send().await?).await.map(|_| ())
        }));
        Ok(())
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        while let Some(done) = self.acks.next().await {
            done??;
        }
        Ok(())
    }
}
