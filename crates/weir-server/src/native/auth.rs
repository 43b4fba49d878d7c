//! Authentication and permissions on a native connection (`docs/protocol.md` §1.2).
//!
//! The connection's reader owns one [`Session`]: it answers `Authenticate` itself and checks every
//! other request against the token's grants *before* dispatching it, so a pipelined request sent
//! right after `Authenticate` is judged with the outcome of that `Authenticate`. The tokens, the
//! grants and the constant-time comparison are the HTTP API's ([`crate::auth`]).

use std::sync::Arc;

use weir_proto::frame::Payload;
use weir_proto::ErrorCode;

use crate::auth::{Action, AuthConfig, TokenEntry};

/// Failed `Authenticate` attempts after which the connection is closed.
pub(super) const MAX_FAILED_ATTEMPTS: u32 = 3;

/// What a request needs.
#[derive(Debug, PartialEq, Eq)]
enum Need<'a> {
    /// Nothing: not a request (a `Pong`).
    Nothing,
    /// Any valid token.
    AnyToken,
    /// An action on a queue.
    On(Action, &'a str),
}

fn need(payload: &Payload) -> Need<'_> {
    match payload {
        Payload::Pong => Need::Nothing,
        Payload::Publish { queue, .. } => Need::On(Action::Publish, queue),
        Payload::Receive { queue, .. }
        | Payload::Ack { queue, .. }
        | Payload::Nack { queue, .. }
        | Payload::Extend { queue, .. }
        | Payload::Subscribe { queue, .. } => Need::On(Action::Consume, queue),
        Payload::CreateQueue { queue, .. } | Payload::DeleteQueue { queue } => {
            Need::On(Action::Admin, queue)
        }
        // Stats, like HTTP's GETs; credits and unsubscribe act on the connection's own
        // subscriptions, which were checked when they were opened; `Authenticate` is answered
        // before this check; frames only servers send are refused as `bad_request` after it.
        Payload::Ping
        | Payload::QueueStats { .. }
        | Payload::GrantCredits { .. }
        | Payload::Unsubscribe { .. }
        | Payload::Authenticate { .. }
        | Payload::HelloOk(_)
        | Payload::Error(_)
        | Payload::Ok
        | Payload::QueueInfo(_)
        | Payload::Published(_)
        | Payload::Deliveries(_)
        | Payload::ReceiptsDone { .. } => Need::AnyToken,
    }
}

/// The outcome of an `Authenticate` frame.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Attempt {
    /// Answer `Ok`.
    Accepted,
    /// Answer this error; the connection goes on.
    Refused(ErrorCode, String),
    /// Answer this `unauthorized` error, then close the connection: too many failures.
    Exhausted(String),
}

/// One connection's authentication state.
#[derive(Debug)]
pub(super) struct Session {
    auth: Option<Arc<AuthConfig>>,
    who: Option<TokenEntry>,
    failures: u32,
}

impl Session {
    /// A session for a server with (`Some`) or without authentication.
    pub(super) fn new(auth: Option<Arc<AuthConfig>>) -> Session {
        Session {
            auth,
            who: None,
            failures: 0,
        }
    }

    /// Whether requests still wait for a successful `Authenticate`.
    pub(super) fn pending(&self) -> bool {
        self.auth.is_some() && self.who.is_none()
    }

    /// Judges a presented token. Without authentication every token is accepted (and ignored), so
    /// a client configured with one also works against an open server.
    pub(super) fn authenticate(&mut self, token: &str) -> Attempt {
        let Some(auth) = &self.auth else {
            return Attempt::Accepted;
        };
        if let Some(who) = &self.who {
            return Attempt::Refused(
                ErrorCode::Conflict,
                format!(
                    "this connection is already authenticated as {:?}; open a new connection to \
                     use another token",
                    who.name
                ),
            );
        }
        match auth.find(token) {
            Some(entry) => {
                self.who = Some(entry.clone());
                Attempt::Accepted
            }
            None => {
                self.failures += 1;
                let message = format!(
                    "invalid token (failed attempt {} of {MAX_FAILED_ATTEMPTS})",
                    self.failures
                );
                if self.failures >= MAX_FAILED_ATTEMPTS {
                    Attempt::Exhausted(message)
                } else {
                    Attempt::Refused(ErrorCode::Unauthorized, message)
                }
            }
        }
    }

