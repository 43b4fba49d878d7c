//! Crash harness, long mode: `weir serve` is SIGKILLed and restarted `--cycles N` times under
//! HTTP and native load; prints the figures and exits non-zero on any violation.
//!
//! ```text
//! cargo build --release -p weir
//! cargo run --release -p weir --example crash_harness -- --cycles 2000 --seed 42
//! ```
//!
//! Flags: `--cycles N` (default 100), `--seed S` (default: time), `--data-dir DIR` (default: a
//! fresh temporary directory), `--min-run-ms` / `--max-run-ms` (load between kills, default
//! 100 / 1500), `--weir PATH` (default: the `weir` binary beside this example's directory),
//! `--http-only`, `--quiet`.

#[path = "../tests/support/crash.rs"]
mod crash;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut cycles = 100u64;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let mut data_dir: Option<PathBuf> = None;
    let mut weir_bin: Option<PathBuf> = None;
    let (mut min_run_ms, mut max_run_ms) = (100u64, 1500u64);
    let (mut native, mut verbose) = (true, true);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        match a.as_str() {
            "--cycles" => cycles = value().parse().unwrap_or(cycles),
            "--seed" => seed = value().parse().unwrap_or(seed),
            "--data-dir" => data_dir = Some(value().into()),
            "--weir" => weir_bin = Some(value().into()),
            "--min-run-ms" => min_run_ms = value().parse().unwrap_or(min_run_ms),
            "--max-run-ms" => max_run_ms = value().parse().unwrap_or(max_run_ms),
            "--http-only" => native = false,
            "--quiet" => verbose = false,
            other => {
                eprintln!("unknown flag {other:?}; see the example's doc comment");
                return ExitCode::from(2);
            }
        }
    }
    let weir_bin = weir_bin.unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap_or_default();
        // target/<profile>/examples/crash_harness → target/<profile>/weir
        exe.parent()
            .and_then(|p| p.parent())
            .map(|p| p.join("weir"))
            .unwrap_or_else(|| "weir".into())
    });
    if !weir_bin.exists() {
        eprintln!(
            "{} not found: run `cargo build --release -p weir` first or pass --weir PATH",
            weir_bin.display()
        );
        return ExitCode::from(2);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = data_dir.unwrap_or_else(|| tmp.path().join("data"));
    eprintln!(
        "crash harness: {cycles} cycles, seed {seed}, data {}, weir {}",
        data_dir.display(),
        weir_bin.display()
    );
    let config = crash::Config {
        weir_bin,
        data_dir,
        cycles,
        seed,
        min_run_ms,
        max_run_ms: max_run_ms.max(min_run_ms),
        native,
        verbose,
    };
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(crash::run(config)) {
        Ok(report) => {
            println!(
                "crash harness: {:?}, seed {seed}: {report}",
                started.elapsed()
            );
            for v in &report.violations {
                println!("VIOLATION: {v}");
            }
            if report.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            println!("crash harness FAILED (seed {seed}): {e}");
            ExitCode::FAILURE
        }
    }
}
