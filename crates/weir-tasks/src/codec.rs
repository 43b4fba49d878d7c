//! A tiny binary codec for the tasks and schedules journals: LEB128 varints and length-prefixed
//! bytes. Decoding is bounds-checked and says where it failed.

use weir_store::StoreError;

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a varint length then the bytes.
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Appends a string.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

/// Appends an optional string (a presence byte, then the string).
pub(crate) fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// Appends an optional number (0 = absent, else value + 1).
pub(crate) fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    put_varint(out, v.map_or(0, |v| v.saturating_add(1)));
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

    pub(crate) fn u32(&mut self) -> Result<u32, StoreError> {
        let v = self.varint()?;
        u32::try_from(v).map_err(|_| self.error(format!("{v} does not fit in u32")))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let len = self.varint()?;
        let have = self.buf.len() - self.pos;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= have)
            .ok_or_else(|| self.error(format!("truncated: need {len} bytes, have {have}")))?;
        let out = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    pub(crate) fn string(&mut self) -> Result<String, StoreError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|e| self.error(format!("not UTF-8: {e}")))
    }

    pub(crate) fn opt_string(&mut self) -> Result<Option<String>, StoreError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            t => Err(self.error(format!("bad presence byte {t}"))),
        }
    }

    pub(crate) fn opt_u64(&mut self) -> Result<Option<u64>, StoreError> {
        let v = self.varint()?;
        Ok(v.checked_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut out = Vec::new();
        put_varint(&mut out, 300);
        put_str(&mut out, "héllo");
        put_opt_str(&mut out, None);
        put_opt_str(&mut out, Some("x"));
        put_opt_u64(&mut out, Some(0));
        put_opt_u64(&mut out, None);
        let mut r = Reader::new("t", &out);
        assert_eq!(r.varint().unwrap(), 300);
        assert_eq!(r.string().unwrap(), "héllo");
        assert_eq!(r.opt_string().unwrap(), None);
        assert_eq!(r.opt_string().unwrap().as_deref(), Some("x"));
        assert_eq!(r.opt_u64().unwrap(), Some(0));
        assert_eq!(r.opt_u64().unwrap(), None);
        assert!(r.is_empty());
        let mut r = Reader::new("t", &out[..3]);
        r.varint().unwrap();
        assert!(r.string().is_err());
    }
}
