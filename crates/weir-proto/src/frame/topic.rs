//! Topic wire forms (protocol version 3): [`Target`] (a queue or a topic subscription, for the
//! consume frames), [`SubscriptionStart`], [`TopicOptions`] and [`TopicInfo`], with their codecs.

use super::queue::{decode_info, encode_info};
use super::types::QueueInfo;
use super::wire::{DecodeError, EncodeError, Reader, Writer};
use crate::limits::MAX_LISTED_SUBSCRIPTIONS;

type Enc = Result<(), EncodeError>;

/// Added to a queue-side consume frame's type for the same frame on a topic subscription
/// (`Receive` `0x21` → `0x41`, …, `Subscribe` `0x30` → `0x50`).
pub(super) const SUBSCRIPTION_TYPE_OFFSET: u8 = 0x20;

/// Where `Receive`, `Ack`, `Nack`, `Extend` and `Subscribe` act: a queue, or a topic's
/// subscription (which behaves exactly like a queue). On the wire a queue target is the queue's
/// `name` under the frame's original type; a subscription target is `name topic, name
/// subscription` under the type plus `0x20` (protocol version 3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A queue, by name.
    Queue(String),
    /// A topic subscription.
    Subscription {
        /// The topic.
        topic: String,
        /// The subscription.
        subscription: String,
    },
}

impl Target {
    /// A queue target.
    pub fn queue(name: impl Into<String>) -> Target {
        Target::Queue(name.into())
    }

    /// A topic-subscription target.
    pub fn subscription(topic: impl Into<String>, subscription: impl Into<String>) -> Target {
        Target::Subscription {
            topic: topic.into(),
            subscription: subscription.into(),
        }
    }

    /// The resource a token's grants are checked against: the queue, or the topic (as the HTTP
    /// API checks `/v1/topics/{t}/subscriptions/{s}/…` against `t`).
    pub fn resource(&self) -> &str {
        match self {
            Target::Queue(q) => q,
            Target::Subscription { topic, .. } => topic,
        }
    }

    /// The frame type of a consume frame whose queue-side type is `queue_type`.
    pub(super) fn type_byte(&self, queue_type: u8) -> u8 {
        match self {
            Target::Queue(_) => queue_type,
            Target::Subscription { .. } => queue_type + SUBSCRIPTION_TYPE_OFFSET,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Queue(q) => write!(f, "queue {q}"),
            Target::Subscription {
                topic,
                subscription,
            } => write!(f, "subscription {topic}/{subscription}"),
        }
    }
}

impl From<&str> for Target {
    fn from(queue: &str) -> Target {
        Target::Queue(queue.to_string())
    }
}

impl From<&String> for Target {
    fn from(queue: &String) -> Target {
        Target::Queue(queue.clone())
    }
}

impl From<String> for Target {
    fn from(queue: String) -> Target {
        Target::Queue(queue)
    }
}

impl From<&Target> for Target {
    fn from(t: &Target) -> Target {
        t.clone()
    }
}

pub(super) fn encode_target(t: &Target, w: &mut Writer<'_>) -> Enc {
    match t {
        Target::Queue(q) => w.bytes16("queue", q.as_bytes()),
        Target::Subscription {
            topic,
            subscription,
        } => {
            w.bytes16("topic", topic.as_bytes())?;
            w.bytes16("subscription", subscription.as_bytes())
        }
    }
}

/// Decodes the target of a consume frame of type `type_byte` (a subscription from `0x40` on).
pub(super) fn decode_target(type_byte: u8, r: &mut Reader<'_>) -> Result<Target, DecodeError> {
    if type_byte >= 0x40 {
        Ok(Target::Subscription {
            topic: r.name("topic")?,
            subscription: r.name("subscription")?,
        })
    } else {
        Ok(Target::Queue(r.name("queue")?))
    }
}

/// Where a new subscription starts in its topic (`u8`: 0 now, 1 oldest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubscriptionStart {
    /// Only messages published after the subscription was created.
    #[default]
    Now,
    /// Every message the topic still retains.
    Oldest,
}

pub(super) fn encode_start(s: SubscriptionStart, w: &mut Writer<'_>) {
    w.u8(match s {
        SubscriptionStart::Now => 0,
        SubscriptionStart::Oldest => 1,
    });
}

pub(super) fn decode_start(r: &mut Reader<'_>) -> Result<SubscriptionStart, DecodeError> {
    Ok(match r.u8_in("start", 1)? {
        0 => SubscriptionStart::Now,
        _ => SubscriptionStart::Oldest,
    })
}

/// A topic's own settings. `None` keeps the default (new topic) or the current value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicOptions {
    /// How long a client-chosen message id is remembered for deduplication, in milliseconds.
    pub dedup_window_ms: Option<u64>,
}

/// A topic's counters and its subscriptions' stats: the answer to `CreateTopic` and
/// `TopicStats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicInfo {
    /// The topic's name.
    pub name: String,
    /// True when a create request made the topic.
    pub created: bool,
    /// The dedup window, in milliseconds.
    pub dedup_window_ms: u64,
    /// Messages stored since the server started (once each, whatever the subscriptions).
    pub published_total: u64,
    /// Duplicate publishes since the server started.
    pub duplicates_total: u64,
    /// Messages refused by back pressure since the server started.
    pub refused_total: u64,
    /// Bytes the shared message log takes on disk.
    pub disk_bytes: u64,
    /// The lowest offset the topic's log still holds.
    pub start_offset: u64,
    /// The offset the next message gets.
    pub next_offset: u64,
    /// The subscription holding the most messages (the one that refuses publishes first).
    pub slowest_subscription: Option<String>,
    /// Every subscription's queue stats (`name` is the subscription's), by name; at most
    /// [`MAX_LISTED_SUBSCRIPTIONS`].
    pub subscriptions: Vec<QueueInfo>,
}

pub(super) fn encode_topic_info(t: &TopicInfo, w: &mut Writer<'_>) -> Enc {
    w.bytes16("topic", t.name.as_bytes())?;
    w.bool(t.created);
    for v in [
        t.dedup_window_ms,
        t.published_total,
        t.duplicates_total,
        t.refused_total,
        t.disk_bytes,
        t.start_offset,
        t.next_offset,
    ] {
        w.u64(v);
    }
    w.opt_str("slowest_subscription", t.slowest_subscription.as_deref())?;
    w.count32("subscriptions", t.subscriptions.len())?;
    t.subscriptions.iter().try_for_each(|q| encode_info(q, w))
}

pub(super) fn decode_topic_info(r: &mut Reader<'_>) -> Result<TopicInfo, DecodeError> {
    let name = r.name("topic")?;
    let created = r.bool("created")?;
    let mut c = [0u64; 7];
    for v in &mut c {
        *v = r.u64("counter")?;
    }
    let [dedup_window_ms, published_total, duplicates_total, refused_total, disk_bytes, start_offset, next_offset] =
        c;
    let slowest_subscription = r.opt_name("slowest_subscription")?;
    let n = r.count32("subscriptions", MAX_LISTED_SUBSCRIPTIONS)?;
    let mut subscriptions = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        subscriptions.push(decode_info(r)?);
    }
    Ok(TopicInfo {
        name,
        created,
        dedup_window_ms,
        published_total,
        duplicates_total,
        refused_total,
        disk_bytes,
        start_offset,
        next_offset,
        slowest_subscription,
        subscriptions,
    })
}
