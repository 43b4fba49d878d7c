//! Request handlers: one decoded request in, one answer frame out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use weir_broker::{Broker, BrokerError, QueueConfig};
use weir_proto::frame::{Frame, Payload, Target};
use weir_proto::limits::MAX_FRAME_BYTES;
use weir_proto::ErrorCode;
use weir_store::Durable;

use super::conn::Shared;
use super::source::{Dest, Source};
use super::subscription::{error_frame, pack, poll_sleep};
use super::{convert, streams, tasks, topics};

/// Answers one request. Publishes and receipt changes are answered only once durable.
pub(super) async fn handle(shared: &Shared, id: u64, request: Payload) -> Frame {
    match answer(shared, request).await {
        Ok(payload) => Frame::new(id, payload),
        Err(Failure::Broker(e)) => error_frame(id, &e),
        Err(Failure::Other(code, message)) => Frame::error(id, code, 0, message),
        Err(Failure::Task(e)) => {
            if e.code() == ErrorCode::Internal {
                tracing::error!(error = %e, "native task request failed");
            }
            Frame::error(id, e.code(), e.retry_after_ms().unwrap_or(0), e.to_string())
        }
    }
}

/// The answers of requests handled inline by the connection task: ready once their change is
/// durable (no task, no allocation beyond the broker's `Durable`). One broker call may answer
/// several requests (a [`Group`]).
#[derive(Debug)]
pub(super) struct Inline {
    durable: Durable,
    answers: Answers,
    /// For publishes: when the broker took them (the confirm latency is measured from here).
    published_at: Option<Instant>,
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

/// What a finished [`Inline`] gives back: the durability result, the answers to send, and for
/// publishes when the broker took them.
pub(super) type Done = (Result<(), BrokerError>, Answers, Option<Instant>);

impl Future for Inline {
    type Output = Done;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        match Pin::new(&mut this.durable).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(r) => {
                let answers = std::mem::replace(&mut this.answers, Answers::Sent);
                Poll::Ready((r.map_err(BrokerError::Storage), answers, this.published_at))
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

/// Consecutive publishes to one queue or topic (or acks on one queue or subscription), decoded in
/// one pass over the connection's input: handled as one broker call (one log append or journal
/// entry, one durability wait), each request still answered on its own.
#[derive(Debug, Default)]
pub(super) enum Group {
    #[default]
    Empty,
    Publish {
        dest: Dest,
        requests: Vec<(u64, Vec<weir_proto::frame::OutMessage>)>,
        messages: usize,
    },
    Ack {
        target: Target,
        requests: Vec<(u64, Vec<String>)>,
        receipts: usize,
    },
}

/// The publish request `dest` and `messages` came from.
fn publish_request(dest: Dest, messages: Vec<weir_proto::frame::OutMessage>) -> Payload {
    match dest {
        Dest::Queue(queue) => Payload::Publish { queue, messages },
        Dest::Topic(topic) => Payload::PublishTopic { topic, messages },
    }
}

/// A publish request's destination and messages; other requests come back unchanged.
// The request is moved either way (as everywhere a `Payload` goes); boxing it would only add an
// allocation.
#[allow(clippy::result_large_err)]
fn publish_parts(request: Payload) -> Result<(Dest, Vec<weir_proto::frame::OutMessage>), Payload> {
    match request {
        Payload::Publish { queue, messages } => Ok((Dest::Queue(queue), messages)),
        Payload::PublishTopic { topic, messages } => Ok((Dest::Topic(topic), messages)),
        other => Err(other),
    }
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
        let request = match publish_parts(request) {
            Ok((d, m)) => match self {
                g @ Group::Empty => {
                    *g = Group::Publish {
                        dest: d,
                        messages: m.len(),
                        requests: vec![(id, m)],
                    };
                    return None;
                }
                Group::Publish {
                    dest,
                    requests,
                    messages,
                } if *dest == d && *messages + m.len() <= max => {
                    *messages += m.len();
                    requests.push((id, m));
                    return None;
                }
                _ => publish_request(d, m),
            },
            Err(other) => other,
        };
        match (self, request) {
            (g @ Group::Empty, Payload::Ack { target, receipts }) => {
                *g = Group::Ack {
                    target,
                    receipts: receipts.len(),
                    requests: vec![(id, receipts)],
                };
                None
            }
            (
                Group::Ack {
                    target,
                    requests,
                    receipts,
                },
                Payload::Ack {
                    target: t,
                    receipts: r,
                },
            ) if *target == t && *receipts + r.len() <= max => {
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
                dest, mut requests, ..
            } if requests.len() == 1 => {
                // The guard says there is exactly one.
                let (id, messages) = requests.pop().expect("one");
                started(inline(broker, id, publish_request(dest, messages)), now)
            }
            Group::Ack {
                target,
                mut requests,
                ..
            } if requests.len() == 1 => {
                // The guard says there is exactly one.
                let (id, receipts) = requests.pop().expect("one");
                started(inline(broker, id, Payload::Ack { target, receipts }), now)
            }
            Group::Publish {
                dest,
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
                let outcome = match dest.publish(broker, merged) {
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
                    published_at: Some(Instant::now()),
                })
            }
            Group::Ack {
                target,
                requests,
                receipts,
            } => {
                let mut all = Vec::with_capacity(receipts);
                let mut counts = Vec::with_capacity(requests.len());
                for (id, r) in requests {
                    counts.push((id, r.len()));
                    all.extend(r);
                }
                let outcome = match target.ack(broker, &all) {
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
                    published_at: None,
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

/// Handles a publish, ack, nack, extend, append or commit without waiting: the broker call
/// happens now, the answer is sent once the [`Inline`] resolves (after durability).
pub(super) fn inline(broker: &Broker, id: u64, request: Payload) -> Started {
    match start_inline(broker, id, request) {
        Ok(pending) => Started::Pending(pending),
        Err(answer) => Started::Answer(answer),
    }
}

fn start_inline(broker: &Broker, id: u64, request: Payload) -> Result<Inline, Box<Frame>> {
    let refuse = |e: BrokerError| Box::new(error_frame(id, &e));
    let request = match publish_parts(request) {
        Ok((dest, messages)) => {
            let messages = messages.into_iter().map(convert::message).collect();
            let outcome = dest.publish(broker, messages).map_err(refuse)?;
            let results = outcome
                .messages
                .into_iter()
                .map(|p| weir_proto::frame::PublishResult {
                    id: p.id,
                    duplicate: p.duplicate,
                })
                .collect();
            return Ok(Inline {
                durable: outcome.durable,
                answers: Answers::One(id, Payload::Published(results)),
                published_at: Some(Instant::now()),
            });
        }
        Err(other) => other,
    };
    let (durable, answer) = match request {
        Payload::Ack { target, receipts } => {
            receipts_done(target.ack(broker, &receipts).map_err(refuse)?)
        }
        Payload::Nack {
            target,
            receipts,
            delay_ms,
        } => receipts_done(target.nack(broker, &receipts, delay_ms).map_err(refuse)?),
        Payload::Extend {
            target,
            receipts,
            lease_ms,
        } => receipts_done(target.extend(broker, &receipts, lease_ms).map_err(refuse)?),
        Payload::Append { stream, records } => {
            streams::start_append(broker, &stream, records).map_err(refuse)?
        }
        Payload::CommitOffsets {
            stream,
            group,
            member,
            generation,
            offsets,
        } => {
            let member = member.as_deref().map(|m| (m, generation));
            let offsets: Vec<(u32, u64)> =
                offsets.iter().map(|o| (o.partition, o.offset)).collect();
            let durable = broker
                .commit_offsets(&stream, &group, member, &offsets)
                .map_err(refuse)?;
            (durable, Payload::Ok)
        }
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
        published_at: None,
    })
}

fn receipts_done(outcome: weir_broker::ReceiptOutcome) -> (Durable, Payload) {
    let answer = Payload::ReceiptsDone {
        done: done_count(outcome.done),
        invalid: outcome.invalid,
    };
    (outcome.durable, answer)
}

/// Why a request failed: a broker refusal, or another error with its code.
#[derive(Debug)]
pub(super) enum Failure {
    Broker(BrokerError),
    Task(weir_tasks::TaskError),
    Other(ErrorCode, String),
}

impl Failure {
    /// A `bad_request` failure.
    pub(super) fn bad_request(message: impl Into<String>) -> Failure {
        Failure::Other(ErrorCode::BadRequest, message.into())
    }

    /// A request routed to a handler that does not answer it (a bug in the routing).
    pub(super) fn misrouted(request: &Payload) -> Failure {
        Failure::Other(
            ErrorCode::Internal,
            format!(
                "frame type 0x{:02x} was routed to the wrong handler",
                request.type_byte()
            ),
        )
    }
}

impl From<BrokerError> for Failure {
    fn from(e: BrokerError) -> Self {
        Failure::Broker(e)
    }
}

impl From<weir_tasks::TaskError> for Failure {
    fn from(e: weir_tasks::TaskError) -> Self {
        Failure::Task(e)
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
        request @ (Payload::CreateTopic { .. }
        | Payload::DeleteTopic { .. }
        | Payload::TopicStats { .. }
        | Payload::CreateSubscription { .. }
        | Payload::DeleteSubscription { .. }) => topics::answer(shared, request).await,
        request @ (Payload::CreateStream { .. }
        | Payload::DeleteStream { .. }
        | Payload::StreamStats { .. }
        | Payload::Read { .. }
        | Payload::JoinGroup { .. }
        | Payload::Heartbeat { .. }
        | Payload::LeaveGroup { .. }
        | Payload::GroupStatus { .. }) => streams::answer(shared, request).await,
        request @ (Payload::SubmitTask(_)
        | Payload::GetTask { .. }
        | Payload::CancelTask { .. }) => tasks::answer(shared, request).await,
        Payload::CreateQueue { queue, options } => {
            let broker = broker.clone();
            // Admin path: the broker may fsync synchronously here.
            blocking(move || {
                let base = match broker.queue_stats(&queue) {
                    Ok(stats) => stats.config,
                    Err(BrokerError::NotFound { .. }) => QueueConfig::default(),
                    Err(e) => return Err(e),
                };
                let config = convert::apply_options(base, *options);
                let (stats, created) = broker.create_queue(&queue, config)?;
                Ok(Payload::QueueInfo(Box::new(convert::info(stats, created))))
            })
            .await
        }
        Payload::DeleteQueue { queue } => {
            let broker = broker.clone();
            blocking(move || broker.delete_queue(&queue).map(|()| Payload::Ok)).await
        }
        Payload::QueueStats { queue } => {
            let stats = broker.queue_stats(&queue)?;
            Ok(Payload::QueueInfo(Box::new(convert::info(stats, false))))
        }
        Payload::Receive {
            target,
            max,
            lease_ms,
            wait_ms,
        } => receive(shared, &target, max as usize, lease_ms, wait_ms).await,
        request @ (Payload::Publish { .. }
        | Payload::PublishTopic { .. }
        | Payload::Ack { .. }
        | Payload::Nack { .. }
        | Payload::Extend { .. }
        | Payload::Append { .. }
        | Payload::CommitOffsets { .. }) => {
            // Normally handled inline by the connection task; the same path, awaited here.
            match start_inline(broker, 0, request) {
                Ok(inline) => {
                    let (result, answers, _) = inline.await;
                    result?;
                    match answers {
                        Answers::One(_, payload) => Ok(payload),
                        _ => Err(Failure::Other(
                            ErrorCode::Internal,
                            "one request got several answers".into(),
                        )),
                    }
                }
                Err(frame) => match frame.payload {
                    Payload::Error(e) => Err(Failure::Other(e.code, e.message)),
                    other => Ok(other),
                },
            }
        }
        other => Err(Failure::Other(
            ErrorCode::BadRequest,
            format!("frame type 0x{:02x} is not a request", other.type_byte()),
        )),
    }
}

/// Runs an admin call (which may fsync synchronously) off the async workers.
pub(super) async fn blocking(
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
    target: &Target,
    max: usize,
    lease_ms: Option<u64>,
    wait_ms: u64,
) -> Result<Payload, Failure> {
    let broker: &Arc<Broker> = &shared.broker;
    let mut watch = if wait_ms > 0 {
        Some(target.watch(broker)?)
    } else {
        None
    };
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    loop {
        if let Some(w) = watch.as_mut() {
            w.borrow_and_update();
        }
        let deliveries = target.receive(broker, max, lease_ms)?;
        let Some(w) = watch.as_mut().filter(|_| deliveries.is_empty()) else {
            return Ok(one_frame(broker, target, deliveries));
        };
        let now = Instant::now();
        if now >= deadline {
            return Ok(Payload::Deliveries(Vec::new()));
        }
        let sleep = poll_sleep(broker, target, shared.limits.max_poll_sleep).min(deadline - now);
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
fn one_frame(broker: &Broker, target: &Target, deliveries: Vec<weir_broker::Delivery>) -> Payload {
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
            %target,
            returned = overflow.len(),
            limit = MAX_FRAME_BYTES,
            "receive answer over the frame limit; giving the rest back"
        );
        if let Ok(outcome) = target.nack(broker, &overflow, Some(0)) {
            // Dropping `durable` does not cancel the write; nothing waits for this answer.
            drop(outcome.durable);
        }
    }
    Payload::Deliveries(first)
}
