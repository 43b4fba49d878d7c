//! Primitive field codecs: big-endian integers, length-prefixed strings and bytes, and the
//! [`DecodeError`] that says where and why a frame is malformed.
//!
//! Every read goes through [`Reader::take`], which uses checked arithmetic and never indexes out
//! of bounds; every write goes through [`Writer`], which refuses a length that does not fit its
//! prefix instead of truncating it.

use bytes::{BufMut, Bytes, BytesMut};

use crate::name::NameError;
use crate::ErrorCode;

/// Why a frame (or the handshake) could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeReason {
    /// The handshake did not start with the magic bytes `WEIR`.
    #[error("bad magic {found:02x?}; expected \"WEIR\" (is this a Weir client?)")]
    BadMagic {
        /// The four bytes received.
        found: [u8; 4],
    },
    /// The client asked for a protocol version this server does not speak.
    #[error("unsupported protocol version {requested}; this side speaks {min}..={max}")]
    UnsupportedVersion {
        /// The version asked for.
        requested: u16,
        /// Lowest version supported.
        min: u16,
        /// Highest version supported.
        max: u16,
    },
    /// The length prefix announces a frame larger than the limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The length prefix is smaller than the fixed frame header.
    #[error("frame length {len} is shorter than the {min}-byte header")]
    FrameTooShort {
        /// Announced length.
        len: usize,
        /// Smallest valid length.
        min: usize,
    },
    /// The frame type byte is not one this version knows.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownFrameType(u8),
    /// Reserved bits were set.
    #[error("reserved flags 0x{0:02x} must be zero")]
    ReservedFlags(u8),
    /// A field runs past the end of the frame.
    #[error("{what} runs past the end of the frame")]
    Truncated {
        /// The field.
        what: &'static str,
    },
    /// Bytes remain after the last field of the frame.
    #[error("{extra} unexpected bytes after the last field")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// A string field is not valid UTF-8.
    #[error("{what} is not valid UTF-8")]
    BadUtf8 {
        /// The field.
        what: &'static str,
    },
    /// A name field failed [`crate::validate_name`].
    #[error("invalid {what}: {error}")]
    BadName {
        /// The field.
        what: &'static str,
        /// Why.
        error: NameError,
    },
    /// A list holds more items than its limit.
    #[error("{what}: {count} items exceed the limit of {max}")]
    TooMany {
        /// The list.
        what: &'static str,
        /// Items announced.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A string or byte field is longer than its limit (or empty where that is not allowed).
    #[error("{what}: {len} bytes is outside the allowed {min}..={max}")]
    BadLength {
        /// The field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// Smallest allowed.
        min: usize,
        /// Largest allowed.
        max: usize,
    },
    /// A number is outside its allowed range.
    #[error("{what} = {value} is outside the allowed {min}..={max}")]
    OutOfRange {
        /// The field.
        what: &'static str,
        /// Its value.
        value: u64,
        /// Smallest allowed.
        min: u64,
        /// Largest allowed.
        max: u64,
    },
    /// A presence or boolean byte is neither 0 nor 1.
    #[error("{what}: flag byte {value} must be 0 or 1")]
    BadFlag {
        /// The field.
        what: &'static str,
        /// The byte.
        value: u8,
    },
    /// A field is well-formed alone but contradicts another field of the frame.
    #[error("{what}: {why}")]
    Inconsistent {
        /// The field.
        what: &'static str,
        /// What it contradicts.
        why: &'static str,
    },
}

/// A decode failure: where it happened (`offset` from the start of the input, the bytes `need`ed
/// there and the bytes the input still `have`s), why, and whether the stream can go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (at byte {offset}: need {need}, have {have})")]
pub struct DecodeError {
    /// Byte offset, from the start of the input, of the offending field.
    pub offset: usize,
    /// Bytes the field needed at `offset`.
    pub need: usize,
    /// Bytes available at `offset` (within the frame).
    pub have: usize,
    /// Why decoding failed.
    pub reason: DecodeReason,
    /// The request id of the frame, when its header was intact: the error frame should carry it.
    pub request_id: Option<u64>,
    /// The whole frame's size when its envelope was intact: the caller may skip this many bytes
    /// and keep decoding (the request fails, the connection need not). `None` means the stream
    /// cannot be resynchronised and the connection must close.
    pub skip: Option<usize>,
}

impl DecodeError {
    pub(crate) fn new(offset: usize, need: usize, have: usize, reason: DecodeReason) -> Self {
        DecodeError {
            offset,
            need,
            have,
            reason,
            request_id: None,
            skip: None,
        }
    }

