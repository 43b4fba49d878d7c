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

/// The answers of requests handled inline by the connection task: ready once their change is
/// durable (no task, no allocation beyond the broker's `Durable`). One broker call may answer
/// several requests (a [`Group`]).
#[derive(Debug)]
pub(super) struct Inline {
    durable: Durable,
    answers: Answers,
}

/// The answers an [`Inline`] sends once durable, by request id.
// `One` is the common case; boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Answers {
    One(u64, Payload),
    Many(Vec<(u64, Payload)>),
    Sent,
}

impl Answers {
    /// How many requests these answer.
    pub(super) fn requests(&self) -> usize {
        match self {
            Answers::One(..) => 1,
            Answers::Many(v) => v.len(),
            Answers::Sent => 0,
        }
    }

    /// The answer frames: these, or the durability failure for each request.
    pub(super) fn frames(self, result: &Result<(), BrokerError>, mut each: impl FnMut(&Frame)) {
        let mut one = |id: u64, payload: Payload| match result {
            Ok(()) => each(&Frame::new(id, payload)),
            Err(e) => each(&error_frame(id, e)),
        };
        match self {
            Answers::One(id, payload) => one(id, payload),
            Answers::Many(all) => {
                for (id, payload) in all {
                    one(id, payload);
                }
            }
            Answers::Sent => {}
        }
    }
}

impl Future for Inline {
    type Output = (Result<(), BrokerError>, Answers);
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match Pin::new(&mut this.durable).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                let answers = std::mem::replace(&mut this.answers, Answers::Sent);
                Poll::Ready((r.map_err(BrokerError::Storage), answers))
            }
        }
    }
}

impl Inline {
    /// How many requests this answers.
    pub(super) fn requests(&self) -> usize {
        self.answers.requests()
    }
}

/// Consecutive publishes (or acks) to one queue, decoded in one pass over the connection's input:
/// handled as one broker call (one log append or journal entry, one durability wait), each
/// request still answered on its own.
#[derive(Debug, Default)]
pub(super) enum Group {
    #[default]
    Empty,
    Publish {
        queue: String,
        requests: Vec<(u64, Vec<weir_proto::frame::OutMessage>)>,
        messages: usize,
    },
    Ack {
        queue: String,
        requests: Vec<(u64, Vec<String>)>,
        receipts: usize,
    },
}

impl Group {
    /// Requests held.
    pub(super) fn len(&self) -> usize {
        match self {
            Group::Empty => 0,
            Group::Publish { requests, .. } => requests.len(),
            Group::Ack { requests, .. } => requests.len(),
        }
    }

    /// Takes `request` into the group if it is a publish / ack that fits; otherwise gives it
    /// back (the caller flushes the group first, then starts a new one with it).
    pub(super) fn add(&mut self, id: u64, request: Payload) -> Option<Payload> {
        let max = weir_proto::limits::MAX_BATCH_MESSAGES;
        match (self, request) {
            (g @ Group::Empty, Payload::Publish { queue, messages }) => {
                *g = Group::Publish {
                    queue,
                    messages: messages.len(),
                    requests: vec![(id, messages)],
                };
                None
            }
            (g @ Group::Empty, Payload::Ack { queue, receipts }) => {
                *g = Group::Ack {
                    queue,
                    receipts: receipts.len(),
                    requests: vec![(id, receipts)],
                };
                None
            }
            (
                Group::Publish {
                    queue,
                    requests,
                    messages,
                },
                Payload::Publish {
                    queue: q,
                    messages: m,
                },
            ) if *queue == q && *messages + m.len() <= max => {
                *messages += m.len();
                requests.push((id, m));
                None
            }
            (
                Group::Ack {
                    queue,
                    requests,
                    receipts,
                },
                Payload::Ack {
                    queue: q,
                    receipts: r,
                },
            ) if *queue == q && *receipts + r.len() <= max => {
                *receipts += r.len();
                requests.push((id, r));
                None
            }
            (_, request) => Some(request),
        }
    }

