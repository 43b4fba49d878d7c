//! Extractors that answer bad input with the JSON error shape: 400 for syntax and type errors (not
//! axum's 422), 413 for an oversize body, 400 for names outside `[A-Za-z0-9_.-]{1,128}`.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use weir_proto::ErrorCode;

use super::error::ApiError;
use super::AppState;

/// A JSON request body parsed with `serde_json`; an empty body parses as `{}` when `T` allows it.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.max_http_body_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|e| {
                let inner = e.into_inner();
                if inner.is::<http_body_util::LengthLimitError>() {
                    ApiError::new(
                        ErrorCode::TooLarge,
                        format!("request body exceeds {limit} bytes"),
                    )
                } else {
                    ApiError::bad_request(format!("cannot read request body: {inner}"))
                }
            })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// One validated object name from the path (`/v1/queues/{name}`).
#[derive(Debug)]
pub struct Name(pub String);

/// Two validated names from the path (`/v1/topics/{topic}/subscriptions/{sub}`).
#[derive(Debug)]
pub struct Names(pub String, pub String);

fn checked(raw: String) -> Result<String, ApiError> {
    weir_proto::validate_name(&raw)
        .map_err(|e| ApiError::bad_request(format!("invalid name {raw:?}: {e}")))?;
    Ok(raw)
}

impl<S: Send + Sync> FromRequestParts<S> for Name {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request(format!("invalid path: {e}")))?;
        Ok(Name(checked(raw)?))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Names {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path((a, b)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad_request(format!("invalid path: {e}")))?;
        Ok(Names(checked(a)?, checked(b)?))
    }
}
