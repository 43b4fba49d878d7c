//! Tasks over real HTTP: an any-language worker (plain queue receive + result post), the Rust
//! worker runtime (handlers, panics, concurrency), retries to dead, cancel, unique keys and
//! workflows.

mod common;

use std::time::Duration;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn queue(s: &TestServer, name: &str, config: Value) {
    let (st, _, _) = s
        .call(Method::PUT, &format!("/v1/queues/{name}"), Some(config))
        .await;
    assert!(st.is_success(), "{st}");
}

#[tokio::test]
async fn any_language_worker_over_the_plain_queue_api() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    queue(&s, "jobs", json!({})).await;
    let (st, out, _) = s
        .call(
            Method::POST,
            "/v1/tasks",
            Some(json!({"queue": "jobs", "name": "add", "args": [2, 3], "id": "sum-1"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(
        out,
        json!({"id": "sum-1", "state": "queued", "created": true})
    );
    let (st, again, _) = s
        .call(
            Method::POST,
            "/v1/tasks",
            Some(json!({"queue": "jobs", "name": "add", "args": [2, 3], "id": "sum-1"})),
        )
        .await;
    assert_eq!(
        (st, again["created"].clone()),
        (StatusCode::OK, json!(false))
    );

    // A client waits for the result while the "worker" (this test, as any language would) works.
    let waiter = {
        let base = s.base.clone();
        tokio::spawn(async move {
            reqwest::get(format!("{base}/v1/tasks/sum-1?wait_ms=10000"))
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    let (_, got, _) = s
        .call(
            Method::POST,
            "/v1/queues/jobs/receive",
            Some(json!({"max": 10, "wait_ms": 1000})),
        )
        .await;
    let m = &got["messages"][0];
    assert_eq!(m["id"], "sum-1");
    let body: Value = serde_json::from_str(m["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"id": "sum-1", "name": "add", "args": [2, 3], "attempt": 1})
    );
    let sum = body["args"][0].as_i64().unwrap() + body["args"][1].as_i64().unwrap();
    let (st, t, _) = s
        .call(
            Method::POST,
            "/v1/tasks/sum-1/result",
            Some(json!({"receipt": m["receipt"], "ok": true, "result": sum, "worker": "py-1"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{t}");
    let done = waiter.await.unwrap();
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["result"], 5);
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["history"][0]["worker"], "py-1");
    // The message was acked.
    let (_, q, _) = s.call(Method::GET, "/v1/queues/jobs", None).await;
    assert_eq!(q["total"], 0);
    s.stop().await;
}

#[tokio::test]
async fn failures_retry_then_dead_and_the_message_is_in_the_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    queue(&s, "jobs", json!({})).await;
    let (st, out, _) = s
        .call(
            Method::POST,
            "/v1/tasks",
            Some(json!({"queue": "jobs", "name": "flaky", "id": "f", "max_attempts": 2, "backoff_ms": 100})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{out}");
    for attempt in 1..=2 {
        let (st, got, _) = s
            .call(
                Method::POST,
                "/v1/tasks/queues/jobs/receive",
                Some(json!({"wait_ms": 5000, "worker": "w"})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{got}");
        let t = &got["tasks"][0];
        assert_eq!(t["attempt"], attempt, "{got}");
        let (_, running, _) = s.call(Method::GET, "/v1/tasks/f", None).await;
        assert_eq!(running["state"], "running");
        let (st, after, _) = s
            .call(Method::POST, "/v1/tasks/f/result", Some(json!({"receipt": t["receipt"], "ok": false, "error": format!("boom {attempt}")})))
            .await;
        assert_eq!(st, StatusCode::OK, "{after}");
        assert_eq!(
            after["state"],
            if attempt == 1 { "retrying" } else { "dead" }
        );
    }
    let (_, t, _) = s.call(Method::GET, "/v1/tasks/f", None).await;
    assert_eq!(t["error"], "boom 2");
    assert_eq!(t["history"].as_array().unwrap().len(), 2);
    let (_, dlq, _) = s
        .call(
            Method::POST,
            "/v1/queues/jobs.dlq/receive",
            Some(json!({"max": 10})),
        )
        .await;
    assert_eq!(dlq["messages"][0]["id"], "f");
    s.stop().await;
}

#[tokio::test]
async fn cancel_unique_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    queue(&s, "jobs", json!({})).await;
    let (st, a, _) = s
        .call(
            Method::POST,
            "/v1/tasks",
            Some(json!({"queue": "jobs", "name": "n", "unique_key": "k", "delay_ms": 60000})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let (st, e, _) = s
        .call(
            Method::POST,
            "/v1/tasks",
            Some(json!({"queue": "jobs", "name": "n", "unique_key": "k"})),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    let id = a["id"].as_str().unwrap();
    let (st, t, _) = s
        .call(Method::POST, &format!("/v1/tasks/{id}/cancel"), None)
        .await;
    assert_eq!(
        (st, t["state"].clone()),
        (StatusCode::OK, json!("cancelled"))
    );
    let (st, b, _) = s
        .call(
            Method::POST,
            "/v1/tasks",
            Some(json!({"queue": "jobs", "name": "n", "unique_key": "k"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{b}");
    assert_ne!(a["id"], b["id"]);
    for bad in [
        json!({"queue": "nope", "name": "n"}),
        json!({"queue": "jobs"}),
        json!({"queue": "jobs", "name": "n", "dealy_ms": 5}),
        json!({"queue": "jobs", "name": "n", "timeout_ms": "x"}),
    ] {
        let (st, e, _) = s.call(Method::POST, "/v1/tasks", Some(bad.clone())).await;
        assert!(
            st == StatusCode::BAD_REQUEST || st == StatusCode::NOT_FOUND,
            "{bad}: {st} {e}"
        );
        assert!(e["error"]["code"].is_string());
    }
    let (st, _, _) = s.call(Method::GET, "/v1/tasks/unknown", None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn rust_worker_runs_handlers_records_panics_and_runs_workflows() {
    use weir_tasks::worker::Worker;
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    queue(&s, "jobs", json!({"max_attempts": 1})).await;
    let worker = Worker::new(s.base.clone(), "jobs")
        .name("rust-1")
        .concurrency(4)
        .prefetch(2)
        .lease_ms(2000)
        .handler(
            "add",
            |(a, b): (i64, i64)| async move { Ok::<_, String>(a + b) },
        )
        .handler("sum", |xs: Vec<i64>| async move {
            Ok::<_, String>(xs.iter().sum::<i64>())
        })
        .handler("double", |x: i64| async move { Ok::<_, String>(x * 2) })
        .handler("slow", |ms: u64| async move {
            // Longer than the 2 s lease: heartbeats keep it alive.
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, String>("slept")
        })
        .handler("boom", |_: Value| async move {
            if true {
                panic!("kaboom");
            }
            Ok::<_, String>(())
        });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async {
        let _ = stop_rx.await;
    }));

    let submit = |name: &str, args: Value, id: &str| {
        let body = json!({"queue": "jobs", "name": name, "args": args, "id": id});
        let s = &s;
        async move {
            let (st, out, _) = s.call(Method::POST, "/v1/tasks", Some(body)).await;
            assert_eq!(st, StatusCode::CREATED, "{out}");
        }
    };
    // Waits for a final state (the server holds the request until then, at most wait_ms).
    let status = |path: String| {
        let s = &s;
        async move {
            let (st, out, _) = s.call(Method::GET, &path, None).await;
            assert_eq!(st, StatusCode::OK, "{path}: {out}");
            out
        }
    };
    submit("add", json!([2, 3]), "a").await;
    submit("boom", json!(null), "b").await;
    submit("slow", json!(3500), "c").await;
    let a = status("/v1/tasks/a?wait_ms=10000".into()).await;
    assert_eq!(
        (a["state"].clone(), a["result"].clone()),
        (json!("succeeded"), json!(5)),
        "{a}"
    );
    assert_eq!(a["history"][0]["worker"], "rust-1");
    let b = status("/v1/tasks/b?wait_ms=10000".into()).await;
    assert_eq!(b["state"], "dead", "{b}");
    assert!(b["error"].as_str().unwrap().contains("kaboom"), "{b}");
    let c = status("/v1/tasks/c?wait_ms=10000".into()).await;
    assert_eq!(
        (c["state"].clone(), c["attempts"].clone()),
        (json!("succeeded"), json!(1)),
        "{c}"
    );

    // Workflows: chain (B gets A's result), group, chord.
    let (st, w, _) = s
        .call(
            Method::POST,
            "/v1/workflows",
            Some(json!({"id": "ch", "chain": [
                {"queue": "jobs", "name": "add", "args": [1, 2]},
                {"queue": "jobs", "name": "double"},
                {"queue": "jobs", "name": "double"}]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{w}");
    let w = status("/v1/workflows/ch?wait_ms=15000".into()).await;
    assert_eq!(
        (w["state"].clone(), w["result"].clone()),
        (json!("succeeded"), json!(12)),
        "{w}"
    );
    let (st, w, _) = s
        .call(
            Method::POST,
            "/v1/workflows",
            Some(json!({"id": "gr", "group": [
                {"queue": "jobs", "name": "add", "args": [1, 1]},
                {"queue": "jobs", "name": "add", "args": [2, 2]}]})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{w}");
    let w = status("/v1/workflows/gr?wait_ms=15000".into()).await;
    assert_eq!(
        (w["state"].clone(), w["result"].clone()),
        (json!("succeeded"), json!([2, 4])),
        "{w}"
    );
    let (st, w, _) = s
        .call(
            Method::POST,
            "/v1/workflows",
            Some(json!({"id": "cd", "chord": {"group": [
                {"queue": "jobs", "name": "double", "args": 1},
                {"queue": "jobs", "name": "double", "args": 2},
                {"queue": "jobs", "name": "double", "args": 3}],
                "callback": {"queue": "jobs", "name": "sum"}}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{w}");
    let w = status("/v1/workflows/cd?wait_ms=15000".into()).await;
    assert_eq!(
        (w["state"].clone(), w["result"].clone()),
        (json!("succeeded"), json!(12)),
        "{w}"
    );
    assert_eq!(w["tasks"].as_array().unwrap().len(), 4);

    // Graceful shutdown returns once running handlers are done.
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    s.stop().await;
}
