//! The Rust worker runtime (feature `worker`): handlers registered by task name, a concurrency
//! limit, prefetch, automatic lease extension (heartbeats), graceful shutdown, and panics turned
//! into failed attempts. It talks to a Weir server over HTTP:
//! `POST /v1/tasks/queues/{q}/receive`, `POST /v1/tasks/{id}/heartbeat`,
//! `POST /v1/tasks/{id}/result` and, for prefetched tasks not started at shutdown,
//! `POST /v1/queues/{q}/nack`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), weir_tasks::worker::WorkerError> {
//! use weir_tasks::worker::Worker;
//! let worker = Worker::new("http://127.0.0.1:7480", "emails")
//!     .concurrency(8)
//!     .handler("send", |to: String| async move { Ok::<_, String>(format!("sent to {to}")) });
//! worker.run(std::future::pending()).await // or a Ctrl-C future for a graceful stop
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

/// Most tasks one receive asks for.
const MAX_FETCH: usize = 100;
/// How long one receive long-polls (short, so shutdown is noticed quickly).
const POLL_WAIT_MS: u64 = 1_000;
/// Tries to post a result before giving up (the lease then expires and the task is retried).
const RESULT_TRIES: u32 = 5;

type Handler = Arc<dyn Fn(Value) -> BoxFuture<'static, Result<Value, String>> + Send + Sync>;

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The worker was configured wrongly.
    #[error("invalid worker configuration: {0}")]
    Config(String),
    /// An HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// A worker for one task queue. Build it, register handlers, then [`Worker::run`].
pub struct Worker {
    base: String,
    queue: String,
    name: String,
    handlers: HashMap<String, Handler>,
    concurrency: usize,
    prefetch: usize,
    lease_ms: u64,
    token: Option<String>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("base", &self.base)
            .field("queue", &self.queue)
            .field("name", &self.name)
            .field("handlers", &self.handlers.keys().collect::<Vec<_>>())
            .field("concurrency", &self.concurrency)
            .field("prefetch", &self.prefetch)
            .field("lease_ms", &self.lease_ms)
            .finish()
    }
}

impl Worker {
    /// A worker for `queue` on the server at `base_url` (`http://host:port`). Defaults:
    /// concurrency 4, prefetch 0, lease 30 s (extended automatically while a handler runs).
    pub fn new(base_url: impl Into<String>, queue: impl Into<String>) -> Worker {
        let mut base = base_url.into();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            base = format!("http://{base}");
        }
        Worker {
            base: base.trim_end_matches('/').to_string(),
            queue: queue.into(),
            name: format!("rust-worker-{}", std::process::id()),
            handlers: HashMap::new(),
            concurrency: 4,
            prefetch: 0,
            lease_ms: 30_000,
            token: None,
        }
    }

    /// Registers the handler for task name `name`: arguments are deserialised from the task's
    /// JSON args, the output serialised as its result; an `Err` is a failed attempt with the
    /// error's text, and so is a panic (with its message).
    pub fn handler<A, O, E, F, Fut>(mut self, name: impl Into<String>, f: F) -> Worker
    where
        A: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        E: fmt::Display + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
    {
        let f = Arc::new(f);
        let h: Handler = Arc::new(move |args: Value| {
            let f = f.clone();
            async move {
                let a: A = serde_json::from_value(args)
                    .map_err(|e| format!("bad arguments for this handler: {e}"))?;
                let out = f(a).await.map_err(|e| e.to_string())?;
                serde_json::to_value(out).map_err(|e| format!("result is not JSON: {e}"))
            }
            .boxed()
        });
        self.handlers.insert(name.into(), h);
        self
    }

    /// Most handlers running at once (≥ 1).
    pub fn concurrency(mut self, n: usize) -> Worker {
        self.concurrency = n;
        self
    }

    /// Tasks fetched ahead of a free slot (their leases are extended while they wait).
    pub fn prefetch(mut self, n: usize) -> Worker {
        self.prefetch = n;
        self
    }

    /// The lease asked for on receive and renewed by heartbeats, in milliseconds (≥ 1000).
    pub fn lease_ms(mut self, ms: u64) -> Worker {
        self.lease_ms = ms;
        self
    }

    /// The worker's name in the attempt history.
    pub fn name(mut self, name: impl Into<String>) -> Worker {
        self.name = name.into();
        self
    }

    /// A bearer token for servers with authentication on.
    pub fn token(mut self, token: impl Into<String>) -> Worker {
        self.token = Some(token.into());
        self
    }

    /// Runs until `shutdown` resolves, then stops fetching, lets running handlers finish, gives
    /// prefetched tasks that never started back (nack), and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), WorkerError> {
        if self.concurrency == 0 || self.lease_ms < 1000 {
            return Err(WorkerError::Config(
                "concurrency must be ≥ 1 and lease_ms ≥ 1000".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(POLL_WAIT_MS + 30_000))
            // The server closes a keep-alive connection idle for its header-read timeout (10 s by
            // default); dropping ours sooner avoids posting a result down one it is closing.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()?;
        let ctx = Arc::new(Ctx {
            http,
            base: self.base,
            queue: self.queue,
            name: self.name,
            handlers: self.handlers,
            lease_ms: self.lease_ms,
            token: self.token,
            run_slots: Arc::new(Semaphore::new(self.concurrency)),
        });
        let held = self.concurrency + self.prefetch;
        let inflight = Arc::new(Semaphore::new(held));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let first = tokio::select! {
                p = inflight.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = &mut shutdown => break,
            };
            let room = 1 + inflight.available_permits().min(MAX_FETCH - 1);
            let receive = ctx.receive(room);
            tokio::pin!(receive);
            let mut stopping = false;
            // A receive is not abandoned at shutdown: the server may already have leased tasks
            // to this worker (marked running). It ends within `POLL_WAIT_MS`; what it brought is
            // then given back (below, through `handle` with `stop` set).
            let fetched = tokio::select! {
                r = &mut receive => r,
                _ = &mut shutdown => {
                    stopping = true;
                    let _ = stop_tx.send(true);
                    receive.await
                }
            };
            let tasks = match fetched {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "receiving tasks failed; retrying in 1 s");
                    drop(first);
                    if stopping {
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = &mut shutdown => break,
                    }
                }
            };
            let mut first = Some(first);
            for task in tasks {
                let permit = match first.take() {
                    Some(p) => p,
                    None => match inflight.clone().try_acquire_owned() {
                        Ok(p) => p,
                        // Only this loop takes permits, and it asked for no more than it had.
                        Err(_) => continue,
                    },
                };
                let ctx = ctx.clone();
                let stop = stop_rx.clone();
                tokio::spawn(async move {
                    ctx.handle(task, stop).await;
                    drop(permit);
                });
            }
            if stopping {
                break;
            }
        }
        let _ = stop_tx.send(true);
        // Every permit back means every task finished (or was given back).
        let n = u32::try_from(held).unwrap_or(u32::MAX);
        let _ = inflight.acquire_many(n).await;
        Ok(())
    }
}

