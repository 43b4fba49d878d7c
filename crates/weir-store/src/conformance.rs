//! The conformance suite every [`Store`] implementation must pass.
//!
//! Call [`run_all`] from a test of the implementation's crate with a factory that makes a fresh
//! store and a function that "restarts" one (drops it and opens the same storage again; the
//! in-memory store returns itself).

use bytes::Bytes;
use futures::executor::block_on;

use crate::{
    FsyncPolicy, Header, LogConfig, Record, Retention, Store, StoreError, StoreName,
    MAX_RECORD_SPAN,
};

/// Makes a fresh, empty store.
pub type MakeStore<'a> = &'a dyn Fn() -> Box<dyn Store>;
/// Restarts a store over the same storage.
pub type RestartStore<'a> = &'a dyn Fn(Box<dyn Store>) -> Box<dyn Store>;

fn name(s: &str) -> StoreName {
    StoreName::parse(s).expect("test names are valid")
}

fn record(i: u64, body_len: usize) -> Record {
    Record {
        timestamp_ms: 1_000 + i * 10,
        key: (i % 3 == 0).then(|| Bytes::from(format!("key-{i}"))),
        headers: if i % 2 == 0 {
            vec![Header {
                name: "n".into(),
                value: Bytes::from(i.to_le_bytes().to_vec()),
            }]
        } else {
            Vec::new()
        },
        body: Bytes::from(vec![(i % 251) as u8; body_len]),
    }
}

/// Runs every conformance check; panics with the failing check's name.
pub fn run_all(make: MakeStore<'_>, restart: RestartStore<'_>) {
    append_read_round_trip(make, restart);
    bad_appends_change_nothing(make);
    read_bounds(make);
    spanning_records(make, restart);
    timestamp_lookup(make);
    low_water_reclaims_whole_segments_only(make);
    journal_snapshot_and_replay(make, restart);
    list_and_remove(make);
}

/// Appended records come back byte-identical with dense offsets, also after a restart.
pub fn append_read_round_trip(make: MakeStore<'_>, restart: RestartStore<'_>) {
    let store = make();
    let n = name("t/log");
    let log = store.open_log(&n, &LogConfig::default()).expect("open");
    let batch: Vec<Record> = (0..10).map(|i| record(i, 100)).collect();
    let a = log.append(&batch).expect("append");
    assert_eq!((a.first_offset, a.next_offset), (0, 10));
    block_on(a.durable).expect("durable");
    let b = log.append(&[record(10, 5)]).expect("append");
    assert_eq!(b.first_offset, 10);
    block_on(b.durable).expect("durable");
    block_on(log.wait_durable(10)).expect("wait");
    let read = log.read(0, 100, usize::MAX).expect("read");
    assert_eq!(read.len(), 11);
    for (i, r) in read.iter().enumerate() {
        assert_eq!(r.offset, i as u64);
        assert_eq!(r.record, record(i as u64, if i < 10 { 100 } else { 5 }));
    }
    drop(log);
    let store = restart(store);
    let log = store.open_log(&n, &LogConfig::default()).expect("reopen");
    let stats = log.stats();
    assert_eq!(
        (stats.start_offset, stats.next_offset, stats.durable_offset),
        (0, 11, 11)
    );
    assert_eq!(
        log.read(3, 2, usize::MAX).expect("read"),
        read[3..5].to_vec()
    );
    let c = log.append(&[record(11, 1)]).expect("append after reopen");
    assert_eq!(c.first_offset, 11);
}

/// Empty batches and oversize records are refused and leave the log unchanged.
pub fn bad_appends_change_nothing(make: MakeStore<'_>) {
    let store = make();
    let config = LogConfig {
        max_record_bytes: 64,
        ..LogConfig::default()
    };
    let log = store.open_log(&name("bad"), &config).expect("open");
    assert!(matches!(log.append(&[]), Err(StoreError::EmptyBatch)));
    let too_big = [record(0, 10), record(1, 65)];
    assert!(matches!(
        log.append(&too_big),
        Err(StoreError::RecordTooLarge { max: 64, .. })
    ));
    assert_eq!(log.stats().next_offset, 0);
    let ok = log.append(&[record(0, 10)]).expect("append");
    assert_eq!(ok.first_offset, 0);
}

