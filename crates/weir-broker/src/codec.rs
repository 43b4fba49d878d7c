//! A tiny binary codec for the broker's own records (envelopes, journal entries, snapshots):
//! LEB128 varints and length-prefixed bytes. Decoding is bounds-checked and says where it failed.

use bytes::BufMut;
use weir_store::StoreError;

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

/// Appends a varint length then the bytes.
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A cursor over encoded bytes; every read is checked.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    what: &'static str,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`; `what` names the structure in errors.
    pub(crate) fn new(what: &'static str, buf: &'a [u8]) -> Reader<'a> {
        Reader { what, buf, pos: 0 }
    }

    /// A corruption error at the current position.
    pub(crate) fn error(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            file: self.what.to_string(),
            position: self.pos as u64,
            reason: reason.into(),
        }
    }

    /// Whether every byte was consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, StoreError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.error("truncated: need 1 byte"))?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, StoreError> {
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

    pub(crate) fn varint_u32(&mut self) -> Result<u32, StoreError> {
        let v = self.varint()?;
        u32::try_from(v).map_err(|_| self.error(format!("{v} does not fit in 32 bits")))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| self.error("length overflows"))?;
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

    pub(crate) fn string(&mut self) -> Result<String, StoreError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|e| self.error(format!("invalid UTF-8: {e}")))
    }

    pub(crate) fn finish(&self) -> Result<(), StoreError> {
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
}
