//! Names of stored objects: `/`-separated components, each a safe file name.

use std::fmt;

use crate::StoreError;

/// Most components in a [`StoreName`].
pub const MAX_COMPONENTS: usize = 8;
/// Longest component, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 128;

/// A validated path-like name such as `queues/orders/messages`.
///
/// Every component is `[A-Za-z0-9_.-]{1,128}` and does not start with `.`, so a name maps to a
/// relative path that cannot leave the store's root. The empty name (no components) is the root.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreName {
    components: Vec<String>,
}

impl StoreName {
    /// The root (no components), used as a prefix for [`crate::Store::list`].
    pub fn root() -> StoreName {
        StoreName {
            components: Vec::new(),
        }
    }

    /// Parses `a/b/c`, validating every component.
    pub fn parse(name: &str) -> Result<StoreName, StoreError> {
        if name.is_empty() {
            return Ok(StoreName::root());
        }
        let mut out = StoreName::root();
        for component in name.split('/') {
            out = out.join(component)?;
        }
        Ok(out)
    }

    /// This name with one more component.
    pub fn join(&self, component: &str) -> Result<StoreName, StoreError> {
        let bad = |reason: &str| StoreError::InvalidName {
            name: format!("{self}/{component}"),
            reason: reason.to_string(),
        };
        if component.is_empty() {
            return Err(bad("empty component"));
        }
        if component.len() > MAX_COMPONENT_BYTES {
            return Err(bad("component longer than 128 bytes"));
        }
        if component.starts_with('.') {
            return Err(bad("component starts with '.'"));
        }
        if !component
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(bad("component holds a byte outside [A-Za-z0-9_.-]"));
        }
        if self.components.len() >= MAX_COMPONENTS {
            return Err(bad("too many components"));
        }
        let mut components = self.components.clone();
        components.push(component.to_string());
        Ok(StoreName { components })
    }

    /// The components in order.
    pub fn components(&self) -> &[String] {
        &self.components
    }
}

impl fmt::Display for StoreName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.components.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let n = StoreName::parse("queues/orders/messages").expect("valid");
        assert_eq!(n.components().len(), 3);
        assert_eq!(n.to_string(), "queues/orders/messages");
        for bad in ["a//b", "../x", "a/..", "a/.x", "a/b c", "a\\b/c", "/a"] {
            assert!(StoreName::parse(bad).is_err(), "{bad}");
        }
    }
}