/// Reads respect `max_records` and `max_bytes`, and refuse offsets below the start.
pub fn read_bounds(make: MakeStore<'_>) {
    let store = make();
    let log = store
        .open_log(&name("bounds"), &LogConfig::default())
        .expect("open");
    let batch: Vec<Record> = (0..20).map(|i| record(i, 1000)).collect();
    block_on(log.append(&batch).expect("append").durable).expect("durable");
    assert_eq!(log.read(0, 5, usize::MAX).expect("read").len(), 5);
    let by_bytes = log.read(0, 100, 2500).expect("read");
    assert!(
        !by_bytes.is_empty() && by_bytes.len() <= 3,
        "{}",
        by_bytes.len()
    );
    assert_eq!(
        log.read(0, 100, 1).expect("read").len(),
        1,
        "at least one record"
    );
    assert!(log
        .read(20, 10, usize::MAX)
        .expect("read at end")
        .is_empty());
    assert!(log
        .read(500, 10, usize::MAX)
        .expect("read past end")
        .is_empty());
}

/// A record appended with `append_spanning` occupies its span of offsets: the next append starts
/// after it, a read starting anywhere inside it returns it whole, `max_records` counts the
/// offsets covered, bad spans change nothing, and all of it holds after a restart.
pub fn spanning_records(make: MakeStore<'_>, restart: RestartStore<'_>) {
    let store = make();
    let n = name("spans");
    let log = store.open_log(&n, &LogConfig::default()).expect("open");
    for bad in [0, MAX_RECORD_SPAN + 1] {
        assert!(matches!(
            log.append_spanning(&[record(0, 10), record(1, 10)], &[1, bad]),
            Err(StoreError::InvalidSpan { span, .. }) if span == bad
        ));
    }
    assert!(matches!(
        log.append_spanning(&[record(0, 10)], &[1, 1]),
        Err(StoreError::SpanCountMismatch {
            records: 1,
            spans: 2
        })
    ));
    assert_eq!(log.stats().next_offset, 0, "a refused span changes nothing");
    // Offsets: [0] single, [1..101) span 100, [101] single, [102..102+MAX) span MAX.
    block_on(log.append(&[record(0, 10)]).expect("append").durable).expect("durable");
    let a = log
        .append_spanning(&[record(1, 300)], &[100])
        .expect("span");
    assert_eq!((a.first_offset, a.next_offset), (1, 101));
    block_on(a.durable).expect("durable");
    let b = log.append(&[record(2, 10)]).expect("append");
    assert_eq!(b.first_offset, 101, "the next append starts after the span");
    block_on(b.durable).expect("durable");
    let c = log
        .append_spanning(&[record(3, 20)], &[MAX_RECORD_SPAN])
        .expect("largest span");
    assert_eq!(c.next_offset, 102 + u64::from(MAX_RECORD_SPAN));
    block_on(c.durable).expect("durable");
    let check = |log: &dyn crate::Log| {
        let shape = |from: u64, max: usize| -> Vec<(u64, u32)> {
            log.read(from, max, usize::MAX)
                .expect("read")
                .iter()
                .map(|r| (r.offset, r.span))
                .collect()
        };
        assert_eq!(
            shape(0, 1000),
            vec![(0, 1), (1, 100), (101, 1), (102, MAX_RECORD_SPAN)]
        );
        assert_eq!(
            shape(50, 1000),
            vec![(1, 100), (101, 1), (102, MAX_RECORD_SPAN)]
        );
        assert_eq!(
            shape(100, 1),
            vec![(1, 100)],
            "one offset of the span is left: it counts one"
        );
        assert_eq!(
            shape(50, 51),
            vec![(1, 100)],
            "51 offsets from 50 end the span"
        );
        assert_eq!(shape(50, 52), vec![(1, 100), (101, 1)]);
        assert_eq!(shape(101, 1), vec![(101, 1)]);
        assert_eq!(shape(60_000, 1), vec![(102, MAX_RECORD_SPAN)]);
        let read = log.read(7, 1, usize::MAX).expect("read");
        assert_eq!(
            read[0].record,
            record(1, 300),
            "the spanning record comes back whole"
        );
        let stats = log.stats();
        assert_eq!(stats.next_offset, 102 + u64::from(MAX_RECORD_SPAN));
        assert_eq!(stats.durable_offset, stats.next_offset);
        assert!(log
            .read(stats.next_offset, 10, usize::MAX)
            .expect("read at end")
            .is_empty());
    };
    check(log.as_ref());
    drop(log);
    let store = restart(store);
    let log = store.open_log(&n, &LogConfig::default()).expect("reopen");
    check(log.as_ref());
    let d = log.append(&[record(4, 1)]).expect("append after reopen");
    assert_eq!(d.first_offset, 102 + u64::from(MAX_RECORD_SPAN));
}

