//! The connection: handshake, then a writer task that numbers and coalesces requests and a reader
//! task that routes answers to their callers by request id (answers may come in any order).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use weir_proto::frame::{
    Delivery, Frame, Hello, HelloOk, Payload, MAX_CREDITS, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};

use crate::{ClientError, TlsOptions};

/// The read half of the connection: plain TCP or TLS ([`crate::tls`]).
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of the connection. Over TLS, `write_all` may leave encrypted bytes in the
/// session: every write is followed by a flush (a no-op on plain TCP).
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Requests queued for the writer before callers wait.
const COMMAND_QUEUE: usize = 1024;
/// The writer flushes once this many bytes are encoded, even if more requests are queued.
const COALESCE_BYTES: usize = 256 * 1024;

/// What callers ask the connection to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send a request and route its answer to `reply`.
    Request {
        payload: Payload,
        reply: oneshot::Sender<Result<Payload, ClientError>>,
    },
    /// Open a subscription: `reply` gets its id once the server says `Ok`; deliveries go to
    /// `events`.
    Subscribe {
        payload: Payload,
        reply: oneshot::Sender<Result<u64, ClientError>>,
        events: mpsc::UnboundedSender<SubEvent>,
    },
    /// Send a frame that gets no answer on success (credit grants).
    Fire { payload: Payload },
    /// Grant a subscription the credits `owed` holds (taken when the frame is encoded, so the
    /// credits returned meanwhile go in one frame); nothing is sent if none are left.
    GrantOwed {
        subscription: u64,
        owed: Arc<AtomicU32>,
    },
    /// Forget a subscription and tell the server to end it.
    Unsubscribe { subscription: u64 },
}

/// What a subscription's consumer receives.
#[derive(Debug)]
pub(crate) enum SubEvent {
    Deliveries(Vec<Delivery>),
    Ended(ClientError),
}

#[derive(Debug)]
enum Pending {
    Request(oneshot::Sender<Result<Payload, ClientError>>),
    Subscription {
        confirm: Option<oneshot::Sender<Result<u64, ClientError>>>,
        // Unbounded, but bounded in practice by the subscription's credits.
        events: mpsc::UnboundedSender<SubEvent>,
    },
}

/// Hashes request ids (sequential `u64`s) with one multiplication (Fibonacci hashing) instead of
/// SipHash: the map is touched twice per request, and ids come from this connection, not from
/// the network, so there is nothing to defend against.
#[derive(Debug, Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used for u64 keys; kept correct for any other key all the same.
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

#[derive(Debug, Default)]
struct State {
    pending: IdMap<Pending>,
    closed: Option<ClientError>,
}

impl State {
    /// Fails every caller waiting on this connection and refuses later ones.
    fn fail_all(&mut self, error: ClientError) {
        for (_, p) in self.pending.drain() {
            match p {
                Pending::Request(reply) => {
                    let _ = reply.send(Err(error.clone()));
                }
                Pending::Subscription { confirm, events } => match confirm {
                    Some(c) => {
                        let _ = c.send(Err(error.clone()));
                    }
                    None => {
                        let _ = events.send(SubEvent::Ended(error.clone()));
                    }
                },
            }
        }
        self.closed.get_or_insert(error);
    }
}

/// A handle to the connection's tasks.
#[derive(Clone)]
pub(crate) struct Connection {
    tx: mpsc::Sender<Command>,
    pub(crate) limits: HelloOk,
    pub(crate) addr: String,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .field("version", &self.limits.version)
            .finish()
    }
}

impl Connection {
    /// Dials, secures (with `tls`), handshakes, authenticates (when the server asks for it) and
    /// starts the reader and writer tasks.
    ///
    /// It asks for the newest protocol version it speaks; a server that does not speak it
    /// (an older release) refuses the hello with `unsupported protocol version`, and the client
    /// reconnects asking for the next older version. Over an older version, requests that
    /// version lacks (topics, streams and tasks before version 3) fail with `bad_request`.
    pub(crate) async fn open(
        addr: impl ToSocketAddrs + fmt::Display,
        timeout: Duration,
        token: Option<&str>,
        tls: Option<&TlsOptions>,
    ) -> Result<Connection, ClientError> {
        let name = addr.to_string();
        let resolved: Vec<std::net::SocketAddr> =
            match tokio::time::timeout(timeout, tokio::net::lookup_host(addr)).await {
                Err(_) => return Err(ClientError::Timeout(timeout)),
                Ok(Err(e)) => {
                    return Err(ClientError::Connect {
                        addr: name,
                        source: Arc::new(e),
                    })
                }
                Ok(Ok(found)) => found.collect(),
            };
        let mut version = PROTOCOL_VERSION;
        loop {
            match Connection::open_version(&name, &resolved, timeout, token, tls, version).await {
                Err(ClientError::Handshake { message, .. })
                    if version > MIN_PROTOCOL_VERSION
                        && message.contains("unsupported protocol version") =>
                {
                    tracing::debug!(addr = %name, version, "server refused the protocol version; trying an older one");
                    version -= 1;
                }
                other => return other,
            }
        }
    }

