//! Post a tweet, answer at once, fan out in the background (issue #5).
//!
//! `post_tweet` is what an HTTP handler of a social app would do on `POST /tweets`: store the
//! tweet (one fast write), hand the slow part — writing its id into every follower's timeline —
//! to Weir as a **group** workflow of per-follower-shard tasks, and return `202 Accepted` with the
//! tweet id. The request's latency no longer depends on how many followers the author has.
//! Workers (the Rust worker runtime, `weir_tasks::worker`, here in the same process) deliver the
//! shards in parallel, with retries if a shard fails.
//!
//! ```sh
//! cargo run --release -p weir -- serve                     # in another terminal
//! cargo run -p weir-tasks --features worker --example post_tweet
//! cargo run -p weir-tasks --features worker --example post_tweet -- --followers 50000 --tweets 5
//! ```
//!
//! Flags: `--server HOST:PORT` (default 127.0.0.1:7480, or `WEIR_HTTP_ADDR`), `--followers N`
//! (default 20000), `--shard-size N` (default 1000), `--tweets N` (default 3), `--workers N`
//! (handlers at once, default 8).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use weir_tasks::worker::Worker;

const QUEUE: &str = "timelines";
const TASK: &str = "deliver_shard";
/// What writing one follower's timeline costs (a row insert in a real database).
const WRITE_COST: Duration = Duration::from_micros(40);

#[derive(Debug)]
struct Flags {
    server: String,
    followers: u64,
    shard_size: u64,
    tweets: u64,
    workers: usize,
}

fn flags() -> Result<Flags, String> {
    let mut f = Flags {
        server: std::env::var("WEIR_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:7480".into()),
        followers: 20_000,
        shard_size: 1_000,
        tweets: 3,
        workers: 8,
    };
    let mut args = std::env::args().skip(1);
    let num = |v: Option<String>, flag: &str| -> Result<u64, String> {
        v.and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{flag} needs a positive number"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--server" => f.server = args.next().ok_or("--server needs HOST:PORT")?,
            "--followers" => f.followers = num(args.next(), "--followers")?,
            "--shard-size" => f.shard_size = num(args.next(), "--shard-size")?,
            "--tweets" => f.tweets = num(args.next(), "--tweets")?,
            "--workers" => f.workers = num(args.next(), "--workers")? as usize,
            "-h" | "--help" => {
                return Err("usage: post_tweet [--server HOST:PORT] [--followers N] \
                            [--shard-size N] [--tweets N] [--workers N]"
                    .into())
            }
            other => return Err(format!("unknown flag {other:?} (try --help)")),
        }
    }
    f.server = f.server.trim_start_matches("http://").to_string();
    Ok(f)
}

/// The app's database, in memory for the example: tweets and every user's home timeline.
#[derive(Debug, Default)]
struct Db {
    tweets: HashMap<String, Tweet>,
    timelines: HashMap<u64, Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tweet {
    id: String,
    author: String,
    text: String,
}

/// The body of `POST /tweets`.
#[derive(Debug)]
struct PostTweet {
    author: String,
    text: String,
}

/// The answer: 202 with the tweet id; delivery continues in the background.
#[derive(Debug)]
struct Accepted {
    status: u16,
    tweet_id: String,
    fanout: String,
    shards: u64,
}

/// One fan-out task: deliver `tweet_id` to followers `[from, to)` of its author.
#[derive(Debug, Serialize, Deserialize)]
struct ShardArgs {
    tweet_id: String,
    shard: u64,
    from: u64,
    to: u64,
}

/// A shard's result.
#[derive(Debug, Serialize, Deserialize)]
struct ShardDone {
    shard: u64,
    delivered: u64,
}

/// The app: its database, the follower count of the (single) author, and a Weir client.
struct App {
    db: Arc<Mutex<Db>>,
    followers: u64,
    shard_size: u64,
    base: String,
    http: reqwest::Client,
}

/// `POST /tweets`: store, submit the fan-out, answer. Nothing here grows with the followers
/// except the list of shard specs (one per `shard_size` followers) sent in one request.
async fn post_tweet(app: &App, req: PostTweet) -> Result<Accepted, String> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let seq = app.db.lock().map_err(|e| e.to_string())?.tweets.len();
    let tweet = Tweet {
        id: format!("t{now_ms}-{seq}"),
        author: req.author,
        text: req.text,
    };
    app.db
        .lock()
        .map_err(|e| e.to_string())?
        .tweets
        .insert(tweet.id.clone(), tweet.clone());
    let shards: Vec<Value> = (0..app.followers.div_ceil(app.shard_size))
        .map(|s| {
            let args = ShardArgs {
                tweet_id: tweet.id.clone(),
                shard: s,
                from: s * app.shard_size,
                to: ((s + 1) * app.shard_size).min(app.followers),
            };
            json!({ "queue": QUEUE, "name": TASK, "args": args, "max_attempts": 5 })
        })
        .collect();
    let n = shards.len() as u64;
    // The workflow id is derived from the tweet: a retried request submits nothing twice.
    let fanout = format!("fanout-{}", tweet.id);
    call(
        &app.http,
        reqwest::Method::POST,
        format!("{}/v1/workflows", app.base),
        Some(json!({ "id": fanout, "group": shards })),
    )
    .await?;
    Ok(Accepted {
        status: 202,
        tweet_id: tweet.id,
        fanout,
        shards: n,
    })
}

