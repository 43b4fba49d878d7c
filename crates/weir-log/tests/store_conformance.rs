//! The weir-store conformance suite against FileStore (restart = drop and reopen the same dir).

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use weir_log::{FileStore, FileStoreOptions};
use weir_store::Store;

#[test]
fn file_store_passes_conformance() {
    let dirs: Arc<Mutex<Vec<tempfile::TempDir>>> = Arc::default();
    let roots: Arc<Mutex<Vec<PathBuf>>> = Arc::default();
    let make = {
        let dirs = dirs.clone();
        let roots = roots.clone();
        move || {
            let dir = tempfile::tempdir().expect("tempdir");
            let root = dir.path().to_path_buf();
            dirs.lock().push(dir);
            roots.lock().push(root.clone());
            Box::new(FileStore::open(&root, FileStoreOptions::default()).expect("open"))
                as Box<dyn Store>
        }
    };
    let restart = |store: Box<dyn Store>| {
        // The store's Debug output is not an API: find the root through the list of made roots
        // instead, matching the most recent store (conformance restarts the one it just made).
        let root = roots.lock().last().cloned().expect("a store was made");
        drop(store);
        Box::new(FileStore::open(&root, FileStoreOptions::default()).expect("reopen"))
            as Box<dyn Store>
    };
    weir_store::conformance::run_all(&make, &restart);
}
