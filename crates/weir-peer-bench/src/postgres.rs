//! PostgreSQL as a queue: one table, `FOR UPDATE SKIP LOCKED` to lease rows, `DELETE` to ack,
//! `synchronous_commit = on` (every statement's commit waits for the WAL fsync).
//!
//! Deviation from the per-message client rule, stated in the notes: a PostgreSQL queue is only
//! usable batched, so each producer connection inserts whatever is waiting in its window in one
//! statement (client-side group commit, ≤ 1,000 rows), and each consumer deletes acked rows in
//! batches the same way. Receiving leases up to `prefetch` rows per statement. Fan-out inserts
//! one row per subscription.

use anyhow::{bail, Context as _};
use async_trait::async_trait;
use bytes::Bytes;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, NoTls};
use weir_bench::workload::{Kind, Workload};
use weir_bench::{AckToken, Confirm, Consumer, Delivery, Producer, StreamTarget, Target};

/// Most rows in one INSERT or DELETE.
const MAX_BATCH: usize = 1_000;
/// Sleep between empty polls of a consumer.
const POLL: Duration = Duration::from_millis(1);

/// PostgreSQL as a benchmark target.
#[derive(Debug, Clone)]
pub(crate) struct Postgres {
    /// libpq-style connection string.
    pub(crate) conninfo: String,
}

fn table(name: &str) -> String {
    format!("\"bench_{}\"", name.replace('"', ""))
}

impl Postgres {
    async fn connect(&self) -> anyhow::Result<Client> {
        let (client, conn) = tokio_postgres::connect(&self.conninfo, NoTls)
            .await
            .with_context(|| format!("connecting to PostgreSQL ({})", self.conninfo))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("postgres connection: {e}");
            }
        });
        client.batch_execute("SET synchronous_commit = on").await?;
        Ok(client)
    }
}

#[async_trait]
impl Target for Postgres {
    fn label(&self) -> String {
        "postgresql (skip locked)".into()
    }

    fn notes(&self) -> String {
        "synchronous_commit on, fsync on; batched: a producer inserts what is in its window in one \
         statement (≤ 1,000 rows), consumers lease ≤ prefetch rows per UPDATE … SKIP LOCKED and \
         delete acked rows in batches"
            .into()
    }

    fn server_pids(&self) -> Vec<u32> {
        // Every backend; shared buffers are counted once per process that touched them.
        weir_bench::rss::pids_by_name("postgres")
    }

    fn supports(&self, _kind: &Kind) -> bool {
        true
    }

    async fn prepare(&self, name: &str, _w: &Workload) -> anyhow::Result<()> {
        let c = self.connect().await?;
        let t = table(name);
        c.batch_execute(&format!(
            "DROP TABLE IF EXISTS {t};
             CREATE TABLE {t} (id bigserial PRIMARY KEY, sub int NOT NULL, body bytea NOT NULL,
                               leased boolean NOT NULL DEFAULT false);
             CREATE INDEX ON {t} (sub, id) WHERE NOT leased;"
        ))
        .await?;
        Ok(())
    }

    async fn producer(&self, name: &str, w: &Workload) -> anyhow::Result<Box<dyn Producer>> {
        let c = self.connect().await?;
        let (tx, rx) = mpsc::channel(w.window.max(1));
        let sql = format!(
            "INSERT INTO {} (sub, body) SELECT s, b FROM unnest($1::bytea[]) AS b \
             CROSS JOIN generate_series(0, $2 - 1) AS s",
            table(name)
        );
        let subs = w.kind.copies() as i32;
        let task = tokio::spawn(insert_loop(c, sql, subs, rx));
        Ok(Box::new(PgProducer {
            tx: Some(tx),
            task: Some(task),
        }))
    }

    async fn consumer(
        &self,
        name: &str,
        sub: usize,
        w: &Workload,
    ) -> anyhow::Result<Box<dyn Consumer>> {
        let c = self.connect().await?;
        let ack_conn = self.connect().await?;
        let t = table(name);
        let lease = c
            .prepare(&format!(
                "UPDATE {t} SET leased = true WHERE id IN (SELECT id FROM {t} WHERE sub = $1 AND NOT \
                 leased ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING id, body"
            ))
            .await?;
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let task = tokio::spawn(delete_loop(
            ack_conn,
            format!("DELETE FROM {t} WHERE id = ANY($1)"),
            rx,
        ));
        Ok(Box::new(PgConsumer {
            c,
            lease,
            sub: sub as i32,
            max: i64::from(w.prefetch.clamp(1, MAX_BATCH as u32)),
            acks: Some(tx),
            task: Some(task),
        }))
    }

    async fn stream(&self, name: &str) -> anyhow::Result<Box<dyn StreamTarget>> {
        Ok(Box::new(PgStream {
            c: self.connect().await?,
            t: table(name),
        }))
    }

