//! Token authentication and per-resource permissions, for the HTTP API and the native protocol.
//!
//! A token file (JSON) lists tokens and what each may do:
//!
//! ```json
//! {"tokens": [
//!   {"name": "shop", "token": "…", "grants": [{"resources": ["orders", "billing.*"], "actions": ["publish"]}]},
//!   {"name": "ops",  "token": "…", "grants": [{"resources": ["*"], "actions": ["admin"]}]}
//! ]}
//! ```
//!
//! Actions: `publish` (send messages, records, tasks), `consume` (receive, ack, nack, extend, read
//! streams, post task results), `admin` (create, configure, purge, delete; implies the other two).
//! A resource pattern is an exact name, a prefix ending in `*`, or `*`. The resource of a request is
//! the queue, topic, stream or schedule named in its path (for `/v1/tasks/queues/{q}/receive`, the
//! queue). Routes that name none need the action on `*`: task submission and workflow starts need
//! `publish`, task results, heartbeats and cancels need `consume`, rate limits need `admin`. Every
//! `GET` except stream reads (which need `consume`) is open to any valid token.
//! `/healthz` is always open; `/metrics` and `/v1/openapi.json` need any valid token.
//!
//! The native protocol (`docs/protocol.md` §1.2) uses the same tokens and grants: the client sends
//! an `Authenticate` frame right after the handshake, and the connection then acts as that token.
//! Its requests map onto the same actions on the queue they name: publish → `publish`; receive,
//! ack, nack, extend and subscribe → `consume`; create and delete queue → `admin`; stats, ping and
//! credit grants → any valid token. Missing or bad tokens get `unauthorized` (401; three failed
//! attempts close the connection), missing grants `forbidden` (403; the connection stays usable).
//! Tokens are compared in constant time ([`AuthConfig::find`]) on both protocols.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use weir_proto::ErrorCode;

use crate::http::error::ApiError;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Send messages, records and tasks.
    Publish,
    /// Receive, ack, nack, extend; read streams; post task results.
    Consume,
    /// Create, configure, purge and delete; implies publish and consume.
    Admin,
}

/// One grant: actions on resources matching any pattern.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Name patterns: exact, `prefix*`, or `*`.
    pub resources: Vec<String>,
    /// Allowed actions.
    pub actions: Vec<Action>,
}

/// One token and its grants.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// A label for logs (never the secret).
    pub name: String,
    /// The bearer secret (at least 16 bytes).
    pub token: String,
    /// What it may do.
    pub grants: Vec<Grant>,
}

/// The parsed token file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Every token.
    pub tokens: Vec<TokenEntry>,
}

/// Shortest accepted token, in bytes.
pub const MIN_TOKEN_BYTES: usize = 16;

