//! weir-log's record decoder and recovery on arbitrary file contents: the bytes are written as
//! the active segment, a journal snapshot or a journal's entries log, and the store is opened
//! and read. Recovery may cut a tail or report corruption, but never panics, and whatever it
//! serves is readable again after a reopen (recovery is idempotent).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use weir_log::{FileStore, FileStoreOptions};
use weir_store::{FsyncPolicy, LogConfig, Store, StoreName};

const SEGMENT: &str = "00000000000000000000.log";

fn options() -> FileStoreOptions {
    FileStoreOptions {
        writer_threads: 1,
        ..FileStoreOptions::default()
    }
}

fn read_all(root: &Path, name: &StoreName) -> Option<Vec<(u64, bytes::Bytes)>> {
    let store = FileStore::open(root, options()).ok()?;
    let log = store.open_log(name, &LogConfig::default()).ok()?;
    let stats = log.stats();
    let mut out = Vec::new();
    let mut from = stats.start_offset;
    while from < stats.durable_offset {
        match log.read(from, 1024, 1 << 20) {
            Ok(batch) if !batch.is_empty() => {
                from = batch.last().map_or(from, |r| r.offset + u64::from(r.span));
                out.extend(batch.into_iter().map(|r| (r.offset, r.record.body)));
            }
            _ => break,
        }
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let base = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    };
    let Ok(dir) = base else { return };
    let root = dir.path();
    match mode % 3 {
        0 => {
            let name = StoreName::parse("q/messages").expect("name");
            let seg_dir = root.join("q").join("messages");
            std::fs::create_dir_all(&seg_dir).expect("mkdir");
            std::fs::write(seg_dir.join(SEGMENT), bytes).expect("write");
            let first = read_all(root, &name);
            if let Some(first) = first {
                // A second open sees exactly what the first served.
                let second = read_all(root, &name).expect("a recovered log reopens");
                assert_eq!(first, second);
            }
        }
        1 | 2 => {
            let state = root.join("q").join("state");
            let file = if mode % 3 == 1 {
                std::fs::create_dir_all(&state).expect("mkdir");
                state.join("journal.snap")
            } else {
                std::fs::create_dir_all(state.join(".entries")).expect("mkdir");
                state.join(".entries").join(SEGMENT)
            };
            std::fs::write(file, bytes).expect("write");
            let Ok(store) = FileStore::open(root, options()) else {
                return;
            };
            let name = StoreName::parse("q/state").expect("name");
            if let Ok(j) = store.open_journal(&name, FsyncPolicy::Never) {
                let _ = j.recovered();
            }
        }
        _ => unreachable!(),
    }
});