    async fn cleanup(&self, name: &str, _w: &Workload) -> anyhow::Result<()> {
        let c = self.connect().await?;
        c.batch_execute(&format!("DROP TABLE IF EXISTS {}", table(name)))
            .await?;
        Ok(())
    }
}

type Item = (Bytes, oneshot::Sender<anyhow::Result<()>>);

async fn insert_loop(
    c: Client,
    sql: String,
    subs: i32,
    mut rx: mpsc::Receiver<Item>,
) -> anyhow::Result<()> {
    let stmt = c.prepare(&sql).await?;
    let mut batch: Vec<Item> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let bodies: Vec<&[u8]> = batch.iter().map(|(b, _)| b.as_ref()).collect();
        let r = c.execute(&stmt, &[&bodies, &subs]).await;
        let ok = r.is_ok();
        for (_, tx) in batch.drain(..) {
            let _ = tx.send(match &r {
                Ok(_) => Ok(()),
                Err(e) => Err(anyhow::anyhow!("postgres insert: {e}")),
            });
        }
        if !ok {
            bail!("postgres insert failed");
        }
    }
    Ok(())
}

async fn delete_loop(c: Client, sql: String, mut rx: mpsc::Receiver<i64>) -> anyhow::Result<()> {
    let stmt = c.prepare(&sql).await?;
    let mut ids: Vec<i64> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        ids.push(first);
        while ids.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(id) => ids.push(id),
                Err(_) => break,
            }
        }
        c.execute(&stmt, &[&ids]).await.context("postgres delete")?;
        ids.clear();
    }
    Ok(())
}

struct PgProducer {
    tx: Option<mpsc::Sender<Item>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

#[async_trait]
impl Producer for PgProducer {
    async fn publish(&mut self, body: Bytes) -> anyhow::Result<Confirm> {
        let (done, rx) = oneshot::channel();
        self.tx
            .as_ref()
            .context("producer finished")?
            .send((body, done))
            .await
            .map_err(|_| anyhow::anyhow!("postgres: the insert task ended"))?;
        Ok(Box::pin(async move {
            rx.await
                .map_err(|_| anyhow::anyhow!("postgres: the insert task ended"))?
        }))
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        drop(self.tx.take());
        if let Some(t) = self.task.take() {
            t.await??;
        }
        Ok(())
    }
}

struct PgConsumer {
    c: Client,
    lease: tokio_postgres::Statement,
    sub: i32,
    max: i64,
    acks: Option<mpsc::Sender<i64>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

#[async_trait]
impl Consumer for PgConsumer {
    async fn recv(&mut self, wait: Duration) -> anyhow::Result<Vec<Delivery>> {
        let until = Instant::now() + wait;
        loop {
            let rows = self.c.query(&self.lease, &[&self.sub, &self.max]).await?;
            if !rows.is_empty() {
                return Ok(rows
                    .into_iter()
                    .map(|r| {
                        let id: i64 = r.get(0);
                        let body: Vec<u8> = r.get(1);
                        Delivery {
                            body: Bytes::from(body),
                            token: AckToken::Tag(id as u64),
                        }
                    })
                    .collect());
            }
            if Instant::now() >= until {
                return Ok(Vec::new());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn ack(&mut self, token: AckToken) -> anyhow::Result<()> {
        let AckToken::Tag(id) = token else {
            bail!("postgres: unexpected ack token");
        };
        self.acks
            .as_ref()
            .context("consumer finished")?
            .send(id as i64)
            .await
            .map_err(|_| anyhow::anyhow!("postgres: the delete task ended"))?;
        Ok(())
    }

    async fn finish(&mut self) -> anyhow::Result<()> {
        drop(self.acks.take());
        if let Some(t) = self.task.take() {
            t.await??;
        }
        Ok(())
    }
}

struct PgStream {
    c: Client,
    t: String,
}

#[async_trait]
impl StreamTarget for PgStream {
    async fn append(&mut self, records: Vec<Bytes>) -> anyhow::Result<Confirm> {
        let bodies: Vec<&[u8]> = records.iter().map(|b| b.as_ref()).collect();
        self.c
            .execute(
                &format!(
                    "INSERT INTO {} (sub, body) SELECT 0, b FROM unnest($1::bytea[]) AS b",
                    self.t
                ),
                &[&bodies],
            )
            .await?;
        // Confirmed by the time execute returns (one batch in flight per writer connection).
        Ok(Box::pin(async { Ok(()) }))
    }

    async fn read_all(&mut self, expected: u64) -> anyhow::Result<u64> {
        let stmt = self
            .c
            .prepare(&format!(
                "SELECT id, body FROM {} WHERE id > $1 ORDER BY id LIMIT 1000",
                self.t
            ))
            .await?;
        let (mut n, mut last) = (0u64, 0i64);
        while n < expected {
            let rows = self.c.query(&stmt, &[&last]).await?;
            let Some(r) = rows.last() else { break };
            last = r.get(0);
            n += rows.len() as u64;
        }
        Ok(n)
    }
}
