//! One native-protocol connection: handshake, then one task that decodes and dispatches frames
//! (cheap requests inline, their durability awaited in a `FuturesUnordered`), and writes every
//! answer that is ready once per wake-up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Buf, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use weir_broker::Broker;
use weir_proto::frame::{
    peek_frame_len, DecodeError, Frame, Hello, HelloOk, Payload, AUTH_PROTOCOL_VERSION, MAX_CREDITS,
};
use weir_proto::limits::{MAX_BATCH_MESSAGES, MAX_FRAME_BYTES};
use weir_proto::ErrorCode;
use weir_tasks::TaskService;

use super::auth::{Attempt, Session};
use super::stream::{ReadHalf, WriteHalf};
use super::subscription::Subscription;
use super::{handler, subscription, NativeLimits};
use crate::auth::AuthConfig;
use crate::metrics::Metrics;

/// Bytes read from the socket at a time (at least).
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// The writer flushes once this many bytes are encoded, even if more answers are queued.
const COALESCE_BYTES: usize = 256 * 1024;
/// Largest frame buffered before a connection that must authenticate has done so: an
/// unauthenticated peer cannot make the server reserve a 32 MiB frame (an `Authenticate` takes
/// under 300 bytes).
const PRE_AUTH_MAX_FRAME_BYTES: usize = 64 * 1024;
/// A writer buffer grown past this is given back after the flush.
const KEEP_BUFFER_BYTES: usize = 1024 * 1024;
/// The write buffer's usual capacity.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// The services a connection's requests are answered by.
#[derive(Clone, Debug)]
pub(crate) struct Services {
    /// Queues, topics, streams.
    pub(crate) broker: Arc<Broker>,
    /// Tasks (the same service the HTTP API uses).
    pub(crate) tasks: Arc<TaskService>,
    /// Where publish→confirm latencies go (shared with the HTTP front).
    pub(crate) metrics: Arc<Metrics>,
}

/// What every task of one connection shares.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) broker: Arc<Broker>,
    pub(super) tasks: Arc<TaskService>,
    pub(super) limits: Arc<NativeLimits>,
    pub(super) peer: SocketAddr,
    out: mpsc::Sender<Frame>,
    pub(super) subscriptions: Mutex<HashMap<u64, Arc<Subscription>>>,
    /// Cancelled when the connection ends: subscriptions stop, long polls return.
    pub(super) closing: CancellationToken,
}

impl Shared {
    /// Queues a frame for the writer; waits while the queue is full (back pressure). A closed
    /// connection drops the frame.
    pub(super) async fn send(&self, frame: Frame) {
        if self.out.send(frame).await.is_err() {
            tracing::trace!(peer = %self.peer, "answer dropped: connection closed");
        }
    }
}

