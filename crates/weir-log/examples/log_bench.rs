//! Append and read throughput of `weir-log`, beside the disk's raw sequential-write bandwidth
//! and fdatasync latency measured the same way.
//!
//! `cargo run --release -p weir-log --example log_bench -- [--dir DIR] [--secs S] [--window W]`
//!
//! `--window W` (default 1): appends each appender keeps in flight before waiting (1 = append,
//! wait for durable, repeat). `--sizes 100,1024` and `--appenders 64` pick the rows (default:
//! every size of 100, 1024, 65536 bytes with 1, 8 and 64 appenders). `--tasks N`: appenders are
//! tokio tasks on a runtime of N worker threads (as the broker's are) instead of one thread
//! each. `--fsync-modes`: also time a 64 KiB write + fdatasync that extends the file, goes into
//! `fallocate`d space, overwrites written zeros, or extends the file with 1 MiB zero-filled
//! ahead every 16 writes (interleaved, 320 each).
//! `--raw-mib M` (default 512): size of the raw sequential write; 0 skips the raw figures.
//! `--no-read` skips the warm read at the end.
//! `--help` prints this.

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
    tasks: usize,
    fsync_modes: bool,
    raw_mib: usize,
    read: bool,
}

const USAGE: &str = "log_bench [--dir DIR] [--secs S] [--window W] [--sizes 100,1024,65536] \
[--appenders 1,8,64] [--tasks N] [--fsync-modes] [--raw-mib 512] [--no-read]
  Measures the disk's raw sequential-write bandwidth and fdatasync latency, then appends under
  fsync=always (each appender a thread, or with --tasks N a tokio task on N worker threads,
  keeping W appends in flight) and a warm read. --fsync-modes also times a 64 KiB write +
  fdatasync that extends the file, goes into fallocate'd space, overwrites written zeros, or
  zero-fills 1 MiB ahead every 16 writes.
  --raw-mib sets the size of the raw write (0 skips the raw figures); --no-read skips the read.";

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
        tasks: 0,
        fsync_modes: false,
        raw_mib: 512,
        read: true,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    if v.iter().any(|x| x == "--help" || x == "-h") {
        println!("{USAGE}");
        std::process::exit(0);
    }
    let mut i = 0;
    while i < v.len() {
        if v[i] == "--fsync-modes" || v[i] == "--no-read" {
            a.fsync_modes |= v[i] == "--fsync-modes";
            a.read &= v[i] != "--no-read";
            i += 1;
            continue;
        }
        if i + 1 == v.len() {
            eprintln!("ignoring {}", v[i]);
            break;
        }
        match v[i].as_str() {
            "--dir" => a.dir = PathBuf::from(&v[i + 1]),
            "--secs" => a.secs = v[i + 1].parse().unwrap_or(a.secs),
            "--window" => a.window = v[i + 1].parse().unwrap_or(a.window).max(1),
            "--sizes" => a.sizes = list(&v[i + 1], &a.sizes),
            "--appenders" => a.appenders = list(&v[i + 1], &a.appenders),
            "--tasks" => a.tasks = v[i + 1].parse().unwrap_or(a.tasks),
            "--raw-mib" => a.raw_mib = v[i + 1].parse().unwrap_or(a.raw_mib),
            other => eprintln!("ignoring {other}"),
        }
        i += 2;
    }
    a
}

fn mb(bytes: f64, secs: f64) -> f64 {
    bytes / secs / (1024.0 * 1024.0)
}

