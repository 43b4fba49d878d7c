//! Crash: a child process appends from several threads and prints every offset whose `Durable`
//! resolved; the parent SIGKILLs it at a random moment, reopens the log and checks that every
//! confirmed append is there, byte-identical.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::executor::block_on;
use weir_store::{LogConfig, Record};

const CHILD_ENV: &str = "WEIR_LOG_CRASH_CHILD_DIR";

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024, // small, so that kills also land around segment rolls
        ..LogConfig::default()
    }
}

fn body(thread: u64, seq: u64) -> Bytes {
    let mut b = format!("t{thread}-s{seq}-").into_bytes();
    b.resize(50 + ((thread * 31 + seq * 17) % 400) as usize, b'x');
    Bytes::from(b)
}

/// The child's work; does nothing unless started by the parent.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = common::open_store(std::path::Path::new(&dir));
    let log = common::open_log(&store, &config());
    let stdout = std::sync::Arc::new(parking_lot::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let log = log.clone();
            let stdout = stdout.clone();
            std::thread::spawn(move || {
                for seq in 0.. {
                    let r = Record {
                        timestamp_ms: seq,
                        body: body(t, seq),
                        ..Record::default()
                    };
                    let a = log.append(&[r]).expect("append");
                    block_on(a.durable).expect("durable");
                    let mut out = stdout.lock();
                    writeln!(out, "CONFIRMED {} {t} {seq}", a.first_offset).expect("stdout");
                    out.flush().expect("flush");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("join");
    }
}

fn pseudo_random(bound_ms: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(nanos) % bound_ms
}

#[test]
fn confirmed_appends_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut total_confirmed = 0;
    for round in 0..3 {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("CONFIRMED ") {
                    let v: Vec<u64> = rest
                        .split(' ')
                        .map(|x| x.parse().expect("number"))
                        .collect();
                    if tx.send((v[0], v[1], v[2])).is_err() {
                        break;
                    }
                }
            }
        });
        // Wait for the first confirmation, then kill at a random moment.
        let first = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("child confirms appends");
        let wait = Duration::from_millis(20 + pseudo_random(300));
        let start = Instant::now();
        let mut confirmed = vec![first];
        while start.elapsed() < wait {
            if let Ok(c) = rx.recv_timeout(Duration::from_millis(5)) {
                confirmed.push(c);
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        reader.join().expect("reader");
        confirmed.extend(rx.try_iter());
        total_confirmed += confirmed.len();

        let store = common::open_store(dir.path());
        let log = common::open_log(&store, &config());
        let all = common::read_all(log.as_ref());
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.offset, i as u64, "dense offsets");
        }
        for (offset, t, seq) in &confirmed {
            let got = all
                .get(*offset as usize)
                .unwrap_or_else(|| panic!("round {round}: confirmed offset {offset} lost"));
            assert_eq!(
                got.record.body,
                body(*t, *seq),
                "round {round}: offset {offset}"
            );
        }
    }
    assert!(total_confirmed > 3, "the child made progress");
}
