//! Runs a [`Workload`] against a [`Target`].
//!
//! Producers and consumers are tokio tasks, each with its own connection, all opened before the
//! clock starts. A producer keeps at most `window` [`Confirm`] futures pending. Every body starts
//! with the time it was (or, when paced, was scheduled to be) published and a sequence number, so
//! consumers measure publish → deliver latency without any clock other than this process's.

use anyhow::Context as _;
use bytes::{BufMut, Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hist::LatencyHist;
use crate::pacing::{epoch, instant_from_nanos, nanos_since_epoch, split, Schedule, Ticker};
use crate::report::{RunResult, Status};
use crate::rss::RssSampler;
use crate::target::{Confirm, Consumer, Producer, StreamTarget, Target};
use crate::workload::{Amount, Kind, Workload, MIN_BODY_BYTES};

/// How long a consumer waits in one `recv` before checking whether the run is over.
const RECV_WAIT: Duration = Duration::from_millis(100);

/// Options for one run that are not part of the workload.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Name of the queue / exchange / stream the run uses.
    pub name: String,
    /// 1-based run number (recorded in the result).
    pub run: u32,
    /// Show a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// How often to sample the server's RSS.
    pub rss_every: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            name: "weir-bench".to_owned(),
            run: 1,
            progress: true,
            rss_every: Duration::from_millis(200),
        }
    }
}

/// Writes a body of `len` bytes: publish timestamp (ns since [`epoch`]), sequence number, filler.
pub fn make_body(len: usize, ts_ns: u64, seq: u64) -> Bytes {
    let len = len.max(MIN_BODY_BYTES);
    let mut b = BytesMut::with_capacity(len);
    b.put_u64(ts_ns);
    b.put_u64(seq);
    b.resize(len, b'w');
    b.freeze()
}

/// Reads the publish timestamp and sequence number back from a body made by [`make_body`].
pub fn parse_body(body: &[u8]) -> Option<(u64, u64)> {
    let ts = u64::from_be_bytes(body.get(0..8)?.try_into().ok()?);
    let seq = u64::from_be_bytes(body.get(8..16)?.try_into().ok()?);
    Some((ts, seq))
}

#[derive(Debug, Default)]
struct Shared {
    confirmed: AtomicU64,
    sent: AtomicU64,
    /// Deliveries per subscription.
    delivered: Vec<AtomicU64>,
    /// Messages every subscription must deliver; `u64::MAX` until the producers know.
    expected: AtomicU64,
    /// Set when the run must end (timeout or error).
    stop: AtomicBool,
    last_delivery_ns: AtomicU64,
    last_confirm_ns: AtomicU64,
}

impl Shared {
    fn delivered_total(&self) -> u64 {
        self.delivered
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .sum()
    }
}

/// Runs `workload` once against `target` and measures it. Errors from the target are reported in
/// the result's status, not returned.
pub async fn run(target: Arc<dyn Target>, workload: &Workload, opts: &RunOptions) -> RunResult {
    let label = target.label();
    if !target.supports(&workload.kind) {
        return RunResult::not_applicable(&label, &workload.id, opts.run);
    }
    let outcome = match workload.kind {
        Kind::Stream => run_stream(target.clone(), workload, opts).await,
        Kind::Queue | Kind::FanOut { .. } => run_queue(target.clone(), workload, opts).await,
    };
    let _ = target.cleanup(&opts.name, workload).await;
    match outcome {
        Ok(r) => r,
        Err(e) => RunResult {
            status: Status::Error(format!("{e:#}")),
            ..RunResult::not_applicable(&label, &workload.id, opts.run)
        },
    }
}

fn progress_bar(enabled: bool, len: u64, what: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(4));
    let style =
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style);
    pb.set_prefix(what.to_owned());
    pb
}

