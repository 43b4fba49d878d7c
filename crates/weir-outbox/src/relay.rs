//! The relay loop: claim a batch of unsent rows in id order, publish them to Weir (retrying while
//! Weir is busy or down), mark the confirmed rows sent, repeat; sleep until a commit notification
//! (PostgreSQL) or the poll interval when there is nothing to do.
//!
//! Exactly-once effect = at-least-once relay + Weir's dedup by message id: a row is marked sent
//! only after Weir confirmed it, so a crash between the two re-publishes the row under the same id
//! and Weir answers "duplicate" instead of storing it twice.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::enqueue::{Destination, OutboxRow};
use crate::error::{Error, Result};
use crate::metrics::RelayMetrics;
use crate::pg::PgStore;
use crate::publisher::{
    Backoff, PublishError, Publisher, MAX_BYTES_PER_REQUEST, MAX_MESSAGES_PER_REQUEST,
};
use crate::schema::TableName;
use crate::sqlite::SqliteStore;

/// Most rows one batch may claim.
pub const MAX_BATCH_ROWS: usize = 10_000;
/// Most sent rows one cleanup statement deletes (cleanup runs in such chunks).
pub const CLEANUP_CHUNK_ROWS: i64 = 10_000;
/// Most cleanup chunks per cleanup round, so cleanup never starves relaying.
const CLEANUP_MAX_CHUNKS: usize = 10;
/// Pause when every claimed row was held back for another relay's older row of the same key.
const HELD_BACK_PAUSE: Duration = Duration::from_millis(20);

/// Everything the relay can be told.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// The application's database: `postgres://…`, a `key=value` PostgreSQL string, or
    /// `sqlite:PATH`.
    pub database_url: String,
    /// Weir's HTTP address, e.g. `http://127.0.0.1:7480`.
    pub weir_url: String,
    /// The outbox table.
    pub table: TableName,
    /// Rows per batch (1..=[`MAX_BATCH_ROWS`]).
    pub batch_size: usize,
    /// Longest sleep without a notification before looking again (PostgreSQL), or the poll
    /// interval (SQLite).
    pub poll_interval: Duration,
    /// Sent rows older than this are deleted.
    pub retention: Duration,
    /// How often cleanup runs.
    pub cleanup_interval: Duration,
    /// How often the pending count and lag are measured.
    pub stats_interval: Duration,
    /// Prepended to the row id to make the message id (e.g. `orders-db:`), for when several
    /// outbox tables feed one queue. Empty by default: the message id is the row id.
    pub id_prefix: String,
    /// Longest time a batch keeps its rows locked while Weir is busy or down; after it the batch
    /// commits what was confirmed, releases the rest, and the relay backs off outside it.
    pub max_hold: Duration,
    /// First retry delay while Weir is busy or down.
    pub backoff_base: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
    /// Timeout of one HTTP request to Weir.
    pub request_timeout: Duration,
}

impl RelayConfig {
    /// A config with the defaults for everything but the two addresses.
    pub fn new(database_url: impl Into<String>, weir_url: impl Into<String>) -> RelayConfig {
        RelayConfig {
            database_url: database_url.into(),
            weir_url: weir_url.into(),
            table: TableName::default(),
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(24 * 3600),
            cleanup_interval: Duration::from_secs(60),
            stats_interval: Duration::from_secs(5),
            id_prefix: String::new(),
            max_hold: Duration::from_secs(10),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
        }
    }

    fn validate(&self) -> Result<()> {
        if !(1..=MAX_BATCH_ROWS).contains(&self.batch_size) {
            return Err(Error::invalid(
                "batch size",
                format!("{} is not in 1..={MAX_BATCH_ROWS}", self.batch_size),
            ));
        }
        if self.id_prefix.len() > 64 {
            return Err(Error::invalid("id prefix", "longer than 64 bytes"));
        }
        if self.poll_interval.is_zero() {
            return Err(Error::invalid("poll interval", "must be more than zero"));
        }
        Ok(())
    }
}

/// Unsent rows claimed for one batch.
#[derive(Debug)]
pub(crate) struct Claim {
    pub(crate) rows: Vec<OutboxRow>,
    /// Rows locked but skipped because an older row of their key is held by another relay.
    pub(crate) held_back: usize,
}

/// A measurement of the table.
#[derive(Debug)]
pub(crate) struct Stats {
    pub(crate) pending: u64,
    pub(crate) failed: u64,
    pub(crate) lag_secs: f64,
}

/// The database behind the relay.
#[derive(Debug)]
enum Store {
    Pg(Box<PgStore>),
    Sqlite(SqliteStore),
}

impl Store {
    async fn connect(config: &RelayConfig) -> Result<Store> {
        if let Some(path) = crate::sqlite::path_from_url(&config.database_url) {
            return Ok(Store::Sqlite(
                SqliteStore::open(&path, config.table.clone()).await?,
            ));
        }
        Ok(Store::Pg(Box::new(
            PgStore::connect(&config.database_url, config.table.clone()).await?,
        )))
    }

