//! [`Consumer`]: a push subscription with credits, and [`Delivery`] handles that extend their own
//! lease while held.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weir_proto::frame::{Payload, MAX_CREDITS};
use weir_proto::limits::{MAX_LEASE_MS, MIN_LEASE_MS};

use crate::client::millis;
use crate::conn::{Command, SubEvent};
use crate::{Client, ClientError, RawDelivery, Target};

/// How a [`Consumer`] subscribes.
#[derive(Clone, Debug)]
pub struct ConsumerOptions {
    /// Credits: the most deliveries held un-acked at once (1–10000).
    pub prefetch: u32,
    /// Lease of each delivery (100 ms – 12 h).
    pub lease: Duration,
    /// Extend a held delivery's lease at about half its length until it is acked or nacked.
    pub auto_extend: bool,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            prefetch: 64,
            lease: Duration::from_secs(30),
            auto_extend: true,
        }
    }
}

/// What every delivery of one subscription shares.
#[derive(Debug)]
struct SubShared {
    client: Client,
    target: Target,
    subscription: u64,
    /// Credits freed by settled or dropped deliveries, not granted yet. The first one freed
    /// queues one grant, which takes every credit freed until the writer encodes it.
    owed: Arc<AtomicU32>,
}

impl SubShared {
    /// Grants `n` credits back, now if possible (coalesced with others freed meanwhile). If
    /// the grant cannot be queued, [`Consumer::next`] sends what is owed.
    fn return_credits_now(&self, n: u32) {
        if self.owed.fetch_add(n, Ordering::AcqRel) == 0 {
            let _ = self.client.connection().try_command(Command::GrantOwed {
                subscription: self.subscription,
                owed: self.owed.clone(),
            });
        }
    }

    async fn grant_owed(&self) -> Result<(), ClientError> {
        let n = self.owed.swap(0, Ordering::AcqRel).min(MAX_CREDITS);
        if n > 0 {
            let payload = Payload::GrantCredits {
                subscription: self.subscription,
                credits: n,
            };
            self.client
                .connection()
                .command(Command::Fire { payload })
                .await?;
        }
        Ok(())
    }
}

/// A subscription to a queue or a topic subscription. The server pushes at most `prefetch`
/// deliveries that are not yet settled; each [`Delivery`] returns its credit when acked, nacked
/// or dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), weir_client::ClientError> {
/// use weir_client::{Client, ConsumerOptions};
///
/// let client = Client::connect("127.0.0.1:7400").await?;
/// let mut consumer = client.subscribe("orders", ConsumerOptions::default()).await?;
/// while let Some(delivery) = consumer.next().await {
///     let delivery = delivery?;
///     println!("{:?}", delivery.body);
///     delivery.ack().await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Consumer {
    shared: Arc<SubShared>,
    events: mpsc::UnboundedReceiver<SubEvent>,
    buffered: VecDeque<RawDelivery>,
    lease: Duration,
    auto_extend: bool,
    ended: bool,
}

impl Consumer {
    pub(crate) async fn open(
        client: Client,
        target: Target,
        options: ConsumerOptions,
    ) -> Result<Consumer, ClientError> {
        let lease_ms = millis(options.lease).clamp(MIN_LEASE_MS, MAX_LEASE_MS);
        let payload = Payload::Subscribe {
            target: target.clone(),
            credits: options.prefetch.clamp(1, MAX_CREDITS),
            lease_ms: Some(lease_ms),
        };
        let (subscription, events) = client.connection().subscribe(payload).await?;
        Ok(Consumer {
            shared: Arc::new(SubShared {
                client,
                target,
                subscription,
                owed: Arc::new(AtomicU32::new(0)),
            }),
            events,
            buffered: VecDeque::new(),
            lease: Duration::from_millis(lease_ms),
            auto_extend: options.auto_extend,
            ended: false,
        })
    }

    /// The next delivery; `None` once the subscription or the connection has ended (after an
    /// `Err` saying why).
    pub async fn next(&mut self) -> Option<Result<Delivery, ClientError>> {
        if let Err(e) = self.shared.grant_owed().await {
            self.ended = true;
            return Some(Err(e));
        }
        loop {
            if let Some(raw) = self.buffered.pop_front() {
                return Some(Ok(Delivery::new(
                    raw,
                    &self.shared,
                    self.lease,
                    self.auto_extend,
                )));
            }
            if self.ended {
                return None;
            }
            match self.events.recv().await {
                Some(SubEvent::Deliveries(ds)) => self.buffered.extend(ds),
                Some(SubEvent::Ended(e)) => {
                    self.ended = true;
                    return Some(Err(e));
                }
                None => return None,
            }
        }
    }

    /// The queue or subscription this consumer reads.
    pub fn target(&self) -> &Target {
        &self.shared.target
    }

    /// Ends the subscription. Deliveries still held keep their leases and can still be acked.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.ended = true;
        let command = Command::Unsubscribe {
            subscription: self.shared.subscription,
        };
        self.shared.client.connection().command(command).await
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if !self.ended {
            let command = Command::Unsubscribe {
                subscription: self.shared.subscription,
            };
            let _ = self.shared.client.connection().try_command(command);
        }
    }
}

