//! PostgreSQL: the application-side [`enqueue`] helper and the relay's store, which claims rows
//! with `FOR UPDATE SKIP LOCKED` and wakes up on `LISTEN`/`NOTIFY`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::Notify;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::enqueue::{parse_headers, Message, OutboxRow};
use crate::error::Result;
use crate::relay::{Claim, Stats};
use crate::schema::TableName;

/// Writes `message` for `destination` into the default outbox table inside the application's
/// transaction `tx`, and returns the row id (= the Weir message id). The event becomes visible to
/// the relay only if `tx` commits.
///
/// ```no_run
/// # async fn demo(client: &mut tokio_postgres::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use weir_outbox::Message;
/// let mut tx = client.transaction().await?;
/// tx.execute("UPDATE orders SET status = 'Placed' WHERE id = $1", &[&42i64]).await?;
/// weir_outbox::pg::enqueue(&mut tx, "payments", Message::new(r#"{"order":42}"#).key("42")).await?;
/// tx.commit().await?;
/// # Ok(()) }
/// ```
pub async fn enqueue(
    tx: &mut tokio_postgres::Transaction<'_>,
    destination: &str,
    message: Message,
) -> Result<i64> {
    enqueue_into(tx, &TableName::default(), destination, message).await
}

/// [`enqueue`] into a table other than the default one.
pub async fn enqueue_into(
    tx: &mut tokio_postgres::Transaction<'_>,
    table: &TableName,
    destination: &str,
    message: Message,
) -> Result<i64> {
    message.validate(destination)?;
    let sql = format!(
        "INSERT INTO {table} (destination, message_key, headers, body) \
         VALUES ($1, $2, $3::text::jsonb, $4) RETURNING id"
    );
    let headers = message.headers_json();
    let row = tx
        .query_one(&sql, &[&destination, &message.key, &headers, &message.body])
        .await?;
    Ok(row.get(0))
}

/// Connects to PostgreSQL (a `postgres://` URL or a `key=value` string) without TLS and drives
/// the connection on a background task.
pub async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("postgresql connection closed: {e}");
        }
    });
    Ok(client)
}

/// A second connection that `LISTEN`s on the table's channel.
struct Listener {
    // Kept so the connection stays open.
    _client: Client,
    alive: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The relay's view of a PostgreSQL outbox table.
pub(crate) struct PgStore {
    url: String,
    client: Client,
    table: TableName,
    listener: Option<Listener>,
    notify: Arc<Notify>,
    in_batch: bool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("table", &self.table)
            .field("listening", &self.listener.is_some())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    pub(crate) async fn connect(url: &str, table: TableName) -> Result<PgStore> {
        let client = connect(url).await?;
        let mut store = PgStore {
            url: url.to_owned(),
            client,
            table,
            listener: None,
            notify: Arc::new(Notify::new()),
            in_batch: false,
        };
        store.listen().await?;
        Ok(store)
    }

