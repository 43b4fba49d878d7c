//! The stable error codes shared by HTTP and the native protocol (DESIGN §4).

use std::fmt;

/// A stable, machine-readable error class. Each has one HTTP status and one wire number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Malformed or invalid input (HTTP 400).
    BadRequest,
    /// Missing or invalid credentials (HTTP 401).
    Unauthorized,
    /// Credentials lack the permission (HTTP 403).
    Forbidden,
    /// The named object does not exist (HTTP 404).
    NotFound,
    /// The request conflicts with current state (HTTP 409).
    Conflict,
    /// A body, frame or batch exceeds a limit (HTTP 413).
    TooLarge,
    /// Temporarily refused for back pressure; retry after the hint (HTTP 503).
    Busy,
    /// An unexpected server-side failure, such as an I/O error (HTTP 500).
    Internal,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::TooLarge,
        ErrorCode::Busy,
        ErrorCode::Internal,
    ];

    /// The snake_case name used in JSON error bodies.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Busy => "busy",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status this code maps to.
    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::Busy => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The number carried in native-protocol error frames.
    pub const fn wire(self) -> u16 {
        self.http_status()
    }

    /// Parses a wire number back into a code.
    pub fn from_wire(value: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.wire() == value)
    }

    /// Whether a client should retry the same request later.
    pub const fn is_retryable(self) -> bool {
        matches!(self, ErrorCode::Busy)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_numbers_round_trip_and_are_unique() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(code.wire()), Some(code));
        }
        assert_eq!(ErrorCode::from_wire(0), None);
        assert_eq!(ErrorCode::Busy.http_status(), 503);
        assert!(ErrorCode::Busy.is_retryable());
        assert!(!ErrorCode::BadRequest.is_retryable());
    }
}