/// Serves one accepted connection (plain TCP or TLS, already split) to its end.
pub(super) async fn run(
    mut rd: ReadHalf,
    mut wr: WriteHalf,
    peer: SocketAddr,
    services: Services,
    limits: Arc<NativeLimits>,
    auth: Option<Arc<AuthConfig>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let hello = match timeout(limits.handshake_timeout, read_hello(&mut rd, &mut buf)).await {
        Ok(Ok(Some(hello))) => {
            tracing::debug!(%peer, version = hello.version, "native handshake");
            hello
        }
        Ok(Ok(None)) => return,
        Ok(Err(HelloError::Io(error))) => {
            tracing::debug!(%peer, %error, "native handshake: read failed");
            return;
        }
        Ok(Err(HelloError::Refused(error))) => {
            tracing::debug!(%peer, %error, "native handshake refused");
            let frame = Frame::error(0, error.code(), 0, format!("handshake refused: {error}"));
            send_and_close(&mut rd, &mut wr, &frame).await;
            return;
        }
        Err(_) => {
            let message = format!(
                "no handshake within {} ms",
                limits.handshake_timeout.as_millis()
            );
            send_and_close(
                &mut rd,
                &mut wr,
                &Frame::error(0, ErrorCode::BadRequest, 0, message),
            )
            .await;
            return;
        }
    };
    if auth.is_some() && hello.version < AUTH_PROTOCOL_VERSION {
        // Version 1 has no Authenticate frame: such a client could only be refused request by
        // request, so refuse it once, plainly.
        let message = format!(
            "this server requires authentication, which needs protocol version \
             {AUTH_PROTOCOL_VERSION} or later (asked for {})",
            hello.version
        );
        tracing::debug!(%peer, version = hello.version, "native handshake refused: auth needs v2");
        send_and_close(
            &mut rd,
            &mut wr,
            &Frame::error(0, ErrorCode::Unauthorized, 0, message),
        )
        .await;
        return;
    }
    let session = Session::new(auth);
    let hello_ok = Frame::new(
        0,
        Payload::HelloOk(hello_ok(&limits, hello.version, session.pending())),
    );
    let mut first = BytesMut::new();
    if hello_ok.encode(&mut first).is_err()
        || wr.write_all(&first).await.is_err()
        || wr.flush().await.is_err()
    {
        return;
    }

    let (out, out_rx) = mpsc::channel(limits.max_queued_frames.max(1));
    let shared = Arc::new(Shared {
        broker: services.broker,
        tasks: services.tasks,
        limits: limits.clone(),
        peer,
        out,
        subscriptions: Mutex::new(HashMap::new()),
        closing: CancellationToken::new(),
    });
    let spawned = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    let conn = ConnState {
        version: hello.version,
        session,
    };
    let mut io = ConnIo {
        wr,
        wbuf: BytesMut::with_capacity(WRITE_BUFFER_BYTES),
        out_rx,
        pending: FuturesUnordered::new(),
        pending_requests: 0,
        group: handler::Group::Empty,
        failed: false,
        metrics: services.metrics,
    };
    read_loop(
        &shared,
        &spawned,
        &mut rd,
        &mut io,
        buf,
        conn,
        &mut shutdown,
    )
    .await;
    // Requests decoded before the end are still answered.
    io.run_group(&shared.broker);

    // Stop pushing; let requests in flight finish and their answers drain, then close.
    shared.closing.cancel();
    shared.subscriptions.lock().clear();
    drop(shared);
    let grace = limits.shutdown_grace;
    if timeout(grace, io.drain()).await.is_ok() && !io.failed {
        close_gently(&mut rd, &mut io.wr).await;
    }
    tracing::debug!(%peer, "native connection closed");
}

/// The connection's output side, owned by its one task: the answers of requests handled inline
/// (awaiting durability in `pending`), frames queued by subscription and request tasks
/// (`out_rx`), and the write buffer they are all encoded into, written once per wake-up.
struct ConnIo {
    wr: WriteHalf,
    wbuf: BytesMut,
    out_rx: mpsc::Receiver<Frame>,
    pending: FuturesUnordered<handler::Inline>,
    /// Requests answered by `pending` (one entry may answer a group of requests).
    pending_requests: usize,
    /// Publishes or acks decoded in this pass, not yet handed to the broker.
    group: handler::Group,
    /// A write failed: nothing more is written.
    failed: bool,
    metrics: Arc<Metrics>,
}

impl ConnIo {
    fn push(&mut self, frame: &Frame) {
        encode_into(frame, &mut self.wbuf);
    }

    /// Encodes the answers of a resolved inline request (or group).
    fn push_done(&mut self, (result, answers, published_at): handler::Done) {
        if let (Ok(()), Some(at)) = (&result, published_at) {
            self.metrics.observe_confirm(at.elapsed());
        }
        self.pending_requests -= answers.requests();
        let wbuf = &mut self.wbuf;
        answers.frames(&result, |frame| encode_into(frame, wbuf));
    }

