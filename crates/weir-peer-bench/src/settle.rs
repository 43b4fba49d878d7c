//! Waiting for a quiet machine between runs.
//!
//! A broker keeps working after a run ends: PostgreSQL vacuums the rows a run deleted, RabbitMQ
//! collects garbage and compacts, Redis may rewrite its AOF, Weir snapshots and reclaims. On a
//! 2-core machine that work would land on whichever target runs next. So before every run the
//! comparison waits until both cores were mostly idle for one sampling window (or gives up after
//! a bound), the same for every target.

use std::time::{Duration, Instant};

/// One sampling window.
const WINDOW: Duration = Duration::from_millis(250);
/// Idle share (all CPUs together) that counts as quiet.
const QUIET_IDLE: f64 = 0.85;

/// What a wait found.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settled {
    /// How long it waited.
    pub(crate) waited: Duration,
    /// Idle share of the last window (0–1), `None` when `/proc/stat` could not be read.
    pub(crate) idle: Option<f64>,
}

/// Cumulative (idle, total) jiffies of all CPUs, from the first line of `/proc/stat`.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(stat.lines().next()?)
}

/// Parses `cpu  user nice system idle iowait irq softirq steal …`: idle counts idle + iowait.
fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
    if values.len() < 5 {
        return None;
    }
    let idle = values[3] + values[4];
    Some((idle, values.iter().sum()))
}

/// Waits until one window was at least [`QUIET_IDLE`] idle, at most `max`.
pub(crate) async fn until_quiet(max: Duration) -> Settled {
    let start = Instant::now();
    let mut idle = None;
    while start.elapsed() < max {
        let Some((i0, t0)) = cpu_times() else { break };
        tokio::time::sleep(WINDOW).await;
        let Some((i1, t1)) = cpu_times() else { break };
        let total = t1.saturating_sub(t0);
        if total == 0 {
            continue;
        }
        let share = i1.saturating_sub(i0) as f64 / total as f64;
        idle = Some(share);
        if share >= QUIET_IDLE {
            break;
        }
    }
    Settled {
        waited: start.elapsed(),
        idle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_line_counts_idle_and_iowait_as_idle() {
        let line = "cpu  100 5 50 800 40 1 4 0 0 0";
        assert_eq!(parse_cpu_line(line), Some((840, 1000)));
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4 5"), None, "a per-CPU line");
        assert_eq!(parse_cpu_line("cpu 1 2 3"), None, "too few fields");
        assert_eq!(parse_cpu_line("cpu 1 x 3 4 5"), None, "not a number");
    }
}
