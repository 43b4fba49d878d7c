//! What queues and topic subscriptions share over HTTP: publish batches, long-poll receive, and
//! ack / nack / extend. A [`Source`] names where messages go to or come from; the queue and topic
//! handlers only pick the source.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::watch;
use weir_broker::{Delivery, PublishOutcome, ReceiptOutcome};
use weir_proto::limits::{
    MAX_BATCH_MESSAGES, MAX_LEASE_MS, MAX_RECEIVE_MESSAGES, MAX_WAIT_MS, MIN_LEASE_MS,
};
use weir_proto::ErrorCode;

use super::error::ApiError;
use super::wire::{delivery_json, PublishBody, PublishedOut, ReceiptsBody, ReceiveBody};
use super::AppState;

/// A queue, or a topic subscription (which behaves exactly like a queue).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source<'a> {
    /// `/v1/queues/{q}`.
    Queue(&'a str),
    /// `/v1/topics/{t}/subscriptions/{s}`.
    Subscription(&'a str, &'a str),
}

impl Source<'_> {
    fn watch(self, s: &AppState) -> Result<watch::Receiver<u64>, ApiError> {
        Ok(match self {
            Source::Queue(q) => s.broker.watch_queue(q)?,
            Source::Subscription(t, sub) => s.broker.watch_subscription(t, sub)?,
        })
    }

    fn receive(
        self,
        s: &AppState,
        max: usize,
        lease: Option<u64>,
    ) -> Result<Vec<Delivery>, ApiError> {
        Ok(match self {
            Source::Queue(q) => s.broker.receive(q, max, lease)?,
            Source::Subscription(t, sub) => s.broker.receive_subscription(t, sub, max, lease)?,
        })
    }

    fn next_due_ms(self, s: &AppState) -> Result<Option<u64>, ApiError> {
        Ok(match self {
            Source::Queue(q) => s.broker.next_due_ms(q)?,
            Source::Subscription(t, sub) => s.broker.subscription_next_due_ms(t, sub)?,
        })
    }

    fn gone(self) -> ApiError {
        let what = match self {
            Source::Queue(q) => format!("queue {q}"),
            Source::Subscription(t, sub) => format!("subscription {t}/{sub}"),
        };
        ApiError::new(ErrorCode::NotFound, format!("{what} was deleted"))
    }
}

/// `value` if within `min..=max`, else a 400 naming the field.
pub(crate) fn check_range(field: &str, value: u64, min: u64, max: u64) -> Result<u64, ApiError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::bad_request(format!(
            "{field} is {value}; it must be between {min} and {max}"
        )))
    }
}

/// Checks the size of a batch of `len` `plural` (e.g. "messages", "records"): 400 when empty,
/// 413 beyond [`MAX_BATCH_MESSAGES`].
pub(crate) fn check_batch_len(len: usize, plural: &str, singular: &str) -> Result<(), ApiError> {
    if len == 0 {
        return Err(ApiError::bad_request(format!(
            "{plural} must hold at least one {singular}"
        )));
    }
    if len > MAX_BATCH_MESSAGES {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("batch of {len} {plural} exceeds the limit of {MAX_BATCH_MESSAGES}"),
        ));
    }
    Ok(())
}

/// Validates and converts a publish request: 400 when empty, 413 beyond the batch limit.
pub(crate) fn messages(body: PublishBody) -> Result<Vec<weir_broker::NewMessage>, ApiError> {
    check_batch_len(body.messages.len(), "messages", "message")?;
    body.messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| m.into_new_message(i))
        .collect()
}

/// Awaits a publish's durability, records the confirm latency, and answers DESIGN §4's shape.
pub(crate) async fn confirm(
    state: &AppState,
    started: Instant,
    outcome: PublishOutcome,
) -> Result<Value, ApiError> {
    outcome.durable.await?;
    state.metrics.observe_confirm(started.elapsed());
    let out: Vec<PublishedOut> = outcome
        .messages
        .into_iter()
        .map(|p| PublishedOut {
            id: p.id,
            duplicate: p.duplicate,
        })
        .collect();
    Ok(json!({ "messages": out }))
}