    /// Runs the group's broker call. Answers to send at once go to `now`.
    pub(super) fn run(self, broker: &Broker, mut now: impl FnMut(&Frame)) -> Option<Inline> {
        match self {
            Group::Empty => None,
            Group::Publish {
                queue,
                mut requests,
                ..
            } if requests.len() == 1 => {
                let (id, messages) = requests.pop().expect("one");
                started(
                    inline(broker, id, Payload::Publish { queue, messages }),
                    now,
                )
            }
            Group::Ack {
                queue,
                mut requests,
                ..
            } if requests.len() == 1 => {
                let (id, receipts) = requests.pop().expect("one");
                started(inline(broker, id, Payload::Ack { queue, receipts }), now)
            }
            Group::Publish {
                queue,
                requests,
                messages,
            } => {
                // Each request is validated alone, so a bad one is refused alone; the valid
                // ones are stored together (or refused together: busy, storage).
                let mut merged = Vec::with_capacity(messages);
                let mut valid: Vec<(u64, usize)> = Vec::with_capacity(requests.len());
                for (id, wire) in requests {
                    let batch: Vec<_> = wire.into_iter().map(convert::message).collect();
                    match broker.check_messages(&batch) {
                        Ok(()) => {
                            valid.push((id, batch.len()));
                            merged.extend(batch);
                        }
                        Err(e) => now(&error_frame(id, &e)),
                    }
                }
                if valid.is_empty() {
                    return None;
                }
                let outcome = match broker.publish(&queue, merged) {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        for (id, _) in valid {
                            now(&error_frame(id, &e));
                        }
                        return None;
                    }
                };
                let mut results = outcome.messages.into_iter();
                let answers = valid
                    .into_iter()
                    .map(|(id, n)| {
                        let published = results
                            .by_ref()
                            .take(n)
                            .map(|p| weir_proto::frame::PublishResult {
                                id: p.id,
                                duplicate: p.duplicate,
                            })
                            .collect();
                        (id, Payload::Published(published))
                    })
                    .collect();
                Some(Inline {
                    durable: outcome.durable,
                    answers: Answers::Many(answers),
                })
            }
            Group::Ack {
                queue,
                requests,
                receipts,
            } => {
                let mut all = Vec::with_capacity(receipts);
                let mut counts = Vec::with_capacity(requests.len());
                for (id, r) in requests {
                    counts.push((id, r.len()));
                    all.extend(r);
                }
                let outcome = match broker.ack(&queue, &all) {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        for (id, _) in counts {
                            now(&error_frame(id, &e));
                        }
                        return None;
                    }
                };
                // Invalid receipts come back in input order. Of equal receipts only the first
                // can be valid, so match from the end: a repeat is charged to the later request.
                let mut invalid = outcome.invalid.into_iter().rev().peekable();
                let mut end = all.len();
                let mut answers: Vec<(u64, Payload)> = counts
                    .into_iter()
                    .rev()
                    .map(|(id, n)| {
                        let start = end - n;
                        let mut mine = Vec::new();
                        for r in all[start..end].iter().rev() {
                            if invalid.peek() == Some(r) {
                                mine.extend(invalid.next());
                            }
                        }
                        end = start;
                        mine.reverse();
                        let done = done_count(n - mine.len());
                        (
                            id,
                            Payload::ReceiptsDone {
                                done,
                                invalid: mine,
                            },
                        )
                    })
                    .collect();
                answers.reverse();
                Some(Inline {
                    durable: outcome.durable,
                    answers: Answers::Many(answers),
                })
            }
        }
    }
}

fn started(s: Started, mut now: impl FnMut(&Frame)) -> Option<Inline> {
    match s {
        Started::Pending(inline) => Some(inline),
        Started::Answer(frame) => {
            now(&frame);
            None
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
        durable,
        answers: Answers::One(id, answer),
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