    /// Hands the group decoded so far to the broker.
    fn run_group(&mut self, broker: &Broker) {
        let group = std::mem::take(&mut self.group);
        let wbuf = &mut self.wbuf;
        if let Some(inline) = group.run(broker, |frame| encode_into(frame, wbuf)) {
            self.pending_requests += inline.requests();
            self.pending.push(inline);
        }
    }

    /// Queues an inline request's answer.
    fn push_inline(&mut self, started: handler::Started) {
        match started {
            handler::Started::Pending(inline) => {
                self.pending_requests += inline.requests();
                self.pending.push(inline);
            }
            handler::Started::Answer(frame) => self.push(&frame),
        }
    }

    /// Encodes every answer and queued frame that is ready now (never waits); registers the
    /// task's waker with `pending` and `out_rx`.
    async fn collect_ready(&mut self) {
        std::future::poll_fn(|cx| {
            while self.wbuf.len() < COALESCE_BYTES {
                match self.pending.poll_next_unpin(cx) {
                    Poll::Ready(Some(done)) => self.push_done(done),
                    _ => break,
                }
            }
            while self.wbuf.len() < COALESCE_BYTES {
                match self.out_rx.poll_recv(cx) {
                    Poll::Ready(Some(frame)) => encode_into(&frame, &mut self.wbuf),
                    _ => break,
                }
            }
            Poll::Ready(())
        })
        .await;
    }

    /// Writes what is buffered, in one write (or as few as the socket takes).
    async fn flush(&mut self) -> bool {
        if self.failed {
            self.wbuf.clear();
            return false;
        }
        if self.wbuf.is_empty() {
            return true;
        }
        // The flush sends what a TLS session still buffers (a no-op on plain TCP).
        let written = match self.wr.write_all(&self.wbuf).await {
            Ok(()) => self.wr.flush().await,
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            tracing::debug!(%error, "native write failed");
            self.failed = true;
            self.wbuf.clear();
            return false;
        }
        self.wbuf.clear();
        if self.wbuf.capacity() > KEEP_BUFFER_BYTES {
            self.wbuf = BytesMut::with_capacity(WRITE_BUFFER_BYTES);
        }
        true
    }

    /// After the reader ended: answers every request still in flight (inline ones and tasks),
    /// until nothing more can come.
    async fn drain(&mut self) {
        loop {
            self.collect_ready().await;
            if !self.flush().await {
                return;
            }
            tokio::select! {
                done = self.pending.next(), if !self.pending.is_empty() => {
                    if let Some(done) = done {
                        self.push_done(done);
                    }
                }
                frame = self.out_rx.recv() => match frame {
                    Some(frame) => self.push(&frame),
                    // Every sender is gone (no task left); inline answers may remain.
                    None if self.pending.is_empty() => {
                        self.flush().await;
                        return;
                    }
                    None => {
                        if let Some(done) = self.pending.next().await {
                            self.push_done(done);
                        }
                    }
                },
            }
        }
    }
}

/// The answer to a good hello: the version asked for (the handshake accepted it) and the limits.
fn hello_ok(limits: &NativeLimits, version: u16, auth_required: bool) -> HelloOk {
    // The configured body limit, never above the protocol's ceiling (the broker refuses more).
    let max_body_bytes = limits
        .max_body_bytes
        .min(weir_proto::limits::MAX_BODY_BYTES_CEILING);
    HelloOk {
        version,
        // Constants far below u32::MAX (asserted in weir-proto).
        max_frame_bytes: MAX_FRAME_BYTES as u32,
        max_batch_messages: MAX_BATCH_MESSAGES as u32,
        max_body_bytes: u32::try_from(max_body_bytes).unwrap_or(u32::MAX),
        max_in_flight: u32::try_from(limits.max_in_flight).unwrap_or(u32::MAX),
        max_credits: MAX_CREDITS,
        auth_required,
    }
}

/// What only the connection's reader reads and changes: the negotiated version and the
/// authentication state.
#[derive(Debug)]
struct ConnState {
    version: u16,
    session: Session,
}