async fn run_queue(
    target: Arc<dyn Target>,
    w: &Workload,
    opts: &RunOptions,
) -> anyhow::Result<RunResult> {
    let name = opts.name.as_str();
    let copies = w.kind.copies() as usize;
    target
        .prepare(name, w)
        .await
        .with_context(|| format!("preparing {name}"))?;

    // Open every connection before the clock starts.
    let mut consumers: Vec<(usize, Box<dyn Consumer>)> = Vec::new();
    for sub in 0..copies {
        for _ in 0..w.consumers.max(1) {
            let c = target
                .consumer(name, sub, w)
                .await
                .with_context(|| format!("opening a consumer on {name} (subscription {sub})"))?;
            consumers.push((sub, c));
        }
    }
    let mut producers: Vec<Box<dyn Producer>> = Vec::new();
    for _ in 0..w.producers.max(1) {
        producers.push(
            target
                .producer(name, w)
                .await
                .context("opening a producer")?,
        );
    }

    let total = w.total_messages();
    let shared = Arc::new(Shared {
        delivered: (0..copies).map(|_| AtomicU64::new(0)).collect(),
        expected: AtomicU64::new(
            if matches!(w.amount, Amount::Count(_)) || w.rate_per_s.is_some() {
                total
            } else {
                u64::MAX
            },
        ),
        ..Shared::default()
    });

    let sampler = RssSampler::start(target.server_pids(), opts.rss_every);
    let _ = epoch();
    let start = Instant::now();
    let deadline = start + w.timeout;

    let mut consumer_tasks = Vec::new();
    for (sub, c) in consumers {
        let shared = shared.clone();
        consumer_tasks.push(tokio::spawn(consume(c, sub, shared, deadline)));
    }
    let shares = split(total.min(u64::MAX / 2), w.producers.max(1));
    let mut producer_tasks = Vec::new();
    for (i, p) in producers.into_iter().enumerate() {
        let shared = shared.clone();
        let w = w.clone();
        let share = shares[i];
        producer_tasks.push(tokio::spawn(produce(
            p, i, share, w, start, deadline, shared,
        )));
    }

    let what = format!("{} {}", target.label(), w.id);
    let pb = progress_bar(opts.progress, total.saturating_mul(copies as u64), &what);
    let ticker = {
        let shared = shared.clone();
        let pb = pb.clone();
        tokio::spawn(async move {
            loop {
                pb.set_position(shared.delivered_total());
                pb.set_message(format!(
                    "confirmed {}",
                    shared.confirmed.load(Ordering::Relaxed)
                ));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let mut errors = Vec::new();
    let mut confirm_hist = LatencyHist::new();
    for t in producer_tasks {
        match t.await {
            Ok((h, None)) => confirm_hist.merge(&h),
            Ok((h, Some(e))) => {
                confirm_hist.merge(&h);
                errors.push(format!("producer: {e:#}"));
            }
            Err(e) => errors.push(format!("producer task: {e}")),
        }
    }
    let confirmed = shared.confirmed.load(Ordering::Relaxed);
    // Consumers now know how many messages to wait for.
    shared.expected.store(confirmed, Ordering::Relaxed);
    if !errors.is_empty() {
        shared.stop.store(true, Ordering::Relaxed);
    }
    let mut e2e_hist = LatencyHist::new();
    for t in consumer_tasks {
        match t.await {
            Ok((h, None)) => e2e_hist.merge(&h),
            Ok((h, Some(e))) => {
                e2e_hist.merge(&h);
                errors.push(format!("consumer: {e:#}"));
            }
            Err(e) => errors.push(format!("consumer task: {e}")),
        }
    }
    ticker.abort();
    pb.finish_and_clear();
    let rss = sampler.stop().await;

    let delivered = shared.delivered_total();
    let sent = shared.sent.load(Ordering::Relaxed);
    let timed_out = Instant::now() >= deadline
        || shared
            .delivered
            .iter()
            .any(|d| d.load(Ordering::Relaxed) < confirmed)
        || confirmed < sent;
    let status = if !errors.is_empty() {
        Status::Error(errors.join("; "))
    } else if timed_out {
        Status::TimedOut
    } else {
        Status::Ok
    };
    let secs_since_start = |ns: u64| {
        instant_from_nanos(ns)
            .saturating_duration_since(start)
            .as_secs_f64()
            .max(1e-9)
    };
    let publish_elapsed_s = secs_since_start(shared.last_confirm_ns.load(Ordering::Relaxed));
    let elapsed_s = secs_since_start(shared.last_delivery_ns.load(Ordering::Relaxed));
    let fully_delivered = shared
        .delivered
        .iter()
        .map(|d| d.load(Ordering::Relaxed).min(confirmed))
        .min()
        .unwrap_or(0);
    Ok(RunResult {
        target: target.label(),
        workload: w.id.clone(),
        run: opts.run,
        status,
        sent,
        confirmed,
        delivered,
        publish_elapsed_s,
        elapsed_s,
        publish_msg_s: confirmed as f64 / publish_elapsed_s,
        throughput_msg_s: fully_delivered as f64 / elapsed_s,
        confirm_latency: confirm_hist.percentiles(),
        e2e_latency: e2e_hist.percentiles(),
        rss_max_bytes: rss.map(|r| r.max_bytes),
        rss_mean_bytes: rss.map(|r| r.mean_bytes),
    })
}

async fn produce(
    mut p: Box<dyn Producer>,
    index: usize,
    share: u64,
    w: Workload,
    start: Instant,
    deadline: Instant,
    shared: Arc<Shared>,
) -> (LatencyHist, Option<anyhow::Error>) {
    let mut hist = LatencyHist::new();
    let schedule = w
        .rate_per_s
        .map(|r| Schedule::new(start, r / w.producers.max(1) as f64));
    let mut ticker = schedule.map(|s| Ticker::start(s, share));
    let send_until = match (w.amount, w.rate_per_s) {
        (Amount::Duration(d), None) => Some(start + d),
        _ => None,
    };
    let mut inflight: FuturesUnordered<
        futures::future::BoxFuture<'static, (Instant, anyhow::Result<()>)>,
    > = FuturesUnordered::new();
    let window = w.window.max(1);
    let mut err = None;

    let on_done =
        |hist: &mut LatencyHist, (t0, r): (Instant, anyhow::Result<()>)| -> anyhow::Result<()> {
            r?;
            let now = Instant::now();
            hist.record(now.saturating_duration_since(t0));
            shared.confirmed.fetch_add(1, Ordering::Relaxed);
            shared
                .last_confirm_ns
                .fetch_max(nanos_since_epoch(now), Ordering::Relaxed);
            Ok(())
        };

    let mut i = 0u64;
    while i < share {
        if shared.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            break;
        }
        if send_until.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        // Make room in the window.
        while inflight.len() >= window {
            if let Some(done) = inflight.next().await {
                if let Err(e) = on_done(&mut hist, done) {
                    err = Some(e);
                    break;
                }
            }
        }
        if err.is_some() {
            break;
        }
        let t0 = match (schedule, ticker.as_mut()) {
            (Some(s), Some(ticker)) => {
                let due = s.due(i);
                // Collect confirms while waiting for the ticker to say message `i` is due
                // (confirms first: their latency is taken when they are collected).
                loop {
                    tokio::select! {
                        biased;
                        Some(done) = inflight.next(), if !inflight.is_empty() => {
                            if let Err(e) = on_done(&mut hist, done) { err = Some(e); break; }
                        }
                        tick = ticker.tick() => {
                            if tick.is_none() {
                                // Every due time was signalled: not expected before `share`.
                                tokio::time::sleep_until(due.into()).await;
                            }
                            break;
                        }
                    }
                }
                if err.is_some() {
                    break;
                }
                due
            }
            _ => Instant::now(),
        };
        let seq = (index as u64) << 40 | i;
        let body = make_body(w.body_bytes, nanos_since_epoch(t0), seq);
        match p.publish(body).await {
            Ok(confirm) => {
                shared.sent.fetch_add(1, Ordering::Relaxed);
                inflight.push(Box::pin(async move { (t0, confirm.await) }));
            }
            Err(e) => {
                err = Some(e);
                break;
            }
        }
        i += 1;
    }
    // Drain the window (bounded by the deadline).
    while !inflight.is_empty() && err.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, inflight.next()).await {
            Ok(Some(done)) => {
                if let Err(e) = on_done(&mut hist, done) {
                    err = Some(e);
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    if err.is_some() {
        shared.stop.store(true, Ordering::Relaxed);
    }
    if let Err(e) = p.finish().await {
        err.get_or_insert(e);
    }
    (hist, err)
}

async fn consume(
    mut c: Box<dyn Consumer>,
    sub: usize,
    shared: Arc<Shared>,
    deadline: Instant,
) -> (LatencyHist, Option<anyhow::Error>) {
    let mut hist = LatencyHist::new();
    let mut err = None;
    loop {
        if shared.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            break;
        }
        if shared.delivered[sub].load(Ordering::Relaxed) >= shared.expected.load(Ordering::Relaxed)
        {
            break;
        }
        let batch = match c.recv(RECV_WAIT).await {
            Ok(b) => b,
            Err(e) => {
                err = Some(e);
                break;
            }
        };
        for d in batch {
            let now = Instant::now();
            if let Some((ts, _seq)) = parse_body(&d.body) {
                hist.record(now.saturating_duration_since(instant_from_nanos(ts)));
            }
            if let Err(e) = c.ack(d.token).await {
                err = Some(e);
                break;
            }
            shared.delivered[sub].fetch_add(1, Ordering::Relaxed);
            shared
                .last_delivery_ns
                .fetch_max(nanos_since_epoch(now), Ordering::Relaxed);
        }
        if err.is_some() {
            break;
        }
    }
    if err.is_some() {
        shared.stop.store(true, Ordering::Relaxed);
    }
    if let Err(e) = c.finish().await {
        err.get_or_insert(e);
    }
    (hist, err)
}

async fn run_stream(
    target: Arc<dyn Target>,
    w: &Workload,
    opts: &RunOptions,
) -> anyhow::Result<RunResult> {
    let name = opts.name.as_str();
    target
        .prepare(name, w)
        .await
        .context("preparing the stream")?;
    let producers = w.producers.max(1);
    let mut writers: Vec<Box<dyn StreamTarget>> = Vec::with_capacity(producers);
    for _ in 0..producers {
        writers.push(target.stream(name).await?);
    }
    let mut reader: Box<dyn StreamTarget> = target.stream(name).await?;
    let total = w.total_messages();
    let sampler = RssSampler::start(target.server_pids(), opts.rss_every);
    let pb = progress_bar(
        opts.progress,
        total,
        &format!("{} {}", target.label(), w.id),
    );

    let start = Instant::now();
    let deadline = start + w.timeout;
    let confirmed_so_far = Arc::new(AtomicU64::new(0));
    // Each producer appends its share with its own window (as each queue producer has its own).
    let mut tasks = Vec::with_capacity(producers);
    for (index, writer) in writers.into_iter().enumerate() {
        let share = total / producers as u64 + u64::from((index as u64) < total % producers as u64);
        let (w, progress, pb) = (w.clone(), confirmed_so_far.clone(), pb.clone());
        tasks.push(tokio::spawn(async move {
            append_share(writer, index, share, &w, deadline, &progress, &pb).await
        }));
    }
    let mut hist = LatencyHist::new();
    let (mut sent, mut confirmed) = (0u64, 0u64);
    let mut result: anyhow::Result<()> = Ok(());
    let mut last_confirm = start;
    for t in tasks {
        match t.await {
            Ok(share) => {
                hist.merge(&share.hist);
                sent += share.sent;
                confirmed += share.confirmed;
                last_confirm = last_confirm.max(share.last_confirm);
                if let Err(e) = share.result {
                    result = result.and(Err(e));
                }
            }
            Err(e) => result = result.and(Err(anyhow::anyhow!("stream producer task: {e}"))),
        }
    }
    let publish_elapsed_s = (last_confirm - start).as_secs_f64().max(1e-9);
    let read_start = Instant::now();
    let read = match &result {
        Ok(()) => tokio::time::timeout(
            deadline.saturating_duration_since(read_start),
            reader.read_all(confirmed),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("read timed out"))),
        Err(_) => Ok(0),
    };
    let elapsed_s = read_start.elapsed().as_secs_f64().max(1e-9);
    pb.finish_and_clear();
    let rss = sampler.stop().await;
    let (delivered, status) = match (result, read) {
        (Err(e), _) | (Ok(()), Err(e)) => (0, Status::Error(format!("{e:#}"))),
        (Ok(()), Ok(n)) if n >= total && confirmed == total => (n, Status::Ok),
        (Ok(()), Ok(n)) => (n, Status::TimedOut),
    };
    Ok(RunResult {
        target: target.label(),
        workload: w.id.clone(),
        run: opts.run,
        status,
        sent,
        confirmed,
        delivered,
        publish_elapsed_s,
        elapsed_s,
        publish_msg_s: confirmed as f64 / publish_elapsed_s,
        throughput_msg_s: delivered as f64 / elapsed_s,
        confirm_latency: hist.percentiles(),
        e2e_latency: None,
        rss_max_bytes: rss.map(|r| r.max_bytes),
        rss_mean_bytes: rss.map(|r| r.mean_bytes),
    })
}

/// What one stream producer did.
struct AppendShare {
    hist: LatencyHist,
    sent: u64,
    confirmed: u64,
    last_confirm: Instant,
    result: anyhow::Result<()>,
}

/// Appends `share` records in batches of `w.batch`, at most `w.window` batches unconfirmed.
async fn append_share(
    mut writer: Box<dyn StreamTarget>,
    index: usize,
    share: u64,
    w: &Workload,
    deadline: Instant,
    progress: &AtomicU64,
    pb: &ProgressBar,
) -> AppendShare {
    let batch = w.batch.max(1) as u64;
    let mut hist = LatencyHist::new();
    let mut inflight: FuturesUnordered<
        futures::future::BoxFuture<'static, (Instant, u64, anyhow::Result<()>)>,
    > = FuturesUnordered::new();
    let (mut sent, mut confirmed) = (0u64, 0u64);
    let mut result: anyhow::Result<()> = Ok(());
    let mut last_confirm = Instant::now();
    while (sent < share || !inflight.is_empty()) && result.is_ok() {
        if Instant::now() >= deadline {
            break;
        }
        if sent < share && inflight.len() < w.window.max(1) {
            let n = (share - sent).min(batch);
            let t0 = Instant::now();
            let seq0 = (index as u64) << 40 | sent;
            let records = (0..n)
                .map(|k| make_body(w.body_bytes, nanos_since_epoch(t0), seq0 + k))
                .collect();
            let confirm: Confirm = match writer.append(records).await {
                Ok(c) => c,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            sent += n;
            inflight.push(Box::pin(async move { (t0, n, confirm.await) }));
            continue;
        }
        if let Some((t0, n, r)) = inflight.next().await {
            match r {
                Ok(()) => {
                    last_confirm = Instant::now();
                    hist.record(last_confirm - t0);
                    confirmed += n;
                    pb.set_position(progress.fetch_add(n, Ordering::Relaxed) + n);
                }
                Err(e) => result = Err(e),
            }
        }
    }
    AppendShare {
        hist,
        sent,
        confirmed,
        last_confirm,
        result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_timestamp_and_sequence() {
        let b = make_body(256, 123_456_789, 42);
        assert_eq!(b.len(), 256);
        assert_eq!(parse_body(&b), Some((123_456_789, 42)));
        assert_eq!(make_body(3, 1, 2).len(), MIN_BODY_BYTES);
        assert_eq!(parse_body(b"short"), None);
    }
}