    async fn listen(&mut self) -> Result<()> {
        let (client, mut connection) = tokio_postgres::connect(&self.url, NoTls).await?;
        let alive = Arc::new(AtomicBool::new(true));
        let notify = self.notify.clone();
        let task_alive = alive.clone();
        let task = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => notify.notify_one(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!("outbox LISTEN connection failed: {e}");
                        break;
                    }
                }
            }
            task_alive.store(false, Ordering::Release);
            // Wake the relay so it notices and re-listens.
            notify.notify_one();
        });
        client
            .batch_execute(&format!("LISTEN {}", self.table))
            .await?;
        self.listener = Some(Listener {
            _client: client,
            alive,
            task,
        });
        Ok(())
    }

    /// Waits for a commit notification or `timeout`, whichever comes first.
    pub(crate) async fn wait(&mut self, timeout: Duration) {
        let alive = self
            .listener
            .as_ref()
            .is_some_and(|l| l.alive.load(Ordering::Acquire));
        if !alive {
            self.listener = None;
            if let Err(e) = self.listen().await {
                tracing::warn!("cannot LISTEN for outbox commits, polling instead: {e}");
            }
        }
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
    }

    /// Begins a batch transaction and locks up to `max_rows` unsent rows in id order, skipping rows
    /// other relays hold. Rows whose key has an older unsent row outside this batch (held by
    /// another relay) are held back, so no key's rows are ever published out of order.
    pub(crate) async fn claim(&mut self, max_rows: usize) -> Result<Claim> {
        let t = &self.table;
        self.client.batch_execute("BEGIN").await?;
        self.in_batch = true;
        let sql = format!(
            "SELECT id, destination, message_key, headers::text, body, \
                    (extract(epoch FROM created_at) * 1000)::int8 \
             FROM {t} WHERE sent_at IS NULL AND failed_at IS NULL \
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
        );
        let limit = i64::try_from(max_rows).unwrap_or(i64::MAX);
        let rows = self.client.query(&sql, &[&limit]).await?;
        let mut claimed: Vec<OutboxRow> = rows
            .iter()
            .map(|r| OutboxRow {
                id: r.get(0),
                destination: r.get(1),
                key: r.get(2),
                headers: parse_headers(r.get::<_, &str>(3)),
                body: r.get(4),
                created_at_ms: r.get(5),
            })
            .collect();
        let keys: BTreeSet<&str> = claimed.iter().filter_map(|r| r.key.as_deref()).collect();
        if keys.is_empty() {
            return Ok(Claim {
                rows: claimed,
                held_back: 0,
            });
        }
        let keys: Vec<&str> = keys.into_iter().collect();
        let ids: Vec<i64> = claimed.iter().map(|r| r.id).collect();
        let sql = format!(
            "SELECT message_key, min(id) FROM {t} \
             WHERE sent_at IS NULL AND failed_at IS NULL \
               AND message_key = ANY($1) AND NOT (id = ANY($2)) \
             GROUP BY message_key"
        );
        let outside: HashMap<String, i64> = self
            .client
            .query(&sql, &[&keys, &ids])
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let before = claimed.len();
        claimed.retain(
            |row| match row.key.as_deref().and_then(|k| outside.get(k)) {
                Some(&oldest_elsewhere) => row.id < oldest_elsewhere,
                None => true,
            },
        );
        Ok(Claim {
            held_back: before - claimed.len(),
            rows: claimed,
        })
    }

    pub(crate) async fn mark_sent(&mut self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE {} SET sent_at = clock_timestamp() WHERE id = ANY($1)",
            self.table
        );
        self.client.execute(&sql, &[&ids]).await?;
        Ok(())
    }

    pub(crate) async fn mark_failed(&mut self, id: i64, error: &str) -> Result<()> {
        let sql = format!(
            "UPDATE {} SET failed_at = clock_timestamp(), last_error = $2 WHERE id = $1",
            self.table
        );
        self.client.execute(&sql, &[&id, &error]).await?;
        Ok(())
    }

    pub(crate) async fn commit(&mut self) -> Result<()> {
        if self.in_batch {
            self.in_batch = false;
            self.client.batch_execute("COMMIT").await?;
        }
        Ok(())
    }

    pub(crate) async fn rollback(&mut self) -> Result<()> {
        if self.in_batch {
            self.in_batch = false;
            self.client.batch_execute("ROLLBACK").await?;
        }
        Ok(())
    }

    pub(crate) async fn stats(&mut self) -> Result<Stats> {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE failed_at IS NULL), \
                    count(*) FILTER (WHERE failed_at IS NOT NULL), \
                    coalesce(extract(epoch FROM clock_timestamp() - min(created_at) \
                        FILTER (WHERE failed_at IS NULL)), 0)::float8 \
             FROM {} WHERE sent_at IS NULL",
            self.table
        );
        let row = self.client.query_one(&sql, &[]).await?;
        Ok(Stats {
            pending: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            failed: u64::try_from(row.get::<_, i64>(1)).unwrap_or(0),
            lag_secs: row.get::<_, f64>(2).max(0.0),
        })
    }

    /// Deletes at most `max_rows` rows sent more than `retention` ago.
    pub(crate) async fn cleanup(&mut self, retention: Duration, max_rows: i64) -> Result<u64> {
        let t = &self.table;
        let sql = format!(
            "DELETE FROM {t} WHERE id IN (SELECT id FROM {t} \
             WHERE sent_at < clock_timestamp() - make_interval(secs => $1) LIMIT $2)"
        );
        Ok(self
            .client
            .execute(&sql, &[&retention.as_secs_f64(), &max_rows])
            .await?)
    }

    /// True when the main connection is gone (the relay then reconnects).
    pub(crate) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
