//! The disk's own numbers, measured by the bench tool beside a run so a storage workload (W5) can
//! be stated as a share of what the disk does: sequential writes with `fdatasync`, in large blocks
//! and in blocks the size of one workload batch.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Size of the large blocks of the bandwidth probe.
const LARGE_BLOCK: usize = 1 << 20;
/// Bytes written by the large-block probe.
const LARGE_TOTAL: usize = 256 << 20;
/// How long the small-block probe runs.
const SMALL_FOR: Duration = Duration::from_secs(2);

/// What the disk under a directory does with one writer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DiskProbe {
    /// Sequential writes of 1 MiB, one `fdatasync` at the end: bytes per second.
    pub large_bytes_per_s: f64,
    /// Sequential writes of 1 MiB, each followed by `fdatasync`: bytes per second.
    pub large_synced_bytes_per_s: f64,
    /// The small block size probed (one workload batch), in bytes.
    pub small_block_bytes: usize,
    /// Writes of `small_block_bytes`, each followed by `fdatasync`: bytes per second.
    pub small_synced_bytes_per_s: f64,
    /// Median `fdatasync` after a small write, in microseconds.
    pub fdatasync_p50_us: f64,
    /// 99th percentile `fdatasync` after a small write, in microseconds.
    pub fdatasync_p99_us: f64,
}

/// Measures the disk under `dir` (a scratch file is written there and removed).
/// Blocking: call it from `spawn_blocking` in async code.
pub fn probe(dir: &Path, small_block_bytes: usize) -> anyhow::Result<DiskProbe> {
    probe_sized(dir, small_block_bytes, LARGE_TOTAL, SMALL_FOR)
}

/// [`probe`] with the amount written by the large-block probes and the small probe's duration.
fn probe_sized(
    dir: &Path,
    small_block_bytes: usize,
    large_total: usize,
    small_for: Duration,
) -> anyhow::Result<DiskProbe> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("weir-bench-disk-probe.bin");
    let result = measure(
        &path,
        small_block_bytes.max(1),
        large_total.max(4 * LARGE_BLOCK),
        small_for,
    );
    let _ = std::fs::remove_file(&path);
    result
}

fn measure(
    path: &Path,
    small: usize,
    large_total: usize,
    small_for: Duration,
) -> anyhow::Result<DiskProbe> {
    let open = || {
        OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))
    };
    let block = vec![0x5au8; LARGE_BLOCK];

    let mut f = open()?;
    let t0 = Instant::now();
    for _ in 0..large_total / LARGE_BLOCK {
        f.write_all(&block)?;
    }
    f.sync_data()?;
    let large = (large_total / LARGE_BLOCK * LARGE_BLOCK) as f64 / t0.elapsed().as_secs_f64();

    let mut f = open()?;
    let t0 = Instant::now();
    let blocks = large_total / LARGE_BLOCK / 4;
    for _ in 0..blocks {
        f.write_all(&block)?;
        f.sync_data()?;
    }
    let large_synced = (blocks * LARGE_BLOCK) as f64 / t0.elapsed().as_secs_f64();

    let mut f = open()?;
    let chunk = vec![0xa5u8; small];
    let mut syncs = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < small_for {
        f.write_all(&chunk)?;
        let s = Instant::now();
        f.sync_data()?;
        syncs.push(s.elapsed().as_secs_f64() * 1e6);
    }
    let small_synced = (syncs.len() * small) as f64 / t0.elapsed().as_secs_f64();
    syncs.sort_by(f64::total_cmp);
    let at = |q: f64| syncs[((syncs.len() - 1) as f64 * q) as usize];
    Ok(DiskProbe {
        large_bytes_per_s: large,
        large_synced_bytes_per_s: large_synced,
        small_block_bytes: small,
        small_synced_bytes_per_s: small_synced,
        // `syncs` is not empty: the loop runs at least once (its condition is checked first,
        // and no time has passed since `t0`).
        fdatasync_p50_us: at(0.5),
        fdatasync_p99_us: at(0.99),
    })
}

impl DiskProbe {
    /// A human summary, and `payload_bytes_per_s` (a run's) as a share of each figure.
    pub fn describe(&self, payload_bytes_per_s: Option<f64>) -> String {
        let mib = |b: f64| b / f64::from(1u32 << 20);
        let share = |of: f64| {
            payload_bytes_per_s.map_or(String::new(), |p| {
                format!(" (run: {:.0} %)", 100.0 * p / of)
            })
        };
        format!(
            "disk: {:.0} MiB/s in 1 MiB writes + one fdatasync{}; {:.0} MiB/s with fdatasync per \
             1 MiB{}; {:.1} MiB/s with fdatasync per {} B{} (fdatasync p50 {:.0} µs, p99 {:.0} µs)",
            mib(self.large_bytes_per_s),
            share(self.large_bytes_per_s),
            mib(self.large_synced_bytes_per_s),
            share(self.large_synced_bytes_per_s),
            mib(self.small_synced_bytes_per_s),
            self.small_block_bytes,
            share(self.small_synced_bytes_per_s),
            self.fdatasync_p50_us,
            self.fdatasync_p99_us,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_measures_a_real_directory_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = probe_sized(dir.path(), 10_000, 8 << 20, Duration::from_millis(100)).unwrap();
        assert!(p.large_bytes_per_s > 0.0 && p.small_synced_bytes_per_s > 0.0);
        assert!(p.fdatasync_p50_us <= p.fdatasync_p99_us);
        assert_eq!(p.small_block_bytes, 10_000);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let text = p.describe(Some(p.small_synced_bytes_per_s));
        assert!(text.contains("(run: 100 %)"), "{text}");
    }
}