struct Ctx {
    http: reqwest::Client,
    base: String,
    queue: String,
    name: String,
    handlers: HashMap<String, Handler>,
    lease_ms: u64,
    token: Option<String>,
    run_slots: Arc<Semaphore>,
}

#[derive(Debug)]
struct Fetched {
    id: String,
    name: String,
    args: Value,
    receipt: String,
}

impl Ctx {
    fn post(&self, path: &str, body: Value) -> reqwest::RequestBuilder {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req
    }

    async fn receive(&self, max: usize) -> Result<Vec<Fetched>, reqwest::Error> {
        let body = json!({ "max": max, "wait_ms": POLL_WAIT_MS, "lease_ms": self.lease_ms, "worker": self.name });
        let v: Value = self
            .post(&format!("/v1/tasks/queues/{}/receive", self.queue), body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let tasks = v.get("tasks").and_then(Value::as_array).cloned();
        Ok(tasks
            .unwrap_or_default()
            .into_iter()
            .map(|t| Fetched {
                id: t["id"].as_str().unwrap_or_default().to_string(),
                name: t["name"].as_str().unwrap_or_default().to_string(),
                args: t.get("args").cloned().unwrap_or(Value::Null),
                receipt: t["receipt"].as_str().unwrap_or_default().to_string(),
            })
            .collect())
    }

    /// Heartbeats every third of the lease until dropped.
    async fn heartbeats(&self, t: &Fetched) {
        let every = Duration::from_millis(self.lease_ms / 3);
        loop {
            tokio::time::sleep(every).await;
            let body = json!({ "receipt": t.receipt, "lease_ms": self.lease_ms });
            match self
                .post(&format!("/v1/tasks/{}/heartbeat", t.id), body)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::warn!(task = %t.id, status = %r.status(), "heartbeat refused; the lease is lost");
                    return;
                }
                Err(e) => tracing::warn!(task = %t.id, error = %e, "heartbeat failed"),
            }
        }
    }

    async fn handle(&self, t: Fetched, mut stop: watch::Receiver<bool>) {
        let beat = self.heartbeats(&t);
        tokio::pin!(beat);
        // Wait for a run slot (prefetched tasks wait here, their leases kept alive); once the
        // worker is stopping, a task that has not started is given back, even if a slot is free.
        let slot = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => None,
            s = self.run_slots.clone().acquire_owned() => s.ok(),
            _ = &mut beat => None,
        };
        let Some(_slot) = slot else {
            let body = json!({ "receipts": [t.receipt], "delay_ms": 0 });
            if let Err(e) = self
                .post(&format!("/v1/queues/{}/nack", self.queue), body)
                .send()
                .await
            {
                tracing::warn!(task = %t.id, error = %e, "giving a prefetched task back failed");
            }
            return;
        };
        let outcome = match self.handlers.get(&t.name) {
            None => Err(format!("no handler for task name {:?}", t.name)),
            Some(h) => {
                let run = AssertUnwindSafe(h(t.args.clone())).catch_unwind();
                tokio::pin!(run);
                let mut beating = true;
                // Heartbeats run beside the handler; a lost lease does not stop the handler
                // (its result is then recorded or ignored by the server).
                let r = loop {
                    tokio::select! {
                        r = &mut run => break r,
                        () = &mut beat, if beating => beating = false,
                    }
                };
                r.unwrap_or_else(|p| Err(format!("handler panicked: {}", panic_message(&p))))
            }
        };
        let body = match outcome {
            Ok(result) => {
                json!({ "receipt": t.receipt, "ok": true, "result": result, "worker": self.name })
            }
            Err(error) => {
                json!({ "receipt": t.receipt, "ok": false, "error": error, "worker": self.name })
            }
        };
        for attempt in 0..RESULT_TRIES {
            match self
                .post(&format!("/v1/tasks/{}/result", t.id), body.clone())
                .send()
                .await
            {
                Ok(r) if r.status().is_success() || r.status().is_client_error() => return,
                Ok(r) => {
                    tracing::warn!(task = %t.id, status = %r.status(), "posting a result failed")
                }
                Err(e) => tracing::warn!(task = %t.id, error = %e, "posting a result failed"),
            }
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-string panic payload)".to_string()
    }
}