    async fn claim(&mut self, n: usize) -> Result<Claim> {
        match self {
            Store::Pg(s) => s.claim(n).await,
            Store::Sqlite(s) => s.claim(n).await,
        }
    }

    async fn mark_sent(&mut self, ids: &[i64]) -> Result<()> {
        match self {
            Store::Pg(s) => s.mark_sent(ids).await,
            Store::Sqlite(s) => s.mark_sent(ids).await,
        }
    }

    async fn mark_failed(&mut self, id: i64, error: &str) -> Result<()> {
        match self {
            Store::Pg(s) => s.mark_failed(id, error).await,
            Store::Sqlite(s) => s.mark_failed(id, error).await,
        }
    }

    async fn commit(&mut self) -> Result<()> {
        match self {
            Store::Pg(s) => s.commit().await,
            Store::Sqlite(_) => Ok(()),
        }
    }

    async fn rollback(&mut self) -> Result<()> {
        match self {
            Store::Pg(s) => s.rollback().await,
            Store::Sqlite(_) => Ok(()),
        }
    }

    async fn stats(&mut self) -> Result<Stats> {
        match self {
            Store::Pg(s) => s.stats().await,
            Store::Sqlite(s) => s.stats().await,
        }
    }

    async fn cleanup(&mut self, retention: Duration) -> Result<u64> {
        match self {
            Store::Pg(s) => s.cleanup(retention, CLEANUP_CHUNK_ROWS).await,
            Store::Sqlite(s) => s.cleanup(retention, CLEANUP_CHUNK_ROWS).await,
        }
    }

    async fn wait(&mut self, timeout: Duration) {
        match self {
            Store::Pg(s) => s.wait(timeout).await,
            Store::Sqlite(_) => tokio::time::sleep(timeout).await,
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Store::Pg(s) => s.is_closed(),
            Store::Sqlite(_) => false,
        }
    }
}

/// What one batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Rows claimed and published or refused in this batch.
    pub claimed: usize,
    /// Rows Weir confirmed (and that are now marked sent).
    pub published: usize,
    /// Of those, rows Weir already had.
    pub duplicates: usize,
    /// Rows refused for good and marked failed.
    pub failed: usize,
    /// Rows skipped to keep per-key order behind another relay.
    pub held_back: usize,
    /// Set when Weir stayed busy or unreachable past `max_hold`: the relay should wait this long
    /// before the next batch. Unconfirmed rows stay pending.
    pub backoff: Option<Duration>,
}

enum GroupOutcome {
    Confirmed { duplicates: usize },
    Rejected(String),
    Interrupted(Duration),
}

/// The outbox relay. Build it with [`Relay::new`], then [`Relay::run`] it, or drive it batch by
/// batch with [`Relay::run_batch`].
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    store: Option<Store>,
    publisher: Publisher,
    metrics: Arc<RelayMetrics>,
    backoff: Backoff,
    last_stats: Option<Instant>,
    last_cleanup: Option<Instant>,
}

impl Relay {
    /// A relay for `config`; it connects to the database on first use (and again after errors).
    pub fn new(config: RelayConfig) -> Result<Relay> {
        config.validate()?;
        let publisher = Publisher::new(&config.weir_url, config.request_timeout)?;
        Ok(Relay {
            backoff: Backoff::new(config.backoff_base, config.backoff_max),
            config,
            store: None,
            publisher,
            metrics: Arc::new(RelayMetrics::default()),
            last_stats: None,
            last_cleanup: None,
        })
    }

    /// The relay's metrics, shared (read them while it runs).
    pub fn metrics(&self) -> Arc<RelayMetrics> {
        self.metrics.clone()
    }

    async fn store(&mut self) -> Result<&mut Store> {
        if self.store.as_ref().is_some_and(Store::is_closed) {
            self.store = None;
        }
        if self.store.is_none() {
            self.store = Some(Store::connect(&self.config).await?);
            tracing::info!(table = %self.config.table, "outbox relay connected to the database");
        }
        self.store
            .as_mut()
            .ok_or_else(|| Error::Internal("store vanished".into()))
    }

