//! RabbitMQ over AMQP 0-9-1 with amqprs: durable classic or quorum queues, persistent messages,
//! publisher confirms, manual acks with prefetch. Fan-out: a durable fanout exchange bound to one
//! queue per subscription.

use amqprs::callbacks::{ChannelCallback, DefaultConnectionCallback};
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicPublishArguments, BasicQosArguments, Channel,
    ConfirmSelectArguments, ExchangeDeclareArguments, ExchangeDeleteArguments, QueueBindArguments,
    QueueDeclareArguments, QueueDeleteArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, FieldTable, FieldValue, Nack, Return};
use anyhow::{anyhow, bail, Context as _};
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use weir_bench::workload::{Kind, Workload};
use weir_bench::{AckToken, Confirm, Consumer, Delivery, Producer, Target};

/// Classic or quorum queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueType {
    /// Durable classic queue (v2 index in 3.10 when configured; default settings here).
    Classic,
    /// Quorum queue (Raft log, fsync before confirm), single node.
    Quorum,
}

/// RabbitMQ as a benchmark target.
#[derive(Debug, Clone)]
pub(crate) struct Rabbit {
    /// Queue type.
    pub(crate) queue_type: QueueType,
    /// Broker host.
    pub(crate) host: String,
    /// AMQP port.
    pub(crate) port: u16,
}

impl Rabbit {
    async fn connect(&self) -> anyhow::Result<(Connection, Channel)> {
        let conn = Connection::open(&OpenConnectionArguments::new(
            &self.host, self.port, "guest", "guest",
        ))
        .await
        .with_context(|| format!("connecting to RabbitMQ at {}:{}", self.host, self.port))?;
        conn.register_callback(DefaultConnectionCallback).await?;
        let ch = conn.open_channel(None).await?;
        Ok((conn, ch))
    }

    fn queue_name(name: &str, sub: usize, w: &Workload) -> String {
        match w.kind {
            Kind::FanOut { .. } => format!("{name}.s{sub}"),
            _ => name.to_owned(),
        }
    }

    fn declare_args(&self, queue: &str) -> QueueDeclareArguments {
        let mut args = QueueDeclareArguments::durable_client_named(queue);
        if self.queue_type == QueueType::Quorum {
            let mut t = FieldTable::new();
            t.insert(
                "x-queue-type".try_into().expect("short name"),
                FieldValue::S("quorum".try_into().expect("short value")),
            );
            args.arguments(t);
        }
        args.finish()
    }
}

#[async_trait]
impl Target for Rabbit {
    fn label(&self) -> String {
        match self.queue_type {
            QueueType::Classic => "rabbitmq (classic)".into(),
            QueueType::Quorum => "rabbitmq (quorum)".into(),
        }
    }

    fn notes(&self) -> String {
        match self.queue_type {
            // Measured here (W3, 2026-12-05): e2e p50 ≈ 250 µs against a confirm p50 ≈ 550 µs,
            // and `strace -c` on beam.smp counted ~10k fsyncs for 20k messages: a classic queue
            // hands a message to a waiting consumer before its fsync (the confirm waits for it).
            QueueType::Classic => {
                "durable queue, persistent messages (delivery_mode 2), publisher confirms, manual \
                 acks, basic.qos prefetch; client amqprs. Delivers to a waiting consumer before \
                 the message is fsync'd (only the confirm waits): its W3 publish→deliver latency \
                 does not include an fsync"
                    .into()
            }
            QueueType::Quorum => {
                "durable quorum queue (one node), persistent messages, publisher confirms, manual \
                 acks, basic.qos prefetch; client amqprs"
                    .into()
            }
        }
    }

    fn server_pids(&self) -> Vec<u32> {
        weir_bench::rss::pids_by_name("beam.smp")
    }

    fn supports(&self, kind: &Kind) -> bool {
        !matches!(kind, Kind::Stream)
    }

    async fn prepare(&self, name: &str, w: &Workload) -> anyhow::Result<()> {
        self.cleanup(name, w).await?;
        let (conn, ch) = self.connect().await?;
        let subs = w.kind.copies() as usize;
        for sub in 0..subs {
            let q = Self::queue_name(name, sub, w);
            ch.queue_declare(self.declare_args(&q))
                .await
                .with_context(|| format!("declaring {q}"))?;
        }
        if let Kind::FanOut { .. } = w.kind {
            ch.exchange_declare(
                ExchangeDeclareArguments::new(&format!("{name}.x"), "fanout")
                    .durable(true)
                    .finish(),
            )
            .await?;
            for sub in 0..subs {
                let q = Self::queue_name(name, sub, w);
                ch.queue_bind(QueueBindArguments::new(&q, &format!("{name}.x"), ""))
                    .await?;
            }
        }
        let _ = ch.close().await;
        let _ = conn.close().await;
        Ok(())
    }

    async fn producer(&self, name: &str, w: &Workload) -> anyhow::Result<Box<dyn Producer>> {
        let (conn, ch) = self.connect().await?;
        let pending: Pending = Arc::new(Mutex::new(BTreeMap::new()));
        ch.register_callback(ConfirmCallback {
            pending: pending.clone(),
        })
        .await?;
        ch.confirm_select(ConfirmSelectArguments::default()).await?;
        let (exchange, routing_key) = match w.kind {
            Kind::FanOut { .. } => (format!("{name}.x"), String::new()),
            _ => (String::new(), name.to_owned()),
        };
        Ok(Box::new(RabbitProducer {
            _conn: conn,
            ch,
            pending,
            next_tag: 1,
            args: BasicPublishArguments::new(&exchange, &routing_key),
            props: BasicProperties::default()
                .with_delivery_mode(amqprs::DELIVERY_MODE_PERSISTENT)
                .finish(),
        }))
    }

