//! SQLite: the application-side [`enqueue`] helper and the relay's store. SQLite has one writer at
//! a time and no row locks, so one relay serves one database file; the relay takes an exclusive
//! `flock` on `<file>.weir-relay.lock` to make sure of it.

use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

use crate::enqueue::{parse_headers, Message, OutboxRow};
use crate::error::{Error, Result};
use crate::relay::{Claim, Stats};
use crate::schema::TableName;

/// How long a statement waits for the application's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes `message` for `destination` into the default outbox table inside the application's
/// transaction `tx`, and returns the row id (= the Weir message id).
///
/// ```
/// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use weir_outbox::{schema, Message};
/// let mut conn = rusqlite::Connection::open_in_memory()?;
/// schema::migrate_sqlite(&conn, &schema::TableName::default())?;
/// let mut tx = conn.transaction()?;
/// let id = weir_outbox::sqlite::enqueue(&mut tx, "payments", Message::new("pay order 42").key("42"))?;
/// tx.commit()?;
/// assert_eq!(id, 1);
/// # Ok(()) }
/// # demo().unwrap();
/// ```
pub fn enqueue(
    tx: &mut rusqlite::Transaction<'_>,
    destination: &str,
    message: Message,
) -> Result<i64> {
    enqueue_into(tx, &TableName::default(), destination, message)
}

/// [`enqueue`] into a table other than the default one.
pub fn enqueue_into(
    tx: &mut rusqlite::Transaction<'_>,
    table: &TableName,
    destination: &str,
    message: Message,
) -> Result<i64> {
    message.validate(destination)?;
    let sql = format!(
        "INSERT INTO {table} (destination, message_key, headers, body) VALUES (?1, ?2, ?3, ?4)"
    );
    tx.prepare_cached(&sql)?.execute(params![
        destination,
        message.key,
        message.headers_json(),
        message.body
    ])?;
    Ok(tx.last_insert_rowid())
}

/// The file path in a `sqlite:` URL (`sqlite:app.db`, `sqlite://app.db`, `sqlite:///abs/app.db`),
/// or `None` when the URL is not a SQLite one.
pub fn path_from_url(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let rest = rest.split('?').next().unwrap_or(rest);
    (!rest.is_empty()).then(|| PathBuf::from(rest))
}

/// Opens a SQLite database the way the relay and the helpers expect (busy timeout set).
pub fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The relay's view of a SQLite outbox table.
#[derive(Debug)]
pub(crate) struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    table: TableName,
    // Held (and so locked) for as long as the store lives.
    _lock: std::fs::File,
}