    /// Dials, secures (with `tls`), handshakes asking for `version`, and authenticates.
    async fn open_version(
        name: &str,
        addrs: &[std::net::SocketAddr],
        timeout: Duration,
        token: Option<&str>,
        tls: Option<&TlsOptions>,
        version: u16,
    ) -> Result<Connection, ClientError> {
        let name = name.to_string();
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addrs)).await {
            Err(_) => return Err(ClientError::Timeout(timeout)),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(ClientError::ConnectionRefused { addr: name })
            }
            Ok(Err(e)) => {
                return Err(ClientError::Connect {
                    addr: name,
                    source: Arc::new(e),
                })
            }
            Ok(Ok(stream)) => stream,
        };
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = crate::tls::secure(stream, tls, &name, timeout).await?;
        let mut buf = BytesMut::new();
        Hello { version }.encode(&mut buf);
        let handshake = async {
            wr.write_all(&buf).await?;
            wr.flush().await?;
            buf.clear();
            read_frame(&mut rd, &mut buf).await
        };
        let first = match tokio::time::timeout(timeout, handshake).await {
            Err(_) => return Err(ClientError::Timeout(timeout)),
            Ok(Err(e)) => return Err(handshake_error(&name, None, e.to_string(), None)),
            Ok(Ok(frame)) => frame,
        };
        let limits = match first.payload {
            Payload::HelloOk(limits) => limits,
            Payload::Error(e) => {
                let retry = (e.retry_after_ms > 0).then(|| Duration::from_millis(e.retry_after_ms));
                return Err(handshake_error(&name, Some(e.code), e.message, retry));
            }
            other => {
                let message = format!(
                    "expected HelloOk, got frame type 0x{:02x}",
                    other.type_byte()
                );
                return Err(handshake_error(&name, None, message, None));
            }
        };
        if limits.auth_required {
            let auth = authenticate(&mut rd, &mut wr, &mut buf, token);
            match tokio::time::timeout(timeout, auth).await {
                Err(_) => return Err(ClientError::Timeout(timeout)),
                Ok(Err(AuthFailure::Io(e))) => {
                    return Err(handshake_error(&name, None, e.to_string(), None))
                }
                Ok(Err(AuthFailure::Refused(code, message))) => {
                    return Err(handshake_error(&name, Some(code), message, None))
                }
                Ok(Ok(())) => {}
            }
        }
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        tokio::spawn(write_loop(wr, rx, state.clone()));
        tokio::spawn(read_loop(rd, buf, state));
        Ok(Connection {
            tx,
            limits,
            addr: name,
        })
    }

    /// Sends a request and waits for its answer; an `Error` answer becomes `Err`.
    pub(crate) async fn request(&self, payload: Payload) -> Result<Payload, ClientError> {
        self.send(payload).await?.await
    }

    /// Queues a request for the writer; the returned future waits for its answer.
    pub(crate) async fn send(&self, payload: Payload) -> Result<Answer, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Request { payload, reply }).await?;
        Ok(Answer(answer))
    }

    /// Opens a subscription; returns its id and the stream of its events.
    pub(crate) async fn subscribe(
        &self,
        payload: Payload,
    ) -> Result<(u64, mpsc::UnboundedReceiver<SubEvent>), ClientError> {
        let (reply, answer) = oneshot::channel();
        let (events, rx) = mpsc::unbounded_channel();
        self.command(Command::Subscribe {
            payload,
            reply,
            events,
        })
        .await?;
        let id = answer
            .await
            .map_err(|_| ClientError::disconnected("the connection task ended"))??;
        Ok((id, rx))
    }

    pub(crate) async fn command(&self, command: Command) -> Result<(), ClientError> {
        self.tx
            .send(command)
            .await
            .map_err(|_| ClientError::disconnected("the connection is closed"))
    }

    /// Queues a command without waiting (for `Drop` paths); `false` if it could not be queued.
    pub(crate) fn try_command(&self, command: Command) -> bool {
        self.tx.try_send(command).is_ok()
    }
}

