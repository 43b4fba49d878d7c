//! weir-log: Weir's embedded storage engine, the file implementation of [`weir_store::Store`].
//!
//! - [`FileStore`] maps each [`weir_store::StoreName`] to a directory under its root and owns a
//!   small, bounded pool of writer threads ([`FileStoreOptions::writer_threads`], default 4)
//!   shared by all of its logs and journals.
//! - [`FileLog`] is a segmented append-only log: CRC32C-framed records, a sparse offset/time
//!   index per segment, group commit (one write + one `fdatasync` for everything pending on a
//!   log), reads by `pread` that see durable records only, recovery that cuts a torn tail and
//!   reports corruption anywhere else, and whole-segment reclamation.
//! - [`FileJournal`] is a snapshot file (written via temp file + rename) plus an entries log.
//!
//! The byte layouts, the commit protocol, the recovery rules and what the engine assumes of the
//! disk are in `docs/storage.md`.
//!
//! Threads: appends validate and CRC in the caller's thread, then take a short lock to write
//! their frames into the log's pending buffer; all file writes and fsyncs happen on the store's
//! writer threads; reads `pread` in the caller's thread with no lock held. Nothing here needs an
//! async runtime: a `Durable` is resolved by a writer thread and can be awaited on any executor
//! (or `futures::executor::block_on`).

mod index;
mod journal;
mod log;
mod pass;
mod read;
mod record;
mod recovery;
mod segment;
mod store;
mod writer;

pub use journal::FileJournal;
pub use log::{
    FileLog, DEFERRED_WRITE_DELAY, MAX_RECORD_BYTES, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES,
};
pub use store::{FileStore, FileStoreOptions};
pub use writer::{DEFAULT_WRITER_THREADS, MAX_WRITER_THREADS};
