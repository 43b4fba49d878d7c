//! A task's life over a real broker and a memory store: success, retries to dead, timeout then
//! retry, cancel, idempotent submission, unique keys, rate limits, recovery.

mod common;

use common::Harness;
use serde_json::json;
use weir_broker::QueueConfig;
use weir_tasks::{RateLimit, Submit, TaskError, TaskOutcome, TaskSpec, TaskState};

fn submit(spec: TaskSpec, id: Option<&str>) -> Submit {
    Submit {
        spec,
        id: id.map(str::to_string),
        delay_ms: 0,
    }
}

fn fail(receipt: &str, error: &str) -> TaskOutcome {
    TaskOutcome {
        receipt: receipt.into(),
        ok: false,
        error: Some(error.into()),
        worker: Some("w1".into()),
        ..TaskOutcome::default()
    }
}

#[tokio::test]
async fn submit_run_succeed_and_idempotent_id() {
    let h = Harness::new();
    h.queue("jobs", QueueConfig::default());
    let spec = TaskSpec::new("jobs", "add", json!([2, 3]));
    let s = h
        .tasks
        .submit(submit(spec.clone(), Some("t1")))
        .await
        .unwrap();
    assert_eq!(
        (s.id.as_str(), s.state, s.created),
        ("t1", TaskState::Queued, true)
    );
    let again = h.tasks.submit(submit(spec, Some("t1"))).await.unwrap();
    assert!(!again.created);
    assert_eq!(h.broker.queue_stats("jobs").unwrap().total, 1);

    let got = h.tasks.receive("jobs", 10, None, Some("w1")).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].name.as_str(), &got[0].args, got[0].attempt),
        ("add", &json!([2, 3]), 1)
    );
    assert_eq!(h.tasks.get("t1").unwrap().state, TaskState::Running);

    let ok = TaskOutcome {
        receipt: got[0].receipt.clone(),
        ok: true,
        result: Some(json!(5)),
        ..TaskOutcome::default()
    };
    let t = h.tasks.post_result("t1", ok).await.unwrap();
    assert_eq!(t.state, TaskState::Succeeded);
    assert_eq!(t.result, Some(json!(5)));
    assert_eq!(t.attempts.len(), 1);
    assert_eq!(t.attempts[0].worker.as_deref(), Some("w1"));
    assert_eq!(h.broker.queue_stats("jobs").unwrap().total, 0);
    let waited = h
        .tasks
        .wait("t1", std::time::Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(waited.state, TaskState::Succeeded);
}

#[tokio::test]
async fn retries_with_backoff_then_dead_in_the_dlq() {
    let h = Harness::new();
    h.queue("jobs", QueueConfig::default());
    let spec = TaskSpec {
        max_attempts: Some(3),
        backoff_ms: Some(1000),
        ..TaskSpec::new("jobs", "flaky", json!(null))
    };
    h.tasks.submit(submit(spec, Some("t"))).await.unwrap();
    for attempt in 1..=3u32 {
        let got = h.tasks.receive("jobs", 1, None, Some("w1")).await.unwrap();
        assert_eq!(got.len(), 1, "attempt {attempt} delivered");
        assert_eq!(got[0].attempt, attempt);
        let t = h
            .tasks
            .post_result("t", fail(&got[0].receipt, &format!("boom {attempt}")))
            .await
            .unwrap();
        if attempt < 3 {
            assert_eq!(t.state, TaskState::Retrying);
            // Backoff: 1 s, then 2 s; nothing before it.
            assert!(h
                .tasks
                .receive("jobs", 1, None, None)
                .await
                .unwrap()
                .is_empty());
            h.advance(1000 << (attempt - 1)).await;
        } else {
            assert_eq!(t.state, TaskState::Dead);
            assert_eq!(t.error.as_deref(), Some("boom 3"));
            let errors: Vec<_> = t
                .attempts
                .iter()
                .map(|a| a.error.clone().unwrap())
                .collect();
            assert_eq!(errors, ["boom 1", "boom 2", "boom 3"]);
        }
    }
    assert_eq!(h.broker.queue_stats("jobs").unwrap().total, 0);
    let dead = h.broker.receive("jobs.dlq", 10, None).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, "t");
}

