//! A tiny binary codec for small owner state (broker and task journals, snapshots, envelopes):
//! LEB128 varints, length-prefixed bytes and strings, optional values. Decoding is bounds-checked
//! and names where it failed ([`StoreError::Corrupt`] with the structure and byte position).

use crate::StoreError;

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes [`put_varint`] writes for `v`.
pub fn varint_len(v: u64) -> usize {
    let bits = u64::BITS - (v | 1).leading_zeros();
    bits.div_ceil(7) as usize
}

/// Appends a varint length then the bytes.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends a string (varint length, then its bytes).
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// Appends an optional string (a presence byte, then the string).
pub fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// Appends an optional number (0 = absent, else value + 1).
pub fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    put_varint(out, v.map_or(0, |v| v.saturating_add(1)));
}

/// A cursor over encoded bytes; every read is checked.
#[derive(Debug)]
pub struct Reader<'a> {
    what: &'static str,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`; `what` names the structure in errors.
    pub fn new(what: &'static str, buf: &'a [u8]) -> Reader<'a> {
        Reader { what, buf, pos: 0 }
    }

    /// A corruption error at the current position.
    pub fn error(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            file: self.what.to_string(),
            position: self.pos as u64,
            reason: reason.into(),
        }
    }

    /// Whether every byte was consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, StoreError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.error("truncated: need 1 byte"))?;
        self.pos += 1;
        Ok(b)
    }

    /// An unsigned LEB128 varint (at most 10 bytes).
    pub fn varint(&mut self) -> Result<u64, StoreError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.error("varint longer than 10 bytes"))
    }

    /// A varint that must fit in 32 bits.
    pub fn varint_u32(&mut self) -> Result<u32, StoreError> {
        let v = self.varint()?;
        u32::try_from(v).map_err(|_| self.error(format!("{v} does not fit in 32 bits")))
    }

    /// Length-prefixed bytes, borrowed from the input.
    pub fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| self.error("length overflows"))?;
        self.take(len)
    }

    /// The next `len` bytes (no length prefix), borrowed from the input.
    pub fn take(&mut self, len: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| {
                self.error(format!(
                    "truncated: need {len} bytes, have {}",
                    self.buf.len() - self.pos
                ))
            })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// A length-prefixed UTF-8 string.
    pub fn string(&mut self) -> Result<String, StoreError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|e| self.error(format!("invalid UTF-8: {e}")))
    }

    /// An optional string written by [`put_opt_str`].
    pub fn opt_string(&mut self) -> Result<Option<String>, StoreError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            t => Err(self.error(format!("bad presence byte {t}"))),
        }
    }

    /// An optional number written by [`put_opt_u64`].
    pub fn opt_u64(&mut self) -> Result<Option<u64>, StoreError> {
        let v = self.varint()?;
        Ok(v.checked_sub(1))
    }

    /// Checks that every byte was consumed.
    pub fn finish(&self) -> Result<(), StoreError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.error(format!("{} trailing bytes", self.buf.len() - self.pos)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_bytes_round_trip() {
        let mut out = Vec::new();
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            put_varint(&mut out, v);
        }
        put_bytes(&mut out, b"hello");
        let mut r = Reader::new("t", &out);
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(r.varint().expect("varint"), v);
        }
        assert_eq!(r.bytes().expect("bytes"), b"hello");
        r.finish().expect("consumed");
        assert!(r.u8().is_err());
    }

    #[test]
    fn varint_len_is_what_put_varint_writes() {
        for v in [
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            1 << 21,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(varint_len(v), out.len(), "{v}");
        }
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        put_bytes(&mut out, b"hello");
        for cut in 0..out.len() {
            let mut r = Reader::new("t", &out[..cut]);
            assert!(r.bytes().is_err());
        }
        let mut r = Reader::new("t", &[0xff; 11]);
        assert!(r.varint().is_err());
    }

    #[test]
    fn strings_and_optionals_round_trip() {
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        put_str(&mut out, "héllo");
        put_opt_str(&mut out, None);
        put_opt_str(&mut out, Some("x"));
        put_opt_u64(&mut out, Some(0));
        put_opt_u64(&mut out, None);
        let mut r = Reader::new("t", &out);
        assert_eq!(r.varint().expect("varint"), 300);
        assert_eq!(r.string().expect("string"), "héllo");
        assert_eq!(r.opt_string().expect("none"), None);
        assert_eq!(r.opt_string().expect("some").as_deref(), Some("x"));
        assert_eq!(r.opt_u64().expect("zero"), Some(0));
        assert_eq!(r.opt_u64().expect("none"), None);
        r.finish().expect("consumed");
        let mut r = Reader::new("t", &out[..3]);
        r.varint().expect("varint");
        assert!(r.string().is_err());
    }
}
