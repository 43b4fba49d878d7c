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
        // As `format!("{:x}-{:x}-{:x}")`, without the formatting machinery (one per delivery).
        let mut out = String::with_capacity(30);
        push_hex(&mut out, u64::from(self.salt));
        out.push('-');
        push_hex(&mut out, self.offset);
        out.push('-');
        push_hex(&mut out, u64::from(self.attempt));
        out
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

/// Appends `v` in lowercase hex without leading zeros (as `{:x}`).
pub(crate) fn push_hex(out: &mut String, mut v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend(buf[i..].iter().map(|b| char::from(*b)));
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
        for r in [
            r,
            Receipt {
                salt: 0,
                offset: 0,
                attempt: 0,
            },
            Receipt {
                salt: 0xabc,
                offset: 0x1_0000_0000,
                attempt: 7,
            },
        ] {
            let want = format!("{:x}-{:x}-{:x}", r.salt, r.offset, r.attempt);
            assert_eq!(r.encode(), want);
        }
        for bad in ["", "x", "1-2", "1-2-3-4", "g-1-1", "1--1", &"1".repeat(65)] {
            assert_eq!(Receipt::parse(bad), None, "{bad}");
        }
    }
}
