//! The HTTP/JSON API (DESIGN §4): routing, shared state, the connection-limited listener.
//!
//! Map: [`queues`] has the queue handlers, [`wire`] the JSON shapes, [`extract`] the extractors
//! that turn bad input into precise 400/413 errors, [`error`] the error body, [`openapi`] the
//! served OpenAPI document.

mod consume;
pub mod error;
pub mod extract;
mod listener;
pub mod openapi;
pub mod queues;
pub mod schedules;
pub mod stream_wire;
pub mod streams;
pub mod tasks;
pub mod topics;
pub mod wire;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::{any, get, post, put};
use axum::Router;
use tokio::sync::watch;
use weir_broker::Broker;

use crate::metrics::Metrics;
use error::ApiError;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The broker.
    pub broker: Arc<Broker>,
    /// Server-side metrics (latency histograms).
    pub metrics: Arc<Metrics>,
    /// Largest request body accepted, in bytes.
    pub max_http_body_bytes: usize,
    /// Tasks (submit, status, results, workflows, rate limits).
    pub tasks: Arc<weir_tasks::TaskService>,
    /// Schedules.
    pub scheduler: Arc<weir_tasks::Scheduler>,
}

impl AppState {
    /// Bundles the state.
    pub fn new(
        broker: Arc<Broker>,
        metrics: Arc<Metrics>,
        max_http_body_bytes: usize,
        tasks: Arc<weir_tasks::TaskService>,
        scheduler: Arc<weir_tasks::Scheduler>,
    ) -> AppState {
        AppState {
            broker,
            metrics,
            max_http_body_bytes,
            tasks,
            scheduler,
        }
    }

    /// Wall-clock milliseconds since the Unix epoch.
    pub fn clock_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// The full router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/v1/queues", get(queues::list_queues))
        .route(
            "/v1/queues/{name}",
            put(queues::put_queue)
                .get(queues::get_queue)
                .delete(queues::delete_queue),
        )
        .route("/v1/queues/{name}/messages", post(queues::publish))
        .route("/v1/queues/{name}/receive", post(queues::receive))
        .route("/v1/queues/{name}/ack", post(queues::ack))
        .route("/v1/queues/{name}/nack", post(queues::nack))
        .route("/v1/queues/{name}/extend", post(queues::extend))
        .route("/v1/queues/{name}/purge", post(queues::purge_queue))
        .route("/v1/queues/{name}/{*rest}", any(bad_queue_path))
        .route("/v1/tasks", post(tasks::submit))
        .route("/v1/tasks/{id}", get(tasks::get_task))
        .route("/v1/tasks/{id}/result", post(tasks::post_result))
        .route("/v1/tasks/{id}/cancel", post(tasks::cancel))
        .route("/v1/tasks/{id}/heartbeat", post(tasks::heartbeat))
        .route("/v1/tasks/queues/{name}/receive", post(tasks::receive))
        .route("/v1/rate-limits", get(tasks::list_rate_limits))
        .route(
            "/v1/rate-limits/{name}",
            put(tasks::put_rate_limit).delete(tasks::delete_rate_limit),
        )
        .route("/v1/workflows", post(tasks::start_workflow))
        .route("/v1/workflows/{id}", get(tasks::get_workflow))
        .route("/v1/schedules", get(schedules::list_schedules))
        .route(
            "/v1/schedules/{name}",
            put(schedules::put_schedule)
                .get(schedules::get_schedule)
                .delete(schedules::delete_schedule),
        )
        .route("/v1/schedules/{name}/pause", post(schedules::pause))
        .route("/v1/schedules/{name}/resume", post(schedules::resume))
        .route("/v1/topics", get(topics::list_topics))
        .route(
            "/v1/topics/{name}",
            put(topics::put_topic)
                .get(topics::get_topic)
                .delete(topics::delete_topic),
        )
        .route("/v1/topics/{name}/messages", post(topics::publish))
        .route(
            "/v1/topics/{name}/subscriptions",
            get(topics::list_subscriptions),
        )
        .route(
            "/v1/topics/{name}/subscriptions/{sub}",
            put(topics::put_subscription)
                .get(topics::get_subscription)
                .delete(topics::delete_subscription),
        )
        .route(
            "/v1/topics/{name}/subscriptions/{sub}/receive",
            post(topics::receive),
        )
        .route(
            "/v1/topics/{name}/subscriptions/{sub}/ack",
            post(topics::ack),
        )
        .route(
            "/v1/topics/{name}/subscriptions/{sub}/nack",
            post(topics::nack),
        )
        .route(
            "/v1/topics/{name}/subscriptions/{sub}/extend",
            post(topics::extend),
        )
        .route("/v1/streams", get(streams::list_streams))
        .route(
            "/v1/streams/{name}",
            put(streams::put_stream)
                .get(streams::get_stream)
                .delete(streams::delete_stream),
        )
        .route("/v1/streams/{name}/records", post(streams::append))
        .route(
            "/v1/streams/{name}/partitions/{partition}/records",
            get(streams::read),
        )
        .route("/v1/streams/{name}/groups", get(streams::list_groups))
        .route(
            "/v1/streams/{name}/groups/{group}",
            get(streams::get_group).delete(streams::delete_group),
        )
        .route(
            "/v1/streams/{name}/groups/{group}/members/{member}",
            put(streams::join).delete(streams::leave),
        )
        .route(
            "/v1/streams/{name}/groups/{group}/members/{member}/heartbeat",
            post(streams::heartbeat),
        )
        .route(
            "/v1/streams/{name}/groups/{group}/offsets",
            get(streams::get_group).post(streams::commit),
        )
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn fallback(method: Method, uri: Uri) -> ApiError {
    ApiError::no_route(method.as_str(), uri.path())
}

/// `/v1/queues/a/b/...` that matches no route: a queue name cannot hold `/`.
async fn bad_queue_path(uri: Uri) -> ApiError {
    ApiError::bad_request(format!(
        "no route for {}: queue names are [A-Za-z0-9_.-]{{1,128}} and cannot contain '/'",
        uri.path()
    ))
}

async fn method_not_allowed(method: Method, uri: Uri) -> impl IntoResponse {
    let e = ApiError::bad_request(format!("{method} is not allowed on {}", uri.path()));
    (StatusCode::METHOD_NOT_ALLOWED, e.into_response())
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.metrics.render(&state.broker);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// Serves HTTP on `listener` until `shutdown` becomes true, with at most `max_connections`
/// connections open at once and a header-read timeout against slow clients (see `listener.rs`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: HttpServeLimits,
    auth: Option<Arc<crate::auth::AuthConfig>>,
    shutdown: watch::Receiver<bool>,
) {
    serve_with_tls(listener, state, limits, auth, None, shutdown).await;
}

/// [`serve`], over TLS only when `tls` is set (the handshake bounded by the header-read timeout).
pub(crate) async fn serve_with_tls(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: HttpServeLimits,
    auth: Option<Arc<crate::auth::AuthConfig>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) {
    let mut app = router(state);
    if let Some(auth) = auth {
        app = app.layer(axum::middleware::from_fn_with_state(
            auth,
            crate::auth::require_token,
        ));
    }
    let limits = listener::HttpLimits {
        max_connections: limits.max_connections,
        header_read_timeout: limits.header_read_timeout,
    };
    listener::accept_loop(listener, app, limits, tls, shutdown).await;
}

/// Connection limits of the HTTP listener.
#[derive(Clone, Copy, Debug)]
pub struct HttpServeLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest time a client may take to send a request's head.
    pub header_read_timeout: std::time::Duration,
}
