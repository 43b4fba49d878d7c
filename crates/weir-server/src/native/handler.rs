//! Request handlers: one decoded request in, one answer frame out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use weir_broker::{Broker, BrokerError, QueueConfig};
use weir_proto::frame::{Frame, Payload};
use weir_proto::limits::MAX_FRAME_BYTES;
use weir_proto::ErrorCode;
use weir_store::Durable;

use super::conn::Shared;
use super::convert;
use super::subscription::{error_frame, pack, poll_sleep};

/// Answers one request. Publishes and receipt changes are answered only once durable.
pub(super) async fn handle(shared: &Shared, id: u64, request: Payload) -> Frame {
    match answer(shared, request).await {
        Ok(payload) => Frame::new(id, payload),
        Err(Failure::Broker(e)) => error_frame(id, &e),
        Err(Failure::Other(code, message)) => Frame::error(id, code, 0, message),
    }
}

/// The answer of a request handled inline by the connection task: ready once its change is
/// durable (no task, no allocation beyond the broker's `Durable`).
#[derive(Debug)]
pub(super) struct Inline {
    id: u64,
    durable: Durable,
    answer: Option<Payload>,
}

impl Future for Inline {
    type Output = Frame;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Frame> {
        let this = &mut *self;
        match Pin::new(&mut this.durable).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => {
                let payload = this.answer.take().unwrap_or(Payload::Ok);
                Poll::Ready(Frame::new(this.id, payload))
            }
            Poll::Ready(Err(e)) => Poll::Ready(error_frame(this.id, &BrokerError::Storage(e))),
        }
    }
}

/// What [`inline`] made of a request.
// `Pending` is moved once, into the connection's `FuturesUnordered`: boxing it would cost an
// allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Started {
    /// Answer once this resolves (after durability).
    Pending(Inline),
    /// Answer this at once (the request failed, nothing to wait for).
    Answer(Box<Frame>),
}

/// Handles a publish, ack, nack or extend without waiting: the broker call happens now, the
/// answer is sent once the [`Inline`] resolves (after durability).
pub(super) fn inline(broker: &Broker, id: u64, request: Payload) -> Started {
    match start_inline(broker, id, request) {
        Ok(pending) => Started::Pending(pending),
        Err(answer) => Started::Answer(answer),
    }
}

fn start_inline(broker: &Broker, id: u64, request: Payload) -> Result<Inline, Box<Frame>> {
    let refuse = |e: BrokerError| Box::new(error_frame(id, &e));
    let (durable, answer) = match request {
        Payload::Publish { queue, messages } => {
            let messages = messages.into_iter().map(convert::message).collect();
            let outcome = broker.publish(&queue, messages).map_err(refuse)?;
            let results = outcome
                .messages
                .into_iter()
                .map(|p| weir_proto::frame::PublishResult {
                    id: p.id,
                    duplicate: p.duplicate,
                })
                .collect();
            (outcome.durable, Payload::Published(results))
        }
        Payload::Ack { queue, receipts } => {
            receipts_done(broker.ack(&queue, &receipts).map_err(refuse)?)
        }
        Payload::Nack {
            queue,
            receipts,
            delay_ms,
        } => receipts_done(broker.nack(&queue, &receipts, delay_ms).map_err(refuse)?),
        Payload::Extend {
            queue,
            receipts,
            lease_ms,
        } => receipts_done(broker.extend(&queue, &receipts, lease_ms).map_err(refuse)?),
        other => {
            let message = format!(
                "frame type 0x{:02x} is not handled inline",
                other.type_byte()
            );
            return Err(Box::new(Frame::error(id, ErrorCode::Internal, 0, message)));
        }
    };
    Ok(Inline {
        id,
        durable,
        answer: Some(answer),
    })
}

fn receipts_done(outcome: weir_broker::ReceiptOutcome) -> (Durable, Payload) {
    let answer = Payload::ReceiptsDone {
        done: done_count(outcome.done),
        invalid: outcome.invalid,
    };
    (outcome.durable, answer)
}

#[derive(Debug)]
enum Failure {
    Broker(BrokerError),
    Other(ErrorCode, String),
}

impl From<BrokerError> for Failure {
    fn from(e: BrokerError) -> Self {
        Failure::Broker(e)
    }
}

impl From<weir_store::StoreError> for Failure {
    fn from(e: weir_store::StoreError) -> Self {
        Failure::Broker(BrokerError::Storage(e))
    }
}

fn done_count(n: usize) -> u32 {
    // A receipt batch holds at most MAX_BATCH_MESSAGES receipts.
    u32::try_from(n).unwrap_or(u32::MAX)
}

