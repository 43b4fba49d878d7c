//! The HTTP queue API on arbitrary request bodies: the real axum router of `weir-server` over a
//! broker on an in-memory store, one request per input (the first byte picks the route). Every
//! answer must be a status the API defines with a JSON error body for failures; nothing panics;
//! and bad input changes nothing (a refused publish leaves the queue's depth unchanged).
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use weir_broker::{Broker, BrokerOptions, ManualClock, QueueConfig};
use weir_server::http::{router, AppState};
use weir_server::Metrics;
use weir_store::memory::MemoryStore;

struct World {
    rt: tokio::runtime::Runtime,
    broker: Arc<Broker>,
    app: axum::Router,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            // Long polls (`wait_ms`) pass in virtual time, instantly.
            .start_paused(true)
            .build()
            .expect("runtime");
        let broker = Arc::new(
            Broker::open(
                Arc::new(MemoryStore::new()),
                Arc::new(ManualClock::new(1_700_000_000_000)),
                BrokerOptions {
                    rng_seed: Some(1),
                    ..BrokerOptions::default()
                },
            )
            .expect("broker"),
        );
        broker
            .create_queue("q", QueueConfig::default())
            .expect("queue");
        let store: Arc<dyn weir_store::Store> = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let tasks = Arc::new(
            weir_tasks::TaskService::open(
                broker.clone(),
                store.clone(),
                clock.clone(),
                weir_tasks::TaskOptions::default(),
            )
            .expect("tasks"),
        );
        let scheduler = Arc::new(
            weir_tasks::Scheduler::open(broker.clone(), tasks.clone(), store, clock)
                .expect("scheduler"),
        );
        let app = router(AppState::new(
            broker.clone(),
            Arc::new(Metrics::default()),
            1 << 20,
            tasks,
            scheduler,
        ));
        World { rt, broker, app }
    })
}

const ROUTES: [(&str, &str); 8] = [
    ("POST", "/v1/queues/q/messages"),
    ("POST", "/v1/queues/q/receive"),
    ("POST", "/v1/queues/q/ack"),
    ("POST", "/v1/queues/q/nack"),
    ("POST", "/v1/queues/q/extend"),
    ("PUT", "/v1/queues/fz"),
    ("PUT", "/v1/queues/q"),
    ("POST", "/v1/queues/missing/messages"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let w = world();
    let (method, path) = ROUTES[pick as usize % ROUTES.len()];
    let before = w.broker.queue_stats("q").map(|s| s.total).unwrap_or(0);
    let request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_vec()))
        .expect("request");
    let (status, text) = w.rt.block_on(async {
        let resp = w.app.clone().oneshot(request).await.expect("infallible");
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .expect("response body");
        (status, bytes)
    });
    assert!(
        [200, 201, 204, 400, 404, 409, 413, 503].contains(&status),
        "unexpected status {status}"
    );
    if status >= 400 {
        let v: serde_json::Value = serde_json::from_slice(&text).expect("error body is JSON");
        assert!(v["error"]["code"].is_string(), "error shape: {v}");
        if path == "/v1/queues/q/messages" {
            let after = w.broker.queue_stats("q").map(|s| s.total).unwrap_or(0);
            assert_eq!(before, after, "a refused publish stored something");
        }
    }
    // Bound the in-memory backlog of long runs.
    if before > 10_000 {
        let _ = w.broker.purge_queue("q");
    }
});