/// Long-polls `source` per a receive request and answers the deliveries.
pub(crate) async fn receive(
    state: &AppState,
    source: Source<'_>,
    body: ReceiveBody,
) -> Result<Value, ApiError> {
    let max = check_range("max", body.max.unwrap_or(1), 1, MAX_RECEIVE_MESSAGES as u64)? as usize;
    let wait_ms = check_range("wait_ms", body.wait_ms.unwrap_or(0), 0, MAX_WAIT_MS)?;
    let lease_ms = body
        .lease_ms
        .map(|l| check_range("lease_ms", l, MIN_LEASE_MS, MAX_LEASE_MS))
        .transpose()?;
    let deliveries = receive_waiting(state, source, max, wait_ms, lease_ms).await?;
    let now = state.clock_ms();
    for d in &deliveries {
        state
            .metrics
            .observe_delivery_age_ms(now.saturating_sub(d.enqueued_at_ms));
    }
    let out: Vec<Value> = deliveries.iter().map(delivery_json).collect();
    Ok(json!({ "messages": out }))
}

/// Receives, waiting on the source's watch channel and its next due time until `wait_ms` passes.
pub(crate) async fn receive_waiting(
    state: &AppState,
    source: Source<'_>,
    max: usize,
    wait_ms: u64,
    lease_ms: Option<u64>,
) -> Result<Vec<Delivery>, ApiError> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let mut watch = source.watch(state)?;
    loop {
        watch.borrow_and_update();
        let got = source.receive(state, max, lease_ms)?;
        let now = tokio::time::Instant::now();
        if !got.is_empty() || now >= deadline {
            return Ok(got);
        }
        let mut wake = deadline;
        if let Some(due_ms) = source.next_due_ms(state)? {
            let in_ms = due_ms.saturating_sub(state.clock_ms());
            wake = wake.min(now + Duration::from_millis(in_ms.max(1)));
        }
        tokio::select! {
            changed = watch.changed() => {
                if changed.is_err() {
                    return Err(source.gone());
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// What a settle request does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Settle {
    /// Acknowledge.
    Ack,
    /// Return for redelivery.
    Nack,
    /// Extend the lease.
    Extend,
}

/// Validates an ack / nack / extend request, applies it to `source` and answers
/// `{"acked"|"nacked"|"extended": n, "invalid": [...]}` once durable.
pub(crate) async fn settle(
    state: &AppState,
    source: Source<'_>,
    settle: Settle,
    body: ReceiptsBody,
) -> Result<Value, ApiError> {
    if body.receipts.len() > MAX_BATCH_MESSAGES {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "{} receipts exceed the limit of {MAX_BATCH_MESSAGES}",
                body.receipts.len()
            ),
        ));
    }
    let b = &state.broker;
    let r = &body.receipts;
    let (field, outcome): (&str, ReceiptOutcome) = match settle {
        Settle::Ack => {
            if body.delay_ms.is_some() || body.lease_ms.is_some() {
                return Err(ApiError::bad_request("ack takes only receipts"));
            }
            let o = match source {
                Source::Queue(q) => b.ack(q, r)?,
                Source::Subscription(t, s) => b.ack_subscription(t, s, r)?,
            };
            ("acked", o)
        }
        Settle::Nack => {
            if body.lease_ms.is_some() {
                return Err(ApiError::bad_request("nack takes receipts and delay_ms"));
            }
            let o = match source {
                Source::Queue(q) => b.nack(q, r, body.delay_ms)?,
                Source::Subscription(t, s) => b.nack_subscription(t, s, r, body.delay_ms)?,
            };
            ("nacked", o)
        }
        Settle::Extend => {
            if body.delay_ms.is_some() {
                return Err(ApiError::bad_request("extend takes receipts and lease_ms"));
            }
            let lease_ms = body
                .lease_ms
                .ok_or_else(|| ApiError::bad_request("extend needs lease_ms"))?;
            let lease_ms = check_range("lease_ms", lease_ms, MIN_LEASE_MS, MAX_LEASE_MS)?;
            let o = match source {
                Source::Queue(q) => b.extend(q, r, lease_ms)?,
                Source::Subscription(t, s) => b.extend_subscription(t, s, r, lease_ms)?,
            };
            ("extended", o)
        }
    };
    outcome.durable.await?;
    Ok(json!({ field: outcome.done, "invalid": outcome.invalid }))
}