#[tokio::test]
async fn timeout_then_retry_and_heartbeat_extends() {
    let h = Harness::new();
    h.queue("jobs", QueueConfig::default());
    let spec = TaskSpec {
        timeout_ms: Some(5_000),
        ..TaskSpec::new("jobs", "slow", json!(1))
    };
    h.tasks.submit(submit(spec, Some("t"))).await.unwrap();
    let got = h.tasks.receive("jobs", 1, None, Some("w1")).await.unwrap();
    // A heartbeat at 4 s keeps it alive past 5 s.
    h.advance(4_000).await;
    h.tasks
        .heartbeat("t", &got[0].receipt, 5_000)
        .await
        .unwrap();
    h.advance(4_000).await;
    assert_eq!(h.tasks.get("t").unwrap().state, TaskState::Running);
    // No more heartbeats: the lease ends, the attempt is marked timed out, then redelivered.
    h.advance(2_000).await;
    let t = h.tasks.get("t").unwrap();
    assert_eq!(t.state, TaskState::Retrying);
    assert!(t.attempts[0]
        .error
        .as_deref()
        .unwrap()
        .contains("timed out"));
    let again = h.tasks.receive("jobs", 1, None, Some("w2")).await.unwrap();
    assert_eq!(again[0].attempt, 2);
    assert!(h
        .tasks
        .heartbeat("t", &got[0].receipt, 5_000)
        .await
        .is_err());
    let ok = TaskOutcome {
        receipt: again[0].receipt.clone(),
        ok: true,
        ..TaskOutcome::default()
    };
    let t = h.tasks.post_result("t", ok).await.unwrap();
    assert_eq!(t.state, TaskState::Succeeded);
    assert_eq!(t.attempts.len(), 2);
    assert_eq!(t.attempts[1].worker.as_deref(), Some("w2"));
}

