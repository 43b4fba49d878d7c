//! The outbox table's schema for PostgreSQL and SQLite, and the migrations that create it.
//!
//! Both databases get the same columns:
//!
//! | column | meaning |
//! | --- | --- |
//! | `id` | increasing row id, never reused; the Weir message id (optionally prefixed) |
//! | `destination` | `queue-name`, `queue:queue-name` or `topic:topic-name` |
//! | `message_key` | optional ordering key: rows of one key reach Weir in id order |
//! | `headers` | JSON object of strings |
//! | `body` | bytes |
//! | `created_at` | when the row was written (lag metric) |
//! | `sent_at` | set once Weir confirmed the row; `NULL` while pending |
//! | `failed_at`, `last_error` | set when Weir refused the row for good (400 / 413); never retried |

use crate::error::{Error, Result};

/// The default outbox table name.
pub const DEFAULT_TABLE: &str = "weir_outbox";

/// A validated table name: `[A-Za-z_][A-Za-z0-9_]{0,62}`, so it can be spliced into SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableName(String);

impl TableName {
    /// Validates a table name.
    pub fn new(name: &str) -> Result<TableName> {
        let mut bytes = name.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
        if !first_ok || name.len() > 63 || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(Error::invalid(
                "table name",
                format!("{name:?}: want [A-Za-z_][A-Za-z0-9_]{{0,62}}"),
            ));
        }
        Ok(TableName(name.to_owned()))
    }

    /// The name as spliced into SQL.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for TableName {
    fn default() -> Self {
        TableName(DEFAULT_TABLE.to_owned())
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The PostgreSQL DDL for table `t` (idempotent). The statement-level trigger sends a
/// `NOTIFY <t>` that PostgreSQL delivers only when the inserting transaction commits, which is what
/// wakes the relay without polling.
pub fn postgres_ddl(t: &TableName) -> String {
    format!(
        r#"
CREATE TABLE IF NOT EXISTS {t} (
    id          BIGSERIAL PRIMARY KEY,
    destination TEXT NOT NULL,
    message_key TEXT,
    headers     JSONB NOT NULL DEFAULT '{{}}'::jsonb,
    body        BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    sent_at     TIMESTAMPTZ,
    failed_at   TIMESTAMPTZ,
    last_error  TEXT
);
CREATE INDEX IF NOT EXISTS {t}_pending ON {t} (id) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX IF NOT EXISTS {t}_pending_key ON {t} (message_key, id) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX IF NOT EXISTS {t}_sent_at ON {t} (sent_at) WHERE sent_at IS NOT NULL;
CREATE OR REPLACE FUNCTION {t}_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{t}', '');
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS {t}_notify ON {t};
CREATE TRIGGER {t}_notify AFTER INSERT ON {t} FOR EACH STATEMENT EXECUTE FUNCTION {t}_notify();
"#
    )
}

/// The SQLite DDL for table `t` (idempotent). `AUTOINCREMENT` matters: without it SQLite may reuse
/// the id of a deleted row, and a reused id inside Weir's dedup window would be dropped as a
/// duplicate. Times are milliseconds since the Unix epoch.
pub fn sqlite_ddl(t: &TableName) -> String {
    format!(
        r#"
CREATE TABLE IF NOT EXISTS {t} (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    destination TEXT NOT NULL,
    message_key TEXT,
    headers     TEXT NOT NULL DEFAULT '{{}}',
    body        BLOB NOT NULL,
    created_at  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    sent_at     INTEGER,
    failed_at   INTEGER,
    last_error  TEXT
);
CREATE INDEX IF NOT EXISTS {t}_pending ON {t} (id) WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX IF NOT EXISTS {t}_sent_at ON {t} (sent_at) WHERE sent_at IS NOT NULL;
"#
    )
}

/// Creates (or completes) the outbox table on PostgreSQL. Safe to run again, and by several
/// processes at once (serialised by an advisory lock).
pub async fn migrate_postgres(client: &tokio_postgres::Client, table: &TableName) -> Result<()> {
    let sql = format!(
        "BEGIN; SELECT pg_advisory_xact_lock(hashtext('weir_outbox_migrate:{table}')); {} COMMIT;",
        postgres_ddl(table)
    );
    client.batch_execute(&sql).await?;
    Ok(())
}

/// Creates the outbox table on SQLite and switches the database to WAL mode, so the application's
/// writes and the relay's reads don't block each other. Safe to run again.
pub fn migrate_sqlite(conn: &rusqlite::Connection, table: &TableName) -> Result<()> {
    // journal_mode returns a row, so it is read rather than executed.
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "SQLite did not switch to WAL (in-memory database?)");
    }
    conn.execute_batch(&format!("BEGIN; {} COMMIT;", sqlite_ddl(table)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names() {
        assert!(TableName::new("weir_outbox").is_ok());
        assert!(TableName::new("_x9").is_ok());
        for bad in ["", "9a", "a-b", "a;drop", "a.b", &"x".repeat(64)] {
            assert!(TableName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sqlite_migration_is_idempotent() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let t = TableName::default();
        migrate_sqlite(&conn, &t).unwrap();
        migrate_sqlite(&conn, &t).unwrap();
        conn.execute(
            "INSERT INTO weir_outbox (destination, body) VALUES ('q', x'00')",
            [],
        )
        .unwrap();
        let (id, created): (i64, i64) = conn
            .query_row("SELECT id, created_at FROM weir_outbox", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(id, 1);
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((now_ms - created).abs() < 5_000, "{now_ms} vs {created}");
    }
}