fn raw_disk(dir: &Path, total: usize) -> f64 {
    if total == 0 {
        return f64::NAN;
    }
    let path = dir.join("raw.bin");
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .expect("create raw file");
    let chunk = vec![0xa5u8; 1 << 20];
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

/// Like [`run_appenders`], with the appenders as tokio tasks on `workers` threads.
fn run_tasks(
    log: &Arc<dyn Log>,
    size: usize,
    appenders: usize,
    secs: f64,
    window: usize,
    workers: usize,
) -> (f64, f64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let body = Bytes::from(vec![7u8; size]);
    let tasks: Vec<_> = (0..appenders)
        .map(|_| {
            let (log, stop, count, body) = (log.clone(), stop.clone(), count.clone(), body.clone());
            rt.spawn(async move {
                let mut inflight: std::collections::VecDeque<Durable> = Default::default();
                while !stop.load(Ordering::Relaxed) {
                    let r = Record {
                        timestamp_ms: 1,
                        body: body.clone(),
                        ..Record::default()
                    };
                    match log.append(&[r]) {
                        Ok(a) => inflight.push_back(a.durable),
                        Err(e) if e.is_retryable() => tokio::task::yield_now().await,
                        Err(e) => panic!("append: {e}"),
                    }
                    while inflight.len() >= window {
                        if let Some(d) = inflight.pop_front() {
                            d.await.expect("durable");
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                for d in inflight {
                    d.await.expect("durable");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        rt.block_on(t).expect("appender");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = count.load(Ordering::Relaxed) as f64;
    (n / elapsed, mb(n * size as f64, elapsed))
}

/// Time of a 64 KiB write + fdatasync when the write extends the file, lands in `fallocate`d
/// space, overwrites zeros written (and synced) beforehand, or extends the file but every 16th
/// write first zero-fills the next 1 MiB (what preallocating by writing zeros would cost on the
/// way); interleaved so that the disk's mood affects all alike.
fn fsync_modes(dir: &Path) {
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    const N: usize = 320;
    const SZ: usize = 64 * 1024;
    const AHEAD: usize = 1 << 20;
    let modes = ["extend", "fallocate", "overwrite", "zero-ahead"];
    let mut files: Vec<_> = modes
        .iter()
        .map(|m| {
            let path = dir.join(format!("fsync-{m}.bin"));
            let f = OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(true)
                .open(&path)
                .expect("create");
            let len = (N * SZ) as i64;
            match *m {
                // SAFETY: a valid open descriptor; plain mode 0 fallocate.
                "fallocate" => assert_eq!(unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, len) }, 0),
                "overwrite" => f.write_all_at(&vec![0u8; N * SZ], 0).expect("zeros"),
                _ => {}
            }
            f.sync_all().expect("fsync");
            (path, f, Vec::with_capacity(N))
        })
        .collect();
    let data = vec![1u8; SZ];
    let zeros = vec![0u8; AHEAD];
    for i in 0..N {
        for (m, (_, f, lat)) in modes.iter().zip(files.iter_mut()) {
            let t = Instant::now();
            if *m == "zero-ahead" && (i * SZ) % AHEAD == 0 {
                f.write_all_at(&zeros, (i * SZ) as u64).expect("zeros");
            }
            f.write_all_at(&data, (i * SZ) as u64).expect("write");
            f.sync_data().expect("fdatasync");
            lat.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    for (m, (path, _, mut lat)) in modes.iter().zip(files) {
        let mean = lat.iter().sum::<f64>() / N as f64;
        lat.sort_by(f64::total_cmp);
        println!(
            "64 KiB write + fdatasync, {m:>10}: p50 {:.0} us, p90 {:.0} us, mean {mean:.0} us",
            lat[N / 2],
            lat[N * 9 / 10],
        );
        let _ = std::fs::remove_file(path);
    }
}

fn main() {
    let a = args();
    let _ = std::fs::remove_dir_all(&a.dir);
    std::fs::create_dir_all(&a.dir).expect("mkdir");
    let raw = raw_disk(&a.dir, a.raw_mib);
    if a.fsync_modes {
        fsync_modes(&a.dir);
    }
    let store =
        FileStore::open(&a.dir.join("store"), FileStoreOptions::default()).expect("open store");
    let who = match a.tasks {
        0 => "threads".to_string(),
        n => format!("tokio tasks on {n} worker threads"),
    };
    println!(
        "appends under fsync=always, appenders are {who}, window {} per appender, {} s each:",
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
            let (rps, mbs) = match a.tasks {
                0 => run_appenders(&log, size, appenders, a.secs, a.window),
                n => run_tasks(&log, size, appenders, a.secs, a.window, n),
            };
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
    let Some(read_log) = read_log.filter(|_| a.read) else {
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
