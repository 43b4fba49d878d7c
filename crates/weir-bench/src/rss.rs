//! Resident set size of server processes, read from `/proc/<pid>/status` (Linux).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The RSS in bytes of one process, or `None` when it cannot be read (gone, not Linux).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

/// Parses the `VmRSS:` line of a `/proc/<pid>/status` text into bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line.split_whitespace().skip(1);
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => value.checked_mul(1024),
        Some(_) => None,
    }
}

/// Pids of the processes whose command name (`/proc/<pid>/comm`) is `name`.
pub fn pids_by_name(name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim_end() == name)
                .unwrap_or(false)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Summary of the RSS samples taken during a run (sum over the sampled pids).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RssSummary {
    /// Samples taken.
    pub samples: u64,
    /// Largest sample, bytes.
    pub max_bytes: u64,
    /// Mean of the samples, bytes.
    pub mean_bytes: u64,
}

/// Samples the summed RSS of `pids` every `every` until the returned handle is stopped.
#[derive(Debug)]
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<RssSummary>,
}

impl RssSampler {
    /// Starts sampling on the current tokio runtime.
    pub fn start(pids: Vec<u32>, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut acc = Accumulator::default();
            loop {
                let total: u64 = pids.iter().filter_map(|p| rss_bytes(*p)).sum();
                if total > 0 {
                    acc.add(total);
                }
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep(every).await;
            }
            acc.summary()
        });
        Self { stop, task }
    }

    /// Stops sampling and returns the summary (`None` when no sample could be read).
    pub async fn stop(self) -> Option<RssSummary> {
        self.stop.store(true, Ordering::Relaxed);
        let s = self.task.await.ok()?;
        (s.samples > 0).then_some(s)
    }
}

#[derive(Debug, Default)]
struct Accumulator {
    samples: u64,
    max: u64,
    sum: u128,
}

impl Accumulator {
    fn add(&mut self, v: u64) {
        self.samples += 1;
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }
    fn summary(&self) -> RssSummary {
        RssSummary {
            samples: self.samples,
            max_bytes: self.max,
            mean_bytes: if self.samples == 0 {
                0
            } else {
                u64::try_from(self.sum / u128::from(self.samples)).unwrap_or(u64::MAX)
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss_in_kib() {
        let status = "Name:\tweir\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(status), Some(12_345 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn own_process_has_an_rss() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap_or(0) > 0);
    }

    #[test]
    fn accumulator_mean_and_max() {
        let mut a = Accumulator::default();
        for v in [10, 20, 30] {
            a.add(v);
        }
        let s = a.summary();
        assert_eq!((s.samples, s.max_bytes, s.mean_bytes), (3, 30, 20));
        assert_eq!(Accumulator::default().summary().mean_bytes, 0);
    }
}
