//! Schedules under a simulated clock: cron firing counts across DST changes, intervals, misfire
//! policies, pause/resume, and no double fire across a restart.

mod common;

use common::Harness;
use serde_json::json;
use weir_broker::{Clock as _, QueueConfig};
use weir_tasks::{MisfirePolicy, ScheduleSpec, ScheduleTarget, TaskSpec, Timing};

fn ms(s: &str) -> u64 {
    s.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
}

fn cron(expr: &str, tz: &str) -> Timing {
    Timing::Cron {
        expr: expr.into(),
        timezone: tz.into(),
    }
}

fn message(queue: &str) -> ScheduleTarget {
    ScheduleTarget::Message {
        queue: queue.into(),
        body: "tick".into(),
        key: None,
        headers: Default::default(),
    }
}

fn spec(timing: Timing, target: ScheduleTarget) -> ScheduleSpec {
    ScheduleSpec {
        timing,
        target,
        misfire: MisfirePolicy::Skip,
    }
}

/// Steps the clock by `step_ms` up to `until_ms`, running the scheduler at each step.
async fn run_until(h: &Harness, until_ms: u64, step_ms: u64) -> usize {
    let mut fired = 0;
    while h.clock.now_ms() < until_ms {
        h.clock.advance(step_ms);
        fired += h.scheduler.tick().await;
    }
    fired
}

fn published(h: &Harness, q: &str) -> u64 {
    h.broker.queue_stats(q).unwrap().total
}

#[tokio::test]
async fn cron_counts_across_spring_forward_and_fall_back() {
    // New York: 2024-03-10 02:00 → 03:00 (23-hour day); 2024-11-03 02:00 → 01:00 (25 hours).
    let h = Harness::at(ms("2024-03-09T05:00:00Z")); // 2024-03-09 00:00 EST
    h.queue("q", QueueConfig::default());
    h.queue("daily", QueueConfig::default());
    h.scheduler
        .put(
            "half-hourly",
            spec(cron("*/30 * * * *", "America/New_York"), message("q")),
        )
        .await
        .unwrap();
    h.scheduler
        .put(
            "at-0230",
            spec(cron("30 2 * * *", "America/New_York"), message("daily")),
        )
        .await
        .unwrap();
    // Through 2024-03-11 00:00 EDT (= 04:00Z): 48 + 46 half-hours (no 02:00, 02:30 on the 10th).
    run_until(&h, ms("2024-03-11T04:00:00Z"), 60_000).await;
    assert_eq!(published(&h, "q"), 48 + 46);
    // The 02:30 job runs once on each day, on the 10th just after the gap (03:00 EDT).
    assert_eq!(published(&h, "daily"), 2);

    let h = Harness::at(ms("2024-11-02T04:00:00Z")); // 2024-11-02 00:00 EDT
    h.queue("q", QueueConfig::default());
    h.queue("daily", QueueConfig::default());
    h.scheduler
        .put(
            "half-hourly",
            spec(cron("*/30 * * * *", "America/New_York"), message("q")),
        )
        .await
        .unwrap();
    h.scheduler
        .put(
            "at-0130",
            spec(cron("30 1 * * *", "America/New_York"), message("daily")),
        )
        .await
        .unwrap();
    // Through 2024-11-04 00:00 EST (= 05:00Z): 48 + 50 (01:00 and 01:30 happen twice).
    run_until(&h, ms("2024-11-04T05:00:00Z"), 60_000).await;
    assert_eq!(published(&h, "q"), 48 + 50);
    // A fixed-time job in the repeated hour runs once.
    assert_eq!(published(&h, "daily"), 2);
}

