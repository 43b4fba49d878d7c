//! The client's opening bytes: `WEIR`, a version, two reserved bytes.

use bytes::{BufMut, BytesMut};

use super::wire::{DecodeError, DecodeReason};
use super::{HELLO_BYTES, MAGIC, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// The client's handshake: 8 bytes, sent once before any frame.
///
/// ```
/// use bytes::BytesMut;
/// use weir_proto::frame::Hello;
///
/// let mut buf = BytesMut::new();
/// Hello::current().encode(&mut buf);
/// assert_eq!(&buf[..], b"WEIR\x00\x03\x00\x00");
/// assert_eq!(Hello::decode(&buf).unwrap(), Some((Hello::current(), 8)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The protocol version the client asks for.
    pub version: u16,
}

impl Hello {
    /// A hello asking for [`PROTOCOL_VERSION`].
    pub const fn current() -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
        }
    }

    /// Appends the 8 handshake bytes to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_slice(&MAGIC);
        dst.put_u16(self.version);
        dst.put_u16(0);
    }

    /// Decodes the handshake from the front of `src`. A wrong magic is reported as soon as the
    /// first differing byte arrives (so a stray HTTP request fails fast); a version outside
    /// [`MIN_PROTOCOL_VERSION`]`..=`[`PROTOCOL_VERSION`] is refused.
    pub fn decode(src: &[u8]) -> Result<Option<(Hello, usize)>, DecodeError> {
        let seen = src.len().min(MAGIC.len());
        if src[..seen] != MAGIC[..seen] {
            let mut found = [0u8; 4];
            found[..seen].copy_from_slice(&src[..seen]);
            return Err(DecodeError::new(
                0,
                MAGIC.len(),
                src.len(),
                DecodeReason::BadMagic { found },
            ));
        }
        let Some(bytes) = src.get(..HELLO_BYTES) else {
            return Ok(None);
        };
        let version = u16::from_be_bytes([bytes[4], bytes[5]]);
        let reserved = u16::from_be_bytes([bytes[6], bytes[7]]);
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
            return Err(DecodeError::new(
                4,
                2,
                src.len() - 4,
                DecodeReason::UnsupportedVersion {
                    requested: version,
                    min: MIN_PROTOCOL_VERSION,
                    max: PROTOCOL_VERSION,
                },
            ));
        }
        if reserved != 0 {
            return Err(DecodeError::new(
                6,
                2,
                src.len() - 6,
                // Reported as the low byte that is set, the high byte otherwise.
                DecodeReason::ReservedFlags(if reserved & 0xff != 0 {
                    (reserved & 0xff) as u8
                } else {
                    (reserved >> 8) as u8
                }),
            ));
        }
        Ok(Some((Hello { version }, HELLO_BYTES)))
    }
}