/// The answer to a request sent with [`Connection::send`].
#[derive(Debug)]
pub(crate) struct Answer(oneshot::Receiver<Result<Payload, ClientError>>);

impl std::future::Future for Answer {
    type Output = Result<Payload, ClientError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| {
            r.map_err(|_| ClientError::disconnected("the connection task ended"))
                .and_then(|answer| answer)
        })
    }
}

fn handshake_error(
    addr: &str,
    code: Option<weir_proto::ErrorCode>,
    message: String,
    retry_after: Option<Duration>,
) -> ClientError {
    ClientError::Handshake {
        addr: addr.to_string(),
        code,
        message,
        retry_after,
    }
}

#[derive(Debug)]
enum AuthFailure {
    Io(std::io::Error),
    Refused(weir_proto::ErrorCode, String),
}

/// Request id of the `Authenticate` sent during the handshake (the writer task numbers the
/// requests after it, from 1 again: this one is answered before they start).
const AUTH_REQUEST_ID: u64 = 1;

/// Sends `Authenticate` and waits for its answer. Without a token, fails at once: every request
/// would be refused.
async fn authenticate(
    rd: &mut ReadHalf,
    wr: &mut WriteHalf,
    buf: &mut BytesMut,
    token: Option<&str>,
) -> Result<(), AuthFailure> {
    let Some(token) = token else {
        return Err(AuthFailure::Refused(
            weir_proto::ErrorCode::Unauthorized,
            "the server requires authentication: connect with a token \
             (Client::connect_with_token or ConnectOptions::token)"
                .to_string(),
        ));
    };
    let mut out = BytesMut::new();
    let frame = Frame::new(
        AUTH_REQUEST_ID,
        Payload::Authenticate {
            token: token.to_string(),
        },
    );
    if let Err(e) = frame.encode(&mut out) {
        return Err(AuthFailure::Refused(
            weir_proto::ErrorCode::BadRequest,
            format!("the token cannot be sent: {e}"),
        ));
    }
    wr.write_all(&out).await.map_err(AuthFailure::Io)?;
    wr.flush().await.map_err(AuthFailure::Io)?;
    let answer = read_frame(rd, buf).await.map_err(AuthFailure::Io)?;
    match answer.payload {
        Payload::Ok if answer.request_id == AUTH_REQUEST_ID => Ok(()),
        Payload::Error(e) => Err(AuthFailure::Refused(
            e.code,
            format!("authentication refused: {}", e.message),
        )),
        other => Err(AuthFailure::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "expected Ok to Authenticate, got frame type 0x{:02x} (request id {})",
                other.type_byte(),
                answer.request_id
            ),
        ))),
    }
}

/// Reads exactly one frame (used for the handshake answer).
async fn read_frame(rd: &mut ReadHalf, buf: &mut BytesMut) -> std::io::Result<Frame> {
    loop {
        match Frame::decode(buf) {
            Ok(Some((frame, used))) => {
                buf.advance(used);
                return Ok(frame);
            }
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
        if rd.read_buf(buf).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection during the handshake",
            ));
        }
    }
}

async fn write_loop(mut wr: WriteHalf, mut rx: mpsc::Receiver<Command>, state: Arc<Mutex<State>>) {
    let mut next_id: u64 = 1;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(command) = rx.recv().await {
        enqueue(command, &mut next_id, &mut buf, &state);
        while buf.len() < COALESCE_BYTES {
            match rx.try_recv() {
                Ok(command) => enqueue(command, &mut next_id, &mut buf, &state),
                Err(_) => break,
            }
        }
        if buf.is_empty() {
            continue;
        }
        let written = match wr.write_all(&buf).await {
            Ok(()) => wr.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            state
                .lock()
                .fail_all(ClientError::disconnected(format!("write failed: {e}")));
            return;
        }
        buf.clear();
    }
    // Every handle is gone: close our side; the server closes its side, ending the reader.
    let _ = wr.shutdown().await;
}

