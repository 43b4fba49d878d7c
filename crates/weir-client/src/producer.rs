//! [`Producer`]: batching with linger, and retries on `busy` with backoff.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::{Backoff, Client, ClientError, Message, Published};

/// How a [`Producer`] batches and retries.
#[derive(Clone, Debug)]
pub struct ProducerOptions {
    /// A batch is sent once it holds this many messages (≤ 1000)…
    pub batch_size: usize,
    /// …or this many encoded bytes…
    pub batch_bytes: usize,
    /// …or once its first message has waited this long.
    pub linger: Duration,
    /// Batches awaiting confirmation at once. With more than 1, batches may be stored out of
    /// order when one is retried.
    pub max_in_flight_batches: usize,
    /// Messages waiting to be batched before `send` waits (back pressure).
    pub queue_capacity: usize,
    /// Retry policy for `busy` refusals.
    pub backoff: Backoff,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            batch_size: 256,
            batch_bytes: 1024 * 1024,
            linger: Duration::from_millis(5),
            max_in_flight_batches: 4,
            queue_capacity: 10_000,
            backoff: Backoff::default(),
        }
    }
}

type Item = (Message, oneshot::Sender<Result<Published, ClientError>>);

/// Sends messages to one queue in batches. [`Producer::send`] resolves once the message is durable
/// (or definitively refused); batches fill to `batch_size` / `batch_bytes` or leave after
/// `linger`; a `busy` queue is retried with exponential backoff and full jitter, never sooner than
/// the server's retry-after.
///
/// ```no_run
/// # async fn demo() -> Result<(), weir_client::ClientError> {
/// use weir_client::{Client, Message, ProducerOptions};
///
/// let client = Client::connect("127.0.0.1:7400").await?;
/// let producer = client.producer("orders", ProducerOptions::default());
/// let confirmed = producer.send(Message::new("order 1").id("order-1")).await?;
/// assert!(!confirmed.duplicate);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Producer {
    queue: Arc<str>,
    tx: mpsc::Sender<Item>,
}

impl Producer {
    pub(crate) fn new(client: Client, queue: &str, options: ProducerOptions) -> Producer {
        let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
        let queue: Arc<str> = Arc::from(queue);
        tokio::spawn(batch_loop(client, queue.clone(), options, rx));
        Producer { queue, tx }
    }

    /// The queue this producer publishes to.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Queues `message` for the next batch and waits until it is durable.
    pub async fn send(&self, message: Message) -> Result<Published, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((message, reply))
            .await
            .map_err(|_| ClientError::disconnected("the producer task ended"))?;
        answer
            .await
            .map_err(|_| ClientError::disconnected("the producer task ended"))?
    }
}

async fn batch_loop(
    client: Client,
    queue: Arc<str>,
    options: ProducerOptions,
    mut rx: mpsc::Receiver<Item>,
) {
    let batch_size = options
        .batch_size
        .clamp(1, weir_proto::limits::MAX_BATCH_MESSAGES);
    let in_flight = Arc::new(Semaphore::new(options.max_in_flight_batches.max(1)));
    while let Some(first) = rx.recv().await {
        let deadline = Instant::now() + options.linger;
        let mut bytes = first.0.encoded_len();
        let mut batch = vec![first];
        while batch.len() < batch_size && bytes < options.batch_bytes {
            tokio::select! {
                item = rx.recv() => match item {
                    Some(item) => {
                        bytes = bytes.saturating_add(item.0.encoded_len());
                        batch.push(item);
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let client = client.clone();
        let queue = queue.clone();
        let backoff = options.backoff;
        tokio::spawn(async move {
            let (messages, replies): (Vec<Message>, Vec<_>) = batch.into_iter().unzip();
            match publish_with_retry(&client, &queue, messages, backoff).await {
                Ok(results) if results.len() == replies.len() => {
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(Ok(result));
                    }
                }
                Ok(results) => {
                    let e = ClientError::Protocol(format!(
                        "{} results for a batch of {}",
                        results.len(),
                        replies.len()
                    ));
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
                Err(e) => {
                    for reply in replies {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Publishes one batch, retrying `busy` refusals under `backoff`.
pub(crate) async fn publish_with_retry(
    client: &Client,
    queue: &str,
    messages: Vec<Message>,
    backoff: Backoff,
) -> Result<Vec<Published>, ClientError> {
    let mut attempt = 0;
    loop {
        match client.publish(queue, messages.clone()).await {
            Err(e) if e.is_retryable() && attempt < backoff.max_retries => {
                let wait = backoff.delay(attempt, e.retry_after());
                tracing::debug!(queue, attempt, ?wait, error = %e, "publish refused; retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