    /// Claims one batch, publishes it, marks what Weir confirmed, and reports. Database errors are
    /// returned (the rows stay pending); Weir's busy and down answers are retried within
    /// `max_hold`, then reported as [`BatchReport::backoff`].
    pub async fn run_batch(&mut self) -> Result<BatchReport> {
        let batch_size = self.config.batch_size;
        let claim = self.store().await?.claim(batch_size).await?;
        let mut report = BatchReport {
            claimed: claim.rows.len(),
            held_back: claim.held_back,
            ..BatchReport::default()
        };
        if claim.rows.is_empty() {
            self.store().await?.rollback().await?;
            self.metrics.record_batch(0, 0, 0, claim.held_back as u64);
            return Ok(report);
        }
        if let Some(first) = claim.rows.first() {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            self.metrics
                .set_lag_secs((now_ms - first.created_at_ms) as f64 / 1000.0);
        }
        let started = Instant::now();
        let mut confirmed: Vec<i64> = Vec::with_capacity(claim.rows.len());
        let mut failed: Vec<(i64, String)> = Vec::new();
        let rows = &claim.rows;
        let mut start = 0;
        'groups: while start < rows.len() {
            let end = group_end(rows, start);
            let group = &rows[start..end];
            match self.publish_group(group, started).await {
                GroupOutcome::Confirmed { duplicates } => {
                    confirmed.extend(group.iter().map(|r| r.id));
                    report.duplicates += duplicates;
                }
                GroupOutcome::Interrupted(delay) => {
                    report.backoff = Some(delay);
                    break 'groups;
                }
                GroupOutcome::Rejected(message) if group.len() == 1 => {
                    failed.push((group[0].id, message));
                }
                GroupOutcome::Rejected(_) => {
                    // Find the refused row(s): publish the group one row at a time.
                    for row in group {
                        match self.publish_group(std::slice::from_ref(row), started).await {
                            GroupOutcome::Confirmed { duplicates } => {
                                confirmed.push(row.id);
                                report.duplicates += duplicates;
                            }
                            GroupOutcome::Rejected(message) => failed.push((row.id, message)),
                            GroupOutcome::Interrupted(delay) => {
                                report.backoff = Some(delay);
                                break 'groups;
                            }
                        }
                    }
                }
            }
            start = end;
        }
        let store = self.store().await?;
        store.mark_sent(&confirmed).await?;
        for (id, message) in &failed {
            tracing::error!(
                row = id,
                "weir refused outbox row for good; marked failed: {message}"
            );
            store.mark_failed(*id, message).await?;
        }
        store.commit().await?;
        report.published = confirmed.len();
        report.failed = failed.len();
        self.metrics.record_batch(
            confirmed.len() as u64,
            report.duplicates as u64,
            failed.len() as u64,
            claim.held_back as u64,
        );
        Ok(report)
    }

    /// Publishes one group (same destination, within request limits), retrying transient failures
    /// with back-off until the batch has held its rows for `max_hold`.
    async fn publish_group(&mut self, group: &[OutboxRow], started: Instant) -> GroupOutcome {
        let destination = match Destination::parse(&group[0].destination) {
            Ok(d) => d,
            Err(e) => return GroupOutcome::Rejected(e.to_string()),
        };
        loop {
            match self
                .publisher
                .publish(&destination, group, &self.config.id_prefix)
                .await
            {
                Ok(confirmations) => {
                    self.backoff.reset();
                    return GroupOutcome::Confirmed {
                        duplicates: confirmations.iter().filter(|c| c.duplicate).count(),
                    };
                }
                Err(PublishError::Rejected { status, message }) => {
                    return GroupOutcome::Rejected(format!("{status}: {message}"));
                }
                Err(e) => {
                    if matches!(e, PublishError::Busy { .. }) {
                        self.metrics.record_busy();
                    } else {
                        self.metrics.record_unavailable();
                    }
                    let delay = self.backoff.next_delay(e.retry_after());
                    let attempts = self.backoff.attempts();
                    if attempts == 1 || attempts % 10 == 0 {
                        tracing::warn!(
                            attempts,
                            ?delay,
                            "publishing to weir failed, retrying: {e}"
                        );
                    } else {
                        tracing::debug!(
                            attempts,
                            ?delay,
                            "publishing to weir failed, retrying: {e}"
                        );
                    }
                    if started.elapsed() + delay > self.config.max_hold {
                        return GroupOutcome::Interrupted(delay);
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Runs the periodic jobs (table measurement, cleanup of sent rows) when they are due.
    async fn housekeeping(&mut self) -> Result<()> {
        let due =
            |last: Option<Instant>, every: Duration| last.is_none_or(|t| t.elapsed() >= every);
        if due(self.last_stats, self.config.stats_interval) {
            self.last_stats = Some(Instant::now());
            let stats = self.store().await?.stats().await?;
            self.metrics
                .record_stats(stats.pending, stats.failed, stats.lag_secs);
        }
        if due(self.last_cleanup, self.config.cleanup_interval) {
            self.last_cleanup = Some(Instant::now());
            let retention = self.config.retention;
            let mut total = 0;
            for _ in 0..CLEANUP_MAX_CHUNKS {
                let n = self.store().await?.cleanup(retention).await?;
                total += n;
                if n < CLEANUP_CHUNK_ROWS as u64 {
                    break;
                }
            }
            if total > 0 {
                tracing::info!(rows = total, "deleted sent outbox rows past retention");
                self.metrics.record_cleaned(total);
            }
        }
        Ok(())
    }

    /// Publishes batches until no row is pending (held-back rows aside) and returns how many rows
    /// were published. Gives up with an error when Weir stays unavailable past `max_hold`.
    pub async fn drain(&mut self) -> Result<u64> {
        let mut total = 0;
        loop {
            let report = self.run_batch().await?;
            total += report.published as u64;
            if let Some(delay) = report.backoff {
                return Err(Error::Internal(format!(
                    "weir stayed unavailable (next retry in {delay:?}); {total} rows published"
                )));
            }
            if report.claimed == 0 {
                return Ok(total);
            }
        }
    }

    /// Runs until `shutdown` completes: batches back to back while rows are pending, sleeps until
    /// a commit notification or the poll interval otherwise, backs off while Weir is busy or down,
    /// reconnects to the database after errors. Stopping mid-batch is safe: the open transaction
    /// rolls back and the rows are published again (as duplicates) by the next run.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut db_backoff = Backoff::new(self.config.backoff_base, self.config.backoff_max);
        tracing::info!(weir = %self.config.weir_url, table = %self.config.table, "outbox relay running");
        loop {
            let step = async {
                self.housekeeping().await?;
                self.run_batch().await
            };
            let result = tokio::select! {
                _ = &mut shutdown => break,
                r = step => r,
            };
            let pause = match result {
                Ok(report) => {
                    db_backoff.reset();
                    if let Some(delay) = report.backoff {
                        Some(delay)
                    } else if report.claimed == 0 && report.held_back > 0 {
                        Some(HELD_BACK_PAUSE)
                    } else if report.claimed == 0 {
                        let poll = self.config.poll_interval;
                        let wait = async {
                            match self.store().await {
                                Ok(store) => store.wait(poll).await,
                                Err(_) => tokio::time::sleep(poll).await,
                            }
                        };
                        tokio::select! {
                            _ = &mut shutdown => break,
                            _ = wait => {}
                        }
                        None
                    } else {
                        None
                    }
                }
                Err(e) => {
                    self.metrics.record_error();
                    self.store = None;
                    let delay = db_backoff.next_delay(None);
                    tracing::warn!(?delay, "outbox relay database error, reconnecting: {e}");
                    Some(delay)
                }
            };
            if let Some(delay) = pause {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
        if let Some(store) = self.store.as_mut() {
            let _ = store.rollback().await;
        }
        tracing::info!("outbox relay stopped");
        Ok(())
    }
}

/// The end (exclusive) of the publish group starting at `start`: consecutive rows with the same
/// destination, within one request's message and byte limits.
fn group_end(rows: &[OutboxRow], start: usize) -> usize {
    let destination = &rows[start].destination;
    let mut bytes = 0usize;
    let mut end = start;
    while end < rows.len()
        && end - start < MAX_MESSAGES_PER_REQUEST
        && rows[end].destination == *destination
    {
        bytes += rows[end].body.len() + rows[end].key.as_ref().map_or(0, String::len);
        if end > start && bytes > MAX_BYTES_PER_REQUEST {
            break;
        }
        end += 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, destination: &str, body_len: usize) -> OutboxRow {
        OutboxRow {
            id,
            destination: destination.into(),
            key: None,
            headers: Default::default(),
            body: vec![0; body_len],
            created_at_ms: 0,
        }
    }

    #[test]
    fn groups_split_on_destination_count_and_bytes() {
        let rows = vec![
            row(1, "a", 1),
            row(2, "a", 1),
            row(3, "b", 1),
            row(4, "a", 1),
        ];
        assert_eq!(group_end(&rows, 0), 2);
        assert_eq!(group_end(&rows, 2), 3);
        assert_eq!(group_end(&rows, 3), 4);
        let many: Vec<_> = (0..1500).map(|i| row(i, "a", 1)).collect();
        assert_eq!(group_end(&many, 0), MAX_MESSAGES_PER_REQUEST);
        let big: Vec<_> = (0..4)
            .map(|i| row(i, "a", MAX_BYTES_PER_REQUEST / 2))
            .collect();
        assert_eq!(group_end(&big, 0), 2);
        let huge = vec![row(1, "a", MAX_BYTES_PER_REQUEST + 1)];
        assert_eq!(group_end(&huge, 0), 1);
    }

    #[test]
    fn config_is_validated() {
        let mut c = RelayConfig::new("sqlite:x.db", "http://127.0.0.1:1");
        assert!(Relay::new(c.clone()).is_ok());
        c.batch_size = 0;
        assert!(Relay::new(c.clone()).is_err());
        c.batch_size = 10;
        c.poll_interval = Duration::ZERO;
        assert!(Relay::new(c).is_err());
    }
}
