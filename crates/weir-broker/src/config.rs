//! Broker options and per-queue configuration.

use weir_proto::limits::{
    DEFAULT_MAX_BODY_BYTES, MAX_BODY_BYTES_CEILING, MAX_LEASE_MS, MIN_LEASE_MS,
};
use weir_store::{LogConfig, StoreError};

use crate::codec::{put_bytes, put_varint, Reader};
use crate::BrokerError;

/// Options for a whole [`crate::Broker`].
#[derive(Clone, Debug)]
pub struct BrokerOptions {
    /// Largest message body accepted, in bytes (≤ [`MAX_BODY_BYTES_CEILING`]).
    pub max_body_bytes: usize,
    /// How message logs are opened (segment size, fsync policy); journals use the same policy.
    pub log: LogConfig,
    /// A queue's state journal is snapshotted once this many bytes were journaled since the last
    /// snapshot (checked in [`crate::Broker::tick`]).
    pub snapshot_every_bytes: u64,
    /// Seed for the broker's random choices (backoff jitter, server-made ids, receipt salts).
    /// `None` seeds from the process's randomness; tests set it for determinism.
    pub rng_seed: Option<u64>,
}

impl BrokerOptions {
    /// Default snapshot trigger: 16 MiB of journal.
    pub const DEFAULT_SNAPSHOT_EVERY_BYTES: u64 = 16 * 1024 * 1024;
}

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            log: LogConfig::default(),
            snapshot_every_bytes: Self::DEFAULT_SNAPSHOT_EVERY_BYTES,
            rng_seed: None,
        }
    }
}

/// A queue's behaviour (DESIGN §1). `Default` gives the documented defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueConfig {
    /// Most messages held (ready, delayed and in flight); beyond it publishes are refused (busy).
    pub max_depth: u64,
    /// Most body bytes held; beyond it publishes are refused (busy).
    pub max_bytes: u64,
    /// Refuse publishes while the predicted wait of a new message exceeds this many milliseconds.
    pub max_latency_ms: Option<u64>,
    /// Default lease (visibility timeout) of a receive, in milliseconds.
    pub lease_ms: u64,
    /// Deliveries after which a message that is not acked goes to the dead-letter queue.
    pub max_attempts: u32,
    /// Backoff base of a nack without a delay, in milliseconds.
    pub backoff_base_ms: u64,
    /// Backoff ceiling, in milliseconds.
    pub backoff_max_ms: u64,
    /// The dead-letter queue; `None` means `<queue>.dlq`.
    pub dead_letter_queue: Option<String>,
    /// How long a client-supplied message id is remembered for deduplication, in milliseconds.
    pub dedup_window_ms: u64,
    /// At most one message per key in flight; the next of a key waits for the previous' ack.
    pub ordered_by_key: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_depth: 1_000_000,
            max_bytes: 1024 * 1024 * 1024,
            max_latency_ms: None,
            lease_ms: 30_000,
            max_attempts: 5,
            backoff_base_ms: 1_000,
            backoff_max_ms: 300_000,
            dead_letter_queue: None,
            dedup_window_ms: 300_000,
            ordered_by_key: false,
        }
    }
}

/// Longest dedup window: one day.
pub const MAX_DEDUP_WINDOW_MS: u64 = 24 * 3600 * 1000;
/// Most attempts a queue may allow.
pub const MAX_ATTEMPTS_CEILING: u32 = 1000;
/// Longest backoff, in milliseconds (the longest delay).
pub const MAX_BACKOFF_MS: u64 = weir_proto::limits::MAX_DELAY_MS;

const _: () = assert!(MAX_ATTEMPTS_CEILING <= u16::MAX as u32);
const _: () = assert!(DEFAULT_MAX_BODY_BYTES <= MAX_BODY_BYTES_CEILING);

