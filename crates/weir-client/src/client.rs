//! [`Client`]: one multiplexed connection and the plain request calls.

use std::fmt;
use std::time::Duration;

use tokio::net::ToSocketAddrs;
use weir_proto::frame::{HelloOk, Payload};
use weir_proto::limits::MAX_WAIT_MS;

use crate::conn::Connection;
use crate::{ClientError, Consumer, ConsumerOptions, Message, Producer, ProducerOptions};
use crate::{Published, QueueInfo, QueueOptions, RawDelivery, Target};

/// How long [`Client::connect`] waits for the connection and the handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How [`Client::connect_with`] connects.
///
/// ```
/// use weir_client::ConnectOptions;
///
/// let options = ConnectOptions::default().token("producer-token-0123456789");
/// assert_eq!(options.token.as_deref(), Some("producer-token-0123456789"));
/// ```
#[derive(Clone)]
pub struct ConnectOptions {
    /// The token to authenticate with (from the server's token file). Sent right after the
    /// handshake when the server requires authentication; not sent otherwise.
    pub token: Option<String>,
    /// How long to wait for the connection, the handshake and the authentication.
    pub timeout: Duration,
    /// TLS, when set ([`ConnectOptions::tls`]); plain TCP otherwise.
    pub tls: Option<crate::TlsOptions>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            token: None,
            timeout: CONNECT_TIMEOUT,
            tls: None,
        }
    }
}

impl ConnectOptions {
    /// These options with `token`.
    pub fn token(mut self, token: impl Into<String>) -> ConnectOptions {
        self.token = Some(token.into());
        self
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("ConnectOptions")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A connection to a Weir server. Cheap to clone: clones share the connection, and requests from
/// all of them pipeline over it (answers may come back in any order).
///
/// ```no_run
/// # async fn demo() -> Result<(), weir_client::ClientError> {
/// use weir_client::{Client, Message, QueueOptions};
///
/// let client = Client::connect("127.0.0.1:7400").await?;
/// client.create_queue("orders", QueueOptions::default()).await?;
/// let published = client.publish("orders", vec![Message::new("hello")]).await?;
/// println!("stored as {}", published[0].id);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    conn: Connection,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("conn", &self.conn).finish()
    }
}

/// The outcome of an ack, nack or extend batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptsDone {
    /// Receipts that took effect.
    pub done: u32,
    /// Receipts that were unknown, settled or expired.
    pub invalid: Vec<String>,
}

impl Client {
    /// Connects and handshakes. A refused connection says so plainly:
    /// `connection refused at 127.0.0.1:7400 — is `weir serve` running?`. A server that requires
    /// authentication fails it with [`ErrorCode::Unauthorized`](crate::ErrorCode): use
    /// [`Client::connect_with_token`].
    pub async fn connect(addr: impl ToSocketAddrs + fmt::Display) -> Result<Client, ClientError> {
        Client::connect_with(addr, ConnectOptions::default()).await
    }

