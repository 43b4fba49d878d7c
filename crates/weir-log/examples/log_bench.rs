//! Append and read throughput of `weir-log`, beside the disk's raw sequential-write bandwidth
//! and fdatasync latency measured the same way.
//!
//! `cargo run --release -p weir-log --example log_bench -- [--dir DIR] [--secs S] [--window W]`
//!
//! `--window W` (default 1): appends each appender keeps in flight before waiting (1 = append,
//! wait for durable, repeat). `--sizes 100,1024` and `--appenders 64` pick the rows (default:
//! every size of 100, 1024, 65536 bytes with 1, 8 and 64 appenders). `--help` prints this.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::executor::block_on;
use weir_log::{FileStore, FileStoreOptions};
use weir_store::{Durable, Log, LogConfig, Record, Store, StoreName};

struct Args {
    dir: PathBuf,
    secs: f64,
    window: usize,
    sizes: Vec<usize>,
    appenders: Vec<usize>,
}

const USAGE: &str = "log_bench [--dir DIR] [--secs S] [--window W] [--sizes 100,1024,65536] \
[--appenders 1,8,64]
  Measures the disk's raw sequential-write bandwidth and fdatasync latency, then appends under
  fsync=always (each appender a thread keeping W appends in flight) and a warm read.";

fn list(v: &str, default: &[usize]) -> Vec<usize> {
    let out: Vec<usize> = v.split(',').filter_map(|x| x.trim().parse().ok()).collect();
    if out.is_empty() {
        default.to_vec()
    } else {
        out
    }
}

fn args() -> Args {
    let mut a = Args {
        dir: PathBuf::from("target/log-bench"),
        secs: 2.0,
        window: 1,
        sizes: vec![100, 1024, 64 * 1024],
        appenders: vec![1, 8, 64],
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    if v.iter().any(|x| x == "--help" || x == "-h") {
        println!("{USAGE}");
        std::process::exit(0);
    }
    let mut i = 0;
    while i + 1 < v.len() {
        match v[i].as_str() {
            "--dir" => a.dir = PathBuf::from(&v[i + 1]),
            "--secs" => a.secs = v[i + 1].parse().unwrap_or(a.secs),
            "--window" => a.window = v[i + 1].parse().unwrap_or(a.window).max(1),
            "--sizes" => a.sizes = list(&v[i + 1], &a.sizes),
            "--appenders" => a.appenders = list(&v[i + 1], &a.appenders),
            other => eprintln!("ignoring {other}"),
        }
        i += 2;
    }
    a
}

fn mb(bytes: f64, secs: f64) -> f64 {
    bytes / secs / (1024.0 * 1024.0)
}

fn raw_disk(dir: &Path) -> f64 {
    let path = dir.join("raw.bin");
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .expect("create raw file");
    let chunk = vec![0xa5u8; 1 << 20];
    let total = 512usize;
    let start = Instant::now();
    for _ in 0..total {
        f.write_all(&chunk).expect("write");
    }
    f.sync_data().expect("fdatasync");
    let secs = start.elapsed().as_secs_f64();
    let bw = mb((total << 20) as f64, secs);
    println!("raw sequential write: {total} MiB in 1 MiB writes + fdatasync: {bw:.0} MiB/s");

    let small = vec![1u8; 4096];
    let mut lat = Vec::new();
    for _ in 0..200 {
        f.write_all(&small).expect("write");
        let t = Instant::now();
        f.sync_data().expect("fdatasync");
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(f64::total_cmp);
    println!(
        "fdatasync after a 4 KiB append: p50 {:.0} us, p99 {:.0} us",
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100]
    );
    drop(f);
    let _ = std::fs::remove_file(&path);
    bw
}

fn run_appenders(
    log: &Arc<dyn Log>,
    size: usize,
    appenders: usize,
    secs: f64,
    window: usize,
) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let body = Bytes::from(vec![7u8; size]);
    let threads: Vec<_> = (0..appenders)
        .map(|_| {
            let (log, stop, count, body) = (log.clone(), stop.clone(), count.clone(), body.clone());
            std::thread::spawn(move || {
                let mut inflight: std::collections::VecDeque<Durable> = Default::default();
                while !stop.load(Ordering::Relaxed) {
                    let r = Record {
                        timestamp_ms: 1,
                        body: body.clone(),
                        ..Record::default()
                    };
                    match log.append(&[r]) {
                        Ok(a) => inflight.push_back(a.durable),
                        Err(e) if e.is_retryable() => std::thread::yield_now(),
                        Err(e) => panic!("append: {e}"),
                    }
                    while inflight.len() >= window {
                        if let Some(d) = inflight.pop_front() {
                            block_on(d).expect("durable");
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                for d in inflight {
                    block_on(d).expect("durable");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("appender");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = count.load(Ordering::Relaxed) as f64;
    (n / elapsed, mb(n * size as f64, elapsed))
}

fn main() {
    let a = args();
    let _ = std::fs::remove_dir_all(&a.dir);
    std::fs::create_dir_all(&a.dir).expect("mkdir");
    let raw = raw_disk(&a.dir);
    let store =
        FileStore::open(&a.dir.join("store"), FileStoreOptions::default()).expect("open store");
    println!(
        "appends under fsync=always, window {} per appender, {} s each:",
        a.window, a.secs
    );
    println!(
        "{:>8} {:>10} {:>12} {:>10} {:>8}",
        "record", "appenders", "records/s", "MiB/s", "% raw"
    );
    let mut n = 0;
    let mut read_log = None; // the last 1 KiB log: the warm read's input
    for &size in &a.sizes {
        for &appenders in &a.appenders {
            n += 1;
            if size == 1024 {
                read_log = Some(format!("bench/l{n}"));
            }
            let name = StoreName::parse(&format!("bench/l{n}")).expect("name");
            let log = store
                .open_log(&name, &LogConfig::default())
                .expect("open log");
            let (rps, mbs) = run_appenders(&log, size, appenders, a.secs, a.window);
            println!(
                "{:>8} {:>10} {:>12.0} {:>10.1} {:>7.1}%",
                size,
                appenders,
                rps,
                mbs,
                100.0 * mbs / raw
            );
        }
    }
    // Reads from a warm segment: the last 1 KiB log written (1 KiB / 64 appenders by default).
    let Some(read_log) = read_log else {
        drop(store);
        let _ = std::fs::remove_dir_all(&a.dir);
        return;
    };
    let log = store
        .open_log(
            &StoreName::parse(&read_log).expect("name"),
            &LogConfig::default(),
        )
        .expect("open");
    let end = log.stats().durable_offset;
    let start = Instant::now();
    let (mut bytes, mut records) = (0u64, 0u64);
    while start.elapsed().as_secs_f64() < a.secs {
        let mut next = 0;
        while next < end {
            let batch = log.read(next, 10_000, 1 << 20).expect("read");
            let Some(last) = batch.last() else { break };
            next = last.offset + 1;
            records += batch.len() as u64;
            bytes += batch
                .iter()
                .map(|r| r.record.body.len() as u64)
                .sum::<u64>();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "warm read of 1 KiB records, 1 MiB per read: {:.0} records/s, {:.0} MiB/s",
        records as f64 / secs,
        mb(bytes as f64, secs)
    );
    drop(log);
    drop(store);
    let _ = std::fs::remove_dir_all(&a.dir);
}