#[derive(Debug)]
enum HelloError {
    Io(std::io::Error),
    Refused(DecodeError),
}

/// Reads the 8-byte hello; `Ok(None)` when the peer closed first.
async fn read_hello(rd: &mut ReadHalf, buf: &mut BytesMut) -> Result<Option<Hello>, HelloError> {
    loop {
        match Hello::decode(buf) {
            Ok(Some((hello, used))) => {
                buf.advance(used);
                return Ok(Some(hello));
            }
            Ok(None) => {}
            Err(e) => return Err(HelloError::Refused(e)),
        }
        match rd.read_buf(buf).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(HelloError::Io(e)),
        }
    }
}

/// Requests in flight on the connection: inline ones awaiting durability plus request tasks.
fn in_flight(io: &ConnIo, spawned: &Semaphore, max: usize) -> usize {
    io.pending_requests + io.group.len() + max.saturating_sub(spawned.available_permits())
}

/// The connection's one task: reads and dispatches frames, collects the answers that are ready
/// and writes them once per wake-up. Returns when the connection should close.
async fn read_loop(
    shared: &Arc<Shared>,
    spawned: &Arc<Semaphore>,
    rd: &mut ReadHalf,
    io: &mut ConnIo,
    mut buf: BytesMut,
    mut conn: ConnState,
    shutdown: &mut watch::Receiver<bool>,
) {
    let idle = shared.limits.idle_timeout;
    let max = shared.limits.max_in_flight.max(1);
    let mut last_frame = Instant::now();
    // With authentication on, a connection must authenticate within the handshake timeout: an
    // unauthenticated client does not get to hold a connection slot.
    let auth_deadline = last_frame + shared.limits.handshake_timeout;
    loop {
        // Decode and dispatch every complete frame already buffered, while under the bound:
        // beyond it the connection stops reading, so the client feels TCP back pressure.
        while in_flight(io, spawned, max) < max {
            match Frame::decode(&buf) {
                Ok(Some((frame, used))) => {
                    buf.advance(used);
                    last_frame = Instant::now();
                    if !dispatch(shared, spawned, io, &mut conn, frame) {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    io.run_group(&shared.broker);
                    tracing::debug!(peer = %shared.peer, error = %e, "bad native frame");
                    let answer =
                        Frame::error(e.request_id.unwrap_or(0), e.code(), 0, e.to_string());
                    io.push(&answer);
                    match e.skip {
                        // The envelope was intact: this request failed, the connection goes on.
                        Some(skip) => buf.advance(skip.min(buf.len())),
                        None => return,
                    }
                }
            }
        }
        // The length prefix was checked by `decode` (never more than MAX_FRAME_BYTES), so this
        // reserves at most one frame.
        let want = match peek_frame_len(&buf) {
            Ok(Some(total)) if conn.session.pending() && total > PRE_AUTH_MAX_FRAME_BYTES => {
                let message = format!(
                    "frame of {total} bytes before authentication (limit \
                     {PRE_AUTH_MAX_FRAME_BYTES}): send Authenticate first; closing"
                );
                io.push(&Frame::error(0, ErrorCode::TooLarge, 0, message));
                return;
            }
            Ok(Some(total)) => total.saturating_sub(buf.len()).max(READ_CHUNK_BYTES),
            _ => READ_CHUNK_BYTES,
        };
        // What this pass grouped goes to the broker; everything ready goes out in one write.
        io.run_group(&shared.broker);
        io.collect_ready().await;
        if !io.flush().await {
            return;
        }
        let can_read = in_flight(io, spawned, max) < max;
        if can_read {
            buf.reserve(want);
        }
        tokio::select! {
            read = rd.read_buf(&mut buf), if can_read => match read {
                Ok(0) => return,
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(peer = %shared.peer, %error, "native read failed");
                    return;
                }
            },
            done = io.pending.next(), if !io.pending.is_empty() => {
                if let Some(done) = done {
                    io.push_done(done);
                }
            }
            frame = io.out_rx.recv() => {
                // `shared` holds a sender, so the channel is open while this loop runs.
                if let Some(frame) = frame {
                    io.push(&frame);
                }
            }
            _ = shutdown_requested(shutdown) => return,
            () = tokio::time::sleep_until(auth_deadline), if conn.session.pending() => {
                tracing::debug!(peer = %shared.peer, "native connection did not authenticate in time");
                let message = format!(
                    "no successful Authenticate within {} ms; closing",
                    shared.limits.handshake_timeout.as_millis()
                );
                io.push(&Frame::error(0, ErrorCode::Unauthorized, 0, message));
                return;
            }
            () = tokio::time::sleep_until(last_frame + idle) => {
                let busy = !shared.subscriptions.lock().is_empty()
                    || in_flight(io, spawned, max) > 0;
                if !busy {
                    tracing::debug!(peer = %shared.peer, "native connection idle: closing");
                    return;
                }
                last_frame = Instant::now();
            }
        }
    }
}

