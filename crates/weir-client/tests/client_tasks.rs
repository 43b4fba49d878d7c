//! Tasks over the native protocol (version 3) against a real server on real files: submission
//! idempotent by id, get waiting for a final state, cancel, and refusals that change nothing.

mod common;

use common::{code, server};

use std::time::Duration;

use serde_json::{json, Value};
use weir_client::{Client, ErrorCode, QueueOptions, TaskRequest, TaskState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_is_idempotent_by_id_and_get_waits_for_the_result() {
    let (server, _dir) = server().await;
    let client = Client::connect(server.native_addr()).await.unwrap();
    client
        .create_queue("images", QueueOptions::default())
        .await
        .unwrap();
    let args = json!({"image": 7, "sizes": [64, 128], "name": "café"});
    let request = TaskRequest::new("images", "resize", args.clone())
        .id("resize-7")
        .timeout(Duration::from_secs(30))
        .max_attempts(3);
    let first = client.submit_task(request.clone()).await.unwrap();
    assert_eq!(
        (first.id.as_str(), first.state, first.created),
        ("resize-7", TaskState::Queued, true)
    );
    // The same id again: nothing new, neither a task nor a message.
    let again = client.submit_task(request).await.unwrap();
    assert_eq!((again.id.as_str(), again.created), ("resize-7", false));
    assert_eq!(client.queue_stats("images").await.unwrap().total, 1);
    // Without an id, the server makes one.
    let other = client
        .submit_task(TaskRequest::new("images", "thumb", Value::Null))
        .await
        .unwrap();
    assert!(other.created);
    assert_ne!(other.id, "resize-7");

    let t = client.get_task("resize-7", Duration::ZERO).await.unwrap();
    assert_eq!(
        (t.state, t.attempts, t.max_attempts),
        (TaskState::Queued, 0, 3)
    );
    assert_eq!((t.queue.as_str(), t.name.as_str()), ("images", "resize"));
    assert_eq!(t.args, args);
    assert!(t.result.is_none() && t.history.is_empty());

    // A waiting get returns as soon as a worker's result makes the task final.
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.get_task("resize-7", Duration::from_secs(15)).await })
    };
    // The worker: the plain queue API over the native protocol, the result over HTTP.
    let mut receipt = None;
    for _ in 0..10 {
        let got = client
            .receive("images", 10, Duration::from_secs(2), None)
            .await
            .unwrap();
        for d in got {
            let body: Value = serde_json::from_slice(&d.body).unwrap();
            if body["id"] == "resize-7" {
                assert_eq!(body["args"], args);
                receipt = Some(d.receipt);
            }
        }
        if receipt.is_some() {
            break;
        }
    }
    let receipt = receipt.expect("the task's message was delivered");
    let url = format!("http://{}/v1/tasks/resize-7/result", server.http_addr());
    let posted = reqwest::Client::new()
        .post(url)
        .json(&json!({"receipt": receipt, "ok": true, "result": {"bytes": 1234}, "worker": "w1"}))
        .send()
        .await
        .unwrap();
    assert!(posted.status().is_success(), "{}", posted.status());
    let done = waiter.await.unwrap().unwrap();
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(done.result, Some(json!({"bytes": 1234})));
    assert_eq!(done.history.len(), 1);
    assert_eq!(done.history[0].worker.as_deref(), Some("w1"));
    assert!(done.history[0].finished_at_ms.is_some());

    // A final task cannot be cancelled; an unknown one is not found.
    assert_eq!(
        code(client.cancel_task("resize-7").await),
        Some(ErrorCode::Conflict)
    );
    assert_eq!(
        code(client.get_task("nope", Duration::ZERO).await),
        Some(ErrorCode::NotFound)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_a_wait_and_refusals_change_nothing() {
    let (server, _dir) = server().await;
    let client = Client::connect(server.native_addr()).await.unwrap();
    client
        .create_queue("jobs", QueueOptions::default())
        .await
        .unwrap();
    let submitted = client
        .submit_task(
            TaskRequest::new("jobs", "later", json!([1, 2]))
                .id("later-1")
                .delay(Duration::from_secs(3600))
                .unique_key("only-one"),
        )
        .await
        .unwrap();
    assert!(submitted.created);

    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.get_task("later-1", Duration::from_secs(15)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let cancelled = client.cancel_task("later-1").await.unwrap();
    assert_eq!(cancelled.state, TaskState::Cancelled);
    let seen = waiter.await.unwrap().unwrap();
    assert_eq!(seen.state, TaskState::Cancelled);
    assert_eq!(seen.args, json!([1, 2]));
    // Cancelling again answers the task as it is.
    assert_eq!(
        client.cancel_task("later-1").await.unwrap().state,
        TaskState::Cancelled
    );
    // A get with a short wait on a task that stays queued answers it as it is.
    client
        .submit_task(
            TaskRequest::new("jobs", "held", Value::Null)
                .id("held-1")
                .unique_key("k"),
        )
        .await
        .unwrap();
    let held = client
        .get_task("held-1", Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(held.state, TaskState::Queued);
    assert_eq!(held.unique_key.as_deref(), Some("k"));

    // Refusals: each changes nothing (the queue still holds exactly the two messages).
    let before = client.queue_stats("jobs").await.unwrap().total;
    assert_eq!(
        code(
            client
                .submit_task(TaskRequest::new("jobs", "dup", Value::Null).unique_key("k"))
                .await
        ),
        Some(ErrorCode::Conflict)
    );
    assert_eq!(
        code(
            client
                .submit_task(TaskRequest::new("nope", "x", Value::Null))
                .await
        ),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        code(
            client
                .submit_task(TaskRequest::new("jobs", "x", Value::Null).id("i".repeat(129)))
                .await
        ),
        Some(ErrorCode::BadRequest)
    );
    assert_eq!(
        code(
            client
                .submit_task(TaskRequest::new("jobs", "", Value::Null))
                .await
        ),
        Some(ErrorCode::BadRequest)
    );
    assert_eq!(
        code(
            client
                .submit_task(
                    TaskRequest::new("jobs", "x", Value::Null).timeout(Duration::from_millis(1))
                )
                .await
        ),
        Some(ErrorCode::BadRequest)
    );
    assert_eq!(client.queue_stats("jobs").await.unwrap().total, before);
    server.shutdown().await;
}
