//! The native binary protocol listener (`docs/protocol.md`).
//!
//! With authentication on, each connection must `Authenticate` first and each request is then
//! checked against the token's grants ([`auth`]), as the HTTP API checks them.
//!
//! One task accepts connections, bounded by [`NativeLimits::max_connections`] (a refused client
//! gets an `Error busy` frame, then the close). Each connection ([`conn`]) is one task that
//! decodes frames, calls the broker at once for publish / ack / nack / extend and awaits their
//! durability in a `FuturesUnordered` (pipelining, at most [`NativeLimits::max_in_flight`] in
//! flight), spawns a task only for requests that may wait (receive, admin), and writes every
//! answer that is ready once per wake-up; plus one task per subscription ([`subscription`]) that
//! pushes deliveries only while it holds credits.
//!
//! Queues and topic subscriptions share one consume path ([`source`]: a `Target` of either);
//! topic, stream and task requests (protocol version 3) are answered by [`topics`], [`streams`]
//! and [`tasks`] (the last over the server's [`weir_tasks::TaskService`]).
//!
//! Architecture invariant: the wire types of `weir_proto::frame` are converted to broker types
//! here ([`convert`] and the per-area modules) and nowhere else; the broker knows nothing of
//! frames.

mod auth;
mod conn;

pub(crate) use conn::Services;
mod convert;
mod handler;
mod source;
mod stream;
mod streams;
mod subscription;
mod tasks;
mod topics;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use weir_proto::frame::Frame;
use weir_proto::ErrorCode;

use crate::auth::AuthConfig;

/// The native listener's bounds and timeouts.
#[derive(Clone, Debug)]
pub(crate) struct NativeLimits {
    /// Most concurrent connections; more are refused with `Error busy`.
    pub(crate) max_connections: usize,
    /// Most requests one connection may have in flight; beyond it the reader stops reading.
    pub(crate) max_in_flight: usize,
    /// Most subscriptions on one connection.
    pub(crate) max_subscriptions: usize,
    /// Most frames queued for one connection's writer.
    pub(crate) max_queued_frames: usize,
    /// Time allowed for a client to send its hello.
    pub(crate) handshake_timeout: Duration,
    /// A connection with no frame, no request in flight and no subscription for this long closes.
    pub(crate) idle_timeout: Duration,
    /// Longest a waiting subscription or long poll sleeps before looking again.
    pub(crate) max_poll_sleep: Duration,
    /// How long a graceful shutdown waits for connections to finish their requests.
    pub(crate) shutdown_grace: Duration,
    /// The broker's configured body limit, reported in `HelloOk.max_body_bytes`.
    pub(crate) max_body_bytes: usize,
}

impl Default for NativeLimits {
    fn default() -> Self {
        NativeLimits {
            max_connections: 1024,
            max_in_flight: 1024,
            max_subscriptions: 64,
            max_queued_frames: 256,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            max_poll_sleep: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            max_body_bytes: weir_proto::limits::DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// Refusals in progress at once beyond which a refused connection is just dropped.
const MAX_PENDING_REFUSALS: usize = 64;
/// How long a refusal waits for the client's hello.
const REFUSAL_HELLO_TIMEOUT: Duration = Duration::from_millis(500);

/// Accepts connections until `shutdown` turns true, then waits (up to
/// [`NativeLimits::shutdown_grace`]) for the connections to finish their requests. With `auth`,
/// every connection must authenticate and every request is checked against the token's grants.
/// Task requests go to `tasks`, the same service the HTTP API uses.
/// With `tls`, every connection is TLS: the handshake runs in the connection's task under
/// [`NativeLimits::handshake_timeout`] (then the protocol's hello gets the same time again).
pub(crate) async fn serve(
    listener: TcpListener,
    services: Services,
    limits: NativeLimits,
    auth: Option<Arc<AuthConfig>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let max_connections = limits.max_connections.max(1);
    let connections = Arc::new(Semaphore::new(max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_PENDING_REFUSALS));
    let limits = Arc::new(limits);
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() { break; }
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // E.g. EMFILE: back off briefly instead of spinning.
                        tracing::warn!(%error, "native accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%error, %peer, "set_nodelay failed");
                }
                match connections.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let services = services.clone();
                        let limits = limits.clone();
                        let mut shutdown = shutdown.clone();
                        let auth = auth.clone();
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            let timeout = limits.handshake_timeout;
                            let secured =
                                stream::secure(stream, peer, tls.as_ref(), timeout, &mut shutdown)
                                    .await;
                            if let Some((rd, wr)) = secured {
                                conn::run(rd, wr, peer, services, limits, auth, shutdown).await;
                            }
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tracing::warn!(%peer, max_connections, "native connection refused: at the limit");
                        if let Ok(permit) = refusals.clone().try_acquire_owned() {
                            let tls = tls.clone();
                            let mut shutdown = shutdown.clone();
                            let timeout = limits.handshake_timeout;
                            tokio::spawn(async move {
                                // Over TLS, the refusal is said inside the session.
                                let secured = stream::secure(
                                    stream,
                                    peer,
                                    tls.as_ref(),
                                    timeout,
                                    &mut shutdown,
                                )
                                .await;
                                if let Some((rd, wr)) = secured {
                                    refuse(rd, wr, max_connections).await;
                                }
                                drop(permit);
                            });
                        }
                    }
                }
            }
        }
    }
    drop(listener);
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(limits.shutdown_grace, connections.acquire_many(all)).await;
    if drained.is_err() {
        tracing::warn!("native connections still open after the shutdown grace period");
    }
}

/// Tells a client over the connection limit why it is refused (over TLS when the listener is),
/// then closes.
async fn refuse(mut rd: stream::ReadHalf, mut wr: stream::WriteHalf, max_connections: usize) {
    // Read the hello first (briefly), so the close does not reset the connection before the
    // client has read the error.
    let mut hello = [0u8; weir_proto::frame::HELLO_BYTES];
    let _ = tokio::time::timeout(REFUSAL_HELLO_TIMEOUT, rd.read(&mut hello)).await;
    let frame = Frame::error(
        0,
        ErrorCode::Busy,
        1000,
        format!("too many connections (limit {max_connections}); retry later"),
    );
    conn::send_and_close(&mut rd, &mut wr, &frame).await;
}