    /// The error code a peer should answer this failure with.
    pub fn code(&self) -> ErrorCode {
        match self.reason {
            DecodeReason::FrameTooLarge { .. } | DecodeReason::TooMany { .. } => {
                ErrorCode::TooLarge
            }
            DecodeReason::BadLength { what: "body", .. } => ErrorCode::TooLarge,
            _ => ErrorCode::BadRequest,
        }
    }
}

/// Why a frame could not be encoded (a value does not fit its wire field).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A length does not fit its prefix, or a count its field.
    #[error("{what}: {len} does not fit the wire field (max {max})")]
    TooLong {
        /// The field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// Largest representable.
        max: usize,
    },
    /// The encoded frame would exceed [`crate::limits::MAX_FRAME_BYTES`].
    #[error("encoded frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Encoded size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// A bounds-checked cursor over one frame's bytes.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Absolute offset of `buf[0]` in the caller's input, for error reports.
    base: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    /// Absolute offset of the next byte.
    pub(crate) fn offset(&self) -> usize {
        self.base.saturating_add(self.pos)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub(crate) fn error(&self, need: usize, reason: DecodeReason) -> DecodeError {
        DecodeError::new(self.offset(), need, self.remaining(), reason)
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = match self.pos.checked_add(n) {
            Some(end) if end <= self.buf.len() => end,
            _ => return Err(self.error(n, DecodeReason::Truncated { what })),
        };
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(self.error(0, DecodeReason::TrailingBytes { extra })),
        }
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let at = self.offset();
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::new(
                at,
                1,
                self.remaining().saturating_add(1),
                DecodeReason::BadFlag { what, value },
            )),
        }
    }

    /// A u64 that must lie in `min..=max`.
    pub(crate) fn u64_in(
        &mut self,
        what: &'static str,
        min: u64,
        max: u64,
    ) -> Result<u64, DecodeError> {
        let at = self.offset();
        let have = self.remaining();
        let value = self.u64(what)?;
        if value < min || value > max {
            return Err(DecodeError::new(
                at,
                8,
                have,
                DecodeReason::OutOfRange {
                    what,
                    value,
                    min,
                    max,
                },
            ));
        }
        Ok(value)
    }

    /// A u32 that must lie in `min..=max`.
    pub(crate) fn u32_in(
        &mut self,
        what: &'static str,
        min: u64,
        max: u64,
    ) -> Result<u32, DecodeError> {
        let at = self.offset();
        let have = self.remaining();
        let value = self.u32(what)?;
        if u64::from(value) < min || u64::from(value) > max {
            return Err(DecodeError::new(
                at,
                4,
                have,
                DecodeReason::OutOfRange {
                    what,
                    value: u64::from(value),
                    min,
                    max,
                },
            ));
        }
        Ok(value)
    }

    /// A u8 that must be at most `max`.
    pub(crate) fn u8_in(&mut self, what: &'static str, max: u8) -> Result<u8, DecodeError> {
        let at = self.offset();
        let have = self.remaining();
        let value = self.u8(what)?;
        if value > max {
            return Err(DecodeError::new(
                at,
                1,
                have,
                DecodeReason::OutOfRange {
                    what,
                    value: u64::from(value),
                    min: 0,
                    max: u64::from(max),
                },
            ));
        }
        Ok(value)
    }

    /// A u32 count that must be at most `max`.
    pub(crate) fn count32(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let at = self.offset();
        let have = self.remaining();
        let count = self.u32(what)? as usize;
        if count > max {
            return Err(DecodeError::new(
                at,
                4,
                have,
                DecodeReason::TooMany { what, count, max },
            ));
        }
        Ok(count)
    }

    /// Bytes behind a u16 length prefix, `min..=max` long.
    pub(crate) fn bytes16(
        &mut self,
        what: &'static str,
        min: usize,
        max: usize,
    ) -> Result<&'a [u8], DecodeError> {
        let at = self.offset();
        let len = self.u16(what)? as usize;
        self.check_len(at, what, len, min, max)?;
        self.take(len, what)
    }

    /// Bytes behind a u32 length prefix, `min..=max` long.
    pub(crate) fn bytes32(
        &mut self,
        what: &'static str,
        min: usize,
        max: usize,
    ) -> Result<&'a [u8], DecodeError> {
        let at = self.offset();
        let len = self.u32(what)? as usize;
        self.check_len(at, what, len, min, max)?;
        self.take(len, what)
    }

    fn check_len(
        &self,
        at: usize,
        what: &'static str,
        len: usize,
        min: usize,
        max: usize,
    ) -> Result<(), DecodeError> {
        if len < min || len > max {
            return Err(DecodeError::new(
                at,
                len,
                self.remaining(),
                DecodeReason::BadLength {
                    what,
                    len,
                    min,
                    max,
                },
            ));
        }
        Ok(())
    }

    /// A UTF-8 string behind a u16 length prefix, `min..=max` bytes long.
    pub(crate) fn str16(
        &mut self,
        what: &'static str,
        min: usize,
        max: usize,
    ) -> Result<String, DecodeError> {
        let at = self.offset();
        let raw = self.bytes16(what, min, max)?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(DecodeError::new(
                at,
                raw.len(),
                raw.len(),
                DecodeReason::BadUtf8 { what },
            )),
        }
    }

    /// An object name (queue, topic ...), checked by [`crate::validate_name`].
    pub(crate) fn name(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let at = self.offset();
        let name = self.str16(what, 0, u16::MAX as usize)?;
        if let Err(error) = crate::validate_name(&name) {
            return Err(DecodeError::new(
                at,
                name.len(),
                name.len(),
                DecodeReason::BadName { what, error },
            ));
        }
        Ok(name)
    }

    /// Optional bytes: a presence byte, then a u16-prefixed value.
    pub(crate) fn opt_bytes16(
        &mut self,
        what: &'static str,
        max: usize,
    ) -> Result<Option<Bytes>, DecodeError> {
        if self.bool(what)? {
            Ok(Some(Bytes::copy_from_slice(self.bytes16(what, 0, max)?)))
        } else {
            Ok(None)
        }
    }

    /// An optional UTF-8 string: a presence byte, then a `str16` of `min..=max` bytes.
    pub(crate) fn opt_str16(
        &mut self,
        what: &'static str,
        min: usize,
        max: usize,
    ) -> Result<Option<String>, DecodeError> {
        if self.bool(what)? {
            Ok(Some(self.str16(what, min, max)?))
        } else {
            Ok(None)
        }
    }

    /// An optional object name: a presence byte, then a name.
    pub(crate) fn opt_name(&mut self, what: &'static str) -> Result<Option<String>, DecodeError> {
        if self.bool(what)? {
            Ok(Some(self.name(what)?))
        } else {
            Ok(None)
        }
    }

    /// Optional u64: a presence byte, then the value in `min..=max`.
    pub(crate) fn opt_u64_in(
        &mut self,
        what: &'static str,
        min: u64,
        max: u64,
    ) -> Result<Option<u64>, DecodeError> {
        if self.bool(what)? {
            Ok(Some(self.u64_in(what, min, max)?))
        } else {
            Ok(None)
        }
    }
}

