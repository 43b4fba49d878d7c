//! `weir task submit|status|cancel` and `weir schedule create|list|pause|resume|delete`
//! (feature `cli`): clap subcommands that talk to a running server over HTTP and print its JSON
//! answers.

use std::time::Duration;

use serde_json::{json, Value};

/// `weir task ...`.
#[derive(Debug, clap::Subcommand)]
pub enum TaskCommand {
    /// Submit a task and print its id and state.
    Submit {
        /// The task name.
        name: String,
        /// The queue its message goes to.
        #[arg(long, short)]
        queue: String,
        /// Arguments as JSON (default null).
        #[arg(long)]
        args: Option<String>,
        /// A task id (submitting the same id twice is a no-op).
        #[arg(long)]
        id: Option<String>,
        /// Deliver no sooner than this many milliseconds from now.
        #[arg(long)]
        delay_ms: Option<u64>,
        /// Most attempts (capped by the queue's).
        #[arg(long)]
        max_attempts: Option<u32>,
        /// The lease per attempt, in milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Refuse the task while another with this key is unfinished.
        #[arg(long)]
        unique_key: Option<String>,
        /// Then wait up to this many milliseconds for a final state and print the task.
        #[arg(long)]
        wait_ms: Option<u64>,
    },
    /// Print a task's state, attempts and result.
    Status {
        /// The task id.
        id: String,
        /// Wait up to this many milliseconds for a final state.
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
    },
    /// Cancel a queued or retrying task.
    Cancel {
        /// The task id.
        id: String,
    },
}

/// `weir schedule ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Create or replace a schedule (cron or interval; a task or a message).
    Create {
        /// The schedule name.
        name: String,
        /// Cron expression: 5 fields, or 6 with leading seconds.
        #[arg(long, conflicts_with = "every_ms")]
        cron: Option<String>,
        /// Fixed interval in milliseconds.
        #[arg(long)]
        every_ms: Option<u64>,
        /// IANA time zone of the cron expression (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// The target queue.
        #[arg(long, short)]
        queue: String,
        /// Enqueue a task of this name...
        #[arg(long, conflicts_with = "body")]
        task: Option<String>,
        /// ...with these JSON arguments.
        #[arg(long, requires = "task")]
        args: Option<String>,
        /// Or publish a message with this body.
        #[arg(long)]
        body: Option<String>,
        /// Missed ticks: `skip` (default) or `fire_once`.
        #[arg(long)]
        misfire: Option<String>,
    },
    /// List schedules with their next fire time.
    List,
    /// Stop firing a schedule.
    Pause {
        /// The schedule name.
        name: String,
    },
    /// Resume a paused schedule (ticks in the pause are not fired).
    Resume {
        /// The schedule name.
        name: String,
    },
    /// Delete a schedule.
    Delete {
        /// The schedule name.
        name: String,
    },
}

/// A CLI failure: the server's answer or the connection.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input on the command line.
    #[error("{0}")]
    Usage(String),
    /// The request failed to go through.
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error.
    #[error("server answered {status}: {body}")]
    Server {
        /// The HTTP status.
        status: u16,
        /// The error body.
        body: String,
    },
}

/// Where the server is and how to authenticate: the HTTP client of every `weir` command that
/// talks to a running server (the `weir` crate adds its retries on `busy` on top of [`Api::send`]).
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    addr: String,
    token: Option<String>,
}

impl Api {
    /// `http_addr` is `host:port` or a URL; `token` a bearer token when auth is on.
    pub fn new(http_addr: &str, token: Option<String>) -> Result<Api, CliError> {
        let base = if http_addr.starts_with("http://") || http_addr.starts_with("https://") {
            http_addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{http_addr}")
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Api {
            http,
            base,
            addr: http_addr.to_string(),
            token,
        })
    }

