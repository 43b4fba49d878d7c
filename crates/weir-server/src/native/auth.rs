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
    /// An action on a queue, topic or stream (`None`: on `*`, for requests naming none).
    On(Action, Option<&'a str>),
}

/// The grant a request needs: the same as its HTTP route's (`crate::auth::required`).
fn need(payload: &Payload) -> Need<'_> {
    use Action::{Admin, Consume, Publish};
    match payload {
        Payload::Pong => Need::Nothing,
        Payload::Publish { queue, .. } => Need::On(Publish, Some(queue)),
        // `POST /v1/topics/{t}/messages`, `POST /v1/streams/{s}/records`.
        Payload::PublishTopic { topic, .. } => Need::On(Publish, Some(topic)),
        Payload::Append { stream, .. } => Need::On(Publish, Some(stream)),
        // A subscription is checked against its topic, as `/v1/topics/{t}/subscriptions/...`.
        Payload::Receive { target, .. }
        | Payload::Ack { target, .. }
        | Payload::Nack { target, .. }
        | Payload::Extend { target, .. }
        | Payload::Subscribe { target, .. } => Need::On(Consume, Some(target.resource())),
        Payload::CreateQueue { queue, .. } | Payload::DeleteQueue { queue } => {
            Need::On(Admin, Some(queue))
        }
        Payload::CreateTopic { topic, .. }
        | Payload::DeleteTopic { topic }
        | Payload::CreateSubscription { topic, .. }
        | Payload::DeleteSubscription { topic, .. } => Need::On(Admin, Some(topic)),
        Payload::CreateStream { stream, .. } | Payload::DeleteStream { stream } => {
            Need::On(Admin, Some(stream))
        }
        // Stream reads and every group call need `consume`, `GET` included.
        Payload::Read { stream, .. }
        | Payload::JoinGroup { stream, .. }
        | Payload::Heartbeat { stream, .. }
        | Payload::LeaveGroup { stream, .. }
        | Payload::CommitOffsets { stream, .. }
        | Payload::GroupStatus { stream, .. } => Need::On(Consume, Some(stream)),
        // `POST /v1/tasks` and `POST /v1/tasks/{id}/cancel` name no resource: they need the
        // action on `*`.
        Payload::SubmitTask(_) => Need::On(Publish, None),
        Payload::CancelTask { .. } => Need::On(Consume, None),
        // Stats and task status, like HTTP's GETs; credits and unsubscribe act on the
        // connection's own subscriptions, which were checked when they were opened;
        // `Authenticate` is answered before this check; frames only servers send are refused as
        // `bad_request` after it.
        Payload::Ping
        | Payload::QueueStats { .. }
        | Payload::TopicStats { .. }
        | Payload::StreamStats { .. }
        | Payload::GetTask { .. }
        | Payload::GrantCredits { .. }
        | Payload::Unsubscribe { .. }
        | Payload::Authenticate { .. }
        | Payload::HelloOk(_)
        | Payload::Error(_)
        | Payload::Ok
        | Payload::QueueInfo(_)
        | Payload::Published(_)
        | Payload::Deliveries(_)
        | Payload::ReceiptsDone { .. }
        | Payload::TopicInfo(_)
        | Payload::StreamInfo(_)
        | Payload::Appended(_)
        | Payload::Records { .. }
        | Payload::GroupAssignment(_)
        | Payload::GroupInfo(_)
        | Payload::TaskSubmitted { .. }
        | Payload::TaskInfo(_) => Need::AnyToken,
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
            Need::On(action, resource) if !who.allows(action, resource) => Err((
                ErrorCode::Forbidden,
                format!(
                    "token {:?} may not {action:?} on {}",
                    who.name,
                    resource.unwrap_or("*")
                ),
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
            target: "orders".into(),
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

    #[test]
    fn version_3_requests_follow_the_http_route_map() {
        use weir_proto::frame::{ReadFrom, Target};
        let topic_sub = Target::subscription("orders", "mail");
        let cases = [
            (
                Payload::PublishTopic {
                    topic: "orders".into(),
                    messages: vec![],
                },
                Need::On(Action::Publish, Some("orders")),
            ),
            (
                Payload::Ack {
                    target: topic_sub.clone(),
                    receipts: vec![],
                },
                Need::On(Action::Consume, Some("orders")),
            ),
            (
                Payload::CreateSubscription {
                    topic: "orders".into(),
                    subscription: "mail".into(),
                    start: Default::default(),
                    options: Default::default(),
                },
                Need::On(Action::Admin, Some("orders")),
            ),
            (
                Payload::TopicStats {
                    topic: "orders".into(),
                },
                Need::AnyToken,
            ),
            (
                Payload::Append {
                    stream: "clicks".into(),
                    records: vec![],
                },
                Need::On(Action::Publish, Some("clicks")),
            ),
            (
                Payload::Read {
                    stream: "clicks".into(),
                    partition: 0,
                    from: ReadFrom::Offset(0),
                    max: 1,
                    wait_ms: 0,
                },
                Need::On(Action::Consume, Some("clicks")),
            ),
            (
                Payload::GroupStatus {
                    stream: "clicks".into(),
                    group: "g".into(),
                },
                Need::On(Action::Consume, Some("clicks")),
            ),
            (
                Payload::DeleteStream {
                    stream: "clicks".into(),
                },
                Need::On(Action::Admin, Some("clicks")),
            ),
            (
                Payload::SubmitTask(Box::default()),
                Need::On(Action::Publish, None),
            ),
            (
                Payload::CancelTask { id: "t".into() },
                Need::On(Action::Consume, None),
            ),
            (
                Payload::GetTask {
                    id: "t".into(),
                    wait_ms: 0,
                },
                Need::AnyToken,
            ),
        ];
        for (payload, expected) in cases {
            assert_eq!(need(&payload), expected, "{payload:?}");
        }
        // The producer token (publish on `orders*`) may publish to the topic, not consume it,
        // and may not submit tasks (that needs publish on `*`).
        let mut s = session();
        assert_eq!(s.authenticate(GOOD), Attempt::Accepted);
        let publish_topic = Payload::PublishTopic {
            topic: "orders".into(),
            messages: vec![],
        };
        assert_eq!(s.check(&publish_topic), Ok(()));
        let receive = Payload::Receive {
            target: topic_sub,
            max: 1,
            lease_ms: None,
            wait_ms: 0,
        };
        assert_eq!(s.check(&receive).unwrap_err().0, ErrorCode::Forbidden);
        let (code, message) = s.check(&Payload::SubmitTask(Box::default())).unwrap_err();
        assert_eq!(code, ErrorCode::Forbidden);
        assert!(message.contains("on *"), "{message}");
    }
}
