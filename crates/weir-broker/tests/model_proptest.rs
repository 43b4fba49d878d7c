//! Property test: the broker against a simple model under random publish / receive / ack / nack /
//! time / restart sequences. Compares counts by state, the exact ids (and attempts) of every
//! receive, and the outcome of every ack and nack.

mod common;

use std::collections::BTreeMap;

use common::Harness;
use proptest::prelude::*;
use weir_broker::{NewMessage, QueueConfig};

const LEASE_MS: u64 = 1000;

#[derive(Clone, Debug)]
enum Op {
    Publish(usize),
    Receive(usize),
    Ack(usize),
    Nack(usize, u64),
    Advance(u64),
    Tick,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..4).prop_map(Op::Publish),
        3 => (1usize..5).prop_map(Op::Receive),
        3 => (0usize..8).prop_map(Op::Ack),
        2 => ((0usize..8), (0u64..3).prop_map(|d| d * 700)).prop_map(|(i, d)| Op::Nack(i, d)),
        2 => (0u64..4).prop_map(|d| Op::Advance(d * 400)),
        1 => Just(Op::Tick),
        1 => Just(Op::Restart),
    ]
}

#[derive(Debug, Default)]
struct Msg {
    seq: u64,
    acked: bool,
    attempts: u32,
    ready_at: u64,
    /// (delivery number, deadline, epoch) of the current lease.
    lease: Option<(u32, u64, u32)>,
}

#[derive(Debug)]
struct Held {
    id: String,
    attempt: u32,
    epoch: u32,
    receipt: String,
}

#[derive(Debug, Default)]
struct Model {
    msgs: BTreeMap<String, Msg>,
    next: u64,
    epoch: u32,
}

impl Model {
    fn leased(&self, m: &Msg, now: u64) -> bool {
        m.lease
            .is_some_and(|(_, deadline, epoch)| epoch == self.epoch && deadline > now)
    }

    fn valid(&self, h: &Held, now: u64) -> bool {
        self.msgs.get(&h.id).is_some_and(|m| {
            !m.acked
                && self.leased(m, now)
                && m.lease
                    .is_some_and(|(n, _, e)| n == h.attempt && e == h.epoch)
        })
    }

    fn counts(&self, now: u64) -> (u64, u64, u64, u64) {
        let (mut ready, mut in_flight, mut delayed, mut total) = (0, 0, 0, 0);
        for m in self.msgs.values().filter(|m| !m.acked) {
            total += 1;
            if self.leased(m, now) {
                in_flight += 1;
            } else if m.ready_at > now {
                delayed += 1;
            } else {
                ready += 1;
            }
        }
        (ready, in_flight, delayed, total)
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness::new();
    h.queue(
        "q",
        QueueConfig {
            lease_ms: LEASE_MS,
            max_attempts: 1000,
            ..QueueConfig::default()
        },
    );
    let mut model = Model::default();
    let mut held: Vec<Held> = Vec::new();
    for op in ops {
        let now = h.clock_now();
        match op {
            Op::Publish(n) => {
                let batch: Vec<NewMessage> = (0..n)
                    .map(|i| NewMessage {
                        id: Some(format!("m{}", model.next + i as u64)),
                        ..NewMessage::new("body")
                    })
                    .collect();
                let out = h.broker.publish("q", batch).expect("publish");
                common::block(out.durable);
                for _ in 0..n {
                    let id = format!("m{}", model.next);
                    model.msgs.insert(
                        id,
                        Msg {
                            seq: model.next,
                            ready_at: now,
                            ..Msg::default()
                        },
                    );
                    model.next += 1;
                }
            }
            Op::Receive(max) => {
                let got = h.receive("q", max);
                let mut expect: Vec<(&String, &Msg)> = model
                    .msgs
                    .iter()
                    .filter(|(_, m)| !m.acked && !model.leased(m, now) && m.ready_at <= now)
                    .collect();
                expect.sort_by_key(|(_, m)| m.seq);
                let expect: Vec<(String, u32)> = expect
                    .into_iter()
                    .take(max)
                    .map(|(id, m)| (id.clone(), m.attempts + 1))
                    .collect();
                let actual: Vec<(String, u32)> =
                    got.iter().map(|d| (d.id.clone(), d.attempt)).collect();
                prop_assert_eq!(&actual, &expect);
                for d in got {
                    let m = model.msgs.get_mut(&d.id).expect("known");
                    m.attempts += 1;
                    m.lease = Some((m.attempts, now + LEASE_MS, model.epoch));
                    held.push(Held {
                        id: d.id,
                        attempt: d.attempt,
                        epoch: model.epoch,
                        receipt: d.receipt,
                    });
                }
            }
            Op::Ack(i) | Op::Nack(i, _) if held.is_empty() => {
                let _ = i;
            }
            Op::Ack(i) => {
                let hd = held.remove(i % held.len());
                let valid = model.valid(&hd, now);
                let out = h
                    .broker
                    .ack("q", std::slice::from_ref(&hd.receipt))
                    .expect("ack");
                prop_assert_eq!(out.done, usize::from(valid), "ack of {:?}", hd);
                if valid {
                    let m = model.msgs.get_mut(&hd.id).expect("known");
                    m.acked = true;
                    m.lease = None;
                }
            }
            Op::Nack(i, delay) => {
                let hd = held.remove(i % held.len());
                let valid = model.valid(&hd, now);
                let out = h
                    .broker
                    .nack("q", std::slice::from_ref(&hd.receipt), Some(delay))
                    .expect("nack");
                prop_assert_eq!(out.done, usize::from(valid), "nack of {:?}", hd);
                if valid {
                    let m = model.msgs.get_mut(&hd.id).expect("known");
                    m.lease = None;
                    m.ready_at = now + delay;
                }
            }
            Op::Advance(ms) => h.advance(ms),
            Op::Tick => {
                h.broker.tick();
            }
            Op::Restart => {
                h.restart();
                model.epoch += 1;
                for m in model.msgs.values_mut() {
                    if m.lease.take().is_some() {
                        // A lease ends with the restart; the message is ready (its ready-at
                        // time passed before it was delivered).
                        m.ready_at = m.ready_at.min(now);
                    }
                }
            }
        }
        let now = h.clock_now();
        let s = h.broker.queue_stats("q").expect("stats");
        prop_assert_eq!(
            (s.ready, s.in_flight, s.delayed, s.total),
            model.counts(now),
            "after {:?}",
            op_name(&s)
        );
    }
    Ok(())
}

fn op_name(s: &weir_broker::QueueStats) -> String {
    format!("{} delivered, {} acked", s.delivered_total, s.acked_total)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn broker_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