    /// The server address as given to [`Api::new`], for messages.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one request to `path` (e.g. `/v1/tasks`) with `body` as JSON and the bearer token,
    /// and returns the response whatever its status; no retries.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req.send().await
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CliError> {
        let resp = self.send(method, path, body.as_ref()).await?;
        let status = resp.status();
        let text = resp.text().await?;
        if !status.is_success() {
            return Err(CliError::Server {
                status: status.as_u16(),
                body: text,
            });
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn parse_json(what: &str, s: Option<String>) -> Result<Value, CliError> {
    match s {
        None => Ok(Value::Null),
        Some(s) => serde_json::from_str(&s)
            .map_err(|e| CliError::Usage(format!("--{what} is not JSON: {e}"))),
    }
}

fn print(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn insert_some(obj: &mut Value, key: &str, v: Option<Value>) {
    if let (Some(o), Some(v)) = (obj.as_object_mut(), v) {
        o.insert(key.into(), v);
    }
}

/// Runs a `weir task` subcommand.
pub async fn run_task(cmd: TaskCommand, api: &Api) -> Result<(), CliError> {
    use reqwest::Method;
    match cmd {
        TaskCommand::Submit {
            name,
            queue,
            args,
            id,
            delay_ms,
            max_attempts,
            timeout_ms,
            unique_key,
            wait_ms,
        } => {
            let mut body =
                json!({ "queue": queue, "name": name, "args": parse_json("args", args)? });
            insert_some(&mut body, "id", id.map(Value::from));
            insert_some(&mut body, "delay_ms", delay_ms.map(Value::from));
            insert_some(&mut body, "max_attempts", max_attempts.map(Value::from));
            insert_some(&mut body, "timeout_ms", timeout_ms.map(Value::from));
            insert_some(&mut body, "unique_key", unique_key.map(Value::from));
            let out = api.call(Method::POST, "/v1/tasks", Some(body)).await?;
            match (wait_ms, out["id"].as_str()) {
                (Some(w), Some(id)) => {
                    let t = api
                        .call(Method::GET, &format!("/v1/tasks/{id}?wait_ms={w}"), None)
                        .await?;
                    print(&t);
                }
                _ => print(&out),
            }
        }
        TaskCommand::Status { id, wait_ms } => {
            let t = api
                .call(
                    Method::GET,
                    &format!("/v1/tasks/{id}?wait_ms={wait_ms}"),
                    None,
                )
                .await?;
            print(&t);
        }
        TaskCommand::Cancel { id } => {
            let t = api
                .call(Method::POST, &format!("/v1/tasks/{id}/cancel"), None)
                .await?;
            print(&t);
        }
    }
    Ok(())
}

/// Runs a `weir schedule` subcommand.
pub async fn run_schedule(cmd: ScheduleCommand, api: &Api) -> Result<(), CliError> {
    use reqwest::Method;
    let out = match cmd {
        ScheduleCommand::Create {
            name,
            cron,
            every_ms,
            timezone,
            queue,
            task,
            args,
            body,
            misfire,
        } => {
            let mut req = json!({});
            insert_some(&mut req, "cron", cron.map(Value::from));
            insert_some(&mut req, "every_ms", every_ms.map(Value::from));
            insert_some(&mut req, "timezone", timezone.map(Value::from));
            insert_some(&mut req, "misfire", misfire.map(Value::from));
            match (task, body) {
                (Some(t), None) => insert_some(
                    &mut req,
                    "task",
                    Some(json!({ "queue": queue, "name": t, "args": parse_json("args", args)? })),
                ),
                (None, Some(b)) => insert_some(
                    &mut req,
                    "message",
                    Some(json!({ "queue": queue, "body": b })),
                ),
                _ => {
                    return Err(CliError::Usage(
                        "give --task NAME (with --args) or --body TEXT".into(),
                    ))
                }
            }
            api.call(Method::PUT, &format!("/v1/schedules/{name}"), Some(req))
                .await?
        }
        ScheduleCommand::List => api.call(Method::GET, "/v1/schedules", None).await?,
        ScheduleCommand::Pause { name } => {
            api.call(Method::POST, &format!("/v1/schedules/{name}/pause"), None)
                .await?
        }
        ScheduleCommand::Resume { name } => {
            api.call(Method::POST, &format!("/v1/schedules/{name}/resume"), None)
                .await?
        }
        ScheduleCommand::Delete { name } => {
            api.call(Method::DELETE, &format!("/v1/schedules/{name}"), None)
                .await?;
            json!({ "deleted": true })
        }
    };
    print(&out);
    Ok(())
}
