//! The byte stream a native connection runs over: plain TCP or TLS, split into boxed read and
//! write halves so that [`super::conn`] does not care which.
//!
//! Plain TCP splits without a lock (`TcpStream::into_split`); a TLS stream splits with
//! `tokio::io::split` (one session, shared by both halves). A TLS write half may keep encrypted
//! bytes buffered after `write_all`: writers flush after each batch (a no-op on plain TCP).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// The read half of a connection.
pub(super) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a connection.
pub(super) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Splits an accepted TCP connection, after the TLS handshake when `tls` is set. The handshake
/// is bounded by `timeout` and abandoned at shutdown; `None` when it failed, timed out or was
/// abandoned (the connection is then dropped: there is no channel to say why on).
pub(super) async fn secure(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<&tokio_rustls::TlsAcceptor>,
    timeout: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(ReadHalf, WriteHalf)> {
    let Some(acceptor) = tls else {
        let (rd, wr) = stream.into_split();
        return Some((Box::new(rd), Box::new(wr)));
    };
    let handshake = tokio::time::timeout(timeout, acceptor.accept(stream));
    let accepted = tokio::select! {
        accepted = handshake => accepted,
        () = stopped(shutdown) => return None,
    };
    match accepted {
        Ok(Ok(stream)) => {
            let (rd, wr) = tokio::io::split(stream);
            Some((Box::new(rd), Box::new(wr)))
        }
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "native TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, timeout_ms = timeout.as_millis(), "native TLS handshake timed out");
            None
        }
    }
}

/// Resolves once shutdown is signalled or its sender is gone (the watch guard is dropped before
/// returning, keeping the caller's future `Send`).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
