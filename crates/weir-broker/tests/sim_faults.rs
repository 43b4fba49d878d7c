//! Deterministic simulation of the broker over a fault-injecting store
//! ([`weir_store::faulty::FaultyStore`]) with simulated time ([`ManualClock`]).
//!
//! Each seed drives one broker through a few hundred random steps — publish (retrying failures
//! with the same ids, like a producer), receive, ack, nack, time passing with ticks (lease
//! expiry, snapshots, reclaim), background syncs, and crashes followed by `Broker::open` —
//! while the store fails fsyncs (poisoning the log or journal), refuses appends as disk full or
//! busy, fails snapshots, and on a crash keeps all durable data plus a random prefix of what was
//! written but not synced. A model of what was confirmed checks, at every step and at the end:
//!
//! - every delivery is a message that was sent, with its exact body (no garbage);
//! - no message is leased twice at once, and no message whose ack was confirmed comes back;
//! - after every crash the queue is openable, holds no leases, at least every confirmed message
//!   no ack was sent for, and at most every sent message not confirmed acked;
//! - at the end (faults off, crash, reopen, drain) every confirmed publish was delivered at least
//!   once, and none was stored twice (dedup holds across retries and crashes).
//!
//! `WEIR_SIM_SEED=<n>` replays one seed; `WEIR_SIM_SEEDS=<n>` runs that many (default 300).
//! A failure prints its seed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::FutureExt;
use weir_broker::{Broker, BrokerOptions, ManualClock, NewMessage, QueueConfig};
use weir_store::faulty::{FaultCounters, FaultPlan, FaultyStore};
use weir_store::{Durable, Store};

const T0: u64 = 1_700_000_000_000;
const Q: &str = "sim";
const STEPS: usize = 400;
const LEASE_MS: u64 = 5_000;

/// xorshift64*: the simulation's own decisions (the store has its own stream).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn body_of(id: &str) -> Vec<u8> {
    let mut b = id.as_bytes().to_vec();
    b.extend(std::iter::repeat_n(b'#', id.len() % 7 * 13));
    b
}

#[derive(Default)]
struct Model {
    sent: HashSet<String>,
    confirmed: HashSet<String>,
    ack_sent: HashSet<String>,
    ack_confirmed: HashSet<String>,
    delivered: HashSet<String>,
    /// id → (receipt, lease deadline) of the current lease.
    leased: HashMap<String, (String, u64)>,
    /// Batches to publish again (failed or unknown outcome), same ids.
    retry: Vec<Vec<String>>,
    publishes: Vec<(Vec<String>, Durable)>,
    acks: Vec<(Vec<String>, Durable)>,
    deliveries: u64,
    crashes: u64,
}

struct Sim {
    seed: u64,
    rng: Rng,
    store: Arc<FaultyStore>,
    clock: Arc<ManualClock>,
    options: BrokerOptions,
    broker: Broker,
    plan: FaultPlan,
    m: Model,
    next_id: u64,
    /// Producers retry a failed or unknown publish with the same ids (idempotent retries).
    same_id_retries: bool,
}

/// What one seed did, for the summary line.
#[derive(Default)]
struct SeedStats {
    confirmed: u64,
    acked: u64,
    deliveries: u64,
    crashes: u64,
    faults: FaultCounters,
}

impl Sim {
    fn new(seed: u64, same_id_retries: bool, snapshots: bool) -> Result<Sim, String> {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let plan = FaultPlan {
            seed,
            sync_failure_ppm: [0, 5_000, 20_000, 60_000][rng.below(4) as usize],
            fail_nth_sync: Some(1 + rng.below(200)),
            disk_full_ppm: [0, 10_000, 50_000][rng.below(3) as usize],
            busy_ppm: [0, 10_000][rng.below(2) as usize],
            fail_nth_append: Some(1 + rng.below(200)),
            snapshot_failure_ppm: [0, 100_000][rng.below(2) as usize],
        };
        // Setup without faults: the queue must exist before the storm.
        let store = Arc::new(FaultyStore::new(FaultPlan {
            seed,
            ..FaultPlan::default()
        }));
        let clock = Arc::new(ManualClock::new(T0));
        let options = BrokerOptions {
            rng_seed: Some(seed),
            // Small, so snapshots (and their failures) happen within a short run; or never, so
            // that recovery rebuilds everything (the dedup table too) from the message log.
            snapshot_every_bytes: if snapshots {
                512 + rng.below(4096)
            } else {
                u64::MAX
            },
            ..BrokerOptions::default()
        };
        let broker = Broker::open(
            store.clone() as Arc<dyn Store>,
            clock.clone(),
            options.clone(),
        )
        .map_err(|e| format!("open: {e}"))?;
        let config = QueueConfig {
            lease_ms: LEASE_MS,
            max_attempts: 1000,
            backoff_base_ms: 100,
            backoff_max_ms: 1_000,
            ..QueueConfig::default()
        };
        broker
            .create_queue(Q, config)
            .map_err(|e| format!("create: {e}"))?;
        store.set_plan(plan);
        Ok(Sim {
            seed,
            rng,
            store,
            clock,
            options,
            broker,
            plan,
            m: Model::default(),
            next_id: 0,
            same_id_retries,
        })
    }

