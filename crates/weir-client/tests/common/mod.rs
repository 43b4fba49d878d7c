//! Helpers shared by the client's integration tests: a real server on real files, error codes,
//! consumer options, raw frame reading and token entries.
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use weir_client::{ConsumerOptions, ErrorCode};
use weir_proto::frame::Frame;
use weir_server::auth::{Action, Grant, TokenEntry};
use weir_server::{RunningServer, ServerConfig};

/// A server with default settings on a fresh temporary directory (kept alive by the caller).
pub(crate) async fn server() -> (RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = weir_server::start(ServerConfig::ephemeral(dir.path()))
        .await
        .unwrap();
    (server, dir)
}

/// The error code of a call that must fail.
pub(crate) fn code<T: std::fmt::Debug>(
    r: Result<T, weir_client::ClientError>,
) -> Option<ErrorCode> {
    r.unwrap_err().code()
}

/// Consumer options with `prefetch` credits, a 30 s lease and no automatic extension.
pub(crate) fn no_extend(prefetch: u32) -> ConsumerOptions {
    ConsumerOptions {
        prefetch,
        lease: Duration::from_secs(30),
        auto_extend: false,
    }
}

/// Reads one frame from a raw connection (`None` once it is closed); fails after 5 s of silence.
pub(crate) async fn read_frame(stream: &mut TcpStream, buf: &mut BytesMut) -> Option<Frame> {
    loop {
        if let Some((frame, used)) = Frame::decode(buf).unwrap() {
            let _ = buf.split_to(used);
            return Some(frame);
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read_buf(buf))
            .await
            .expect("server answered in time")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
    }
}

/// A token entry granting `action` on `resources`.
pub(crate) fn token(name: &str, secret: &str, resources: &[&str], action: Action) -> TokenEntry {
    TokenEntry {
        name: name.into(),
        token: secret.into(),
        grants: vec![Grant {
            resources: resources.iter().map(|s| s.to_string()).collect(),
            actions: vec![action],
        }],
    }
}
