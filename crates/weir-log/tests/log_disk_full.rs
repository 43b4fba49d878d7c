//! A full disk (ENOSPC) is retryable and heals: the log is on a tiny tmpfs; appends fail with a
//! retryable error, nothing durable is damaged, and appends work again once space returns,
//! without reopening. Needs `mount -t tmpfs` (root); elsewhere the test prints why and passes.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use futures::executor::block_on;
use weir_log::{FileStore, FileStoreOptions};
use weir_store::{LogConfig, Record, Store, StoreName};

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if out.status.success() {
            Ok(Tmpfs(dir.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn rec(i: u64) -> Record {
    let mut body = format!("record {i} ").into_bytes();
    body.resize(16 * 1024, b'a' + (i % 26) as u8);
    Record {
        timestamp_ms: i,
        body: Bytes::from(body),
        ..Record::default()
    }
}

fn check_all(log: &dyn weir_store::Log, n: u64) {
    let got = log.read(0, usize::MAX, usize::MAX).expect("read");
    assert_eq!(got.len() as u64, n, "every durable record is readable");
    for r in got {
        assert_eq!(r.record, rec(r.offset), "record {} intact", r.offset);
    }
}

#[test]
fn disk_full_is_retryable_truncates_and_heals_without_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let _tmpfs = match Tmpfs::mount(&mnt, "512k") {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIPPED log_disk_full: cannot mount a tmpfs here ({e})");
            return;
        }
    };
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![0u8; 128 * 1024]).expect("ballast");
    let root = mnt.join("data");
    let name = StoreName::parse("q/messages").expect("name");
    let config = LogConfig {
        segment_bytes: 64 * 1024,
        ..LogConfig::default()
    };
    let mut durable = 0u64;
    {
        let store = FileStore::open(&root, FileStoreOptions::default()).expect("open");
        let log = store.open_log(&name, &config).expect("log");
        // Fill: three appends in flight at a time, so a failure hits a group.
        let err = loop {
            assert!(durable < 10_000, "512 KiB never filled up");
            let a: Vec<_> = (0..3)
                .map(|k| log.append(&[rec(durable + k)]).expect("append accepted"))
                .collect();
            let results: Vec<_> = a.into_iter().map(|a| block_on(a.durable)).collect();
            let ok = results.iter().take_while(|r| r.is_ok()).count() as u64;
            durable += ok;
            if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                break e;
            }
        };
        eprintln!("disk full after {durable} records: {err}");
        assert!(err.is_retryable(), "a full disk is retryable: {err:?}");
        assert!(err.to_string().contains("space"), "{err}");
        let stats = log.stats();
        assert_eq!(stats.next_offset, durable, "offsets taken back");
        assert_eq!(stats.durable_offset, durable);
        check_all(&*log, durable);

        // Still full: refused again, retryably; the log is not poisoned.
        let again = log.append(&[rec(durable)]).expect("accepted");
        match block_on(again.durable) {
            Ok(()) => durable += 1, // a little space freed by the truncation
            Err(e) => assert!(e.is_retryable(), "{e:?}"),
        }

        // Space returns: appends work again, without reopening.
        std::fs::remove_file(&ballast).expect("remove ballast");
        for _ in 0..4 {
            let a = log
                .append(&[rec(durable)])
                .expect("append after space returned");
            assert_eq!(a.first_offset, durable);
            block_on(a.durable).expect("durable after space returned");
            durable += 1;
        }
        check_all(&*log, durable);
    }
    // Reopen: recovery finds exactly the durable records.
    let store = FileStore::open(&root, FileStoreOptions::default()).expect("reopen");
    let log = store.open_log(&name, &config).expect("log");
    assert_eq!(log.stats().next_offset, durable);
    check_all(&*log, durable);
}