    /// The authenticated token's name, for logs.
    pub(super) fn token_name(&self) -> Option<&str> {
        self.who.as_ref().map(|w| w.name.as_str())
    }

    /// Checks a request (anything but `Authenticate`): `Err` is the refusal to answer it with,
    /// `unauthorized` before a successful `Authenticate`, `forbidden` without the grant.
    pub(super) fn check(&self, payload: &Payload) -> Result<(), (ErrorCode, String)> {
        if self.auth.is_none() {
            return Ok(());
        }
        let need = need(payload);
        if need == Need::Nothing {
            return Ok(());
        }
        let Some(who) = &self.who else {
            return Err((
                ErrorCode::Unauthorized,
                "authentication required: send Authenticate with a token first".to_string(),
            ));
        };
        match need {
            Need::On(action, queue) if !who.allows(action, Some(queue)) => Err((
                ErrorCode::Forbidden,
                format!("token {:?} may not {action:?} on {queue}", who.name),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Grant;

    const GOOD: &str = "producer-token-0123456789";

    fn session() -> Session {
        Session::new(Some(Arc::new(AuthConfig {
            tokens: vec![TokenEntry {
                name: "producer".into(),
                token: GOOD.into(),
                grants: vec![Grant {
                    resources: vec!["orders*".into()],
                    actions: vec![Action::Publish],
                }],
            }],
        })))
    }

    fn publish(queue: &str) -> Payload {
        Payload::Publish {
            queue: queue.into(),
            messages: Vec::new(),
        }
    }

    #[test]
    fn requests_wait_for_a_token_then_follow_its_grants() {
        let mut s = session();
        assert!(s.pending());
        assert_eq!(
            s.check(&publish("orders")).unwrap_err().0,
            ErrorCode::Unauthorized
        );
        assert_eq!(
            s.check(&Payload::Ping).unwrap_err().0,
            ErrorCode::Unauthorized
        );
        assert_eq!(s.check(&Payload::Pong), Ok(()));
        assert_eq!(s.authenticate(GOOD), Attempt::Accepted);
        assert!(!s.pending());
        assert_eq!(s.token_name(), Some("producer"));
        assert_eq!(s.check(&publish("orders.eu")), Ok(()));
        assert_eq!(
            s.check(&publish("billing")).unwrap_err().0,
            ErrorCode::Forbidden
        );
        let subscribe = Payload::Subscribe {
            queue: "orders".into(),
            credits: 1,
            lease_ms: None,
        };
        assert_eq!(s.check(&subscribe).unwrap_err().0, ErrorCode::Forbidden);
        let create = Payload::DeleteQueue {
            queue: "orders".into(),
        };
        assert_eq!(s.check(&create).unwrap_err().0, ErrorCode::Forbidden);
        let stats = Payload::QueueStats {
            queue: "anything".into(),
        };
        assert_eq!(s.check(&stats), Ok(()));
        assert!(matches!(
            s.authenticate(GOOD),
            Attempt::Refused(ErrorCode::Conflict, _)
        ));
    }

    #[test]
    fn three_failures_exhaust_the_connection() {
        let mut s = session();
        assert!(matches!(
            s.authenticate("wrong-token-0123456789"),
            Attempt::Refused(ErrorCode::Unauthorized, _)
        ));
        assert!(matches!(
            s.authenticate(""),
            Attempt::Refused(ErrorCode::Unauthorized, _)
        ));
        assert!(matches!(s.authenticate("nope"), Attempt::Exhausted(_)));
        assert!(s.pending());
    }

    #[test]
    fn without_auth_everything_passes() {
        let mut s = Session::new(None);
        assert!(!s.pending());
        assert_eq!(s.check(&publish("x")), Ok(()));
        assert_eq!(s.authenticate("whatever"), Attempt::Accepted);
    }
}
