//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::executor::block_on;
use weir_log::{FileStore, FileStoreOptions};
use weir_store::{Header, Log, LogConfig, Record, Store, StoreName, StoredRecord};

pub fn name() -> StoreName {
    StoreName::parse("streams/s/p0").expect("valid")
}

pub fn open_store(root: &Path) -> FileStore {
    FileStore::open(
        root,
        FileStoreOptions {
            writer_threads: 1,
            ..FileStoreOptions::default()
        },
    )
    .expect("open store")
}

pub fn open_log(store: &FileStore, config: &LogConfig) -> Arc<dyn Log> {
    store.open_log(&name(), config).expect("open log")
}

pub fn log_dir(root: &Path) -> PathBuf {
    root.join("streams/s/p0")
}

pub fn record(i: u64, body_len: usize) -> Record {
    Record {
        timestamp_ms: 1_000 + i,
        key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
        headers: if i % 3 == 0 {
            vec![Header {
                name: "h".into(),
                value: Bytes::from(i.to_le_bytes().to_vec()),
            }]
        } else {
            Vec::new()
        },
        body: Bytes::from(vec![(i % 251) as u8; body_len]),
    }
}

/// Appends one record at a time, waiting for each; returns the segment file size after each.
pub fn append_each(log: &dyn Log, records: &[Record]) {
    for r in records {
        block_on(log.append(std::slice::from_ref(r)).expect("append").durable).expect("durable");
    }
}

pub fn read_all(log: &dyn Log) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    let mut next = log.stats().start_offset;
    loop {
        let batch = log.read(next, 1000, usize::MAX).expect("read");
        let Some(last) = batch.last() else { break };
        next = last.offset + u64::from(last.span);
        out.extend(batch);
    }
    out
}

/// Segment data files of a log directory, sorted.
pub fn segment_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// Copies every file of `from` (not recursive) into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}