/// The task handler: writes the tweet into each follower's timeline of its shard.
async fn deliver_shard(db: Arc<Mutex<Db>>, args: ShardArgs) -> Result<ShardDone, String> {
    // Stands in for the database round trips of a real timeline write.
    tokio::time::sleep(WRITE_COST * (args.to - args.from) as u32).await;
    let mut db = db.lock().map_err(|e| e.to_string())?;
    if !db.tweets.contains_key(&args.tweet_id) {
        // Deleted before its fan-out ran (or left on the queue by an earlier run of this
        // example, whose in-memory database is gone): nothing to deliver, nothing to retry.
        return Ok(ShardDone {
            shard: args.shard,
            delivered: 0,
        });
    }
    // Idempotent: a retried shard (a worker died after writing) adds nothing twice.
    for follower in args.from..args.to {
        let timeline = db.timelines.entry(follower).or_default();
        if !timeline.contains(&args.tweet_id) {
            timeline.push(args.tweet_id.clone());
        }
    }
    Ok(ShardDone {
        shard: args.shard,
        delivered: args.to - args.from,
    })
}

/// One HTTP call; errors carry the status and the server's message.
async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut req = http.request(method.clone(), &url);
    if let Some(b) = &body {
        req = req.json(b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| format!("{method} {url}: {e} (is `weir serve` running?)"))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{method} {url}: {status}: {text}"));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let f = flags()?;
    let base = format!("http://{}", f.server);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    call(
        &http,
        reqwest::Method::PUT,
        format!("{base}/v1/queues/{QUEUE}"),
        Some(json!({ "max_attempts": 5 })),
    )
    .await?;
    let app = App {
        db: Arc::new(Mutex::new(Db::default())),
        followers: f.followers,
        shard_size: f.shard_size,
        base: base.clone(),
        http,
    };

    // The background workers (in a real deployment: separate processes or machines).
    let db = app.db.clone();
    let worker = Worker::new(base.clone(), QUEUE)
        .concurrency(f.workers)
        .prefetch(f.workers)
        .name(format!("timeline-worker-{}", std::process::id()))
        .handler(TASK, move |args: ShardArgs| deliver_shard(db.clone(), args));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stop_rx.await;
    }));

    println!(
        "author has {} followers in shards of {}; writing every timeline inline in the request \
         would take ~{:.0?}",
        f.followers,
        f.shard_size,
        WRITE_COST * f.followers as u32
    );
    let mut posted = Vec::new();
    for i in 0..f.tweets {
        let started = Instant::now();
        let answer = post_tweet(
            &app,
            PostTweet {
                author: "alice".into(),
                text: format!("hello #{i} from the post_tweet example"),
            },
        )
        .await?;
        let took = started.elapsed();
        let returned_at = Instant::now();
        println!(
            "POST /tweets -> {} {} in {:.1?} (fan-out {} = {} shard tasks, running in the \
             background)",
            answer.status, answer.tweet_id, took, answer.fanout, answer.shards
        );
        posted.push((answer, returned_at));
    }

    // Meanwhile the workers deliver; wait for each fan-out to finish and report.
    for (answer, returned_at) in &posted {
        let wf = loop {
            let wf = call(
                &app.http,
                reqwest::Method::GET,
                format!("{base}/v1/workflows/{}?wait_ms=20000", answer.fanout),
                None,
            )
            .await?;
            if wf["state"] != "running" {
                break wf;
            }
            if returned_at.elapsed() > Duration::from_secs(300) {
                return Err(format!("{} still running after 300 s", answer.fanout));
            }
        };
        if wf["state"] != "succeeded" {
            return Err(format!("fan-out {} failed: {wf}", answer.fanout));
        }
        let done: Vec<ShardDone> =
            serde_json::from_value(wf["result"].clone()).map_err(|e| e.to_string())?;
        let delivered: u64 = done.iter().map(|d| d.delivered).sum();
        println!(
            "  {}: delivered to {delivered} timelines by {} shard tasks, done {:.1?} after the \
             request returned",
            answer.tweet_id,
            done.len(),
            returned_at.elapsed()
        );
    }
    let _ = stop_tx.send(());
    running
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;

    // Every follower's timeline holds every tweet, newest last.
    let db = app.db.lock().map_err(|e| e.to_string())?;
    let want: Vec<&str> = posted.iter().map(|(a, _)| a.tweet_id.as_str()).collect();
    let complete = (0..f.followers)
        .filter(|u| {
            let mut got: Vec<&str> = db
                .timelines
                .get(u)
                .map(|t| t.iter().map(String::as_str).collect())
                .unwrap_or_default();
            got.sort_unstable();
            let mut w = want.clone();
            w.sort_unstable();
            got == w
        })
        .count();
    println!(
        "{complete}/{} followers have all {} tweets in their timeline",
        f.followers,
        want.len()
    );
    if complete as u64 != f.followers {
        return Err("some timelines are incomplete".into());
    }
    Ok(())
}