/// Resolves once shutdown is requested (or its sender is gone).
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

/// Handles one decoded frame without waiting; `false` ends the connection. Cheap requests
/// (publish, ack, nack, extend, append, commit) call the broker here and await durability in
/// `io.pending`; requests that may wait or block (receive, read, admin, tasks, groups) run as
/// tasks.
fn dispatch(
    shared: &Arc<Shared>,
    spawned: &Arc<Semaphore>,
    io: &mut ConnIo,
    conn: &mut ConnState,
    frame: Frame,
) -> bool {
    let id = frame.request_id;
    let groupable = matches!(
        frame.payload,
        Payload::Publish { .. } | Payload::PublishTopic { .. } | Payload::Ack { .. }
    );
    if !groupable {
        // Requests are handed to the broker in the order they came.
        io.run_group(&shared.broker);
    }
    if frame.payload.since_version() > conn.version {
        // A type this connection's version does not have is unknown, as the decoder would say.
        let message = format!(
            "unknown frame type 0x{:02x} in protocol version {}",
            frame.payload.type_byte(),
            conn.version
        );
        io.push(&Frame::error(id, ErrorCode::BadRequest, 0, message));
        return true;
    }
    if let Payload::Authenticate { token } = &frame.payload {
        return authenticate(shared, io, &mut conn.session, id, token);
    }
    if let Err((code, message)) = conn.session.check(&frame.payload) {
        tracing::debug!(
            peer = %shared.peer,
            token = conn.session.token_name(),
            frame_type = frame.payload.type_byte(),
            %code,
            "native request refused"
        );
        io.push(&Frame::error(id, code, 0, message));
        return true;
    }
    match frame.payload {
        Payload::Ping => io.push(&Frame::new(id, Payload::Pong)),
        Payload::Pong => {}
        Payload::GrantCredits {
            subscription,
            credits,
        } => {
            if !subscription::grant(shared, subscription, credits) {
                let message = format!("no subscription {subscription} on this connection");
                io.push(&Frame::error(id, ErrorCode::NotFound, 0, message));
            }
        }
        Payload::Unsubscribe { subscription } => {
            let answer = if subscription::stop(shared, subscription) {
                Frame::new(id, Payload::Ok)
            } else {
                let message = format!("no subscription {subscription} on this connection");
                Frame::error(id, ErrorCode::NotFound, 0, message)
            };
            io.push(&answer);
        }
        Payload::Subscribe {
            target,
            credits,
            lease_ms,
        } => {
            // The answer is encoded before anything the new subscription's task queues.
            let answer = subscription::start(shared, id, target, credits, lease_ms);
            io.push(&answer);
        }
        payload if payload.type_byte() >= 0x80 => {
            let message = format!(
                "frame type 0x{:02x} is sent by servers, not clients",
                payload.type_byte()
            );
            io.push(&Frame::error(id, ErrorCode::BadRequest, 0, message));
        }
        request
        @ (Payload::Publish { .. } | Payload::PublishTopic { .. } | Payload::Ack { .. }) => {
            if let Some(request) = io.group.add(id, request) {
                io.run_group(&shared.broker);
                if let Some(request) = io.group.add(id, request) {
                    let started = handler::inline(&shared.broker, id, request);
                    io.push_inline(started);
                }
            }
        }
        request @ (Payload::Nack { .. }
        | Payload::Extend { .. }
        | Payload::Append { .. }
        | Payload::CommitOffsets { .. }) => {
            let started = handler::inline(&shared.broker, id, request);
            io.push_inline(started);
        }
        request => {
            // The caller keeps requests in flight under `max_in_flight`, so a permit is free.
            let Ok(permit) = spawned.clone().try_acquire_owned() else {
                io.push(&Frame::error(
                    id,
                    ErrorCode::Busy,
                    1,
                    "too many requests in flight on this connection",
                ));
                return true;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let answer = handler::handle(&shared, id, request).await;
                // Released before the answer is queued, so the connection task, woken by the
                // answer, sees the room (the queue of answers is bounded by itself).
                drop(permit);
                shared.send(answer).await;
            });
        }
    }
    true
}