#[tokio::test]
async fn six_field_cron_and_intervals_fire_once_per_tick() {
    let h = Harness::at(ms("2024-01-01T00:00:00Z"));
    h.queue("q", QueueConfig::default());
    h.queue("i", QueueConfig::default());
    h.scheduler
        .put(
            "every-10s",
            spec(cron("*/10 * * * * *", "UTC"), message("q")),
        )
        .await
        .unwrap();
    let (_, created, next) = h
        .scheduler
        .put(
            "every-1500",
            spec(Timing::Every { every_ms: 1500 }, message("i")),
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!(next, Some(ms("2024-01-01T00:00:01.500Z")));
    // Ticking every 100 ms for a minute: each tick fires exactly once, however often we look.
    run_until(&h, ms("2024-01-01T00:01:00Z"), 100).await;
    assert_eq!(published(&h, "q"), 6);
    assert_eq!(published(&h, "i"), 40);
    let (s, _) = h.scheduler.get("every-10s").unwrap();
    assert_eq!(s.fired_total, 6);
    assert_eq!(s.last_tick_ms, Some(ms("2024-01-01T00:01:00Z")));
}

#[tokio::test]
async fn no_double_fire_across_a_restart_even_when_the_tick_was_not_journaled() {
    let mut h = Harness::at(ms("2024-01-01T00:00:00Z"));
    h.queue("q", QueueConfig::default());
    h.scheduler
        .put("s", spec(cron("* * * * *", "UTC"), message("q")))
        .await
        .unwrap();
    run_until(&h, ms("2024-01-01T00:03:00Z"), 1000).await;
    assert_eq!(published(&h, "q"), 3);
    h.restart();
    // Same minute after the restart: nothing new.
    h.scheduler.tick().await;
    run_until(&h, ms("2024-01-01T00:03:30Z"), 1000).await;
    assert_eq!(h.broker.queue_stats("q").unwrap().total, 3);

    // Simulate a crash between the publish and the journal entry: publish the next tick's
    // message by hand with the tick's id, then let the restarted scheduler fire that tick.
    let tick = ms("2024-01-01T00:04:00Z");
    let msg = weir_broker::NewMessage {
        id: Some(weir_tasks::schedule::tick_id("s", tick)),
        ..weir_broker::NewMessage::new("tick")
    };
    h.broker
        .publish("q", vec![msg])
        .unwrap()
        .durable
        .await
        .unwrap();
    h.restart();
    run_until(&h, tick + 5_000, 1000).await;
    assert_eq!(
        h.broker.queue_stats("q").unwrap().total,
        4,
        "the re-fire was deduplicated"
    );
}

#[tokio::test]
async fn misfire_skip_and_fire_once_after_downtime() {
    let mut h = Harness::at(ms("2024-01-01T00:00:00Z"));
    h.queue("skip", QueueConfig::default());
    h.queue("once", QueueConfig::default());
    h.scheduler
        .put("a", spec(cron("*/5 * * * *", "UTC"), message("skip")))
        .await
        .unwrap();
    let once = ScheduleSpec {
        misfire: MisfirePolicy::FireOnce,
        ..spec(cron("*/5 * * * *", "UTC"), message("once"))
    };
    h.scheduler.put("b", once).await.unwrap();
    run_until(&h, ms("2024-01-01T00:05:00Z"), 1000).await;
    assert_eq!((published(&h, "skip"), published(&h, "once")), (1, 1));
    // Down for an hour (12 ticks missed), back at 01:07.
    h.clock.set(ms("2024-01-01T01:07:00Z"));
    h.restart();
    h.scheduler.tick().await;
    // skip: 01:05 is 2 minutes late (> grace), not fired; fire_once: fired once.
    assert_eq!((published(&h, "skip"), published(&h, "once")), (1, 2));
    // Both resume normally at 01:10.
    run_until(&h, ms("2024-01-01T01:10:00Z"), 1000).await;
    assert_eq!((published(&h, "skip"), published(&h, "once")), (2, 3));
}

#[tokio::test]
async fn pause_resume_delete_and_task_targets() {
    let h = Harness::at(ms("2024-01-01T00:00:00Z"));
    h.queue("jobs", QueueConfig::default());
    let target = ScheduleTarget::Task(TaskSpec::new("jobs", "render", json!({"page": "home"})));
    h.scheduler
        .put("render", spec(Timing::Every { every_ms: 60_000 }, target))
        .await
        .unwrap();
    run_until(&h, ms("2024-01-01T00:02:00Z"), 1000).await;
    let id = weir_tasks::schedule::tick_id("render", ms("2024-01-01T00:02:00Z"));
    let t = h.tasks.get(&id).unwrap();
    assert_eq!(t.spec.name, "render");
    assert_eq!(published(&h, "jobs"), 2);
    h.scheduler.pause("render").await.unwrap();
    assert_eq!(h.scheduler.next_fire_ms("render"), None);
    run_until(&h, ms("2024-01-01T00:05:30Z"), 1000).await;
    assert_eq!(published(&h, "jobs"), 2);
    h.scheduler.resume("render").await.unwrap();
    run_until(&h, ms("2024-01-01T00:06:00Z"), 1000).await;
    assert_eq!(published(&h, "jobs"), 3, "only the tick after the resume");
    h.scheduler.delete("render").await.unwrap();
    run_until(&h, ms("2024-01-01T00:09:00Z"), 1000).await;
    assert_eq!(published(&h, "jobs"), 3);
    assert!(h.scheduler.get("render").is_err());
    // Bad specs are refused.
    assert!(h
        .scheduler
        .put("x", spec(cron("* * *", "UTC"), message("jobs")))
        .await
        .is_err());
    assert!(h
        .scheduler
        .put("x", spec(cron("* * * * *", "No/Where"), message("jobs")))
        .await
        .is_err());
    assert!(h
        .scheduler
        .put("x", spec(cron("* * * * *", "UTC"), message("missing")))
        .await
        .is_err());
    assert!(h
        .scheduler
        .put("../x", spec(cron("* * * * *", "UTC"), message("jobs")))
        .await
        .is_err());
}