async fn answer(shared: &Shared, request: Payload) -> Result<Payload, Failure> {
    let broker = &shared.broker;
    match request {
        Payload::CreateQueue { queue, options } => {
            let broker = broker.clone();
            // Admin path: the broker may fsync synchronously here.
            blocking(move || {
                let base = match broker.queue_stats(&queue) {
                    Ok(stats) => stats.config,
                    Err(BrokerError::NotFound { .. }) => QueueConfig::default(),
                    Err(e) => return Err(e),
                };
                let config = convert::apply_options(base, options);
                let (stats, created) = broker.create_queue(&queue, config)?;
                Ok(Payload::QueueInfo(convert::info(stats, created)))
            })
            .await
        }
        Payload::DeleteQueue { queue } => {
            let broker = broker.clone();
            blocking(move || broker.delete_queue(&queue).map(|()| Payload::Ok)).await
        }
        Payload::QueueStats { queue } => {
            let stats = broker.queue_stats(&queue)?;
            Ok(Payload::QueueInfo(convert::info(stats, false)))
        }
        Payload::Publish { queue, messages } => {
            let messages = messages.into_iter().map(convert::message).collect();
            let outcome = broker.publish(&queue, messages)?;
            outcome.durable.await?;
            let results = outcome
                .messages
                .into_iter()
                .map(|p| weir_proto::frame::PublishResult {
                    id: p.id,
                    duplicate: p.duplicate,
                })
                .collect();
            Ok(Payload::Published(results))
        }
        Payload::Receive {
            queue,
            max,
            lease_ms,
            wait_ms,
        } => receive(shared, &queue, max as usize, lease_ms, wait_ms).await,
        Payload::Ack { queue, receipts } => {
            let outcome = broker.ack(&queue, &receipts)?;
            outcome.durable.await?;
            Ok(Payload::ReceiptsDone {
                done: done_count(outcome.done),
                invalid: outcome.invalid,
            })
        }
        Payload::Nack {
            queue,
            receipts,
            delay_ms,
        } => {
            let outcome = broker.nack(&queue, &receipts, delay_ms)?;
            outcome.durable.await?;
            Ok(Payload::ReceiptsDone {
                done: done_count(outcome.done),
                invalid: outcome.invalid,
            })
        }
        Payload::Extend {
            queue,
            receipts,
            lease_ms,
        } => {
            let outcome = broker.extend(&queue, &receipts, lease_ms)?;
            outcome.durable.await?;
            Ok(Payload::ReceiptsDone {
                done: done_count(outcome.done),
                invalid: outcome.invalid,
            })
        }
        other => Err(Failure::Other(
            ErrorCode::BadRequest,
            format!("frame type 0x{:02x} is not a request", other.type_byte()),
        )),
    }
}

async fn blocking(
    f: impl FnOnce() -> Result<Payload, BrokerError> + Send + 'static,
) -> Result<Payload, Failure> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => Ok(result?),
        Err(e) => Err(Failure::Other(
            ErrorCode::Internal,
            format!("admin task failed: {e}"),
        )),
    }
}

/// Pull with long poll: returns as soon as something is leased, or when `wait_ms` passes, or when
/// the connection closes.
async fn receive(
    shared: &Shared,
    queue: &str,
    max: usize,
    lease_ms: Option<u64>,
    wait_ms: u64,
) -> Result<Payload, Failure> {
    let broker: &Arc<Broker> = &shared.broker;
    let mut watch = if wait_ms > 0 {
        Some(broker.watch_queue(queue)?)
    } else {
        None
    };
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    loop {
        if let Some(w) = watch.as_mut() {
            w.borrow_and_update();
        }
        let deliveries = broker.receive(queue, max, lease_ms)?;
        let Some(w) = watch.as_mut().filter(|_| deliveries.is_empty()) else {
            return Ok(one_frame(broker, queue, deliveries));
        };
        let now = Instant::now();
        if now >= deadline {
            return Ok(Payload::Deliveries(Vec::new()));
        }
        let sleep = poll_sleep(broker, queue, shared.limits.max_poll_sleep).min(deadline - now);
        tokio::select! {
            changed = w.changed() => {
                if changed.is_err() {
                    return Ok(Payload::Deliveries(Vec::new()));
                }
            }
            () = tokio::time::sleep(sleep) => {}
            () = shared.closing.cancelled() => return Ok(Payload::Deliveries(Vec::new())),
        }
    }
}

/// The deliveries that fit one frame; any beyond are given back at once (a rare case: it takes
/// more than 32 MiB of bodies in one receive).
fn one_frame(broker: &Broker, queue: &str, deliveries: Vec<weir_broker::Delivery>) -> Payload {
    let mut frames = pack(0, deliveries).into_iter();
    let first = match frames.next() {
        Some(Frame {
            payload: Payload::Deliveries(first),
            ..
        }) => first,
        _ => Vec::new(),
    };
    let overflow: Vec<String> = frames
        .flat_map(|f| match f.payload {
            Payload::Deliveries(ds) => ds.into_iter().map(|d| d.receipt).collect(),
            _ => Vec::new(),
        })
        .collect();
    if !overflow.is_empty() {
        tracing::debug!(
            queue,
            returned = overflow.len(),
            limit = MAX_FRAME_BYTES,
            "receive answer over the frame limit; giving the rest back"
        );
        if let Ok(outcome) = broker.nack(queue, &overflow, Some(0)) {
            // Dropping `durable` does not cancel the write; nothing waits for this answer.
            drop(outcome.durable);
        }
    }
    Payload::Deliveries(first)
}
