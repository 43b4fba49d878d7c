//! NATS JetStream with async-nats: file storage, one stream per run; a queue is a work-queue
//! stream with one durable pull consumer shared by the competing consumers; fan-out is an
//! interest stream with one durable consumer per subscription. Publishes wait for the JetStream
//! publish ack; deliveries are acked one by one (`AckPolicy::Explicit`).

use anyhow::{bail, Context as _};
use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use std::time::Duration;
use weir_bench::workload::{Kind, Workload};
use weir_bench::{AckToken, Confirm, Consumer, Delivery, Producer, StreamTarget, Target};

/// NATS JetStream as a benchmark target.
#[derive(Debug, Clone)]
pub(crate) struct Nats {
    /// Server URL.
    pub(crate) url: String,
    /// What the strace check found about fsync before the publish ack (goes into the notes).
    pub(crate) fsync_note: String,
}

impl Nats {
    async fn js(&self) -> anyhow::Result<jetstream::Context> {
        let client = async_nats::connect(&self.url)
            .await
            .with_context(|| format!("connecting to NATS at {}", self.url))?;
        Ok(jetstream::new(client))
    }
}

fn durable(sub: usize) -> String {
    format!("c{sub}")
}

#[async_trait]
impl Target for Nats {
    fn label(&self) -> String {
        "nats jetstream (file)".into()
    }

    fn notes(&self) -> String {
        format!(
            "file storage, publish waits for the JetStream ack, pull consumers with explicit \
             per-message acks; {}",
            self.fsync_note
        )
    }

    fn server_pids(&self) -> Vec<u32> {
        weir_bench::rss::pids_by_name("nats-server")
    }

    fn supports(&self, _kind: &Kind) -> bool {
        true
    }

    async fn prepare(&self, name: &str, w: &Workload) -> anyhow::Result<()> {
        let js = self.js().await?;
        let _ = js.delete_stream(name).await;
        let retention = match w.kind {
            Kind::Queue => stream::RetentionPolicy::WorkQueue,
            Kind::FanOut { .. } => stream::RetentionPolicy::Interest,
            Kind::Stream => stream::RetentionPolicy::Limits,
        };
        let s = js
            .create_stream(stream::Config {
                name: name.to_owned(),
                subjects: vec![name.to_owned()],
                storage: stream::StorageType::File,
                retention,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating stream {name}"))?;
        if w.kind != Kind::Stream {
            for sub in 0..w.kind.copies() as usize {
                s.create_consumer(consumer::pull::Config {
                    durable_name: Some(durable(sub)),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(120),
                    max_ack_pending: i64::from(w.prefetch) * w.consumers.max(1) as i64,
                    ..Default::default()
                })
                .await
                .context("creating the consumer")?;
            }
        }
        Ok(())
    }

    async fn producer(&self, name: &str, _w: &Workload) -> anyhow::Result<Box<dyn Producer>> {
        Ok(Box::new(NatsProducer {
            js: self.js().await?,
            subject: name.to_owned(),
        }))
    }

    async fn consumer(
        &self,
        name: &str,
        sub: usize,
        w: &Workload,
    ) -> anyhow::Result<Box<dyn Consumer>> {
        let js = self.js().await?;
        let s = js.get_stream(name).await?;
        let c: consumer::PullConsumer = s
            .get_consumer(&durable(sub))
            .await
            .map_err(|e| anyhow::anyhow!("nats: get consumer: {e}"))?;
        let messages = c
            .stream()
            .max_messages_per_batch(w.prefetch.max(1) as usize)
            .messages()
            .await?;
        Ok(Box::new(NatsConsumer { messages }))
    }

    async fn stream(&self, name: &str) -> anyhow::Result<Box<dyn StreamTarget>> {
        Ok(Box::new(NatsStream {
            js: self.js().await?,
            name: name.to_owned(),
        }))
    }

    async fn cleanup(&self, name: &str, _w: &Workload) -> anyhow::Result<()> {
        let _ = self.js().await?.delete_stream(name).await;
        Ok(())
    }
}

struct NatsProducer {
    js: jetstream::Context,
    subject: String,
}

#[async_trait]
impl Producer for NatsProducer {
    async fn publish(&mut self, body: Bytes) -> anyhow::Result<Confirm> {
        let ack = self.js.publish(self.subject.clone(), body).await?;
        Ok(Box::pin(async move {
            ack.await?;
            Ok(())
        }))
    }
}

struct NatsConsumer {
    messages: consumer::pull::Stream,
}

#[async_trait]
impl Consumer for NatsConsumer {
    async fn recv(&mut self, wait: Duration) -> anyhow::Result<Vec<Delivery>> {
        let m = match tokio::time::timeout(wait, self.messages.next()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(None) => bail!("nats: message stream ended"),
            Ok(Some(m)) => m.map_err(|e| anyhow::anyhow!("nats: {e}"))?,
        };
        Ok(vec![Delivery {
            body: m.payload.clone(),
            token: AckToken::Other(Box::new(m)),
        }])
    }

    async fn ack(&mut self, token: AckToken) -> anyhow::Result<()> {
        let AckToken::Other(any) = token else {
            bail!("nats: unexpected ack token");
        };
        let m = any
            .downcast::<jetstream::Message>()
            .map_err(|_| anyhow::anyhow!("nats: unexpected ack token type"))?;
        m.ack()
            .await
            .map_err(|e| anyhow::anyhow!("nats ack: {e}"))?;
        Ok(())
    }
}

struct NatsStream {
    js: jetstream::Context,
    name: String,
}

#[async_trait]
impl StreamTarget for NatsStream {
    async fn append(&mut self, records: Vec<Bytes>) -> anyhow::Result<Confirm> {
        let mut acks = Vec::with_capacity(records.len());
        for r in records {
            acks.push(self.js.publish(self.name.clone(), r).await?);
        }
        Ok(Box::pin(async move {
            for a in acks {
                a.await?;
            }
            Ok(())
        }))
    }

    async fn read_all(&mut self, expected: u64) -> anyhow::Result<u64> {
        let s = self.js.get_stream(&self.name).await?;
        let c = s
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await?;
        let mut msgs = c.messages().await?;
        let mut n = 0u64;
        while n < expected {
            match tokio::time::timeout(Duration::from_secs(10), msgs.next()).await {
                Ok(Some(m)) => {
                    m.map_err(|e| anyhow::anyhow!("nats read: {e}"))?;
                    n += 1;
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(n)
    }
}
