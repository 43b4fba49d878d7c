//! Redis Streams with the `redis` crate (tokio, multiplexed connections): XADD to publish (the
//! reply is the confirm), XREADGROUP with a consumer group per subscription, XACK per message.
//! Durability comes from the AOF: `appendonly yes` plus `appendfsync always` (Redis fsyncs the AOF
//! before it writes the replies of an event-loop iteration: group commit) or `everysec` (not
//! durable at the confirm: up to a second of confirmed writes can be lost). Set with CONFIG SET for
//! the run and restored afterwards.

use anyhow::{bail, Context as _};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt as _;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamRangeReply, StreamReadReply};
use redis::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use weir_bench::workload::{Kind, Workload};
use weir_bench::{AckToken, Confirm, Consumer, Delivery, Producer, StreamTarget, Target};

/// Most XACKs a consumer keeps in flight.
const MAX_ACKS_IN_FLIGHT: usize = 1_000;

/// Redis Streams as a benchmark target.
#[derive(Debug)]
pub(crate) struct RedisStreams {
    /// Connection URL.
    pub(crate) url: String,
    /// `always` or `everysec`.
    pub(crate) appendfsync: String,
    consumer_seq: AtomicUsize,
}

fn group(sub: usize) -> String {
    format!("g{sub}")
}

impl RedisStreams {
    /// A target that runs with `appendonly yes` and the given `appendfsync`.
    pub(crate) fn new(url: &str, appendfsync: &str) -> Self {
        Self {
            url: url.to_owned(),
            appendfsync: appendfsync.to_owned(),
            consumer_seq: AtomicUsize::new(0),
        }
    }

    async fn conn(&self) -> anyhow::Result<MultiplexedConnection> {
        let client = redis::Client::open(self.url.as_str())?;
        client
            .get_multiplexed_tokio_connection()
            .await
            .with_context(|| format!("connecting to Redis at {}", self.url))
    }

    /// Reads `appendonly` and `appendfsync`, to restore them later with [`RedisStreams::set_config`].
    pub(crate) async fn get_config(&self) -> anyhow::Result<(String, String)> {
        let mut c = self.conn().await?;
        let get = |k: &'static str| redis::cmd("CONFIG").arg("GET").arg(k).clone();
        let a: Vec<String> = get("appendonly").query_async(&mut c).await?;
        let f: Vec<String> = get("appendfsync").query_async(&mut c).await?;
        Ok((
            a.get(1).cloned().unwrap_or_else(|| "no".into()),
            f.get(1).cloned().unwrap_or_else(|| "everysec".into()),
        ))
    }

