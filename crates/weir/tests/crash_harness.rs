//! Crash harness, short CI mode: a real `weir serve`, HTTP and native producers and consumers at
//! full speed, SIGKILL at ≥ 20 seeded random moments, restart, check that nothing confirmed is
//! lost and nothing acked comes back (`support/crash.rs` has the checks). Long runs:
//! `cargo run --release -p weir --example crash_harness -- --cycles N --seed S`.
//!
//! `WEIR_CRASH_SEED` replays a seed's kill plan; `WEIR_CRASH_CYCLES` changes the cycle count.

#[path = "support/crash.rs"]
mod crash;

use std::time::{Duration, Instant};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_nothing_confirmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = env_u64("WEIR_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let cycles = env_u64("WEIR_CRASH_CYCLES").unwrap_or(24);
    eprintln!("crash harness: seed {seed} (replay with WEIR_CRASH_SEED={seed}), {cycles} cycles");
    let config = crash::Config {
        weir_bin: env!("CARGO_BIN_EXE_weir").into(),
        data_dir: dir.path().join("data"),
        cycles,
        seed,
        min_run_ms: 100,
        max_run_ms: 700,
        native: true,
        verbose: true,
    };
    let started = Instant::now();
    let report = tokio::time::timeout(Duration::from_secs(240), crash::run(config))
        .await
        .expect("crash harness bounded in time")
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    eprintln!("crash harness ({:?}): {report}", started.elapsed());
    assert!(
        report.violations.is_empty(),
        "seed {seed}: {report}\n{}",
        report.violations.join("\n")
    );
    assert!(report.kills >= 20, "{report}");
    assert_eq!(report.lost, 0);
    assert_eq!(report.resurrected, 0);
    assert_eq!(report.stream_lost, 0);
    assert!(
        report.stream_confirmed > 0 && report.stream_checked == report.stream_confirmed,
        "{report}"
    );
    assert!(
        report.published_confirmed > 0 && report.acked_confirmed > 0,
        "{report}"
    );
}
