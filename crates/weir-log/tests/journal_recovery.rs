//! Journal: snapshot + entries after it survive reopen; a leftover temp file is ignored; a
//! damaged snapshot is reported.

mod common;

use bytes::Bytes;
use futures::executor::block_on;
use weir_store::{FsyncPolicy, Store, StoreError, StoreName};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[test]
fn snapshot_replaces_entries_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = StoreName::parse("queues/q/state").expect("name");
    {
        let store = common::open_store(dir.path());
        let j = store.open_journal(&n, FsyncPolicy::Always).expect("open");
        for i in 0..2000 {
            block_on(
                j.append(&[b(&format!("entry-{i:04}-{}", "x".repeat(100)))])
                    .expect("append"),
            )
            .expect("durable");
        }
        j.snapshot(b("S1")).expect("snapshot");
        block_on(j.append(&[b("after-1"), b("after-2")]).expect("append")).expect("durable");
        assert_eq!(j.bytes_since_snapshot(), 14);
    }
    let entries_dir = dir.path().join("queues/q/state/.entries");
    let segs = common::segment_files(&entries_dir, "log");
    assert!(!segs.is_empty());
    std::fs::write(
        dir.path().join("queues/q/state/journal.snap.tmp"),
        b"half a snapshot",
    )
    .expect("tmp");
    {
        let store = common::open_store(dir.path());
        let j = store.open_journal(&n, FsyncPolicy::Always).expect("reopen");
        let got = j.recovered();
        assert_eq!(got.snapshot, Some(b("S1")));
        assert_eq!(got.entries, vec![b("after-1"), b("after-2")]);
        assert_eq!(j.bytes_since_snapshot(), 14);
        j.snapshot(b("S2")).expect("snapshot");
        assert!(
            store
                .list(&StoreName::parse("queues/q").expect("name"))
                .expect("list")
                == vec!["state".to_string()]
        );
    }
    {
        let store = common::open_store(dir.path());
        let j = store.open_journal(&n, FsyncPolicy::Never).expect("reopen");
        assert_eq!(j.recovered().snapshot, Some(b("S2")));
        assert!(j.recovered().entries.is_empty());
        assert!(
            store.open_log(&n, &Default::default()).is_err(),
            "a journal is not a log"
        );
    }
    let snap = dir.path().join("queues/q/state/journal.snap");
    let mut bytes = std::fs::read(&snap).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&snap, bytes).expect("write");
    let store = common::open_store(dir.path());
    assert!(matches!(
        store.open_journal(&n, FsyncPolicy::Always),
        Err(StoreError::Corrupt { .. })
    ));
}
