//! The batching loop shared by [`crate::Producer`] (messages to a queue or topic) and
//! [`crate::StreamProducer`] (records to a stream): items fill a batch up to a count, a byte size
//! or a linger time; batches go out with a bounded number in flight, `busy` refusals retried
//! with backoff; each item's caller learns its own result once the batch is durable.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

use crate::{ClientError, ProducerOptions};

/// Where batches go.
pub(crate) trait Sink: Clone + Send + Sync + 'static {
    /// What callers send.
    type Item: Clone + Send + 'static;
    /// What each item's caller gets back.
    type Out: Send + 'static;

    /// The item's size on the wire.
    fn encoded_len(item: &Self::Item) -> usize;

    /// Sends one batch (once; retries are the loop's), one result per item in order.
    fn send(
        &self,
        items: Vec<Self::Item>,
    ) -> impl Future<Output = Result<Vec<Self::Out>, ClientError>> + Send;

    /// A name for logs.
    fn describe(&self) -> String;
}

/// An item and where its result goes.
pub(crate) type Entry<S> = (
    <S as Sink>::Item,
    oneshot::Sender<Result<<S as Sink>::Out, ClientError>>,
);

/// Starts the loop; items sent on the returned channel are batched into `sink`.
pub(crate) fn start<S: Sink>(sink: S, options: ProducerOptions) -> mpsc::Sender<Entry<S>> {
    let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
    tokio::spawn(batch_loop(sink, options, rx));
    tx
}

/// Queues `item` on `tx` and waits for its result.
pub(crate) async fn send<S: Sink>(
    tx: &mpsc::Sender<Entry<S>>,
    item: S::Item,
) -> Result<S::Out, ClientError> {
    let (reply, answer) = oneshot::channel();
    tx.send((item, reply))
        .await
        .map_err(|_| ClientError::disconnected("the producer task ended"))?;
    answer
        .await
        .map_err(|_| ClientError::disconnected("the producer task ended"))?
}

async fn batch_loop<S: Sink>(sink: S, options: ProducerOptions, mut rx: mpsc::Receiver<Entry<S>>) {
    let batch_size = options
        .batch_size
        .clamp(1, weir_proto::limits::MAX_BATCH_MESSAGES);
    let in_flight = Arc::new(Semaphore::new(options.max_in_flight_batches.max(1)));
    while let Some(first) = rx.recv().await {
        let deadline = Instant::now() + options.linger;
        let mut bytes = S::encoded_len(&first.0);
        let mut batch = vec![first];
        while batch.len() < batch_size && bytes < options.batch_bytes {
            tokio::select! {
                item = rx.recv() => match item {
                    Some(item) => {
                        bytes = bytes.saturating_add(S::encoded_len(&item.0));
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
        let sink = sink.clone();
        let backoff = options.backoff;
        tokio::spawn(async move {
            let (items, replies): (Vec<S::Item>, Vec<_>) = batch.into_iter().unzip();
            match send_with_retry(&sink, items, backoff).await {
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

/// Sends one batch, retrying `busy` refusals under `backoff`.
pub(crate) async fn send_with_retry<S: Sink>(
    sink: &S,
    items: Vec<S::Item>,
    backoff: crate::Backoff,
) -> Result<Vec<S::Out>, ClientError> {
    let mut attempt = 0;
    loop {
        match sink.send(items.clone()).await {
            Err(e) if e.is_retryable() && attempt < backoff.max_retries => {
                let wait = backoff.delay(attempt, e.retry_after());
                tracing::debug!(
                    to = %sink.describe(),
                    attempt,
                    ?wait,
                    error = %e,
                    "batch refused; retrying"
                );
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
