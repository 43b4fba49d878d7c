//! [`FileStore`]: names → directories, one writer pool, one lock file.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use weir_store::{FsyncPolicy, Journal, Log, LogConfig, Store, StoreError, StoreName};

use crate::journal::{self, FileJournal, SharedJournal, ENTRIES_DIR};
use crate::log::{FileLog, LogShared};
use crate::segment::{self, LOG_EXT};
use crate::writer::{Pool, DEFAULT_WRITER_THREADS};

/// Name of the lock file in a store's root.
const LOCK_FILE: &str = ".lock";

/// How a [`FileStore`] is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStoreOptions {
    /// Writer threads shared by every log and journal of the store (clamped to 1..=64).
    pub writer_threads: usize,
    /// Segment size of journals' entries logs.
    pub journal_segment_bytes: u64,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            writer_threads: DEFAULT_WRITER_THREADS,
            journal_segment_bytes: 4 << 20,
        }
    }
}

/// The embedded file store: each [`StoreName`] is a directory under the root.
///
/// Holds an exclusive `flock` on `<root>/.lock` for as long as the store or any log or journal
/// opened from it is alive, so two stores never write the same files.
///
/// ```no_run
/// use weir_log::{FileStore, FileStoreOptions};
/// use weir_store::{LogConfig, Store, StoreName};
/// # fn main() -> Result<(), weir_store::StoreError> {
/// let store = FileStore::open(std::path::Path::new("./weir-data"), FileStoreOptions::default())?;
/// let log = store.open_log(&StoreName::parse("queues/orders/messages")?, &LogConfig::default())?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FileStore {
    root: PathBuf,
    options: FileStoreOptions,
    pool: Arc<Pool>,
    logs: Mutex<HashMap<PathBuf, Weak<LogShared>>>,
    journals: Mutex<HashMap<PathBuf, Weak<FileJournal>>>,
}

fn lock_root(root: &Path) -> Result<fs::File, StoreError> {
    let path = root.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::io("open lock file", path.display(), e))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(StoreError::io(
            "lock store (is another process using it?)",
            path.display(),
            err,
        ));
    }
    Ok(file)
}

impl FileStore {
    /// Opens (creating if needed) the store rooted at `root` and starts its writer threads.
    pub fn open(root: &Path, options: FileStoreOptions) -> Result<FileStore, StoreError> {
        fs::create_dir_all(root).map_err(|e| StoreError::io("create store", root.display(), e))?;
        let lock = lock_root(root)?;
        let pool = Pool::start(options.writer_threads, lock)
            .map_err(|e| StoreError::io("start writer threads", root.display(), e))?;
        Ok(FileStore {
            root: root.to_path_buf(),
            options,
            pool: Arc::new(pool),
            logs: Mutex::new(HashMap::new()),
            journals: Mutex::new(HashMap::new()),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `name` (only validated components are ever joined).
    fn dir_of(&self, name: &StoreName) -> PathBuf {
        let mut p = self.root.clone();
        for c in name.components() {
            p.push(c);
        }
        p
    }

    /// Creates `dir` and its missing parents under the root, fsyncing each parent.
    fn make_dirs(&self, dir: &Path) -> Result<(), StoreError> {
        let rel = dir.strip_prefix(&self.root).unwrap_or(dir);
        let mut p = self.root.clone();
        for c in rel.components() {
            let parent = p.clone();
            p.push(c);
            match fs::create_dir(&p) {
                Ok(()) => segment::sync_dir(&parent)?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(StoreError::io("create directory", p.display(), e)),
            }
        }
        Ok(())
    }

    /// Opens the log in `dir`, sharing the instance if one is still alive.
    fn log_at(
        &self,
        name: String,
        dir: PathBuf,
        config: &LogConfig,
    ) -> Result<FileLog, StoreError> {
        let mut logs = self.logs.lock();
        logs.retain(|_, w| w.strong_count() > 0);
        if let Some(shared) = logs.get(&dir).and_then(Weak::upgrade) {
            return Ok(FileLog::new(shared, self.pool.clone()));
        }
        self.make_dirs(&dir)?;
        let shared = LogShared::open(name, dir.clone(), config, self.pool.shared().clone())?;
        logs.insert(dir, Arc::downgrade(&shared));
        Ok(FileLog::new(shared, self.pool.clone()))
    }
}

fn has_segments(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten().any(|e| {
            e.file_name()
                .to_str()
                .and_then(segment::parse_file_name)
                .is_some_and(|(_, ext)| ext == LOG_EXT)
        })
    })
}

fn kind_clash(name: &StoreName, what: &str) -> StoreError {
    StoreError::InvalidName {
        name: name.to_string(),
        reason: format!("a {what} of that name exists"),
    }
}

impl Store for FileStore {
    fn sync_latency(&self) -> Option<weir_store::SyncLatency> {
        Some(self.pool.shared().syncs.snapshot())
    }

    fn open_log(&self, name: &StoreName, config: &LogConfig) -> Result<Arc<dyn Log>, StoreError> {
        if name.components().is_empty() {
            return Err(StoreError::InvalidName {
                name: String::new(),
                reason: "the root is not a log".into(),
            });
        }
        let dir = self.dir_of(name);
        if journal::is_journal(&dir) {
            return Err(kind_clash(name, "journal"));
        }
        Ok(Arc::new(self.log_at(name.to_string(), dir, config)?))
    }

    fn open_journal(
        &self,
        name: &StoreName,
        fsync: FsyncPolicy,
    ) -> Result<Arc<dyn Journal>, StoreError> {
        if name.components().is_empty() {
            return Err(StoreError::InvalidName {
                name: String::new(),
                reason: "the root is not a journal".into(),
            });
        }
        let dir = self.dir_of(name);
        if has_segments(&dir) {
            return Err(kind_clash(name, "log"));
        }
        let mut journals = self.journals.lock();
        journals.retain(|_, w| w.strong_count() > 0);
        if let Some(j) = journals.get(&dir).and_then(Weak::upgrade) {
            return Ok(j);
        }
        let config = LogConfig {
            segment_bytes: self.options.journal_segment_bytes,
            fsync,
            ..LogConfig::default()
        };
        let log = self.log_at(
            format!("{name}/{ENTRIES_DIR}"),
            dir.join(ENTRIES_DIR),
            &config,
        )?;
        let journal: SharedJournal = Arc::new(FileJournal::open(dir.clone(), log)?);
        journals.insert(dir, Arc::downgrade(&journal));
        Ok(journal)
    }

    fn remove(&self, name: &StoreName) -> Result<(), StoreError> {
        let dir = self.dir_of(name);
        self.logs.lock().retain(|p, _| !p.starts_with(&dir));
        self.journals.lock().retain(|p, _| !p.starts_with(&dir));
        let entries = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("remove", dir.display(), e)),
        };
        if name.components().is_empty() {
            for entry in entries.flatten() {
                if entry.file_name() == LOCK_FILE {
                    continue;
                }
                let p = entry.path();
                let r = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                r.map_err(|e| StoreError::io("remove", p.display(), e))?;
            }
            return segment::sync_dir(&dir);
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StoreError::io("remove", dir.display(), e)),
        }
        match dir.parent() {
            Some(parent) => segment::sync_dir(parent),
            None => Ok(()),
        }
    }

    fn list(&self, prefix: &StoreName) -> Result<Vec<String>, StoreError> {
        let dir = self.dir_of(prefix);
        let entries = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("list", dir.display(), e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", dir.display(), e))?;
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if is_dir && prefix.join(&name).is_ok() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }
}
