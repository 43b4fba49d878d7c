//! Deferred journal appends: written with the next ordinary append (in order), or by a timer
//! when none comes; both kinds recovered after reopen.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::executor::block_on;
use weir_log::FileStore;
use weir_store::{FsyncPolicy, Journal, Store, StoreName};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn journal_name() -> StoreName {
    StoreName::parse("queues/q/state").expect("name")
}

/// Opens the store at `root` and its journal under policy `Always`.
fn open(root: &Path) -> (FileStore, Arc<dyn Journal>) {
    let store = common::open_store(root);
    let j = store
        .open_journal(&journal_name(), FsyncPolicy::Always)
        .expect("open journal");
    (store, j)
}

/// The entries a fresh open of a copy of `root`'s journal finds (the original stays open).
fn entries_in_copy(root: &Path) -> Vec<Bytes> {
    let copy = tempfile::tempdir().expect("tempdir");
    let from = root.join("queues/q/state/.entries");
    common::copy_dir(&from, &copy.path().join("queues/q/state/.entries"));
    let (_store, j) = open(copy.path());
    j.recovered().entries
}

#[test]
fn deferred_entries_go_out_with_the_next_ordinary_append_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (_store, j) = open(dir.path());
        j.append_deferred(&[b("attempt-1")]).expect("deferred");
        j.append_deferred(&[b("attempt-2"), b("attempt-3")])
            .expect("deferred");
        let durable = j.append(&[b("remove-1")]).expect("append");
        block_on(durable).expect("durable");
        // Durable means on disk: a copy taken now holds all four, in append order.
        assert_eq!(
            entries_in_copy(dir.path()),
            vec![
                b("attempt-1"),
                b("attempt-2"),
                b("attempt-3"),
                b("remove-1")
            ]
        );
        j.append_deferred(&[b("attempt-4")]).expect("deferred");
    }
    // Closing the store writes what is still deferred.
    let (_store, j) = open(dir.path());
    assert_eq!(
        j.recovered().entries,
        vec![
            b("attempt-1"),
            b("attempt-2"),
            b("attempt-3"),
            b("remove-1"),
            b("attempt-4")
        ]
    );
}

#[test]
fn a_deferred_entry_alone_is_written_by_the_timer() {
    for policy in [FsyncPolicy::Always, FsyncPolicy::Interval { ms: 1_000 }] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = common::open_store(dir.path());
        let j = store.open_journal(&journal_name(), policy).expect("open");
        j.append_deferred(&[b("attempt-1")]).expect("deferred");
        // No other append and no flush: only the timer can write it. Give it far more than
        // DEFERRED_WRITE_DELAY (50 ms) on a loaded machine.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = entries_in_copy(dir.path());
            if found == vec![b("attempt-1")] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{policy:?}: the deferred entry was not written within 10 s (found {found:?})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(j.bytes_since_snapshot(), 9);
    }
}

#[test]
fn a_snapshot_covers_deferred_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (_store, j) = open(dir.path());
        j.append_deferred(&[b("attempt-1")]).expect("deferred");
        j.snapshot(b("S1")).expect("snapshot");
        j.append_deferred(&[b("attempt-2")]).expect("deferred");
    }
    let (_store, j) = open(dir.path());
    let got = j.recovered();
    assert_eq!(got.snapshot, Some(b("S1")));
    assert_eq!(got.entries, vec![b("attempt-2")]);
}
