//! Shared helpers for the integration tests.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::Arc;

use weir_broker::{Broker, BrokerOptions, Delivery, ManualClock, NewMessage, QueueConfig};
use weir_store::memory::MemoryStore;
use weir_store::Store;

pub const T0: u64 = 1_700_000_000_000;

/// A broker over a memory store with a manual clock; `restart` reopens it over the same store.
pub struct Harness {
    pub store: Arc<MemoryStore>,
    pub clock: Arc<ManualClock>,
    pub broker: Broker,
    pub options: BrokerOptions,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_options(BrokerOptions {
            rng_seed: Some(42),
            ..BrokerOptions::default()
        })
    }

    pub fn with_options(options: BrokerOptions) -> Harness {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(T0));
        let broker = Broker::open(
            store.clone() as Arc<dyn Store>,
            clock.clone(),
            options.clone(),
        )
        .expect("open");
        Harness {
            store,
            clock,
            broker,
            options,
        }
    }

    pub fn restart(&mut self) {
        self.broker = Broker::open(
            self.store.clone() as Arc<dyn Store>,
            self.clock.clone(),
            self.options.clone(),
        )
        .expect("reopen");
    }

    pub fn queue(&self, name: &str, config: QueueConfig) {
        self.broker.create_queue(name, config).expect("create");
    }

    pub fn publish(&self, q: &str, bodies: &[&str]) -> Vec<String> {
        let out = self
            .broker
            .publish(
                q,
                bodies
                    .iter()
                    .map(|b| NewMessage::new(b.to_string()))
                    .collect(),
            )
            .expect("publish");
        block(out.durable);
        out.messages.into_iter().map(|p| p.id).collect()
    }

    pub fn publish_one(&self, q: &str, m: NewMessage) -> weir_broker::Published {
        let out = self.broker.publish(q, vec![m]).expect("publish");
        block(out.durable);
        out.messages.into_iter().next().expect("one")
    }

    pub fn receive(&self, q: &str, max: usize) -> Vec<Delivery> {
        self.broker.receive(q, max, None).expect("receive")
    }

    pub fn ack(&self, q: &str, d: &[Delivery]) -> (usize, Vec<String>) {
        let receipts: Vec<String> = d.iter().map(|d| d.receipt.clone()).collect();
        let out = self.broker.ack(q, &receipts).expect("ack");
        block(out.durable);
        (out.done, out.invalid)
    }

    pub fn clock_now(&self) -> u64 {
        use weir_broker::Clock;
        self.clock.now_ms()
    }

    pub fn advance(&self, ms: u64) {
        self.clock.advance(ms);
    }
}

pub fn block(d: weir_store::Durable) {
    futures::executor::block_on(d).expect("durable");
}

pub fn bodies(d: &[Delivery]) -> Vec<String> {
    d.iter()
        .map(|d| String::from_utf8_lossy(&d.body).into_owned())
        .collect()
}
