//! When a schedule ticks: a cron expression in a time zone (5 fields, or 6 with leading seconds;
//! DST handled by `croner` over `jiff` zoned times) or a fixed interval from an anchor.
//!
//! DST rules (croner, after Vixie cron): a fixed-time job whose wall time falls into a spring-
//! forward gap runs at the first valid time after the gap; in a fall-back overlap it runs once.
//! Interval and wildcard jobs skip times in a gap and run in both halves of an overlap (real time
//! keeps moving, so `*/30 * * * *` still fires every 30 real minutes across the change).

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use crate::TaskError;

/// Shortest fixed interval, in milliseconds.
pub const MIN_EVERY_MS: u64 = 1000;
/// Longest fixed interval: one year.
pub const MAX_EVERY_MS: u64 = 366 * 24 * 3600 * 1000;

/// When a schedule fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Timing {
    /// A cron expression evaluated in an IANA time zone.
    Cron {
        /// 5 fields, or 6 with leading seconds.
        expr: String,
        /// IANA name, e.g. `Europe/Berlin` (default `UTC`).
        timezone: String,
    },
    /// Every `every_ms` milliseconds from the schedule's anchor (its creation or last update).
    Every {
        /// The period, ≥ [`MIN_EVERY_MS`].
        every_ms: u64,
    },
}

/// A timing checked and ready to compute ticks.
#[derive(Debug, Clone)]
pub(crate) enum Compiled {
    Cron(Box<Cron>, TimeZone),
    Every { every_ms: u64, anchor_ms: u64 },
}

impl Timing {
    /// Checks the timing and prepares it; `anchor_ms` anchors fixed intervals.
    pub(crate) fn compile(&self, anchor_ms: u64) -> Result<Compiled, TaskError> {
        match self {
            Timing::Cron { expr, timezone } => {
                let fields = expr.split_whitespace().count();
                if !(fields == 5 || fields == 6) {
                    return Err(TaskError::InvalidArgument(format!(
                        "cron {expr:?} has {fields} fields; it needs 5, or 6 with leading seconds"
                    )));
                }
                let cron = CronParser::builder()
                    .seconds(Seconds::Optional)
                    .year(Year::Disallowed)
                    .build()
                    .parse(expr)
                    .map_err(|e| TaskError::InvalidArgument(format!("cron {expr:?}: {e}")))?;
                let tz = TimeZone::get(timezone).map_err(|e| {
                    TaskError::InvalidArgument(format!("time zone {timezone:?}: {e}"))
                })?;
                Ok(Compiled::Cron(Box::new(cron), tz))
            }
            Timing::Every { every_ms } => {
                if !(MIN_EVERY_MS..=MAX_EVERY_MS).contains(every_ms) {
                    return Err(TaskError::InvalidArgument(format!(
                        "every_ms must be within {MIN_EVERY_MS}..={MAX_EVERY_MS}"
                    )));
                }
                Ok(Compiled::Every {
                    every_ms: *every_ms,
                    anchor_ms,
                })
            }
        }
    }
}

fn zoned(ms: u64, tz: &TimeZone) -> Option<Zoned> {
    let ts = Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()?;
    Some(ts.to_zoned(tz.clone()))
}

fn millis(z: &Zoned) -> Option<u64> {
    u64::try_from(z.timestamp().as_millisecond()).ok()
}

impl Compiled {
    /// The first tick strictly after `t_ms`.
    pub(crate) fn next_after(&self, t_ms: u64) -> Option<u64> {
        match self {
            Compiled::Cron(cron, tz) => {
                // Ticks are whole seconds: start from the second holding t_ms, exclusive.
                let z = zoned(t_ms - t_ms % 1000, tz)?;
                millis(&cron.find_next_occurrence(&z, false).ok()?)
            }
            Compiled::Every {
                every_ms,
                anchor_ms,
            } => {
                let k = if t_ms < *anchor_ms {
                    1
                } else {
                    (t_ms - anchor_ms) / every_ms + 1
                };
                anchor_ms.checked_add(k.checked_mul(*every_ms)?)
            }
        }
    }

    /// The last tick at or before `t_ms`, if any after the anchor.
    pub(crate) fn latest_at_or_before(&self, t_ms: u64) -> Option<u64> {
        match self {
            Compiled::Cron(cron, tz) => {
                let z = zoned(t_ms - t_ms % 1000, tz)?;
                millis(&cron.find_previous_occurrence(&z, true).ok()?)
            }
            Compiled::Every {
                every_ms,
                anchor_ms,
            } => {
                let k = t_ms.checked_sub(*anchor_ms)? / every_ms;
                (k >= 1).then(|| anchor_ms + k * every_ms)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u64 {
        s.parse::<Timestamp>().unwrap().as_millisecond() as u64
    }

    #[test]
    fn interval_ticks() {
        let c = Timing::Every { every_ms: 1000 }.compile(10_000).unwrap();
        assert_eq!(c.next_after(10_000), Some(11_000));
        assert_eq!(c.next_after(11_500), Some(12_000));
        assert_eq!(c.latest_at_or_before(10_999), None);
        assert_eq!(c.latest_at_or_before(12_500), Some(12_000));
        assert!(Timing::Every { every_ms: 5 }.compile(0).is_err());
    }

    #[test]
    fn cron_in_a_zone_and_field_counts() {
        let t = Timing::Cron {
            expr: "0 9 * * *".into(),
            timezone: "Europe/Berlin".into(),
        };
        let c = t.compile(0).unwrap();
        // 09:00 in Berlin in winter is 08:00 UTC.
        assert_eq!(
            c.next_after(ms("2024-01-15T10:00:00Z")),
            Some(ms("2024-01-16T08:00:00Z"))
        );
        assert_eq!(
            c.latest_at_or_before(ms("2024-01-15T10:00:00Z")),
            Some(ms("2024-01-15T08:00:00Z"))
        );
        let six = Timing::Cron {
            expr: "*/10 * * * * *".into(),
            timezone: "UTC".into(),
        }
        .compile(0)
        .unwrap();
        assert_eq!(
            six.next_after(ms("2024-01-15T10:00:00.500Z")),
            Some(ms("2024-01-15T10:00:10Z"))
        );
        for bad in ["* * * *", "* * * * * * *", "61 * * * *"] {
            let t = Timing::Cron {
                expr: bad.into(),
                timezone: "UTC".into(),
            };
            assert!(t.compile(0).is_err(), "{bad}");
        }
        let t = Timing::Cron {
            expr: "* * * * *".into(),
            timezone: "Mars/Olympus".into(),
        };
        assert!(t.compile(0).is_err());
    }
}
