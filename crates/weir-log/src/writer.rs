//! Group commit: a bounded pool of writer threads shared by every log of a store.
//!
//! Appenders queue bytes on their log ([`crate::log::State::pending`]) and schedule the log here
//! when it is not already scheduled. A writer thread runs a pass over the log (`pass.rs`): it
//! may first gather briefly when appenders are concurrent, then takes *everything* pending,
//! writes it with one positional write per segment touched, fdatasyncs once (policy `Always`),
//! and then publishes the new durable offset, which resolves every `Durable` that the fsync
//! covered. At most one thread works on a log at a time (the `scheduled` flag), so a log's bytes
//! are written in offset order; different logs proceed in parallel on different threads.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};
use weir_store::{SyncLatency, SYNC_BUCKETS_US};

use crate::log::LogShared;

/// Default number of writer threads per store.
pub const DEFAULT_WRITER_THREADS: usize = 4;
/// Most writer threads a store may have.
pub const MAX_WRITER_THREADS: usize = 64;

struct Timer {
    at: Instant,
    seq: u64,
    log: Arc<LogShared>,
}

impl PartialEq for Timer {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Timer {}
impl PartialOrd for Timer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Timer {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest deadline on top.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct Queue {
    ready: VecDeque<Arc<LogShared>>,
    timers: BinaryHeap<Timer>,
    timer_seq: u64,
    shutdown: bool,
}

/// The part of the pool that logs and threads share.
pub(crate) struct PoolShared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Durations of the data fsyncs of every log of the store.
    pub(crate) syncs: SyncRecorder,
}

/// A fixed-bucket histogram of fsync durations, with atomic counters (no lock on the write path).
#[derive(Default)]
pub(crate) struct SyncRecorder {
    buckets: [AtomicU64; SYNC_BUCKETS_US.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl SyncRecorder {
    /// Counts one fsync that took `d`.
    pub(crate) fn observe(&self, d: std::time::Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = SYNC_BUCKETS_US.iter().position(|b| us <= *b) {
            self.buckets[i].fetch_add(1, AtomicOrdering::Relaxed);
        }
        self.count.fetch_add(1, AtomicOrdering::Relaxed);
        self.sum_us.fetch_add(us, AtomicOrdering::Relaxed);
    }

    /// What it counted so far.
    pub(crate) fn snapshot(&self) -> SyncLatency {
        SyncLatency {
            buckets: std::array::from_fn(|i| self.buckets[i].load(AtomicOrdering::Relaxed)),
            count: self.count.load(AtomicOrdering::Relaxed),
            sum_us: self.sum_us.load(AtomicOrdering::Relaxed),
        }
    }
}

impl std::fmt::Debug for PoolShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolShared").finish_non_exhaustive()
    }
}

impl PoolShared {
    /// Queues a log for a write pass. The caller has set the log's `scheduled` flag.
    pub(crate) fn schedule(&self, log: Arc<LogShared>) {
        self.queue.lock().ready.push_back(log);
        self.wake.notify_one();
    }

    /// Runs [`LogShared::on_timer`] for `log` at `at` (interval fsync).
    pub(crate) fn arm_timer(&self, at: Instant, log: Arc<LogShared>) {
        let mut q = self.queue.lock();
        q.timer_seq += 1;
        let seq = q.timer_seq;
        q.timers.push(Timer { at, seq, log });
        drop(q);
        self.wake.notify_one();
    }
}

enum Job {
    Pass(Arc<LogShared>),
    Timer(Arc<LogShared>),
}

fn next_job(shared: &PoolShared) -> Option<Job> {
    let mut q = shared.queue.lock();
    loop {
        if let Some(log) = q.ready.pop_front() {
            return Some(Job::Pass(log));
        }
        let now = Instant::now();
        match q.timers.peek().map(|t| t.at) {
            Some(at) if at <= now || q.shutdown => {
                return q.timers.pop().map(|t| Job::Timer(t.log));
            }
            Some(at) => {
                shared.wake.wait_until(&mut q, at);
            }
            None if q.shutdown => return None,
            None => shared.wake.wait(&mut q),
        }
    }
}

fn worker(shared: Arc<PoolShared>) {
    while let Some(job) = next_job(&shared) {
        match job {
            Job::Pass(log) => log.run_pass(),
            Job::Timer(log) => log.on_timer(),
        }
    }
}

/// The writer threads of one store. Dropping it finishes queued work, then joins the threads.
pub(crate) struct Pool {
    shared: Arc<PoolShared>,
    threads: Vec<JoinHandle<()>>,
    /// The store's lock file, held (flock'd) as long as anything of the store is alive.
    _lock: File,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl Pool {
    /// Starts `threads` writer threads (clamped to `1..=MAX_WRITER_THREADS`).
    pub(crate) fn start(threads: usize, lock: File) -> std::io::Result<Pool> {
        let shared = Arc::new(PoolShared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            syncs: SyncRecorder::default(),
        });
        let mut handles = Vec::new();
        for i in 0..threads.clamp(1, MAX_WRITER_THREADS) {
            let s = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("weir-log-writer-{i}"))
                .spawn(move || worker(s));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    let pool = Pool {
                        shared,
                        threads: handles,
                        _lock: lock,
                    };
                    drop(pool); // stops the threads already started
                    return Err(e);
                }
            }
        }
        Ok(Pool {
            shared,
            threads: handles,
            _lock: lock,
        })
    }

    /// The handle logs use to schedule work.
    pub(crate) fn shared(&self) -> &Arc<PoolShared> {
        &self.shared
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.queue.lock().shutdown = true;
        self.shared.wake.notify_all();
        for h in self.threads.drain(..) {
            // A writer thread that panicked has already lost its work; nothing more to do.
            let _ = h.join();
        }
    }
}