/// `offset_for_timestamp` finds the first record at or after a time.
pub fn timestamp_lookup(make: MakeStore<'_>) {
    let store = make();
    let log = store
        .open_log(&name("ts"), &LogConfig::default())
        .expect("open");
    let batch: Vec<Record> = (0..50).map(|i| record(i, 10)).collect();
    block_on(log.append(&batch).expect("append").durable).expect("durable");
    assert_eq!(log.offset_for_timestamp(0).expect("ts"), Some(0));
    assert_eq!(
        log.offset_for_timestamp(1_000 + 25 * 10).expect("ts"),
        Some(25)
    );
    assert_eq!(
        log.offset_for_timestamp(1_000 + 25 * 10 - 3).expect("ts"),
        Some(25)
    );
    assert_eq!(log.offset_for_timestamp(1_000_000).expect("ts"), None);
}

/// Reclamation deletes only whole segments below the low-water mark, never above it.
pub fn low_water_reclaims_whole_segments_only(make: MakeStore<'_>) {
    let store = make();
    let config = LogConfig {
        segment_bytes: 4096,
        retention: Retention::default(),
        ..LogConfig::default()
    };
    let log = store.open_log(&name("lw"), &config).expect("open");
    for i in 0..3000 {
        let a = log.append(&[record(i, 200)]).expect("append");
        if i % 500 == 499 {
            block_on(a.durable).expect("durable");
        }
    }
    block_on(log.flush()).expect("flush");
    assert_eq!(
        log.reclaim(u64::MAX).expect("reclaim").segments,
        0,
        "no mark, no retention"
    );
    let mark = 2100;
    log.set_low_water(mark).expect("mark");
    log.set_low_water(10).expect("a lower mark is ignored");
    let reclaimed = log.reclaim(u64::MAX).expect("reclaim");
    assert!(reclaimed.segments > 0);
    let start = log.stats().start_offset;
    assert_eq!(reclaimed.start_offset, start);
    assert!(start <= mark && start > 0, "start {start} mark {mark}");
    let first = log.read(start, 1, usize::MAX).expect("read");
    assert_eq!(first[0].offset, start);
    assert!(matches!(
        log.read(start - 1, 1, usize::MAX),
        Err(StoreError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        log.read(mark, 1, usize::MAX).expect("read")[0].record,
        record(mark, 200)
    );
}

/// A journal returns its snapshot and the entries after it, across a restart.
pub fn journal_snapshot_and_replay(make: MakeStore<'_>, restart: RestartStore<'_>) {
    let store = make();
    let n = name("j/state");
    let journal = store.open_journal(&n, FsyncPolicy::Always).expect("open");
    assert_eq!(journal.recovered(), Default::default());
    block_on(
        journal
            .append(&[Bytes::from_static(b"a"), Bytes::from_static(b"b")])
            .expect("append"),
    )
    .expect("durable");
    journal
        .snapshot(Bytes::from_static(b"S1"))
        .expect("snapshot");
    assert_eq!(journal.bytes_since_snapshot(), 0);
    block_on(journal.append(&[Bytes::from_static(b"c")]).expect("append")).expect("durable");
    assert_eq!(journal.bytes_since_snapshot(), 1);
    drop(journal);
    let store = restart(store);
    let journal = store.open_journal(&n, FsyncPolicy::Always).expect("reopen");
    let got = journal.recovered();
    assert_eq!(got.snapshot.as_deref(), Some(&b"S1"[..]));
    assert_eq!(got.entries, vec![Bytes::from_static(b"c")]);
}

/// `list` names the children of a prefix; `remove` deletes a subtree.
pub fn list_and_remove(make: MakeStore<'_>) {
    let store = make();
    store
        .open_log(&name("queues/a/messages"), &LogConfig::default())
        .expect("open");
    store
        .open_journal(&name("queues/a/state"), FsyncPolicy::Always)
        .expect("open");
    store
        .open_log(&name("queues/b/messages"), &LogConfig::default())
        .expect("open");
    let mut listed = store.list(&name("queues")).expect("list");
    listed.sort();
    assert_eq!(listed, vec!["a".to_string(), "b".to_string()]);
    store.remove(&name("queues/a")).expect("remove");
    assert_eq!(
        store.list(&name("queues")).expect("list"),
        vec!["b".to_string()]
    );
    store
        .remove(&name("queues/never"))
        .expect("removing nothing is fine");
    let log = store
        .open_log(&name("queues/a/messages"), &LogConfig::default())
        .expect("reopen");
    assert_eq!(log.stats().next_offset, 0, "removed data is gone");
}