    /// Connects, handshakes and authenticates with `token` (when the server requires it). A bad
    /// token fails with [`ErrorCode::Unauthorized`](crate::ErrorCode); once connected, a request
    /// the token's grants do not cover fails with [`ErrorCode::Forbidden`](crate::ErrorCode) and
    /// the connection stays usable.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), weir_client::ClientError> {
    /// use weir_client::{Client, Message};
    ///
    /// let client = Client::connect_with_token("127.0.0.1:7400", "producer-token-0123456789").await?;
    /// client.publish("orders", vec![Message::new("hello")]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect_with_token(
        addr: impl ToSocketAddrs + fmt::Display,
        token: impl Into<String>,
    ) -> Result<Client, ClientError> {
        Client::connect_with(addr, ConnectOptions::default().token(token)).await
    }

    /// Connects with explicit [`ConnectOptions`].
    pub async fn connect_with(
        addr: impl ToSocketAddrs + fmt::Display,
        options: ConnectOptions,
    ) -> Result<Client, ClientError> {
        Ok(Client {
            conn: Connection::open(
                addr,
                options.timeout,
                options.token.as_deref(),
                options.tls.as_ref(),
            )
            .await?,
        })
    }

    /// The server's protocol version and limits, from the handshake.
    pub fn server_limits(&self) -> &HelloOk {
        &self.conn.limits
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Round trip to the server.
    pub async fn ping(&self) -> Result<(), ClientError> {
        match self.conn.request(Payload::Ping).await? {
            Payload::Pong => Ok(()),
            other => Err(unexpected("Pong", &other)),
        }
    }

    /// Creates a queue, or updates the settings given in `options` of an existing one.
    pub async fn create_queue(
        &self,
        queue: &str,
        options: QueueOptions,
    ) -> Result<QueueInfo, ClientError> {
        let payload = Payload::CreateQueue {
            queue: queue.to_string(),
            options: Box::new(options),
        };
        match self.conn.request(payload).await? {
            Payload::QueueInfo(info) => Ok(*info),
            other => Err(unexpected("QueueInfo", &other)),
        }
    }

    /// Deletes a queue and its messages.
    pub async fn delete_queue(&self, queue: &str) -> Result<(), ClientError> {
        let payload = Payload::DeleteQueue {
            queue: queue.to_string(),
        };
        match self.conn.request(payload).await? {
            Payload::Ok => Ok(()),
            other => Err(unexpected("Ok", &other)),
        }
    }

    /// A queue's counters and settings.
    pub async fn queue_stats(&self, queue: &str) -> Result<QueueInfo, ClientError> {
        let payload = Payload::QueueStats {
            queue: queue.to_string(),
        };
        match self.conn.request(payload).await? {
            Payload::QueueInfo(info) => Ok(*info),
            other => Err(unexpected("QueueInfo", &other)),
        }
    }

    /// Publishes one batch (all or nothing) and returns once it is durable, one result per
    /// message. A full queue fails with a retryable `busy` error carrying
    /// [`ClientError::retry_after`]; [`Producer`] retries for you.
    pub async fn publish(
        &self,
        queue: &str,
        messages: Vec<Message>,
    ) -> Result<Vec<Published>, ClientError> {
        let payload = Payload::Publish {
            queue: queue.to_string(),
            messages: messages.into_iter().map(Message::into_wire).collect(),
        };
        match self.conn.request(payload).await? {
            Payload::Published(results) => Ok(results),
            other => Err(unexpected("Published", &other)),
        }
    }

    /// Sends a publish without waiting for its answer: returns once the request is queued for
    /// the connection, with a future that resolves as [`Client::publish`] does (once durable).
    /// Keeps many publishes in flight on one connection without a task per publish.
    pub async fn start_publish(
        &self,
        queue: &str,
        messages: Vec<Message>,
    ) -> Result<PendingPublish, ClientError> {
        let payload = Payload::Publish {
            queue: queue.to_string(),
            messages: messages.into_iter().map(Message::into_wire).collect(),
        };
        Ok(PendingPublish(self.conn.send(payload).await?))
    }

    /// Pulls up to `max` messages (1–1000), waiting up to `wait` (≤ 20 s) for the first, from a
    /// queue (`"jobs"`) or a topic subscription (`Target::subscription("news", "mail")`).
    pub async fn receive(
        &self,
        target: impl Into<Target>,
        max: u32,
        wait: Duration,
        lease: Option<Duration>,
    ) -> Result<Vec<RawDelivery>, ClientError> {
        let payload = Payload::Receive {
            target: target.into(),
            max,
            lease_ms: lease.map(millis),
            wait_ms: millis(wait).min(MAX_WAIT_MS),
        };
        match self.conn.request(payload).await? {
            Payload::Deliveries(ds) => Ok(ds),
            other => Err(unexpected("Deliveries", &other)),
        }
    }

    /// Acknowledges deliveries of a queue or subscription by receipt.
    pub async fn ack(
        &self,
        target: impl Into<Target>,
        receipts: Vec<String>,
    ) -> Result<ReceiptsDone, ClientError> {
        self.receipts(Payload::Ack {
            target: target.into(),
            receipts,
        })
        .await
    }

    /// Gives deliveries back: redelivered after `delay`, or the queue's (or subscription's)
    /// backoff when `None`.
    pub async fn nack(
        &self,
        target: impl Into<Target>,
        receipts: Vec<String>,
        delay: Option<Duration>,
    ) -> Result<ReceiptsDone, ClientError> {
        self.receipts(Payload::Nack {
            target: target.into(),
            receipts,
            delay_ms: delay.map(millis),
        })
        .await
    }

    /// Extends leases (of a queue or subscription) to `lease` from now.
    pub async fn extend(
        &self,
        target: impl Into<Target>,
        receipts: Vec<String>,
        lease: Duration,
    ) -> Result<ReceiptsDone, ClientError> {
        self.receipts(Payload::Extend {
            target: target.into(),
            receipts,
            lease_ms: millis(lease),
        })
        .await
    }

    async fn receipts(&self, payload: Payload) -> Result<ReceiptsDone, ClientError> {
        match self.conn.request(payload).await? {
            Payload::ReceiptsDone { done, invalid } => Ok(ReceiptsDone { done, invalid }),
            other => Err(unexpected("ReceiptsDone", &other)),
        }
    }

    /// A batching producer for `queue` (see [`Producer`]; for a topic:
    /// [`Client::topic_producer`]).
    pub fn producer(&self, queue: &str, options: ProducerOptions) -> Producer {
        Producer::to_queue(self.clone(), queue, options)
    }

    /// Subscribes to a queue (`"jobs"`) or a topic subscription
    /// (`Target::subscription("news", "mail")`) with `options.prefetch` credits (see
    /// [`Consumer`]).
    pub async fn subscribe(
        &self,
        target: impl Into<Target>,
        options: ConsumerOptions,
    ) -> Result<Consumer, ClientError> {
        Consumer::open(self.clone(), target.into(), options).await
    }
}

/// The answer to [`Client::start_publish`]: one result per message, once durable.
#[derive(Debug)]
#[must_use = "the publish is confirmed only when this resolves to Ok"]
pub struct PendingPublish(crate::conn::Answer);

impl PendingPublish {
    pub(crate) fn new(answer: crate::conn::Answer) -> PendingPublish {
        PendingPublish(answer)
    }
}

impl std::future::Future for PendingPublish {
    type Output = Result<Vec<Published>, ClientError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| match answer? {
                Payload::Published(results) => Ok(results),
                other => Err(unexpected("Published", &other)),
            })
    }
}

/// A duration in whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn unexpected(wanted: &str, got: &Payload) -> ClientError {
    ClientError::Protocol(format!(
        "expected {wanted}, got frame type 0x{:02x}",
        got.type_byte()
    ))
}
