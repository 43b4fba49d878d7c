//! The JSON error body `{"error": {"code", "message"}}` and its HTTP mapping (DESIGN §4).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use weir_broker::BrokerError;
use weir_proto::ErrorCode;

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    /// The stable code; decides the status.
    pub code: ErrorCode,
    /// A message a person can act on.
    pub message: String,
    /// For `busy`: when to retry, in milliseconds.
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// A 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    /// A 404 for an unknown route.
    pub fn no_route(method: &str, path: &str) -> ApiError {
        ApiError::new(ErrorCode::NotFound, format!("no route for {method} {path}"))
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> ApiError {
        let code = e.code();
        if code == ErrorCode::Internal {
            tracing::error!(error = %e, "request failed inside the broker");
        }
        ApiError {
            code,
            retry_after_ms: e.retry_after_ms(),
            message: e.to_string(),
        }
    }
}

impl From<weir_store::StoreError> for ApiError {
    fn from(e: weir_store::StoreError) -> ApiError {
        ApiError::from(BrokerError::Storage(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::json!({
            "error": { "code": self.code.as_str(), "message": self.message }
        });
        let mut response = (status, axum::Json(body)).into_response();
        if self.code == ErrorCode::Busy {
            let seconds = retry_after_seconds(self.retry_after_ms.unwrap_or(1000));
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// `Retry-After` is whole seconds, at least 1 (DESIGN §4).
pub fn retry_after_seconds(retry_after_ms: u64) -> u64 {
    retry_after_ms.div_ceil(1000).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_at_least_one() {
        assert_eq!(retry_after_seconds(0), 1);
        assert_eq!(retry_after_seconds(1), 1);
        assert_eq!(retry_after_seconds(1000), 1);
        assert_eq!(retry_after_seconds(1001), 2);
    }
}
