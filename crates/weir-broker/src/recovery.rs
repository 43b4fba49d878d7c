//! Rebuilding a queue's index after a restart: load the snapshot, scan the message log from the
//! offset the snapshot covers, then apply the journal entries written since the snapshot.
//!
//! Leases do not survive a restart: a message in flight when the broker stopped is ready again
//! (with its journaled attempt count), or dead-lettered ("lease_expired") if that was its last
//! attempt. Corruption is reported as an error, never skipped.

use weir_store::{Journal, Log, StoreError};

use crate::core::{key_hash, QueueCore};
use crate::dedup::hash_id;
use crate::envelope::decode_envelope;
use crate::index::{Entry, EntryTable, State};
use crate::journal::{decode_snapshot, StateEntry};

/// Records per log read during the scan.
const SCAN_BATCH_RECORDS: usize = 1024;
/// Payload bytes per log read during the scan (about).
const SCAN_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Rebuilds `core` (fresh) from `log` and `journal`: a queue's.
pub(crate) fn recover(
    core: &mut QueueCore,
    log: &dyn Log,
    journal: &dyn Journal,
    now_ms: u64,
) -> Result<(), StoreError> {
    recover_from(core, log, journal, now_ms, 0, true)
}

/// Rebuilds `core` from `log` and `journal`, indexing only offsets `>= floor` (a topic
/// subscription starts somewhere in the topic's shared log). `dedup` says whether the core keeps
/// the ids of its messages (a subscription does not: its topic deduplicates).
pub(crate) fn recover_from(
    core: &mut QueueCore,
    log: &dyn Log,
    journal: &dyn Journal,
    now_ms: u64,
    floor: u64,
    dedup: bool,
) -> Result<(), StoreError> {
    let contents = journal.recovered();
    let mut table = EntryTable::default();
    let mut covered = 0;
    if let Some(snapshot) = &contents.snapshot {
        let s = decode_snapshot(snapshot)?;
        covered = s.covered;
        // The snapshot holds every dedup entry below `covered`; entries past it are rebuilt
        // from the log scan below (and keep the log's low-water mark from passing them).
        core.dedup.set_covered(covered, now_ms);
        for (hash, expires_ms) in s.dedup {
            if expires_ms > now_ms {
                core.dedup.insert(hash, expires_ms);
            }
        }
        for e in s.entries {
            table.insert(
                e.offset,
                Entry {
                    due_ms: e.ready_at_ms,
                    size: e.size,
                    key_hash: e.key_hash,
                    attempt: e.attempt,
                    priority: e.priority,
                    state: State::Ready,
                },
            );
        }
    }
    let stats = log.stats();
    let window = core.config.dedup_window_ms;
    let mut from = covered.max(stats.start_offset).max(floor);
    loop {
        let batch = log.read(from, SCAN_BATCH_RECORDS, SCAN_BATCH_BYTES)?;
        let Some(last) = batch.last().map(|r| r.offset) else {
            break;
        };
        for rec in &batch {
            let env = decode_envelope(rec)?;
            table.insert(
                rec.offset,
                Entry {
                    due_ms: env.ready_at_ms,
                    size: u32::try_from(rec.record.body.len()).unwrap_or(u32::MAX),
                    key_hash: key_hash(rec.record.key.as_deref()),
                    attempt: 0,
                    priority: env.priority,
                    state: State::Ready,
                },
            );
            if dedup && env.client_id {
                let expires_ms = rec.record.timestamp_ms.saturating_add(window);
                if expires_ms > now_ms {
                    core.dedup
                        .insert_at(hash_id(&env.id), expires_ms, rec.offset);
                }
            }
        }
        from = last + 1;
    }
    for raw in &contents.entries {
        match StateEntry::decode(raw)? {
            StateEntry::Remove(offsets) => {
                for o in offsets {
                    table.remove(o);
                }
            }
            StateEntry::Attempts(v) => {
                for (o, a) in v {
                    if let Some(e) = table.get_mut(o) {
                        e.attempt = e.attempt.max(a);
                    }
                }
            }
            StateEntry::Requeue(v) => {
                for (o, a, ready_at_ms) in v {
                    if let Some(e) = table.get_mut(o) {
                        e.attempt = e.attempt.max(a);
                        e.due_ms = ready_at_ms;
                    }
                }
            }
        }
    }
    // Entries the log no longer (or never durably) holds cannot be delivered; with a correct
    // low-water mark and fsync policy there are none.
    let stats = log.stats();
    let stray: Vec<u64> = table
        .iter()
        .filter(|(o, _)| *o < stats.start_offset || *o >= stats.durable_offset)
        .map(|(o, _)| o)
        .collect();
    if !stray.is_empty() {
        tracing::warn!(
            count = stray.len(),
            start = stats.start_offset,
            end = stats.durable_offset,
            "index entries outside the message log dropped during recovery"
        );
        for o in stray {
            table.remove(o);
        }
    }
    core.restore(table, now_ms);
    Ok(())
}