impl SqliteStore {
    pub(crate) async fn open(path: &Path, table: TableName) -> Result<SqliteStore> {
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".weir-relay.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::invalid("database", format!("{lock_path:?}: {e}")))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(Error::invalid(
                "database",
                format!(
                    "another relay already serves {} (lock {lock_path:?} is held)",
                    path.display()
                ),
            ));
        }
        let path = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || open(&path))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            table,
            _lock: lock,
        })
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &TableName) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = self.conn.clone();
        let table = self.table.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| Error::Internal("sqlite connection mutex poisoned".into()))?;
            f(&mut guard, &table)
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
    }

    pub(crate) async fn claim(&mut self, max_rows: usize) -> Result<Claim> {
        let limit = i64::try_from(max_rows).unwrap_or(i64::MAX);
        let rows = self
            .with_conn(move |conn, t| {
                let sql = format!(
                    "SELECT id, destination, message_key, headers, body, created_at FROM {t} \
                     WHERE sent_at IS NULL AND failed_at IS NULL ORDER BY id LIMIT ?1"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt
                    .query_map([limit], |r| {
                        Ok(OutboxRow {
                            id: r.get(0)?,
                            destination: r.get(1)?,
                            key: r.get(2)?,
                            headers: parse_headers(&r.get::<_, String>(3)?),
                            body: r.get(4)?,
                            created_at_ms: r.get(5)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows)
            })
            .await?;
        Ok(Claim { rows, held_back: 0 })
    }

    pub(crate) async fn mark_sent(&mut self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        self.with_conn(move |conn, t| {
            let tx = conn.transaction()?;
            {
                let mut stmt =
                    tx.prepare_cached(&format!("UPDATE {t} SET sent_at = ?1 WHERE id = ?2"))?;
                let now = now_ms();
                for id in ids {
                    stmt.execute(params![now, id])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn mark_failed(&mut self, id: i64, error: &str) -> Result<()> {
        let error = error.to_owned();
        self.with_conn(move |conn, t| {
            conn.execute(
                &format!("UPDATE {t} SET failed_at = ?1, last_error = ?2 WHERE id = ?3"),
                params![now_ms(), error, id],
            )?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn stats(&mut self) -> Result<Stats> {
        self.with_conn(|conn, t| {
            let sql = format!(
                "SELECT count(*) FILTER (WHERE failed_at IS NULL), \
                        count(*) FILTER (WHERE failed_at IS NOT NULL), \
                        min(created_at) FILTER (WHERE failed_at IS NULL) \
                 FROM {t} WHERE sent_at IS NULL"
            );
            let (pending, failed, oldest): (i64, i64, Option<i64>) =
                conn.query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            let lag_secs = oldest.map_or(0.0, |o| ((now_ms() - o).max(0) as f64) / 1000.0);
            Ok(Stats {
                pending: u64::try_from(pending).unwrap_or(0),
                failed: u64::try_from(failed).unwrap_or(0),
                lag_secs,
            })
        })
        .await
    }

    pub(crate) async fn cleanup(&mut self, retention: Duration, max_rows: i64) -> Result<u64> {
        let cutoff = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX / 2);
        self.with_conn(move |conn, t| {
            let n = conn.execute(
                &format!(
                    "DELETE FROM {t} WHERE id IN \
                     (SELECT id FROM {t} WHERE sent_at < ?1 LIMIT ?2)"
                ),
                params![cutoff, max_rows],
            )?;
            Ok(n as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            path_from_url("sqlite:app.db"),
            Some(PathBuf::from("app.db"))
        );
        assert_eq!(
            path_from_url("sqlite://app.db"),
            Some(PathBuf::from("app.db"))
        );
        assert_eq!(
            path_from_url("sqlite:///tmp/a.db?mode=rw"),
            Some(PathBuf::from("/tmp/a.db"))
        );
        assert_eq!(path_from_url("postgres://x"), None);
        assert_eq!(path_from_url("sqlite:"), None);
    }

    #[tokio::test]
    async fn claim_mark_cleanup_and_single_relay_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        let table = TableName::default();
        {
            let mut conn = open(&path).unwrap();
            crate::schema::migrate_sqlite(&conn, &table).unwrap();
            let mut tx = conn.transaction().unwrap();
            for i in 0..5 {
                enqueue(
                    &mut tx,
                    "q",
                    Message::new(format!("m{i}")).key("k").header("h", "v"),
                )
                .unwrap();
            }
            tx.commit().unwrap();
            // A rolled-back transaction leaves nothing behind.
            let mut tx = conn.transaction().unwrap();
            enqueue(&mut tx, "q", Message::new("never")).unwrap();
            tx.rollback().unwrap();
        }
        let mut store = SqliteStore::open(&path, table.clone()).await.unwrap();
        assert!(SqliteStore::open(&path, table.clone()).await.is_err());
        let claim = store.claim(3).await.unwrap();
        assert_eq!(
            claim.rows.iter().map(|r| r.id).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(claim.rows[0].body, b"m0");
        assert_eq!(claim.rows[0].headers["h"], "v");
        store.mark_sent(&[1, 2, 3]).await.unwrap();
        store.mark_failed(4, "refused").await.unwrap();
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.pending, stats.failed), (1, 1));
        let claim = store.claim(10).await.unwrap();
        assert_eq!(claim.rows.iter().map(|r| r.id).collect::<Vec<_>>(), [5]);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(store.cleanup(Duration::ZERO, 100).await.unwrap(), 3);
        drop(store);
        assert!(SqliteStore::open(&path, table).await.is_ok());
    }
}
