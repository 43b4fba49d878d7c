//! Push subscriptions: one task per subscription leases messages only while the subscription
//! holds credits, so a slow consumer never makes the server buffer without bound.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use weir_broker::{Broker, BrokerError};
use weir_proto::frame::{Frame, Payload, Target, MAX_CREDITS};
use weir_proto::limits::{MAX_FRAME_BYTES, MAX_RECEIVE_MESSAGES};
use weir_proto::ErrorCode;

use super::conn::Shared;
use super::convert;
use super::source::Source;

/// Most messages leased in one round, whatever the credits.
const MAX_LEASE_ROUND: u32 = 256;
/// Room left in a `Deliveries` frame for its own header and count.
const FRAME_MARGIN_BYTES: usize = 64 * 1024;

/// A live subscription's state, shared by its task and the connection's reader.
#[derive(Debug)]
pub(super) struct Subscription {
    credits: AtomicU32,
    granted: Notify,
    stop: CancellationToken,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Opens a subscription whose id is the subscribe request's id and starts its task; returns the
/// answer (`Ok` or an error), which the caller must queue before anything the task queues.
pub(super) fn start(
    shared: &Arc<Shared>,
    id: u64,
    target: Target,
    credits: u32,
    lease_ms: Option<u64>,
) -> Frame {
    let refusal = {
        let subs = shared.subscriptions.lock();
        if subs.contains_key(&id) {
            Some((
                ErrorCode::Conflict,
                format!("subscription {id} already exists"),
            ))
        } else if subs.len() >= shared.limits.max_subscriptions {
            Some((
                ErrorCode::TooLarge,
                format!(
                    "too many subscriptions on this connection (limit {})",
                    shared.limits.max_subscriptions
                ),
            ))
        } else {
            None
        }
    };
    if let Some((code, message)) = refusal {
        return Frame::error(id, code, 0, message);
    }
    let watch = match target.watch(&shared.broker) {
        Ok(watch) => watch,
        Err(e) => return error_frame(id, &e),
    };
    let sub = Arc::new(Subscription {
        credits: AtomicU32::new(credits.min(MAX_CREDITS)),
        granted: Notify::new(),
        stop: shared.closing.child_token(),
    });
    shared.subscriptions.lock().insert(id, sub.clone());
    let shared = shared.clone();
    tokio::spawn(async move {
        let stop = sub.stop.clone();
        tokio::select! {
            () = run(&shared, id, &target, lease_ms, &sub, watch) => {}
            () = stop.cancelled() => {}
        }
        // Only remove our own entry (the id could have been reused after an unsubscribe).
        let mut subs = shared.subscriptions.lock();
        if subs.get(&id).is_some_and(|s| Arc::ptr_eq(s, &sub)) {
            subs.remove(&id);
        }
    });
    Frame::new(id, Payload::Ok)
}

/// Adds credits (the total capped at [`MAX_CREDITS`]); `false` if there is no such subscription.
pub(super) fn grant(shared: &Shared, id: u64, credits: u32) -> bool {
    let Some(sub) = shared.subscriptions.lock().get(&id).cloned() else {
        return false;
    };
    let _ = sub
        .credits
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
            Some(c.saturating_add(credits).min(MAX_CREDITS))
        });
    sub.granted.notify_one();
    true
}

/// Ends a subscription; `false` if there is no such subscription.
pub(super) fn stop(shared: &Shared, id: u64) -> bool {
    // Dropping the last handle cancels the task; cancel explicitly in case the task holds one.
    match shared.subscriptions.lock().remove(&id) {
        Some(sub) => {
            sub.stop.cancel();
            true
        }
        None => false,
    }
}

/// The subscription loop: lease up to `min(credits, 256)`, push, repeat; with no credits wait for a
/// grant, with no message wait for the queue to change or the next due time.
async fn run(
    shared: &Shared,
    id: u64,
    target: &Target,
    lease_ms: Option<u64>,
    sub: &Subscription,
    mut watch: tokio::sync::watch::Receiver<u64>,
) {
    let broker = &shared.broker;
    loop {
        let credits = sub.credits.load(Ordering::Acquire);
        if credits == 0 {
            sub.granted.notified().await;
            continue;
        }
        watch.borrow_and_update();
        let max = credits.min(MAX_LEASE_ROUND) as usize;
        match target.receive(broker, max, lease_ms) {
            Ok(deliveries) if deliveries.is_empty() => {
                let sleep = poll_sleep(broker, target, shared.limits.max_poll_sleep);
                tokio::select! {
                    changed = watch.changed() => {
                        if changed.is_err() {
                            // The queue or subscription is gone (deleted): tell the client, end.
                            let message = format!("{target} was deleted");
                            shared.send(Frame::error(id, ErrorCode::NotFound, 0, message)).await;
                            return;
                        }
                    }
                    () = tokio::time::sleep(sleep) => {}
                }
            }
            Ok(deliveries) => {
                // Only this task takes credits, and it took at most `credits`: no underflow.
                let taken = u32::try_from(deliveries.len()).unwrap_or(u32::MAX);
                sub.credits.fetch_sub(taken.min(credits), Ordering::AcqRel);
                for frame in pack(id, deliveries) {
                    shared.send(frame).await;
                }
            }
            Err(e) => {
                shared.send(error_frame(id, &e)).await;
                return;
            }
        }
    }
}

/// Splits deliveries into `Deliveries` frames that each fit the frame limit.
pub(super) fn pack(id: u64, deliveries: Vec<weir_broker::Delivery>) -> Vec<Frame> {
    let budget = MAX_FRAME_BYTES - FRAME_MARGIN_BYTES;
    let mut frames = Vec::new();
    let mut batch = Vec::new();
    let mut size = 0usize;
    for d in deliveries {
        let d = convert::delivery(d);
        let len = d.encoded_len();
        if !batch.is_empty()
            && (size.saturating_add(len) > budget || batch.len() >= MAX_RECEIVE_MESSAGES)
        {
            frames.push(Frame::new(
                id,
                Payload::Deliveries(std::mem::take(&mut batch)),
            ));
            size = 0;
        }
        size = size.saturating_add(len);
        batch.push(d);
    }
    if !batch.is_empty() {
        frames.push(Frame::new(id, Payload::Deliveries(batch)));
    }
    frames
}

/// How long to sleep before looking at an empty queue (or subscription) again: until its next
/// due time (a delay or a lease ending), at most `max`.
pub(super) fn poll_sleep(broker: &Broker, target: &Target, max: Duration) -> Duration {
    let Ok(Some(due_ms)) = target.next_due_ms(broker) else {
        return max;
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Duration::from_millis(due_ms.saturating_sub(now_ms).max(1)).min(max)
}

/// The error frame for a broker error.
pub(super) fn error_frame(id: u64, e: &BrokerError) -> Frame {
    Frame::error(id, e.code(), e.retry_after_ms().unwrap_or(0), e.to_string())
}