/// One leased message. Settle it with [`Delivery::ack`] or [`Delivery::nack`]; while it is held
/// (and `auto_extend` is on) its lease is extended at about half its length. Dropping it unsettled
/// returns its credit and lets the lease run out (the message is then delivered again).
#[derive(Debug)]
pub struct Delivery {
    /// The message id.
    pub id: String,
    /// The message key.
    pub key: Option<Bytes>,
    /// The message headers.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: Bytes,
    /// 1 on first delivery, counting up on redeliveries.
    pub attempt: u32,
    /// When the message was accepted, in milliseconds since the Unix epoch.
    pub enqueued_at_ms: u64,
    /// The message priority (0–9).
    pub priority: u8,
    receipt: String,
    shared: Arc<SubShared>,
    extender: Option<JoinHandle<()>>,
    /// Whether this delivery still holds its credit (given back when settled or dropped).
    holds_credit: bool,
}

impl Delivery {
    fn new(raw: RawDelivery, shared: &Arc<SubShared>, lease: Duration, auto_extend: bool) -> Self {
        let extender = auto_extend.then(|| {
            let shared = shared.clone();
            let receipt = raw.receipt.clone();
            tokio::spawn(async move {
                let every = lease / 2;
                loop {
                    tokio::time::sleep(every).await;
                    let extended = shared
                        .client
                        .extend(&shared.target, vec![receipt.clone()], lease)
                        .await;
                    match extended {
                        Ok(done) if done.invalid.is_empty() => {}
                        _ => return,
                    }
                }
            })
        });
        Delivery {
            id: raw.id,
            key: raw.key,
            headers: raw.headers,
            body: raw.body,
            attempt: raw.attempt,
            enqueued_at_ms: raw.enqueued_at_ms,
            priority: raw.priority,
            receipt: raw.receipt,
            shared: shared.clone(),
            extender,
            holds_credit: true,
        }
    }

    /// The receipt naming this lease.
    pub fn receipt(&self) -> &str {
        &self.receipt
    }

    /// The body as UTF-8 text, if it is.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// Acknowledges the message: it is gone for good once this returns `Ok`. Its credit goes
    /// back as soon as the ack is sent (the server may push the next delivery meanwhile).
    pub async fn ack(mut self) -> Result<(), ClientError> {
        self.stop_extending();
        let payload = Payload::Ack {
            target: self.shared.target.clone(),
            receipts: vec![std::mem::take(&mut self.receipt)],
        };
        self.settle(payload).await
    }

    /// Gives the message back: delivered again after `delay`, or the backoff if `None`.
    /// Its credit goes back as soon as the nack is sent.
    pub async fn nack(mut self, delay: Option<Duration>) -> Result<(), ClientError> {
        self.stop_extending();
        let payload = Payload::Nack {
            target: self.shared.target.clone(),
            receipts: vec![std::mem::take(&mut self.receipt)],
            delay_ms: delay.map(millis),
        };
        self.settle(payload).await
    }

    /// Sends the ack without waiting for its answer: returns once the request is queued for the
    /// connection (the credit goes back then), with a future that resolves as [`Delivery::ack`]
    /// does (once the ack is durable). Keeps many acks in flight without a task per ack.
    pub async fn start_ack(mut self) -> Result<PendingSettle, ClientError> {
        self.stop_extending();
        let payload = Payload::Ack {
            target: self.shared.target.clone(),
            receipts: vec![std::mem::take(&mut self.receipt)],
        };
        let answer = self.shared.client.connection().send(payload).await?;
        self.give_back_credit();
        Ok(PendingSettle(answer))
    }

    /// Sends an ack or nack, gives the credit back, then waits for the answer.
    async fn settle(mut self, payload: Payload) -> Result<(), ClientError> {
        let answer = self.shared.client.connection().send(payload).await?;
        self.give_back_credit();
        PendingSettle(answer).await
    }

    fn give_back_credit(&mut self) {
        if std::mem::take(&mut self.holds_credit) {
            self.shared.return_credits_now(1);
        }
    }

    /// Extends the lease to `lease` from now (done for you with `auto_extend`).
    pub async fn extend(&self, lease: Duration) -> Result<(), ClientError> {
        let done = self
            .shared
            .client
            .extend(&self.shared.target, vec![self.receipt.clone()], lease)
            .await?;
        self.check(done.invalid)
    }

    fn check(&self, invalid: Vec<String>) -> Result<(), ClientError> {
        match invalid.into_iter().next() {
            Some(receipt) => Err(ClientError::InvalidReceipt { receipt }),
            None => Ok(()),
        }
    }

    fn stop_extending(&mut self) {
        if let Some(task) = self.extender.take() {
            task.abort();
        }
    }
}

/// The answer to [`Delivery::start_ack`]: `Ok` once the ack is durable; an unknown, stale or
/// expired receipt is [`ClientError::InvalidReceipt`].
#[derive(Debug)]
#[must_use = "the ack is confirmed only when this resolves to Ok"]
pub struct PendingSettle(crate::conn::Answer);

impl std::future::Future for PendingSettle {
    type Output = Result<(), ClientError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| match answer? {
                Payload::ReceiptsDone { invalid, .. } => match invalid.into_iter().next() {
                    Some(receipt) => Err(ClientError::InvalidReceipt { receipt }),
                    None => Ok(()),
                },
                other => Err(crate::client::unexpected("ReceiptsDone", &other)),
            })
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.stop_extending();
        self.give_back_credit();
    }
}