/// Appends fields to a [`BytesMut`], refusing lengths that do not fit their prefix.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    pub(crate) dst: &'a mut BytesMut,
}

impl Writer<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.dst.put_u8(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.dst.put_u16(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.dst.put_u32(v);
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.dst.put_u64(v);
    }
    pub(crate) fn bool(&mut self, v: bool) {
        self.dst.put_u8(u8::from(v));
    }

    pub(crate) fn count32(&mut self, what: &'static str, n: usize) -> Result<(), EncodeError> {
        let n = u32::try_from(n).map_err(|_| EncodeError::TooLong {
            what,
            len: n,
            max: u32::MAX as usize,
        })?;
        self.u32(n);
        Ok(())
    }

    pub(crate) fn bytes16(&mut self, what: &'static str, b: &[u8]) -> Result<(), EncodeError> {
        let len = u16::try_from(b.len()).map_err(|_| EncodeError::TooLong {
            what,
            len: b.len(),
            max: u16::MAX as usize,
        })?;
        self.u16(len);
        self.dst.put_slice(b);
        Ok(())
    }

    pub(crate) fn bytes32(&mut self, what: &'static str, b: &[u8]) -> Result<(), EncodeError> {
        self.count32(what, b.len())?;
        self.dst.put_slice(b);
        Ok(())
    }

    pub(crate) fn opt_bytes16(
        &mut self,
        what: &'static str,
        b: Option<&[u8]>,
    ) -> Result<(), EncodeError> {
        match b {
            Some(b) => {
                self.bool(true);
                self.bytes16(what, b)
            }
            None => {
                self.bool(false);
                Ok(())
            }
        }
    }

    pub(crate) fn opt_str(
        &mut self,
        what: &'static str,
        s: Option<&str>,
    ) -> Result<(), EncodeError> {
        self.opt_bytes16(what, s.map(str::as_bytes))
    }

    pub(crate) fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.bool(true);
                self.u64(v);
            }
            None => self.bool(false),
        }
    }
}
