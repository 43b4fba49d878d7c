//! Workload definitions: what a run does, and the standard comparison workloads W1–W5.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a workload publishes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A durable queue: competing consumers, each message delivered to one of them.
    Queue,
    /// Publish once, `subscriptions` copies; one consumer per subscription.
    FanOut {
        /// Number of subscriptions (each gets every message).
        subscriptions: usize,
    },
    /// An append-only stream: append records in batches, then read everything back once.
    Stream,
}

impl Kind {
    /// How many copies of each published message the consumers receive in total.
    pub fn copies(&self) -> u64 {
        match self {
            Kind::FanOut { subscriptions } => *subscriptions as u64,
            Kind::Queue | Kind::Stream => 1,
        }
    }
}

/// How much a workload sends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Amount {
    /// A fixed number of messages (split over the producers).
    Count(u64),
    /// Send for this long (paced workloads use `rate × duration` messages).
    Duration(Duration),
}

/// One benchmark workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Short id, e.g. `W1`.
    pub id: String,
    /// One-line description for reports.
    pub title: String,
    /// Queue, fan-out or stream.
    pub kind: Kind,
    /// Producer tasks (each with its own connection).
    pub producers: usize,
    /// Consumer tasks per subscription (each with its own connection).
    pub consumers: usize,
    /// Body bytes per message (≥ 16: the first 16 carry a timestamp and a sequence number).
    pub body_bytes: usize,
    /// How much to send.
    pub amount: Amount,
    /// Total publish rate over all producers, messages per second; `None` = as fast as possible.
    pub rate_per_s: Option<f64>,
    /// Most unconfirmed publishes in flight per producer.
    pub window: usize,
    /// Consumer prefetch (credits): most unacked deliveries held by one consumer.
    pub prefetch: u32,
    /// Records per append (stream workloads only).
    pub batch: usize,
    /// Give up after this long and report what was done (marked as timed out).
    pub timeout: Duration,
}

/// Smallest body: 8 bytes of timestamp and 8 of sequence number.
pub const MIN_BODY_BYTES: usize = 16;

impl Workload {
    /// The number of messages this workload publishes in total.
    pub fn total_messages(&self) -> u64 {
        match self.amount {
            Amount::Count(n) => n,
            Amount::Duration(d) => match self.rate_per_s {
                Some(r) => (r * d.as_secs_f64()).round() as u64,
                None => u64::MAX,
            },
        }
    }

    /// A copy with the message count multiplied by `scale` (at least 1 message), for quick runs.
    pub fn scaled(&self, scale: f64) -> Workload {
        let mut w = self.clone();
        w.amount = match self.amount {
            Amount::Count(n) => Amount::Count(((n as f64 * scale).round() as u64).max(1)),
            Amount::Duration(d) => Amount::Duration(d.mul_f64(scale).max(Duration::from_secs(1))),
        };
        w
    }
}

/// The standard workloads of the comparison (issue #8), all with 256-byte bodies except W5.
pub mod standard {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(90);

    fn base(id: &str, title: &str) -> Workload {
        Workload {
            id: id.to_owned(),
            title: title.to_owned(),
            kind: Kind::Queue,
            producers: 1,
            consumers: 1,
            body_bytes: 256,
            amount: Amount::Count(200_000),
            rate_per_s: None,
            window: 1_000,
            prefetch: 1_000,
            batch: 1,
            timeout: TIMEOUT,
        }
    }

    /// W1: durable queue, 1 producer → 1 consumer, 200k messages, each acked.
    pub fn w1() -> Workload {
        base("W1", "durable queue, 1 producer → 1 consumer, 200k × 256 B")
    }

    /// W2: durable queue, 8 producers → 8 consumers, 200k messages.
    pub fn w2() -> Workload {
        Workload {
            producers: 8,
            consumers: 8,
            ..base(
                "W2",
                "durable queue, 8 producers → 8 consumers, 200k × 256 B",
            )
        }
    }

    /// W3: paced 2,000 msg/s for 10 s, 1 → 1: end-to-end latency.
    pub fn w3() -> Workload {
        Workload {
            amount: Amount::Duration(Duration::from_secs(10)),
            rate_per_s: Some(2_000.0),
            ..base("W3", "paced 2,000 msg/s for 10 s, 1 → 1, latency")
        }
    }

    /// W4: fan-out to 4 subscriptions, 100k messages, one consumer each.
    pub fn w4() -> Workload {
        Workload {
            kind: Kind::FanOut { subscriptions: 4 },
            amount: Amount::Count(100_000),
            ..base("W4", "fan-out, 1 producer → 4 subscriptions, 100k × 256 B")
        }
    }

    /// W5: stream append of 1M 100-byte records in batches of 100, then one full read (1M,
    /// not 200k: at millions of records per second a shorter run measures mostly its start).
    pub fn w5() -> Workload {
        Workload {
            kind: Kind::Stream,
            body_bytes: 100,
            amount: Amount::Count(1_000_000),
            batch: 100,
            window: 10,
            ..base(
                "W5",
                "stream: append 1M × 100 B in batches of 100, then read all",
            )
        }
    }

    /// W5x8: W5 with 8 producers, each under the same rule (batches of 100, 1,000 records in
    /// flight), 4M records. One producer is bound by its round trips (each waits for an
    /// fdatasync); a disk is kept busy by several, as by several Kafka producers.
    pub fn w5x8() -> Workload {
        Workload {
            id: "W5x8".to_owned(),
            title: "stream: 8 producers append 4M × 100 B in batches of 100, then read all"
                .to_owned(),
            producers: 8,
            amount: Amount::Count(4_000_000),
            ..w5()
        }
    }

    /// All of them, in order.
    pub fn all() -> Vec<Workload> {
        vec![w1(), w2(), w3(), w4(), w5(), w5x8()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_scaling() {
        assert_eq!(standard::w1().total_messages(), 200_000);
        assert_eq!(standard::w3().total_messages(), 20_000);
        assert_eq!(standard::w1().scaled(0.1).total_messages(), 20_000);
        assert_eq!(standard::w3().scaled(0.5).total_messages(), 10_000);
        assert_eq!(standard::w4().kind.copies(), 4);
        assert_eq!(standard::w1().kind.copies(), 1);
    }
}
