//! SIGKILL the relay at random moments while it publishes thousands of rows: after restarts every
//! row is delivered, each message id exactly once (Weir's dedup absorbs the re-publishes), in
//! order per key.
//!
//! The relay child is this very test binary, re-executed with `CHILD_ENV` set and
//! `--exact kill_child_relay`: without the variable that test does nothing.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{consume, TestDb, Weir};
use rand::Rng as _;
use serde_json::json;
use weir_outbox::{Relay, RelayConfig};

const CHILD_ENV: &str = "WEIR_OUTBOX_KILL_CHILD";
const CHILD_DB_ENV: &str = "WEIR_OUTBOX_KILL_CHILD_DB";
const CHILD_WEIR_ENV: &str = "WEIR_OUTBOX_KILL_CHILD_WEIR";
const ROWS: usize = 6000;
const KEYS: usize = 16;
const KILLS: usize = 12;

/// The relay child: runs a relay until killed. A no-op in a normal test run.
#[tokio::test]
async fn kill_child_relay() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let db = std::env::var(CHILD_DB_ENV).unwrap();
    let weir = std::env::var(CHILD_WEIR_ENV).unwrap();
    let mut config = RelayConfig::new(db, weir);
    // Small batches: many commit points to be killed between.
    config.batch_size = 50;
    config.poll_interval = Duration::from_millis(100);
    let relay = Relay::new(config).unwrap();
    relay.run(std::future::pending()).await.unwrap();
}

fn spawn_child(db_url: &str, weir_url: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill_child_relay",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env(CHILD_DB_ENV, db_url)
        .env(CHILD_WEIR_ENV, weir_url)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn sigkill(child: &mut Child) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: sending a signal to our own child process, which has not been reaped yet.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill failed");
    child.wait().unwrap();
}

#[tokio::test]
async fn sigkilled_relay_delivers_every_row_exactly_once_after_restart() {
    common::init_tracing();
    let db = TestDb::create().await;
    let weir = Weir::start().await;
    weir.create_queue("payments", json!({})).await;
    let ids = common::insert_rows(&db, "payments", ROWS, KEYS).await;

    let mut kills_mid_publish = 0;
    for round in 0..KILLS {
        let mut child = spawn_child(&db.url, &weir.url);
        let wait_ms = rand::thread_rng().gen_range(20..300);
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        sigkill(&mut child);
        let pending = db.count("sent_at IS NULL").await;
        if pending > 0 && pending < ROWS as i64 {
            kills_mid_publish += 1;
        }
        eprintln!("round {round}: killed after {wait_ms} ms, {pending} rows pending");
        if pending == 0 {
            break;
        }
    }
    // A last relay that is allowed to finish, then killed too.
    let started = Instant::now();
    let mut child = spawn_child(&db.url, &weir.url);
    while db.count("sent_at IS NULL").await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "relay did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigkill(&mut child);
    assert!(
        kills_mid_publish > 0,
        "no kill landed while rows were being published"
    );

    let received = consume(&weir.url, "payments", ROWS, Duration::from_secs(20)).await;
    common::assert_exactly_once_in_key_order(&received, &ids);

    // Another relay finds nothing to do.
    let mut relay = Relay::new(RelayConfig::new(&db.url, &weir.url)).unwrap();
    assert_eq!(relay.drain().await.unwrap(), 0);
    drop(relay);
    weir.stop().await;
    db.drop_db().await;
}