impl AuthConfig {
    /// Reads and validates a token file.
    pub fn load(path: &Path) -> anyhow::Result<AuthConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading token file {}: {e}", path.display()))?;
        let config: AuthConfig = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("token file {}: {e}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks token lengths and uniqueness.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.tokens.is_empty() {
            anyhow::bail!("the token file lists no tokens");
        }
        for (i, t) in self.tokens.iter().enumerate() {
            if t.token.len() < MIN_TOKEN_BYTES {
                anyhow::bail!("token {:?} is shorter than {MIN_TOKEN_BYTES} bytes", t.name);
            }
            if self.tokens[..i].iter().any(|o| o.token == t.token) {
                anyhow::bail!("token {:?} repeats an earlier token", t.name);
            }
        }
        Ok(())
    }

    /// The entry whose secret equals `presented` (constant time in the secret's bytes). Shared by
    /// the HTTP middleware and the native protocol's `Authenticate`.
    pub(crate) fn find(&self, presented: &str) -> Option<&TokenEntry> {
        self.tokens
            .iter()
            .find(|t| constant_time_eq(t.token.as_bytes(), presented.as_bytes()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl TokenEntry {
    /// Whether this token may do `action` on `resource` (`None`: a route naming no resource).
    pub fn allows(&self, action: Action, resource: Option<&str>) -> bool {
        self.grants.iter().any(|g| {
            let action_ok = g.actions.contains(&action) || g.actions.contains(&Action::Admin);
            let resource_ok = g.resources.iter().any(|p| match resource {
                Some(name) => pattern_matches(p, name),
                None => p == "*",
            });
            action_ok && resource_ok
        })
    }
}

/// What a request needs: `None` = open, `Some(None)` = any valid token, `Some(Some(..))` = an
/// action on a resource.
type Need = Option<Option<(Action, Option<String>)>>;

/// Maps a request to the permission it needs.
pub fn required(method: &Method, path: &str) -> Need {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["healthz"] => None,
        ["metrics"] | ["v1", "openapi.json"] => Some(None),
        ["v1", kind, rest @ ..] => {
            let resource = rest.first().map(|s| s.to_string());
            let last = rest.last().copied().unwrap_or("");
            // The task-aware receive names its queue: `/v1/tasks/queues/{q}/receive`.
            if let ("tasks", ["queues", queue, "receive"]) = (*kind, rest) {
                return Some(Some((Action::Consume, Some(queue.to_string()))));
            }
            let action = match (*kind, method, rest.len()) {
                (_, &Method::GET, _) if *kind != "streams" || rest.len() <= 1 => return Some(None),
                ("queues" | "topics", &Method::POST, _) if last == "messages" => Action::Publish,
                ("streams", &Method::POST, 2) if last == "records" => Action::Publish,
                ("tasks" | "workflows", &Method::POST, 0) => Action::Publish,
                ("tasks", &Method::POST, _) => Action::Consume,
                ("tasks", &Method::DELETE, _) => Action::Consume,
                ("queues" | "topics", &Method::POST, _)
                    if matches!(last, "receive" | "ack" | "nack" | "extend") =>
                {
                    Action::Consume
                }
                ("streams", _, _) if rest.get(1) == Some(&"groups") || method == Method::GET => {
                    Action::Consume
                }
                _ => Action::Admin,
            };
            let resource = if matches!(*kind, "tasks" | "workflows") {
                None
            } else {
                resource
            };
            Some(Some((action, resource)))
        }
        _ => Some(None),
    }
}

/// The middleware: 401 without a valid bearer token, 403 without the permission.
pub async fn require_token(
    State(auth): State<Arc<AuthConfig>>,
    request: Request,
    next: Next,
) -> Response {
    let need = required(request.method(), request.uri().path());
    let Some(need) = need else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(entry) = presented.and_then(|p| auth.find(p.trim())) else {
        return ApiError::new(
            ErrorCode::Unauthorized,
            "missing or invalid token: send Authorization: Bearer <token>",
        )
        .into_response();
    };
    if let Some((action, resource)) = need {
        if !entry.allows(action, resource.as_deref()) {
            tracing::info!(token = %entry.name, ?action, ?resource, "request forbidden");
            return ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "token {:?} may not {action:?} on {}",
                    entry.name,
                    resource.as_deref().unwrap_or("*")
                ),
            )
            .into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(resources: &[&str], actions: &[Action]) -> TokenEntry {
        TokenEntry {
            name: "t".into(),
            token: "0123456789abcdef".into(),
            grants: vec![Grant {
                resources: resources.iter().map(|s| s.to_string()).collect(),
                actions: actions.to_vec(),
            }],
        }
    }

    #[test]
    fn routes_map_to_actions() {
        let p = |m: Method, path: &str| required(&m, path);
        assert_eq!(p(Method::GET, "/healthz"), None);
        assert_eq!(p(Method::GET, "/metrics"), Some(None));
        assert_eq!(p(Method::GET, "/v1/queues/q"), Some(None));
        assert_eq!(
            p(Method::POST, "/v1/queues/q/messages"),
            Some(Some((Action::Publish, Some("q".into()))))
        );
        assert_eq!(
            p(Method::POST, "/v1/queues/q/ack"),
            Some(Some((Action::Consume, Some("q".into()))))
        );
        assert_eq!(
            p(Method::PUT, "/v1/queues/q"),
            Some(Some((Action::Admin, Some("q".into()))))
        );
        assert_eq!(
            p(Method::POST, "/v1/topics/t/subscriptions/s/receive"),
            Some(Some((Action::Consume, Some("t".into()))))
        );
        assert_eq!(
            p(Method::GET, "/v1/streams/s/partitions/0/records"),
            Some(Some((Action::Consume, Some("s".into()))))
        );
        assert_eq!(
            p(Method::POST, "/v1/tasks"),
            Some(Some((Action::Publish, None)))
        );
    }

    #[test]
    fn grants_match_patterns_and_admin_implies_all() {
        let e = entry(&["orders", "bill*"], &[Action::Publish]);
        assert!(e.allows(Action::Publish, Some("orders")));
        assert!(e.allows(Action::Publish, Some("billing")));
        assert!(!e.allows(Action::Publish, Some("orders2")));
        assert!(!e.allows(Action::Consume, Some("orders")));
        assert!(!e.allows(Action::Publish, None));
        let admin = entry(&["*"], &[Action::Admin]);
        assert!(admin.allows(Action::Consume, Some("x")));
        assert!(admin.allows(Action::Publish, None));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
