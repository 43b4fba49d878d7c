//! Schedules over real HTTP: create (201) / replace (200) with `next_fire_at`, firing a message
//! and a task target on a real clock, list, pause, resume, delete, and bad input.

mod common;

use std::time::Duration;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn schedules_fire_pause_resume_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    s.call(Method::PUT, "/v1/queues/ticks", Some(json!({})))
        .await;
    let (st, out, _) = s
        .call(
            Method::PUT,
            "/v1/schedules/every-second",
            Some(json!({"every_ms": 1000, "message": {"queue": "ticks", "body": "tick"}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{out}");
    assert!(out["next_fire_at"].as_str().unwrap().ends_with('Z'));
    let (st, out, _) = s
        .call(
            Method::PUT,
            "/v1/schedules/cron-task",
            Some(json!({"cron": "* * * * * *", "timezone": "Europe/Paris",
                        "task": {"queue": "ticks", "name": "render", "args": {"page": 1}}})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{out}");
    assert_eq!(out["timezone"], "Europe/Paris");
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let (_, list, _) = s.call(Method::GET, "/v1/schedules", None).await;
    let fired: Vec<u64> = list["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["fired"].as_u64().unwrap())
        .collect();
    assert!(fired.iter().all(|f| (2..=3).contains(f)), "{list}");
    let (_, q, _) = s.call(Method::GET, "/v1/queues/ticks", None).await;
    assert_eq!(q["total"].as_u64().unwrap(), fired.iter().sum::<u64>());

    let (st, p, _) = s
        .call(Method::POST, "/v1/schedules/every-second/pause", None)
        .await;
    assert_eq!(
        (st, p["paused"].clone(), p["next_fire_at"].clone()),
        (StatusCode::OK, json!(true), json!(null))
    );
    let (_, before, _) = s
        .call(Method::GET, "/v1/schedules/every-second", None)
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, after, _) = s
        .call(Method::GET, "/v1/schedules/every-second", None)
        .await;
    assert_eq!(before["fired"], after["fired"]);
    let (_, r, _) = s
        .call(Method::POST, "/v1/schedules/every-second/resume", None)
        .await;
    assert_eq!(r["paused"], false);
    // Replacing with the same spec is 200.
    let (st, _, _) = s
        .call(
            Method::PUT,
            "/v1/schedules/every-second",
            Some(json!({"every_ms": 1000, "message": {"queue": "ticks", "body": "tick"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = s
        .call(Method::DELETE, "/v1/schedules/every-second", None)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _, _) = s
        .call(Method::GET, "/v1/schedules/every-second", None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    for bad in [
        json!({"cron": "* * *", "message": {"queue": "ticks", "body": "x"}}),
        json!({"cron": "* * * * *", "timezone": "Nowhere/Else", "message": {"queue": "ticks", "body": "x"}}),
        json!({"every_ms": 5, "message": {"queue": "ticks", "body": "x"}}),
        json!({"cron": "* * * * *", "every_ms": 1000, "message": {"queue": "ticks", "body": "x"}}),
        json!({"every_ms": 1000}),
        json!({"every_ms": 1000, "message": {"queue": "ticks"}}),
        json!({"every_ms": 1000, "message": {"queue": "ticks", "body": "x"}, "misfire": "later"}),
    ] {
        let (st, e, _) = s
            .call(Method::PUT, "/v1/schedules/bad", Some(bad.clone()))
            .await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {e}");
    }
    let (st, _, _) = s
        .call(
            Method::PUT,
            "/v1/schedules/x",
            Some(json!({"every_ms": 1000, "message": {"queue": "missing", "body": "x"}})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn a_schedule_survives_a_restart_without_double_firing() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    s.call(Method::PUT, "/v1/queues/ticks", Some(json!({})))
        .await;
    s.call(
        Method::PUT,
        "/v1/schedules/sec",
        Some(json!({"every_ms": 1000, "message": {"queue": "ticks", "body": "t"}})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2300)).await;
    s.stop().await;
    let s = TestServer::start(dir.path()).await;
    let (_, sch, _) = s.call(Method::GET, "/v1/schedules/sec", None).await;
    let fired_before = sch["fired"].as_u64().unwrap();
    assert!(fired_before >= 2, "{sch}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, sch, _) = s.call(Method::GET, "/v1/schedules/sec", None).await;
    let (_, q, _) = s.call(Method::GET, "/v1/queues/ticks", None).await;
    // Every fired tick is exactly one stored message.
    assert_eq!(q["total"], sch["fired"], "{q} {sch}");
    s.stop().await;
}
