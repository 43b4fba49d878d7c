//! The paced schedule: when message `i` of a producer is due, and the clock that body timestamps use.
//!
//! A paced producer sends message `i` at `start + i / rate`. When it falls behind it sends at once
//! (it does not skip), and latency is measured from the **scheduled** time, not the actual send time,
//! so a stall shows up in the percentiles instead of being hidden (no coordinated omission).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The process-wide instant that body timestamps count from.
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds from [`epoch`] to `t` (0 for instants before it).
pub fn nanos_since_epoch(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// The instant that is `nanos` after [`epoch`].
pub fn instant_from_nanos(nanos: u64) -> Instant {
    epoch() + Duration::from_nanos(nanos)
}

/// A fixed-rate schedule.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    period_ns: f64,
}

impl Schedule {
    /// A schedule of `rate_per_s` messages per second starting at `start`.
    ///
    /// # Panics
    /// When `rate_per_s` is not a positive finite number.
    pub fn new(start: Instant, rate_per_s: f64) -> Self {
        assert!(
            rate_per_s.is_finite() && rate_per_s > 0.0,
            "rate must be positive, got {rate_per_s}"
        );
        Self {
            start,
            period_ns: 1e9 / rate_per_s,
        }
    }

    /// When message `i` (0-based) is due.
    pub fn due(&self, i: u64) -> Instant {
        self.start + Duration::from_nanos((i as f64 * self.period_ns).round() as u64)
    }

    /// How many messages are due by `now` (messages `0..n` have their due time ≤ `now`).
    pub fn due_by(&self, now: Instant) -> u64 {
        match now.checked_duration_since(self.start) {
            None => 0,
            Some(d) => (d.as_nanos() as f64 / self.period_ns).floor() as u64 + 1,
        }
    }
}

/// Signals each due time of a [`Schedule`] from a thread of its own.
///
/// tokio's timer fires on a 1 ms wheel, so a paced producer sleeping with it sends each message
/// up to 1 ms after its due time; as latency is measured from the due time, that lateness would
/// count against the system under test. A thread sleeps with the OS's high-resolution timer
/// (tens of µs late on Linux) and sends `i` once message `i` is due.
#[derive(Debug)]
pub struct Ticker {
    ticks: tokio::sync::mpsc::Receiver<u64>,
}

impl Ticker {
    /// Starts signalling the due times of messages `0..count`. The thread ends after the last
    /// one, or as soon as the ticker is dropped.
    pub fn start(schedule: Schedule, count: u64) -> Ticker {
        let (tx, ticks) = tokio::sync::mpsc::channel(1024);
        std::thread::spawn(move || {
            for i in 0..count {
                let due = schedule.due(i);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                // A full channel means the producer is behind: its messages are overdue anyway.
                if tx.blocking_send(i).is_err() {
                    return;
                }
            }
        });
        Ticker { ticks }
    }

    /// Waits until the next message is due; `None` once every due time has been signalled.
    pub async fn tick(&mut self) -> Option<u64> {
        self.ticks.recv().await
    }
}

/// Splits `total` messages over `parts` producers: the first `total % parts` get one more.
pub fn split(total: u64, parts: usize) -> Vec<u64> {
    let parts_u64 = parts.max(1) as u64;
    (0..parts_u64)
        .map(|i| total / parts_u64 + u64::from(i < total % parts_u64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_ticker_signals_each_due_time_in_order_and_not_early() {
        let start = Instant::now();
        let s = Schedule::new(start, 4_000.0);
        let mut t = Ticker::start(s, 20);
        for i in 0..20 {
            assert_eq!(t.tick().await, Some(i));
            assert!(
                Instant::now() >= s.due(i),
                "tick {i} came before its due time"
            );
        }
        assert_eq!(t.tick().await, None);
    }

    #[test]
    fn due_times_are_evenly_spaced_without_drift() {
        let start = Instant::now();
        let s = Schedule::new(start, 2_000.0);
        assert_eq!(s.due(0), start);
        assert_eq!(s.due(1) - start, Duration::from_micros(500));
        // 20,000 messages at 2,000/s end exactly 10 s after the start: no accumulated rounding.
        assert_eq!(s.due(20_000) - start, Duration::from_secs(10));
        // A rate whose period is not a whole number of nanoseconds (3/s) still does not drift.
        let s3 = Schedule::new(start, 3.0);
        assert_eq!(s3.due(3) - start, Duration::from_secs(1));
        assert_eq!(s3.due(1) - start, Duration::from_nanos(333_333_333));
    }

    #[test]
    fn due_by_counts_messages_whose_time_has_come() {
        let start = Instant::now();
        let s = Schedule::new(start, 1_000.0);
        assert_eq!(s.due_by(start), 1);
        assert_eq!(s.due_by(start + Duration::from_micros(999)), 1);
        assert_eq!(s.due_by(start + Duration::from_millis(1)), 2);
        assert_eq!(s.due_by(start + Duration::from_secs(1)), 1_001);
        // An instant before the start has nothing due.
        let later = Schedule::new(start + Duration::from_secs(1), 1_000.0);
        assert_eq!(later.due_by(start), 0);
    }

    #[test]
    #[should_panic(expected = "rate must be positive")]
    fn zero_rate_is_refused() {
        let _ = Schedule::new(Instant::now(), 0.0);
    }

    #[test]
    fn split_spreads_the_remainder() {
        assert_eq!(split(10, 3), vec![4, 3, 3]);
        assert_eq!(split(8, 8), vec![1; 8]);
        assert_eq!(split(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(split(5, 0), vec![5]);
        assert_eq!(split(200_000, 8).iter().sum::<u64>(), 200_000);
    }

    #[test]
    fn timestamps_round_trip_through_nanos() {
        let t = epoch() + Duration::from_millis(1234);
        assert_eq!(instant_from_nanos(nanos_since_epoch(t)), t);
    }
}
