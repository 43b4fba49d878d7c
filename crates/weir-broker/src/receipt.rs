//! Receipts: `<salt>-<offset>-<attempt>` in lowercase hex (at most 8 + 1 + 16 + 1 + 4 = 30 ASCII
//! bytes). The salt is random per opened queue, so receipts from before a restart or from a
//! deleted-and-recreated queue never match; the attempt makes a receipt from an earlier delivery of
//! the same message stale.

/// A parsed receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Receipt {
    pub(crate) salt: u32,
    pub(crate) offset: u64,
    pub(crate) attempt: u16,
}

impl Receipt {
    pub(crate) fn encode(&self) -> String {
        format!("{:x}-{:x}-{:x}", self.salt, self.offset, self.attempt)
    }

    /// Parses a receipt; anything malformed is `None` (reported as invalid, never an error).
    pub(crate) fn parse(s: &str) -> Option<Receipt> {
        if s.len() > 64 {
            return None;
        }
        let mut parts = s.split('-');
        let salt = u32::from_str_radix(parts.next()?, 16).ok()?;
        let offset = u64::from_str_radix(parts.next()?, 16).ok()?;
        let attempt = u16::from_str_radix(parts.next()?, 16).ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Receipt {
            salt,
            offset,
            attempt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let r = Receipt {
            salt: u32::MAX,
            offset: u64::MAX,
            attempt: u16::MAX,
        };
        let s = r.encode();
        assert!(s.len() <= 64 && s.is_ascii());
        assert_eq!(Receipt::parse(&s), Some(r));
        for bad in ["", "x", "1-2", "1-2-3-4", "g-1-1", "1--1", &"1".repeat(65)] {
            assert_eq!(Receipt::parse(bad), None, "{bad}");
        }
    }
}