/// Numbers a command, registers who waits for its answer, and encodes it.
fn enqueue(command: Command, next_id: &mut u64, buf: &mut BytesMut, state: &Mutex<State>) {
    let id = *next_id;
    *next_id = next_id.wrapping_add(1).max(1);
    let mut state = state.lock();
    let (payload, pending) = match command {
        Command::Request { payload, reply } => (payload, Some(Pending::Request(reply))),
        Command::Subscribe {
            payload,
            reply,
            events,
        } => (
            payload,
            Some(Pending::Subscription {
                confirm: Some(reply),
                events,
            }),
        ),
        Command::Fire { payload } => (payload, None),
        Command::GrantOwed { subscription, owed } => {
            let credits = owed.swap(0, Ordering::AcqRel);
            if credits == 0 {
                return;
            }
            let credits = if credits > MAX_CREDITS {
                // Keep the rest for the next grant (more than one subscription's worth is a
                // bug elsewhere, but do not lose credits over it).
                owed.fetch_add(credits - MAX_CREDITS, Ordering::AcqRel);
                MAX_CREDITS
            } else {
                credits
            };
            (
                Payload::GrantCredits {
                    subscription,
                    credits,
                },
                None,
            )
        }
        Command::Unsubscribe { subscription } => {
            state.pending.remove(&subscription);
            (Payload::Unsubscribe { subscription }, None)
        }
    };
    if let Some(error) = state.closed.clone() {
        fail(pending, error);
        return;
    }
    match Frame::new(id, payload).encode(buf) {
        Ok(()) => {
            if let Some(p) = pending {
                state.pending.insert(id, p);
            }
        }
        Err(e) => fail(pending, ClientError::Encode(e)),
    }
}

fn fail(pending: Option<Pending>, error: ClientError) {
    match pending {
        Some(Pending::Request(reply)) => {
            let _ = reply.send(Err(error));
        }
        Some(Pending::Subscription {
            confirm: Some(c), ..
        }) => {
            let _ = c.send(Err(error));
        }
        _ => {}
    }
}

async fn read_loop(mut rd: ReadHalf, mut buf: BytesMut, state: Arc<Mutex<State>>) {
    loop {
        loop {
            match Frame::decode(&buf) {
                Ok(Some((frame, used))) => {
                    buf.advance(used);
                    route(frame, &state);
                }
                Ok(None) => break,
                Err(e) => {
                    state
                        .lock()
                        .fail_all(ClientError::Protocol(format!("undecodable frame: {e}")));
                    return;
                }
            }
        }
        buf.reserve(16 * 1024);
        match rd.read_buf(&mut buf).await {
            Ok(0) => {
                state.lock().fail_all(ClientError::disconnected(
                    "the server closed the connection",
                ));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                state
                    .lock()
                    .fail_all(ClientError::disconnected(format!("read failed: {e}")));
                return;
            }
        }
    }
}

/// Hands one frame from the server to whoever waits for its request id.
fn route(frame: Frame, state: &Mutex<State>) {
    let id = frame.request_id;
    let mut st = state.lock();
    match st.pending.get_mut(&id) {
        Some(Pending::Request(_)) => {
            if let Some(Pending::Request(reply)) = st.pending.remove(&id) {
                let answer = match frame.payload {
                    Payload::Error(e) => Err(ClientError::from_frame(e)),
                    other => Ok(other),
                };
                let _ = reply.send(answer);
            }
        }
        Some(Pending::Subscription { confirm, events }) => match frame.payload {
            Payload::Ok if confirm.is_some() => {
                if let Some(c) = confirm.take() {
                    let _ = c.send(Ok(id));
                }
            }
            Payload::Deliveries(ds) => {
                // A dropped consumer's deliveries are not acked: their leases expire.
                let _ = events.send(SubEvent::Deliveries(ds));
            }
            Payload::Error(e) => {
                let error = ClientError::from_frame(e);
                match confirm.take() {
                    Some(c) => {
                        let _ = c.send(Err(error));
                    }
                    None => {
                        let _ = events.send(SubEvent::Ended(error));
                    }
                }
                st.pending.remove(&id);
            }
            other => {
                tracing::warn!(
                    id,
                    frame_type = other.type_byte(),
                    "unexpected frame for a subscription"
                );
            }
        },
        None => match frame.payload {
            Payload::Error(e) if id == 0 => {
                st.fail_all(ClientError::from_frame(e));
            }
            Payload::Ping => {
                // Answered only by servers today; a client does not need to pong.
            }
            other => {
                tracing::debug!(
                    id,
                    frame_type = other.type_byte(),
                    "frame for no pending request"
                );
            }
        },
    }
}