    fn now(&self) -> u64 {
        use weir_broker::Clock;
        self.clock.now_ms()
    }

    fn publish(&mut self) -> Result<(), String> {
        let ids = if self.same_id_retries && !self.m.retry.is_empty() && self.rng.below(2) == 0 {
            self.m.retry.remove(0)
        } else {
            (0..1 + self.rng.below(8))
                .map(|_| {
                    self.next_id += 1;
                    format!("m{}", self.next_id)
                })
                .collect()
        };
        self.m.sent.extend(ids.iter().cloned());
        let messages = ids
            .iter()
            .map(|id| NewMessage {
                id: Some(id.clone()),
                ..NewMessage::new(body_of(id))
            })
            .collect();
        match self.broker.publish(Q, messages) {
            Ok(out) => {
                let got: Vec<&str> = out.messages.iter().map(|p| p.id.as_str()).collect();
                assert_eq!(got, ids.iter().map(String::as_str).collect::<Vec<_>>());
                for p in &out.messages {
                    if !p.duplicate && self.m.delivered.contains(&p.id) {
                        return Err(format!(
                            "dedup forgot {:?} (already delivered) within its window: stored again",
                            p.id
                        ));
                    }
                }
                self.m.publishes.push((ids, out.durable));
            }
            Err(_) => self.m.retry.push(ids),
        }
        Ok(())
    }

    /// Polls some pending confirmations (polling a pending one is what triggers its fsync).
    fn confirm(&mut self) -> Result<(), String> {
        let n = self.rng.below(4) as usize + 1;
        for _ in 0..n.min(self.m.publishes.len()) {
            let i = self.rng.below(self.m.publishes.len() as u64) as usize;
            let (ids, mut d) = self.m.publishes.swap_remove(i);
            match (&mut d).now_or_never() {
                Some(Ok(())) => self.m.confirmed.extend(ids),
                Some(Err(_)) => self.m.retry.push(ids),
                None => self.m.publishes.push((ids, d)),
            }
        }
        for _ in 0..n.min(self.m.acks.len()) {
            let i = self.rng.below(self.m.acks.len() as u64) as usize;
            let (ids, mut d) = self.m.acks.swap_remove(i);
            match (&mut d).now_or_never() {
                Some(Ok(())) => self.m.ack_confirmed.extend(ids),
                Some(Err(_)) => {}
                None => self.m.acks.push((ids, d)),
            }
        }
        Ok(())
    }

    fn receive(&mut self) -> Result<(), String> {
        let max = 1 + self.rng.below(10) as usize;
        let Ok(got) = self.broker.receive(Q, max, None) else {
            return Ok(());
        };
        let now = self.now();
        for d in got {
            self.m.deliveries += 1;
            if !self.m.sent.contains(&d.id) {
                return Err(format!("delivered an id never sent: {:?}", d.id));
            }
            if d.body != body_of(&d.id) {
                return Err(format!("{:?} delivered with a wrong body", d.id));
            }
            if self.m.ack_confirmed.contains(&d.id) {
                return Err(format!(
                    "{:?} delivered again after its ack was confirmed",
                    d.id
                ));
            }
            if let Some((_, deadline)) = self.m.leased.get(&d.id) {
                if *deadline > now {
                    return Err(format!(
                        "{:?} leased twice at once (lease ends {deadline}, now {now})",
                        d.id
                    ));
                }
            }
            if d.attempt == 0 || d.lease_deadline_ms <= now {
                return Err(format!("bad delivery {d:?} at {now}"));
            }
            self.m.delivered.insert(d.id.clone());
            self.m
                .leased
                .insert(d.id.clone(), (d.receipt.clone(), d.lease_deadline_ms));
        }
        Ok(())
    }