impl QueueConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), BrokerError> {
        let bad = |m: String| Err(BrokerError::InvalidArgument(m));
        if self.max_depth == 0 {
            return bad("max_depth must be at least 1".into());
        }
        if self.max_bytes == 0 {
            return bad("max_bytes must be at least 1".into());
        }
        if self.max_latency_ms == Some(0) {
            return bad("max_latency_ms must be at least 1".into());
        }
        if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&self.lease_ms) {
            return bad(format!(
                "lease_ms must be within {MIN_LEASE_MS}..={MAX_LEASE_MS}"
            ));
        }
        if !(1..=MAX_ATTEMPTS_CEILING).contains(&self.max_attempts) {
            return bad(format!(
                "max_attempts must be within 1..={MAX_ATTEMPTS_CEILING}"
            ));
        }
        if self.backoff_base_ms > MAX_BACKOFF_MS || self.backoff_max_ms > MAX_BACKOFF_MS {
            return bad(format!("backoff must be at most {MAX_BACKOFF_MS} ms"));
        }
        if self.backoff_base_ms > self.backoff_max_ms {
            return bad("backoff_base_ms must not exceed backoff_max_ms".into());
        }
        if self.dedup_window_ms > MAX_DEDUP_WINDOW_MS {
            return bad(format!(
                "dedup_window_ms must be at most {MAX_DEDUP_WINDOW_MS}"
            ));
        }
        if let Some(dlq) = &self.dead_letter_queue {
            BrokerError::check_name(dlq)?;
        }
        Ok(())
    }

    /// The dead-letter queue's name for queue `name`.
    pub fn dead_letter_name(&self, name: &str) -> String {
        self.dead_letter_queue
            .clone()
            .unwrap_or_else(|| format!("{name}.dlq"))
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.push(1); // version
        put_varint(out, self.max_depth);
        put_varint(out, self.max_bytes);
        put_varint(out, self.max_latency_ms.map_or(0, |v| v.saturating_add(1)));
        put_varint(out, self.lease_ms);
        put_varint(out, u64::from(self.max_attempts));
        put_varint(out, self.backoff_base_ms);
        put_varint(out, self.backoff_max_ms);
        put_bytes(
            out,
            self.dead_letter_queue.as_deref().unwrap_or("").as_bytes(),
        );
        put_varint(out, self.dedup_window_ms);
        out.push(u8::from(self.ordered_by_key));
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<QueueConfig, StoreError> {
        let version = r.u8()?;
        if version != 1 {
            return Err(r.error(format!("unknown queue config version {version}")));
        }
        let max_depth = r.varint()?;
        let max_bytes = r.varint()?;
        let max_latency_ms = r.varint()?.checked_sub(1);
        let lease_ms = r.varint()?;
        let max_attempts = r.varint_u32()?;
        let backoff_base_ms = r.varint()?;
        let backoff_max_ms = r.varint()?;
        let dlq = r.string()?;
        let dedup_window_ms = r.varint()?;
        let ordered_by_key = r.u8()? != 0;
        Ok(QueueConfig {
            max_depth,
            max_bytes,
            max_latency_ms,
            lease_ms,
            max_attempts,
            backoff_base_ms,
            backoff_max_ms,
            dead_letter_queue: (!dlq.is_empty()).then_some(dlq),
            dedup_window_ms,
            ordered_by_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = QueueConfig::default();
        c.validate().expect("defaults valid");
        let c2 = QueueConfig {
            max_latency_ms: Some(250),
            dead_letter_queue: Some("other".into()),
            ordered_by_key: true,
            ..QueueConfig::default()
        };
        for c in [c, c2] {
            let mut out = Vec::new();
            c.encode(&mut out);
            let mut r = Reader::new("cfg", &out);
            assert_eq!(QueueConfig::decode(&mut r).expect("decode"), c);
            r.finish().expect("consumed");
        }
    }

    #[test]
    fn validation_refuses_out_of_range() {
        for bad in [
            QueueConfig {
                max_depth: 0,
                ..Default::default()
            },
            QueueConfig {
                lease_ms: 1,
                ..Default::default()
            },
            QueueConfig {
                max_attempts: 0,
                ..Default::default()
            },
            QueueConfig {
                backoff_base_ms: 10,
                backoff_max_ms: 5,
                ..Default::default()
            },
            QueueConfig {
                dead_letter_queue: Some("../x".into()),
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