    async fn consumer(
        &self,
        name: &str,
        sub: usize,
        w: &Workload,
    ) -> anyhow::Result<Box<dyn Consumer>> {
        let (conn, ch) = self.connect().await?;
        let prefetch = u16::try_from(w.prefetch).unwrap_or(u16::MAX);
        ch.basic_qos(BasicQosArguments::new(0, prefetch, false))
            .await?;
        let q = Self::queue_name(name, sub, w);
        let (_tag, rx) = ch
            .basic_consume_rx(BasicConsumeArguments::new(&q, "").manual_ack(true).finish())
            .await?;
        Ok(Box::new(RabbitConsumer {
            _conn: conn,
            ch,
            rx,
        }))
    }

    async fn cleanup(&self, name: &str, w: &Workload) -> anyhow::Result<()> {
        let (conn, ch) = self.connect().await?;
        for sub in 0..w.kind.copies() as usize {
            let q = Self::queue_name(name, sub, w);
            // A failed delete closes the channel: use a fresh one each time.
            let ch2 = conn.open_channel(None).await?;
            let _ = ch2.queue_delete(QueueDeleteArguments::new(&q)).await;
            let _ = ch2.close().await;
        }
        if let Kind::FanOut { .. } = w.kind {
            let _ = ch
                .exchange_delete(ExchangeDeleteArguments::new(&format!("{name}.x")))
                .await;
        }
        let _ = conn.close().await;
        Ok(())
    }
}

type Pending = Arc<Mutex<BTreeMap<u64, oneshot::Sender<anyhow::Result<()>>>>>;

struct ConfirmCallback {
    pending: Pending,
}

impl ConfirmCallback {
    fn settle(&self, tag: u64, multiple: bool, result: impl Fn() -> anyhow::Result<()>) {
        let mut p = self.pending.lock().expect("pending lock");
        if multiple {
            let rest = p.split_off(&(tag + 1));
            for (_, tx) in std::mem::replace(&mut *p, rest) {
                let _ = tx.send(result());
            }
        } else if let Some(tx) = p.remove(&tag) {
            let _ = tx.send(result());
        }
    }
}

#[async_trait]
impl ChannelCallback for ConfirmCallback {
    async fn close(
        &mut self,
        _c: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        eprintln!("rabbitmq: channel closed by the broker: {close}");
        Ok(())
    }
    async fn cancel(&mut self, _c: &Channel, _cancel: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _c: &Channel, active: bool) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _c: &Channel, ack: Ack) {
        self.settle(ack.delivery_tag(), ack.mutiple(), || Ok(()));
    }
    async fn publish_nack(&mut self, _c: &Channel, nack: Nack) {
        self.settle(nack.delivery_tag(), nack.multiple(), || {
            Err(anyhow!("rabbitmq nacked the publish"))
        });
    }
    async fn publish_return(&mut self, _c: &Channel, _r: Return, _p: BasicProperties, _b: Vec<u8>) {
    }
}

struct RabbitProducer {
    _conn: Connection,
    ch: Channel,
    pending: Pending,
    next_tag: u64,
    args: BasicPublishArguments,
    props: BasicProperties,
}

#[async_trait]
impl Producer for RabbitProducer {
    async fn publish(&mut self, body: Bytes) -> anyhow::Result<Confirm> {
        let (tx, rx) = oneshot::channel();
        let tag = self.next_tag;
        self.next_tag += 1;
        self.pending.lock().expect("pending lock").insert(tag, tx);
        self.ch
            .basic_publish(self.props.clone(), body.to_vec(), self.args.clone())
            .await?;
        Ok(Box::pin(async move {
            match tokio::time::timeout(Duration::from_secs(60), rx).await {
                Ok(Ok(r)) => r,
                Ok(Err(_)) => bail!("rabbitmq: confirm channel dropped"),
                Err(_) => bail!("rabbitmq: no confirm within 60 s"),
            }
        }))
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        let _ = self.ch.clone().close().await;
        Ok(())
    }
}

struct RabbitConsumer {
    _conn: Connection,
    ch: Channel,
    rx: mpsc::UnboundedReceiver<amqprs::channel::ConsumerMessage>,
}

#[async_trait]
impl Consumer for RabbitConsumer {
    async fn recv(&mut self, wait: Duration) -> anyhow::Result<Vec<Delivery>> {
        let first = match tokio::time::timeout(wait, self.rx.recv()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(None) => bail!("rabbitmq: consumer channel closed"),
            Ok(Some(m)) => m,
        };
        let mut out = Vec::new();
        let mut push = |m: amqprs::channel::ConsumerMessage| -> anyhow::Result<()> {
            let tag = m
                .deliver
                .context("delivery without deliver frame")?
                .delivery_tag();
            out.push(Delivery {
                body: Bytes::from(m.content.unwrap_or_default()),
                token: AckToken::Tag(tag),
            });
            Ok(())
        };
        push(first)?;
        while let Ok(m) = self.rx.try_recv() {
            push(m)?;
        }
        Ok(out)
    }

    async fn ack(&mut self, token: AckToken) -> anyhow::Result<()> {
        let AckToken::Tag(tag) = token else {
            bail!("rabbitmq: unexpected ack token");
        };
        self.ch
            .basic_ack(BasicAckArguments::new(tag, false))
            .await?;
        Ok(())
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        let _ = self.ch.clone().close().await;
        Ok(())
    }
}
