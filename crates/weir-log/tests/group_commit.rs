//! Many concurrent appenders (group commit, gathering, segment rolls): every append resolves,
//! offsets are dense and each appender's records keep their order, reads during the run see
//! only durable records, and a reopen finds everything.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::executor::block_on;
use weir_store::{LogConfig, Record};

const APPENDERS: u64 = 32;
const EACH: u64 = 150;

fn tagged(appender: u64, seq: u64) -> Record {
    let mut body = appender.to_le_bytes().to_vec();
    body.extend_from_slice(&seq.to_le_bytes());
    body.resize(16 + (seq as usize * 7) % 300, 0xab);
    Record {
        timestamp_ms: seq,
        body: Bytes::from(body),
        ..Record::default()
    }
}

fn tag(r: &Record) -> (u64, u64) {
    let b = &r.body;
    let word = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(a)
    };
    (word(0), word(8))
}

#[test]
fn concurrent_appenders_share_fsyncs_and_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 64 * 1024, // several rolls during the run
        ..LogConfig::default()
    };
    {
        let store = common::open_store(dir.path());
        let log = common::open_log(&store, &config);
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (log, done) = (log.clone(), done.clone());
            std::thread::spawn(move || {
                // Reads race the appends: whatever they return is durable and dense.
                while !done.load(Ordering::Relaxed) {
                    let durable = log.stats().durable_offset;
                    let got = common::read_all(log.as_ref());
                    assert!(got.len() as u64 >= durable, "a durable record is readable");
                    for (i, r) in got.iter().enumerate() {
                        assert_eq!(r.offset, i as u64);
                    }
                }
            })
        };
        let appenders: Vec<_> = (0..APPENDERS)
            .map(|a| {
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut last = None;
                    for seq in 0..EACH {
                        let appended = log.append(&[tagged(a, seq)]).expect("append");
                        if let Some(prev) = last {
                            assert!(appended.first_offset > prev, "offsets grow per appender");
                        }
                        last = Some(appended.first_offset);
                        // Window 1 for most, a few pipelined: both kinds of waiters.
                        if a % 4 != 0 || seq % 8 == 7 {
                            block_on(appended.durable).expect("durable");
                            assert!(log.stats().durable_offset > appended.first_offset);
                        } else {
                            drop(appended.durable); // resolves anyway; nobody listens
                        }
                    }
                })
            })
            .collect();
        for t in appenders {
            t.join().expect("appender");
        }
        block_on(log.flush()).expect("flush");
        done.store(true, Ordering::Relaxed);
        reader.join().expect("reader");
        assert_eq!(log.stats().durable_offset, APPENDERS * EACH);
        assert!(log.stats().segments > 1, "the run rolled segments");
    }
    let store = common::open_store(dir.path());
    let log = common::open_log(&store, &config);
    let got = common::read_all(log.as_ref());
    assert_eq!(got.len() as u64, APPENDERS * EACH);
    let mut next = vec![0u64; APPENDERS as usize];
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        let (a, seq) = tag(&r.record);
        assert_eq!(seq, next[a as usize], "appender {a} in order");
        assert_eq!(r.record, tagged(a, seq));
        next[a as usize] += 1;
    }
}
