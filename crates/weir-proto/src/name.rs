//! Validation of object names (queues, topics, subscriptions, streams, schedules).
//!
//! Names become directory names on disk, so this check is a security boundary: it admits only
//! `[A-Za-z0-9_.-]{1,128}` not starting with `.` (DESIGN §4), which excludes `..`, `/`, `\`, NUL
//! and every percent-encoded trick once the HTTP layer has decoded the path.

use crate::limits::MAX_NAME_BYTES;

/// Why a name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is the empty string.
    #[error("name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_BYTES`].
    #[error("name is {len} bytes long; the limit is {max}")]
    TooLong {
        /// The name's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The name starts with a dot.
    #[error("name must not start with '.'")]
    LeadingDot,
    /// The name holds a byte outside `[A-Za-z0-9_.-]`.
    #[error("name holds {found:?} at byte {position}; allowed are A-Z a-z 0-9 _ . -")]
    BadCharacter {
        /// The offending character.
        found: char,
        /// Its byte position.
        position: usize,
    },
}

/// Checks that `name` is a valid object name.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong {
            len: name.len(),
            max: MAX_NAME_BYTES,
        });
    }
    if name.starts_with('.') {
        return Err(NameError::LeadingDot);
    }
    for (position, found) in name.char_indices() {
        if !(found.is_ascii_alphanumeric() || matches!(found, '_' | '.' | '-')) {
            return Err(NameError::BadCharacter { found, position });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["a", "orders", "orders.dlq", "A-b_c.9", &"x".repeat(128)] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_traversal_and_odd_bytes() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name(".."), Err(NameError::LeadingDot));
        assert_eq!(validate_name(".hidden"), Err(NameError::LeadingDot));
        assert!(matches!(
            validate_name("a/b"),
            Err(NameError::BadCharacter {
                found: '/',
                position: 1
            })
        ));
        assert!(matches!(
            validate_name("a\\b"),
            Err(NameError::BadCharacter { .. })
        ));
        assert!(matches!(
            validate_name("a%2Fb"),
            Err(NameError::BadCharacter { .. })
        ));
        assert!(matches!(
            validate_name("a\0"),
            Err(NameError::BadCharacter { .. })
        ));
        assert!(matches!(
            validate_name("é"),
            Err(NameError::BadCharacter { .. })
        ));
        assert!(matches!(
            validate_name(&"x".repeat(129)),
            Err(NameError::TooLong { len: 129, max: 128 })
        ));
    }
}
