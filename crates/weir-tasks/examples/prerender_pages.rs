//! Pre-render expensive pages on a schedule (issue #5).
//!
//! A site has a few pages that are slow to build (a report that scans the database, a
//! leaderboard, a sitemap). Instead of rendering them per request, a Weir schedule submits a
//! `render_pages` task every minute; a worker (the Rust worker runtime, `weir_tasks::worker`)
//! renders each page and writes it into a static folder **atomically** (a temporary file in the
//! same folder, fsync, then `rename`), so the web server only ever serves a whole old page or a
//! whole new one.
//!
//! ```sh
//! cargo run --release -p weir -- serve                     # in another terminal
//! cargo run -p weir-tasks --features worker --example prerender_pages -- --out ./static
//! cargo run -p weir-tasks --features worker --example prerender_pages -- --once   # render once, exit
//! ```
//!
//! Flags: `--server HOST:PORT` (default 127.0.0.1:7480, or `WEIR_HTTP_ADDR`), `--out DIR`
//! (default `./prerendered`), `--cron` (fire with the cron `0 * * * * *` instead of
//! `every_ms: 60000`), `--once` (set everything up, render once right away, print, delete the
//! schedule again and exit: for tests). Without `--once` the schedule stays on the server after
//! the example stops (`weir schedule delete prerender` removes it).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use weir_tasks::worker::Worker;

const QUEUE: &str = "prerender";
const SCHEDULE: &str = "prerender";
const TASK: &str = "render_pages";
/// The pages to keep pre-rendered, and how long each takes to build (the "expensive" part).
const PAGES: &[(&str, u64)] = &[
    ("index", 120),
    ("pricing", 80),
    ("reports/monthly", 400),
    ("leaderboard", 250),
    ("sitemap", 150),
];

#[derive(Debug)]
struct Flags {
    server: String,
    out: PathBuf,
    cron: bool,
    once: bool,
}

fn flags() -> Result<Flags, String> {
    let mut f = Flags {
        server: std::env::var("WEIR_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:7480".into()),
        out: PathBuf::from("prerendered"),
        cron: false,
        once: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--server" => f.server = args.next().ok_or("--server needs HOST:PORT")?,
            "--out" => f.out = args.next().ok_or("--out needs a folder")?.into(),
            "--cron" => f.cron = true,
            "--once" => f.once = true,
            "-h" | "--help" => {
                return Err(
                    "usage: prerender_pages [--server HOST:PORT] [--out DIR] [--cron] [--once]"
                        .into(),
                )
            }
            other => return Err(format!("unknown flag {other:?} (try --help)")),
        }
    }
    f.server = f.server.trim_start_matches("http://").to_string();
    Ok(f)
}

/// The task's arguments: which pages to render (the schedule carries them).
#[derive(Debug, Serialize, Deserialize)]
struct RenderArgs {
    pages: Vec<String>,
}

/// One rendered page, as the task's result.
#[derive(Debug, Serialize, Deserialize)]
struct Rendered {
    page: String,
    path: String,
    bytes: usize,
    ms: u64,
}

/// "Expensive": stands in for database queries and templating.
async fn render(page: &str) -> String {
    let cost = PAGES.iter().find(|p| p.0 == page).map_or(100, |p| p.1);
    tokio::time::sleep(Duration::from_millis(cost)).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let rows: String = (1..=20)
        .map(|i| format!("    <tr><td>{i}</td><td>{page} row {i}</td></tr>\n"))
        .collect();
    format!(
        "<!doctype html>\n<html><head><title>{page}</title></head>\n<body>\n  <h1>{page}</h1>\n  \
         <p>pre-rendered at {now} ms since the epoch by a Weir task</p>\n  <table>\n{rows}  \
         </table>\n</body></html>\n"
    )
}

/// Writes `contents` to `path` so that readers see the old file or the new one, never a part:
/// a temporary file in the same folder, fsync, rename over the target, fsync the folder.
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("page");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    drop(f);
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(dir)?.sync_all()
}

