//! The HTTP accept loop: hyper's HTTP/1 server with a header-read timeout (a slow client that
//! trickles its request head is cut off), at most N connections open at once (each holds a
//! semaphore permit; further clients wait in the kernel's accept backlog), and a graceful
//! shutdown that lets requests in flight finish within a grace period. With TLS, the handshake
//! runs in the connection's task (holding its permit), bounded by the header-read timeout: a
//! client that never sends its ClientHello keeps no one else from being served.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

/// How long requests in flight may run after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Limits of the HTTP listener.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HttpLimits {
    /// Most connections open at once.
    pub(crate) max_connections: usize,
    /// Longest time a client may take to send a request's head.
    pub(crate) header_read_timeout: Duration,
}

/// Serves `app` until `shutdown` becomes true; over TLS only when `tls` is set.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                // The semaphore is never closed.
                Err(_) => break,
            },
            _ = stopped(&mut shutdown) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!("HTTP accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let Some(acceptor) = &tls else {
            let connection =
                graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = connection.await {
                    tracing::debug!("HTTP connection ended: {e}");
                }
            });
            continue;
        };
        let acceptor = acceptor.clone();
        // Taken now, so a shutdown that starts during the handshake still waits for (and
        // gracefully ends) this connection.
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let mut shutdown = shutdown.clone();
        let timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let handshake = tokio::time::timeout(timeout, acceptor.accept(stream));
            let stream = tokio::select! {
                accepted = handshake => match accepted {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%peer, %error, "HTTP TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, timeout_ms = timeout.as_millis(), "HTTP TLS handshake timed out");
                        return;
                    }
                },
                _ = stopped(&mut shutdown) => return,
            };
            let connection = watcher.watch(builder.serve_connection(TokioIo::new(stream), service));
            if let Err(e) = connection.await {
                tracing::debug!("HTTPS connection ended: {e}");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("HTTP requests still running after the grace period; stopping anyway");
        }
    }
}

/// Resolves once shutdown is signalled (drops the watch guard before returning, keeping the
/// accept loop's future `Send`).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