    /// Sets `appendonly` and `appendfsync` and waits for any AOF rewrite to finish.
    pub(crate) async fn set_config(
        &self,
        appendonly: &str,
        appendfsync: &str,
    ) -> anyhow::Result<()> {
        let mut c = self.conn().await?;
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("appendfsync")
            .arg(appendfsync)
            .query_async::<()>(&mut c)
            .await?;
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("appendonly")
            .arg(appendonly)
            .query_async::<()>(&mut c)
            .await?;
        for _ in 0..600 {
            let info: String = redis::cmd("INFO")
                .arg("persistence")
                .query_async(&mut c)
                .await?;
            let busy = info.lines().any(|l| {
                l.trim() == "aof_rewrite_in_progress:1" || l.trim() == "aof_rewrite_scheduled:1"
            });
            if !busy {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("redis: AOF rewrite did not finish within 60 s")
    }
}

#[async_trait]
impl Target for RedisStreams {
    fn label(&self) -> String {
        format!("redis streams (appendfsync {})", self.appendfsync)
    }

    fn notes(&self) -> String {
        let d = if self.appendfsync == "always" {
            "fsync of the AOF before the XADD reply"
        } else {
            "NOT durable at the confirm: the AOF is fsynced once a second"
        };
        format!(
            "appendonly yes, appendfsync {}: {d}; XREADGROUP + XACK per message",
            self.appendfsync
        )
    }

    fn server_pids(&self) -> Vec<u32> {
        weir_bench::rss::pids_by_name("redis-server")
    }

    fn supports(&self, _kind: &Kind) -> bool {
        true
    }

    async fn prepare(&self, name: &str, w: &Workload) -> anyhow::Result<()> {
        let (ao, af) = self.get_config().await?;
        if ao != "yes" || af != self.appendfsync {
            self.set_config("yes", &self.appendfsync).await?;
        }
        let mut c = self.conn().await?;
        redis::cmd("DEL")
            .arg(name)
            .query_async::<()>(&mut c)
            .await?;
        if w.kind != Kind::Stream {
            for sub in 0..w.kind.copies() as usize {
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(name)
                    .arg(group(sub))
                    .arg("$")
                    .arg("MKSTREAM")
                    .query_async::<()>(&mut c)
                    .await?;
            }
        }
        Ok(())
    }

    async fn producer(&self, name: &str, _w: &Workload) -> anyhow::Result<Box<dyn Producer>> {
        Ok(Box::new(RedisProducer {
            conn: self.conn().await?,
            key: name.to_owned(),
        }))
    }

    async fn consumer(
        &self,
        name: &str,
        sub: usize,
        w: &Workload,
    ) -> anyhow::Result<Box<dyn Consumer>> {
        Ok(Box::new(RedisConsumer {
            read: self.conn().await?,
            acks_conn: self.conn().await?,
            key: name.to_owned(),
            group: group(sub),
            me: format!("c{}", self.consumer_seq.fetch_add(1, Ordering::Relaxed)),
            count: w.prefetch.max(1),
            acks: FuturesUnordered::new(),
        }))
    }

    async fn stream(&self, name: &str) -> anyhow::Result<Box<dyn StreamTarget>> {
        Ok(Box::new(RedisStream {
            conn: self.conn().await?,
            key: name.to_owned(),
        }))
    }

    async fn cleanup(&self, name: &str, _w: &Workload) -> anyhow::Result<()> {
        let mut c = self.conn().await?;
        redis::cmd("DEL")
            .arg(name)
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }
}

struct RedisProducer {
    conn: MultiplexedConnection,
    key: String,
}

#[async_trait]
impl Producer for RedisProducer {
    async fn publish(&mut self, body: Bytes) -> anyhow::Result<Confirm> {
        let mut c = self.conn.clone();
        let cmd = redis::cmd("XADD")
            .arg(&self.key)
            .arg("*")
            .arg("b")
            .arg(body.as_ref())
            .clone();
        // Spawned so the command is written now, not when the confirm is first polled.
        let h = tokio::spawn(async move { cmd.query_async::<String>(&mut c).await });
        Ok(Box::pin(async move {
            h.await.context("xadd task")??;
            Ok(())
        }))
    }
}

struct RedisConsumer {
    read: MultiplexedConnection,
    acks_conn: MultiplexedConnection,
    key: String,
    group: String,
    me: String,
    count: u32,
    acks: FuturesUnordered<tokio::task::JoinHandle<redis::RedisResult<i64>>>,
}

#[async_trait]
impl Consumer for RedisConsumer {
    async fn recv(&mut self, wait: Duration) -> anyhow::Result<Vec<Delivery>> {
        while let Some(Some(done)) = self.acks.next().now_or_never() {
            done??;
        }
        let reply: Option<StreamReadReply> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(&self.group)
            .arg(&self.me)
            .arg("COUNT")
            .arg(self.count)
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(">")
            .query_async(&mut self.read)
            .await?;
        let mut out = Vec::new();
        for k in reply.into_iter().flat_map(|r| r.keys) {
            for e in k.ids {
                let body = match e.map.get("b") {
                    Some(Value::BulkString(b)) => Bytes::from(b.clone()),
                    _ => bail!("redis: entry {} has no body", e.id),
                };
                out.push(Delivery {
                    body,
                    token: AckToken::Text(e.id),
                });
            }
        }
        Ok(out)
    }

    async fn ack(&mut self, token: AckToken) -> anyhow::Result<()> {
        let AckToken::Text(id) = token else {
            bail!("redis: unexpected ack token");
        };
        while self.acks.len() >= MAX_ACKS_IN_FLIGHT {
            if let Some(done) = self.acks.next().await {
                done??;
            }
        }
        let mut c = self.acks_conn.clone();
        let cmd = redis::cmd("XACK")
            .arg(&self.key)
            .arg(&self.group)
            .arg(id)
            .clone();
        self.acks.push(tokio::spawn(
            async move { cmd.query_async::<i64>(&mut c).await },
        ));
        Ok(())
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        while let Some(done) = self.acks.next().await {
            done??;
        }
        Ok(())
    }
}

struct RedisStream {
    conn: MultiplexedConnection,
    key: String,
}

#[async_trait]
impl StreamTarget for RedisStream {
    async fn append(&mut self, records: Vec<Bytes>) -> anyhow::Result<Confirm> {
        let mut pipe = redis::pipe();
        for r in &records {
            pipe.cmd("XADD")
                .arg(&self.key)
                .arg("*")
                .arg("b")
                .arg(r.as_ref());
        }
        let mut c = self.conn.clone();
        let h = tokio::spawn(async move { pipe.query_async::<Vec<String>>(&mut c).await });
        Ok(Box::pin(async move {
            h.await.context("xadd pipeline task")??;
            Ok(())
        }))
    }

    async fn read_all(&mut self, expected: u64) -> anyhow::Result<u64> {
        let mut n = 0u64;
        let mut start = "-".to_owned();
        while n < expected {
            let r: StreamRangeReply = redis::cmd("XRANGE")
                .arg(&self.key)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut self.conn)
                .await?;
            let Some(last) = r.ids.last() else { break };
            start = format!("({}", last.id);
            n += r.ids.len() as u64;
        }
        Ok(n)
    }
}