#[tokio::test]
async fn cancel_a_queued_task_and_not_a_running_one() {
    let h = Harness::new();
    h.queue("jobs", QueueConfig::default());
    h.tasks
        .submit(submit(TaskSpec::new("jobs", "a", json!(1)), Some("a")))
        .await
        .unwrap();
    let t = h.tasks.cancel("a").await.unwrap();
    assert_eq!(t.state, TaskState::Cancelled);
    // Its message is acked unseen when it surfaces.
    assert!(h
        .tasks
        .receive("jobs", 10, None, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(h.broker.queue_stats("jobs").unwrap().total, 0);

    h.tasks
        .submit(submit(TaskSpec::new("jobs", "b", json!(1)), Some("b")))
        .await
        .unwrap();
    h.tasks.receive("jobs", 10, None, None).await.unwrap();
    assert!(matches!(
        h.tasks.cancel("b").await,
        Err(TaskError::Conflict(_))
    ));
}

#[tokio::test]
async fn unique_key_refuses_a_duplicate_while_one_is_queued_or_running() {
    let h = Harness::new();
    h.queue("jobs", QueueConfig::default());
    let spec = TaskSpec {
        unique_key: Some("report:42".into()),
        ..TaskSpec::new("jobs", "report", json!(42))
    };
    h.tasks.submit(submit(spec.clone(), None)).await.unwrap();
    assert!(matches!(
        h.tasks.submit(submit(spec.clone(), None)).await,
        Err(TaskError::Conflict(_))
    ));
    let got = h.tasks.receive("jobs", 1, None, None).await.unwrap();
    assert!(matches!(
        h.tasks.submit(submit(spec.clone(), None)).await,
        Err(TaskError::Conflict(_))
    ));
    let ok = TaskOutcome {
        receipt: got[0].receipt.clone(),
        ok: true,
        ..TaskOutcome::default()
    };
    h.tasks.post_result(&got[0].id, ok).await.unwrap();
    // Finished: the key is free again.
    h.tasks.submit(submit(spec, None)).await.unwrap();
}

#[tokio::test]
async fn rate_limit_spaces_out_deliveries_across_workers() {
    let h = Harness::new();
    h.queue("jobs", QueueConfig::default());
    h.tasks
        .set_rate_limit("email", RateLimit::per_second(2.0, 2))
        .await
        .unwrap();
    for i in 0..6 {
        h.tasks
            .submit(submit(TaskSpec::new("jobs", "email", json!(i)), None))
            .await
            .unwrap();
    }
    h.tasks
        .submit(submit(TaskSpec::new("jobs", "other", json!(0)), None))
        .await
        .unwrap();
    // Burst of 2 plus the unlimited task now; then one every 500 ms, whoever asks.
    let mut counts = Vec::new();
    for _ in 0..5 {
        let n = h
            .tasks
            .receive("jobs", 100, None, None)
            .await
            .unwrap()
            .len();
        counts.push(n);
        h.advance(500).await;
    }
    assert_eq!(counts, vec![3, 1, 1, 1, 1]);
}

#[tokio::test]
async fn tasks_survive_a_restart() {
    let mut h = Harness::new();
    h.queue("jobs", QueueConfig::default());
    h.tasks
        .submit(submit(
            TaskSpec::new("jobs", "a", json!({"x": 1})),
            Some("a"),
        ))
        .await
        .unwrap();
    h.tasks
        .submit(submit(TaskSpec::new("jobs", "b", json!(2)), Some("b")))
        .await
        .unwrap();
    let got = h.tasks.receive("jobs", 1, None, Some("w")).await.unwrap();
    let ok = TaskOutcome {
        receipt: got[0].receipt.clone(),
        ok: true,
        result: Some(json!("done")),
        ..TaskOutcome::default()
    };
    h.tasks.post_result("a", ok).await.unwrap();
    h.tasks.receive("jobs", 1, None, Some("w")).await.unwrap();
    h.restart();
    let a = h.tasks.get("a").unwrap();
    assert_eq!(
        (a.state, a.result),
        (TaskState::Succeeded, Some(json!("done")))
    );
    // b was running: its lease died with the server, so it is retrying and comes back.
    assert_eq!(h.tasks.get("b").unwrap().state, TaskState::Retrying);
    let again = h.tasks.receive("jobs", 1, None, None).await.unwrap();
    assert_eq!(again[0].id, "b");
    assert_eq!(again[0].attempt, 2);
}

#[tokio::test]
async fn results_expire_after_the_ttl() {
    let h = Harness::new();
    h.queue("jobs", QueueConfig::default());
    h.tasks
        .submit(submit(TaskSpec::new("jobs", "a", json!(1)), Some("a")))
        .await
        .unwrap();
    h.tasks.cancel("a").await.unwrap();
    h.advance(24 * 3600 * 1000 + 1).await;
    assert!(matches!(h.tasks.get("a"), Err(TaskError::NotFound { .. })));
}

#[tokio::test]
async fn bad_submissions_change_nothing() {
    let h = Harness::new();
    h.queue("jobs", QueueConfig::default());
    let cases = [
        TaskSpec::new("nope", "a", json!(1)),
        TaskSpec::new("../x", "a", json!(1)),
        TaskSpec::new("jobs", "", json!(1)),
        TaskSpec {
            timeout_ms: Some(1),
            ..TaskSpec::new("jobs", "a", json!(1))
        },
        TaskSpec {
            max_attempts: Some(0),
            ..TaskSpec::new("jobs", "a", json!(1))
        },
    ];
    for spec in cases {
        assert!(h.tasks.submit(submit(spec, None)).await.is_err());
    }
    assert_eq!(h.tasks.task_count(), 0);
    assert_eq!(h.broker.queue_stats("jobs").unwrap().total, 0);
}

/// Generated ids restarted from 1 per service (`t-<now>-<counter>-<pid>`): after a restart in
/// the same millisecond (a manual clock here; several servers in one test process, or pid 1 in
/// containers) a new task got the id of a live one, overwrote its record, and its publish was
/// refused by the broker's dedup (409) — which then forgot the original task too.
#[tokio::test]
async fn generated_ids_do_not_collide_across_a_restart() {
    let mut h = Harness::new();
    h.queue("jobs", QueueConfig::default());
    let spec = TaskSpec::new("jobs", "n", json!(1));
    let first = h.tasks.submit(submit(spec.clone(), None)).await.unwrap();
    h.restart();
    let second = h.tasks.submit(submit(spec, None)).await.unwrap();
    assert!(second.created);
    assert_ne!(first.id, second.id);
    assert_eq!(h.tasks.get(&first.id).unwrap().state, TaskState::Queued);
    assert_eq!(h.broker.queue_stats("jobs").unwrap().total, 2);
}

#[tokio::test]
async fn workflows_check_every_task_first_then_run_to_the_end() {
    use weir_tasks::{WorkflowSpec, WorkflowState};
    let h = Harness::new();
    h.queue("jobs", QueueConfig::default());
    let spec = |q: &str, name: &str, args| TaskSpec::new(q, name, args);
    // One bad member: nothing is submitted, no workflow exists.
    let bad = WorkflowSpec::Group(vec![
        spec("jobs", "add", json!([1, 1])),
        spec("nope", "add", json!([2, 2])),
    ]);
    assert!(h.tasks.start_workflow(Some("g".into()), bad).await.is_err());
    assert!(h.tasks.workflow("g").is_err());
    assert_eq!(h.tasks.task_count(), 0);

    let group = WorkflowSpec::Group(vec![
        spec("jobs", "add", json!([1, 1])),
        spec("jobs", "add", json!([2, 2])),
    ]);
    let w = h
        .tasks
        .start_workflow(Some("g".into()), group)
        .await
        .unwrap();
    assert_eq!(w.members, vec!["g.0".to_string(), "g.1".to_string()]);
    for d in h.tasks.receive("jobs", 10, None, None).await.unwrap() {
        let sum: i64 = d
            .args
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_i64())
            .sum();
        let ok = TaskOutcome {
            receipt: d.receipt,
            ok: true,
            result: Some(json!(sum)),
            ..TaskOutcome::default()
        };
        h.tasks.post_result(&d.id, ok).await.unwrap();
    }
    let w = h
        .tasks
        .wait_workflow("g", std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        (w.state, w.result),
        (WorkflowState::Succeeded, Some(json!([2, 4])))
    );
    // Starting it again returns it as it is.
    let again = h
        .tasks
        .start_workflow(
            Some("g".into()),
            WorkflowSpec::Group(vec![spec("jobs", "x", json!(0))]),
        )
        .await
        .unwrap();
    assert_eq!(again.state, WorkflowState::Succeeded);
}