/// The task handler: renders every page into `out`.
async fn render_pages(out: PathBuf, args: RenderArgs) -> Result<Vec<Rendered>, String> {
    let mut done = Vec::new();
    for page in &args.pages {
        if page
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        {
            return Err(format!("refusing page name {page:?}"));
        }
        let started = Instant::now();
        let html = render(page).await;
        let path = out.join(format!("{page}.html"));
        write_atomically(&path, html.as_bytes())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        let r = Rendered {
            page: page.clone(),
            path: path.display().to_string(),
            bytes: html.len(),
            ms: started.elapsed().as_millis() as u64,
        };
        println!(
            "  rendered {:<16} -> {} ({} bytes, {} ms)",
            r.page, r.path, r.bytes, r.ms
        );
        done.push(r);
    }
    Ok(done)
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
    let pages: Vec<String> = PAGES.iter().map(|p| p.0.to_string()).collect();

    // 1. The queue the tasks go to (its dead-letter queue comes with it).
    call(
        &http,
        reqwest::Method::PUT,
        format!("{base}/v1/queues/{QUEUE}"),
        Some(json!({ "max_attempts": 3 })),
    )
    .await?;
    // 2. The schedule: every minute, a `render_pages` task with the page list.
    let timing = if f.cron {
        json!({ "cron": "0 * * * * *" })
    } else {
        json!({ "every_ms": 60_000 })
    };
    let mut schedule = json!({
        "task": { "queue": QUEUE, "name": TASK, "args": { "pages": pages },
                  "timeout_ms": 60_000 },
    });
    if let (Some(s), Some(t)) = (schedule.as_object_mut(), timing.as_object()) {
        s.extend(t.clone());
    }
    let sch = call(
        &http,
        reqwest::Method::PUT,
        format!("{base}/v1/schedules/{SCHEDULE}"),
        Some(schedule),
    )
    .await?;
    println!(
        "schedule {SCHEDULE}: {} -> task {TASK} on queue {QUEUE}; next fire at {}",
        if f.cron {
            "cron 0 * * * * *"
        } else {
            "every 60 s"
        },
        sch["next_fire_at"].as_str().unwrap_or("?")
    );
    // 3. Render once right away rather than waiting for the first tick.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let first_id = format!("prerender-start-{now_ms}");
    let submitted = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/v1/tasks"),
        Some(json!({ "id": first_id, "queue": QUEUE, "name": TASK,
                     "args": { "pages": pages }, "timeout_ms": 60_000 })),
    )
    .await?;
    println!("submitted {} ({})", first_id, submitted["state"]);

    // 4. The worker: handles `render_pages` in the background of this process.
    let out = f.out.clone();
    let worker = Worker::new(base.clone(), QUEUE)
        .concurrency(1)
        .name(format!("prerender-{}", std::process::id()))
        .handler(TASK, move |args: RenderArgs| {
            let out = out.clone();
            async move {
                println!(
                    "render_pages: {} pages into {}",
                    args.pages.len(),
                    out.display()
                );
                render_pages(out, args).await
            }
        });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stop_rx.await;
    }));

    if !f.once {
        println!(
            "worker running; pages go to {} (Ctrl-C to stop)",
            f.out.display()
        );
        return running
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string());
    }

    // --once: wait for the first render's result, stop the worker gracefully, report.
    let started = Instant::now();
    let task = loop {
        let t = call(
            &http,
            reqwest::Method::GET,
            format!("{base}/v1/tasks/{first_id}?wait_ms=20000"),
            None,
        )
        .await?;
        let state = t["state"].as_str().unwrap_or("");
        if matches!(state, "succeeded" | "dead" | "cancelled") {
            break t;
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!("task {first_id} still {state} after 120 s"));
        }
    };
    let _ = stop_tx.send(());
    // A test run leaves nothing firing behind it.
    call(
        &http,
        reqwest::Method::DELETE,
        format!("{base}/v1/schedules/{SCHEDULE}"),
        None,
    )
    .await?;
    running
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if task["state"] != "succeeded" {
        return Err(format!("render failed: {task}"));
    }
    let rendered: Vec<Rendered> =
        serde_json::from_value(task["result"].clone()).map_err(|e| e.to_string())?;
    for r in &rendered {
        let on_disk = std::fs::metadata(&r.path).map_err(|e| format!("{}: {e}", r.path))?;
        if on_disk.len() as usize != r.bytes {
            return Err(format!("{} holds {} bytes", r.path, on_disk.len()));
        }
    }
    println!(
        "--once: task {first_id} succeeded in {:.1?}: {} pages in {}; schedule {SCHEDULE} \
         deleted again (run without --once to keep it firing)",
        started.elapsed(),
        rendered.len(),
        f.out.display()
    );
    Ok(())
}