/// Answers an `Authenticate`; `false` ends the connection (too many failed attempts).
fn authenticate(
    shared: &Shared,
    io: &mut ConnIo,
    session: &mut Session,
    id: u64,
    token: &str,
) -> bool {
    match session.authenticate(token) {
        Attempt::Accepted => {
            tracing::debug!(peer = %shared.peer, token = session.token_name(), "native connection authenticated");
            io.push(&Frame::new(id, Payload::Ok));
            true
        }
        Attempt::Refused(code, message) => {
            tracing::info!(peer = %shared.peer, %code, "native authentication refused: {message}");
            io.push(&Frame::error(id, code, 0, message));
            true
        }
        Attempt::Exhausted(message) => {
            tracing::warn!(peer = %shared.peer, "native authentication failed too often: closing");
            io.push(&Frame::error(id, ErrorCode::Unauthorized, 0, message));
            let closing = "too many failed authentication attempts; closing the connection";
            io.push(&Frame::error(0, ErrorCode::Unauthorized, 0, closing));
            false
        }
    }
}

fn encode_into(frame: &Frame, buf: &mut BytesMut) {
    if let Err(error) = frame.encode(buf) {
        tracing::error!(%error, request_id = frame.request_id, "native answer could not be encoded");
        let fallback = Frame::error(
            frame.request_id,
            ErrorCode::Internal,
            0,
            format!("the answer could not be encoded: {error}"),
        );
        // An error frame with a bounded message always encodes.
        let _ = fallback.encode(buf);
    }
}

/// Writes one frame, then closes the connection without resetting it.
pub(super) async fn send_and_close(rd: &mut ReadHalf, wr: &mut WriteHalf, frame: &Frame) {
    let mut buf = BytesMut::new();
    if frame.encode(&mut buf).is_ok() {
        let _ = timeout(std::time::Duration::from_secs(1), wr.write_all(&buf)).await;
    }
    close_gently(rd, wr).await;
}

/// Shuts the write side, then reads (briefly, discarding) until the peer closes, so unread input
/// does not turn the close into a reset that could lose the last frames written.
async fn close_gently(rd: &mut ReadHalf, wr: &mut WriteHalf) {
    // Bounded: over TLS the shutdown also writes what the session buffers (and close_notify),
    // which a peer that does not read could hold up.
    let _ = timeout(std::time::Duration::from_secs(1), wr.shutdown()).await;
    let drain = async {
        let mut sink = [0u8; 4096];
        loop {
            match rd.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let _ = timeout(std::time::Duration::from_millis(500), drain).await;
}
