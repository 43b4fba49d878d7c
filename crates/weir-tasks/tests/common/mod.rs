//! Shared helpers: a broker, task service and scheduler over one memory store with a manual
//! clock; `restart` reopens all three over the same store.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::Arc;

use weir_broker::{Broker, BrokerOptions, ManualClock, QueueConfig};
use weir_store::memory::MemoryStore;
use weir_store::Store;
use weir_tasks::{Scheduler, TaskOptions, TaskService};

pub const T0: u64 = 1_700_000_000_000;

pub struct Harness {
    pub store: Arc<MemoryStore>,
    pub clock: Arc<ManualClock>,
    pub broker: Arc<Broker>,
    pub tasks: Arc<TaskService>,
    pub scheduler: Arc<Scheduler>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::at(T0)
    }

    pub fn at(start_ms: u64) -> Harness {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(start_ms));
        let (broker, tasks, scheduler) = open(&store, &clock);
        Harness {
            store,
            clock,
            broker,
            tasks,
            scheduler,
        }
    }

    pub fn restart(&mut self) {
        let (broker, tasks, scheduler) = open(&self.store, &self.clock);
        self.broker = broker;
        self.tasks = tasks;
        self.scheduler = scheduler;
    }

    pub fn queue(&self, name: &str, config: QueueConfig) {
        self.broker.create_queue(name, config).expect("create");
    }

    /// Advances the clock and runs the broker's and the task service's periodic work.
    pub async fn advance(&self, ms: u64) {
        self.clock.advance(ms);
        self.broker.tick();
        self.tasks.tick().await;
    }
}

fn open(
    store: &Arc<MemoryStore>,
    clock: &Arc<ManualClock>,
) -> (Arc<Broker>, Arc<TaskService>, Arc<Scheduler>) {
    let s = store.clone() as Arc<dyn Store>;
    let broker = Arc::new(
        Broker::open(
            s.clone(),
            clock.clone(),
            BrokerOptions {
                rng_seed: Some(7),
                ..BrokerOptions::default()
            },
        )
        .expect("broker opens"),
    );
    let tasks = Arc::new(
        TaskService::open(
            broker.clone(),
            s.clone(),
            clock.clone(),
            TaskOptions::default(),
        )
        .expect("tasks open"),
    );
    let scheduler = Arc::new(
        Scheduler::open(broker.clone(), tasks.clone(), s, clock.clone()).expect("scheduler opens"),
    );
    (broker, tasks, scheduler)
}