    fn settle(&mut self, ack: bool) {
        let mut ids: Vec<String> = self.m.leased.keys().cloned().collect();
        ids.sort();
        let take = (1 + self.rng.below(6) as usize).min(ids.len());
        let chosen: Vec<String> = (0..take)
            .map(|_| ids.swap_remove(self.rng.below(ids.len() as u64) as usize))
            .collect();
        let receipts: Vec<String> = chosen
            .iter()
            .map(|id| self.m.leased[id].0.clone())
            .collect();
        for id in &chosen {
            self.m.leased.remove(id);
        }
        if receipts.is_empty() {
            return;
        }
        if ack {
            self.m.ack_sent.extend(chosen.iter().cloned());
            if let Ok(out) = self.broker.ack(Q, &receipts) {
                let invalid: HashSet<&String> = out.invalid.iter().collect();
                let done: Vec<String> = chosen
                    .iter()
                    .zip(&receipts)
                    .filter(|(_, r)| !invalid.contains(r))
                    .map(|(id, _)| id.clone())
                    .collect();
                self.m.acks.push((done, out.durable));
            }
        } else {
            let delay = if self.rng.below(2) == 0 {
                Some(self.rng.below(500))
            } else {
                None
            };
            // Whatever its outcome, a nacked message is no longer leased by us.
            let _ = self.broker.nack(Q, &receipts, delay);
        }
    }

    fn crash(&mut self) -> Result<(), String> {
        self.store.crash();
        self.m.crashes += 1;
        // Outcomes never learned: unknown, so not confirmed (producers would retry).
        for (ids, mut d) in std::mem::take(&mut self.m.publishes) {
            match (&mut d).now_or_never() {
                Some(Ok(())) => self.m.confirmed.extend(ids),
                _ => self.m.retry.push(ids),
            }
        }
        self.m.acks.clear();
        self.m.leased.clear();
        self.broker = Broker::open(
            self.store.clone() as Arc<dyn Store>,
            self.clock.clone(),
            self.options.clone(),
        )
        .map_err(|e| format!("reopen after crash {}: {e}", self.m.crashes))?;
        let stats = self
            .broker
            .queue_stats(Q)
            .map_err(|e| format!("stats after crash: {e}"))?;
        let must_hold = self.m.confirmed.difference(&self.m.ack_sent).count() as u64;
        let may_hold = self.m.sent.difference(&self.m.ack_confirmed).count() as u64;
        if stats.in_flight != 0 {
            return Err(format!("leases survived a crash: {stats:?}"));
        }
        if stats.total < must_hold {
            return Err(format!(
                "after crash {}: {} messages held, fewer than the {must_hold} confirmed and never acked",
                self.m.crashes, stats.total
            ));
        }
        if stats.total > may_hold {
            return Err(format!(
                "after crash {}: {} messages held, more than the {may_hold} sent and not confirmed acked",
                self.m.crashes, stats.total
            ));
        }
        Ok(())
    }

    fn step(&mut self) -> Result<(), String> {
        match self.rng.below(100) {
            0..=29 => self.publish()?,
            30..=49 => self.confirm()?,
            50..=64 => self.receive()?,
            65..=76 => self.settle(true),
            77..=80 => self.settle(false),
            81..=90 => {
                self.clock.advance(self.rng.below(LEASE_MS / 4));
                self.broker.tick();
            }
            91..=96 => self.store.sync_all(),
            _ => {
                if self.rng.below(3) == 0 {
                    self.crash()?;
                }
            }
        }
        Ok(())
    }

    /// Faults off, one last crash, reopen, drain everything; then the end-of-run checks.
    fn finish(mut self) -> Result<SeedStats, String> {
        let faults = self.store.counters();
        self.store.set_plan(FaultPlan {
            seed: self.plan.seed,
            ..FaultPlan::default()
        });
        self.crash()?;
        // Past every nack delay and backoff.
        self.clock.advance(60_000);
        self.broker.tick();
        let mut drained: HashMap<String, u32> = HashMap::new();
        for round in 0.. {
            if round > 10_000 {
                return Err("drain does not end".into());
            }
            let got = self
                .broker
                .receive(Q, 1000, None)
                .map_err(|e| format!("drain receive: {e}"))?;
            if got.is_empty() {
                break;
            }
            let mut receipts = Vec::new();
            for d in got {
                if !self.m.sent.contains(&d.id) || d.body != body_of(&d.id) {
                    return Err(format!("drain: garbage delivery {:?}", d.id));
                }
                if self.m.ack_confirmed.contains(&d.id) {
                    return Err(format!("drain: {:?} came back after a confirmed ack", d.id));
                }
                *drained.entry(d.id.clone()).or_default() += 1;
                self.m.delivered.insert(d.id);
                receipts.push(d.receipt);
            }
            let out = self
                .broker
                .ack(Q, &receipts)
                .map_err(|e| format!("drain ack: {e}"))?;
            if !out.invalid.is_empty() {
                return Err(format!("drain ack: invalid {:?}", out.invalid));
            }
            out.durable
                .now_or_never()
                .ok_or("drain ack not durable")?
                .map_err(|e| format!("drain ack: {e}"))?;
        }
        if let Some((id, n)) = drained.iter().find(|(_, n)| **n > 1) {
            return Err(format!("{id:?} stored {n} times despite dedup"));
        }
        let mut lost: Vec<&String> = self.m.confirmed.difference(&self.m.delivered).collect();
        lost.sort();
        if !lost.is_empty() {
            return Err(format!(
                "{} confirmed messages never delivered, e.g. {:?}",
                lost.len(),
                &lost[..lost.len().min(5)]
            ));
        }
        let stats = self.broker.queue_stats(Q).map_err(|e| e.to_string())?;
        if stats.total != 0 {
            return Err(format!("drained queue not empty: {stats:?}"));
        }
        Ok(SeedStats {
            confirmed: self.m.confirmed.len() as u64,
            acked: self.m.ack_confirmed.len() as u64,
            deliveries: self.m.deliveries,
            crashes: self.m.crashes,
            faults,
        })
    }
}

