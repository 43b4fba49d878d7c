//! The stream half of the crash harness: a native producer appends keyed batches to a
//! two-partition stream and, now and then, commits a consumer group's offsets (without a member,
//! as an operator would); the server is SIGKILLed under it. Checked after every restart and at the
//! end (DESIGN §2.1, streams):
//!
//! - **lost**: every record whose append was confirmed is read back at its (partition, offset)
//!   with its exact body;
//! - **reused**: no confirmed (partition, offset) is ever answered for another record;
//! - **commits**: a group's committed offset never falls below one whose commit was confirmed.
//!
//! After a restart only the records confirmed since the previous check are re-read (those at the
//! torn tail are the ones at risk); the end of the run re-reads everything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::parking_lot_free::Mutex;

/// The stream under test.
const STREAM: &str = "crash-stream";
/// Its consumer group.
const GROUP: &str = "crash-group";
/// Partitions of the stream.
const PARTITIONS: u32 = 2;
/// Largest append batch.
const MAX_BATCH: usize = 32;
/// Per-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most records one read asks for.
const READ_MAX: u32 = 1000;

/// What the stream workers saw and the checks found.
#[derive(Debug, Default)]
pub(crate) struct StreamTracker {
    /// Records whose append was confirmed: (partition, offset) → body.
    confirmed: BTreeMap<(u32, u64), Vec<u8>>,
    /// Per partition, the lowest offset confirmed since the last check (what to re-read next).
    unchecked_from: BTreeMap<u32, u64>,
    /// Per partition, the highest committed offset whose commit was confirmed.
    committed: BTreeMap<u32, u64>,
    /// Records sent in append requests.
    pub(crate) attempted: u64,
    /// Commits confirmed.
    pub(crate) commits_confirmed: u64,
    /// Confirmed records read back intact by the final full check.
    pub(crate) checked: u64,
    /// Confirmed records missing or changed.
    pub(crate) lost: u64,
    /// Everything that went wrong, described.
    pub(crate) violations: Vec<String>,
}

impl StreamTracker {
    fn violation(&mut self, v: String) {
        if self.violations.len() < 50 {
            self.violations.push(v);
        }
    }

    /// Records confirmed so far.
    pub(crate) fn confirmed(&self) -> u64 {
        self.confirmed.len() as u64
    }
}

/// Shared between the worker and the checks.
pub(crate) type SharedStream = Arc<Mutex<StreamTracker>>;

fn body(cycle: u64, seq: u64, filler: usize) -> Vec<u8> {
    let mut b = format!("s{cycle}-{seq}|").into_bytes();
    b.extend(std::iter::repeat_n(b'r', filler));
    b
}

async fn connect(addr: SocketAddr) -> Result<weir_client::Client, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, weir_client::Client::connect(addr)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!("connect {addr}: {e}")),
        Err(_) => Err(format!("connect {addr}: timed out")),
    }
}

/// Creates the stream (first cycle only).
pub(crate) async fn create(addr: SocketAddr) -> Result<(), String> {
    let client = connect(addr).await?;
    let options = weir_client::StreamOptions {
        partitions: Some(PARTITIONS),
        ..Default::default()
    };
    client
        .create_stream(STREAM, options)
        .await
        .map_err(|e| format!("create stream: {e}"))?;
    Ok(())
}

/// Appends keyed batches and commits offsets until `stop`, recording what was confirmed.
pub(crate) async fn worker(
    addr: SocketAddr,
    tracker: SharedStream,
    stop: Arc<AtomicBool>,
    cycle: u64,
    seed: u64,
) -> Result<(), String> {
    let Ok(client) = connect(addr).await else {
        // Killed before we connected: nothing attempted, nothing to check.
        return Ok(());
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let n = rng.gen_range(1..=MAX_BATCH);
        let bodies: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                seq += 1;
                body(cycle, seq, rng.gen_range(0..300))
            })
            .collect();
        let records = bodies
            .iter()
            .map(|b| weir_client::Record::new(b.clone()).key(format!("k{}", rng.gen_range(0..64))))
            .collect();
        tracker.lock().attempted += n as u64;
        let at = match tokio::time::timeout(REQUEST_TIMEOUT, client.append(STREAM, records)).await {
            Ok(Ok(at)) => at,
            Ok(Err(e)) if e.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            // The connection died with the server: this cycle is over for us.
            Ok(Err(_)) | Err(_) => return Ok(()),
        };
        {
            let mut t = tracker.lock();
            if at.len() != n {
                t.violation(format!(
                    "cycle {cycle}: append of {n} answered {} positions",
                    at.len()
                ));
            }
            for (pos, b) in at.iter().zip(bodies) {
                let key = (pos.partition, pos.offset);
                if let Some(old) = t.confirmed.get(&key) {
                    if *old != b {
                        t.violation(format!(
                            "cycle {cycle}: partition {} offset {} confirmed twice for different records",
                            pos.partition, pos.offset
                        ));
                    }
                }
                t.confirmed.insert(key, b);
                let from = t.unchecked_from.entry(pos.partition).or_insert(pos.offset);
                *from = (*from).min(pos.offset);
            }
        }
        if rng.gen_bool(0.2) {
            commit(&client, &tracker).await;
        }
    }
    Ok(())
}

