//! Weir's wire vocabulary: limits, names, error codes and (in [`frame`]) the native protocol codec.
//!
//! Architecture invariant: this crate does no I/O and has no async code. It is the single source of
//! truth for every limit and every error code that crosses a process boundary; the HTTP layer and the
//! native protocol both map onto [`ErrorCode`].

pub mod error_code;
pub mod frame;
pub mod limits;
pub mod name;

pub use error_code::ErrorCode;
pub use name::{validate_name, NameError};