fn run_seed(seed: u64, same_id_retries: bool, snapshots: bool) -> Result<SeedStats, String> {
    let mut sim = Sim::new(seed, same_id_retries, snapshots)?;
    for step in 0..STEPS {
        sim.step()
            .map_err(|e| format!("step {step} (plan {:?}): {e}", sim.plan))?;
    }
    let _ = sim.seed;
    sim.finish()
}

/// Producers that give up on a failed batch (a retry gets fresh ids).
#[test]
fn simulated_faults_never_lose_or_resurrect_confirmed_messages() {
    run_seeds(false, true);
}

/// Producers that retry with the same ids, relying on dedup. Guards two fixed bugs (see
/// docs/reliability.md): (1) a journal snapshot recorded dedup hashes of messages not yet
/// durable, so after a crash that dropped them a retry was confirmed as a duplicate of nothing
/// (e.g. seed 138); now a snapshot keeps only entries of durable originals and a duplicate is
/// confirmed only once its original is durable.
#[test]
fn simulated_faults_with_same_id_retries_keep_dedup_promises() {
    run_seeds(true, true);
}

/// The same without snapshots: (2) dedup entries were rebuilt after a restart from the message
/// log only, so once an acked message's segment was reclaimed its id was forgotten inside the
/// dedup window and a retry stored it again (e.g. seed 129); now the log's low-water mark never
/// passes a dedup entry that only the log holds.
#[test]
fn simulated_faults_with_same_id_retries_and_no_snapshots_keep_dedup_promises() {
    run_seeds(true, false);
}

fn run_seeds(same_id_retries: bool, snapshots: bool) {
    let seeds: Vec<u64> = match std::env::var("WEIR_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("WEIR_SIM_SEED is a u64")],
        Err(_) => {
            let n: u64 = std::env::var("WEIR_SIM_SEEDS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(300);
            let base: u64 = std::env::var("WEIR_SIM_BASE")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            (base..base + n).collect()
        }
    };
    let mut total = SeedStats::default();
    let mut failures = Vec::new();
    for &seed in &seeds {
        match std::panic::catch_unwind(|| run_seed(seed, same_id_retries, snapshots)) {
            Ok(Ok(s)) => {
                total.confirmed += s.confirmed;
                total.acked += s.acked;
                total.deliveries += s.deliveries;
                total.crashes += s.crashes;
                total.faults.failed_syncs += s.faults.failed_syncs;
                total.faults.disk_full += s.faults.disk_full;
                total.faults.busy += s.faults.busy;
                total.faults.failed_snapshots += s.faults.failed_snapshots;
                total.faults.lost_pending += s.faults.lost_pending;
                total.faults.kept_pending += s.faults.kept_pending;
            }
            Ok(Err(e)) => failures.push(format!("WEIR_SIM_SEED={seed}: {e}")),
            Err(_) => failures.push(format!("WEIR_SIM_SEED={seed}: panicked")),
        }
    }
    eprintln!(
        "simulated {} seeds: {} confirmed, {} acks confirmed, {} deliveries, {} crashes; injected \
         {} failed fsyncs, {} disk-full and {} busy appends, {} failed snapshots; crashes dropped \
         {} and kept {} unsynced writes; {} failing seeds",
        seeds.len(),
        total.confirmed,
        total.acked,
        total.deliveries,
        total.crashes,
        total.faults.failed_syncs,
        total.faults.disk_full,
        total.faults.busy,
        total.faults.failed_snapshots,
        total.faults.lost_pending,
        total.faults.kept_pending,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed:\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n")
    );
    assert!(total.confirmed > 0 && total.crashes > 0);
}