/// Commits, per partition, one past the highest confirmed offset.
async fn commit(client: &weir_client::Client, tracker: &SharedStream) {
    let offsets: Vec<weir_client::PartitionOffset> = {
        let t = tracker.lock();
        (0..PARTITIONS)
            .filter_map(|p| {
                let (&(_, o), _) = t.confirmed.range((p, 0)..=(p, u64::MAX)).next_back()?;
                Some(weir_client::PartitionOffset {
                    partition: p,
                    offset: o + 1,
                })
            })
            .collect()
    };
    if offsets.is_empty() {
        return;
    }
    let done = client.commit_offsets(STREAM, GROUP, None, offsets.clone());
    if let Ok(Ok(())) = tokio::time::timeout(REQUEST_TIMEOUT, done).await {
        let mut t = tracker.lock();
        t.commits_confirmed += 1;
        for o in offsets {
            let c = t.committed.entry(o.partition).or_insert(0);
            *c = (*c).max(o.offset);
        }
    }
}

/// After a restart: the records confirmed since the last check are there, intact, and the
/// group's commits did not go back. With `full`, every confirmed record is re-read and counted.
pub(crate) async fn check(
    addr: SocketAddr,
    tracker: &SharedStream,
    cycle: u64,
    full: bool,
) -> Result<(), String> {
    let client = connect(addr).await?;
    let from: BTreeMap<u32, u64> = if full {
        (0..PARTITIONS).map(|p| (p, 0)).collect()
    } else {
        std::mem::take(&mut tracker.lock().unchecked_from)
    };
    for (&partition, &start) in &from {
        let mut next = start;
        let mut read: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        loop {
            let from = weir_client::ReadFrom::Offset(next);
            let batch = client
                .read_stream(STREAM, partition, from, READ_MAX, Duration::ZERO)
                .await
                .map_err(|e| format!("cycle {cycle}: read partition {partition} at {next}: {e}"))?;
            if batch.records.is_empty() {
                break;
            }
            for r in batch.records {
                next = r.offset + 1;
                read.insert(r.offset, r.body.to_vec());
            }
        }
        let mut t = tracker.lock();
        let expected: Vec<(u64, Vec<u8>)> = t
            .confirmed
            .range((partition, start)..=(partition, u64::MAX))
            .map(|(&(_, o), b)| (o, b.clone()))
            .collect();
        for (offset, body) in expected {
            match read.get(&offset) {
                Some(got) if *got == body => {
                    if full {
                        t.checked += 1;
                    }
                }
                Some(_) => {
                    t.lost += 1;
                    t.violation(format!(
                        "cycle {cycle}: partition {partition} offset {offset} holds another record than the one confirmed"
                    ));
                }
                None => {
                    t.lost += 1;
                    t.violation(format!(
                        "cycle {cycle}: confirmed record at partition {partition} offset {offset} is gone"
                    ));
                }
            }
        }
    }
    let status = client
        .group_status(STREAM, GROUP)
        .await
        .map(Some)
        .or_else(|e| match e.code() {
            // No commit confirmed yet: the group may not exist.
            Some(weir_client::ErrorCode::NotFound) => Ok(None),
            _ => Err(format!("cycle {cycle}: group status: {e}")),
        })?;
    let mut t = tracker.lock();
    let committed = t.committed.clone();
    for (partition, confirmed) in committed {
        let now = status.as_ref().and_then(|s| {
            s.partitions
                .iter()
                .find(|p| p.partition == partition)
                .and_then(|p| p.committed)
        });
        if now.is_none_or(|now| now < confirmed) {
            t.violation(format!(
                "cycle {cycle}: group commit of partition {partition} went back from {confirmed} to {now:?}"
            ));
        }
    }
    Ok(())
}
