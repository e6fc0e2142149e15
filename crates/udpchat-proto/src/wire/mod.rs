//! The framed wire format (protocol version 1), byte for byte as in `docs/PROTOCOL.md`.
//!
//! Two layers, each with `decode` (never panics, whatever the bytes) and `encode`:
//! - [`packet`]: the datagram: a 12-byte header and a body per [`packet::PacketKind`], carrying
//!   acknowledgements and reliable segments.
//! - [`message`]: what the reliable stream carries: [`message::ClientMessage`] (commands a
//!   client sends) and [`message::ServerMessage`] (what the server tells a client).
//!
//! A framed datagram starts with [`MARKER`], a byte that can never begin valid UTF-8 text, so one
//! port serves framed clients and plain-text guests: [`is_framed`] tells them apart.
//! All integers are big-endian.

/// Declares a wire enum: a fieldless enum whose discriminants are its bytes on the wire, with
/// its decoding, `TryFrom<u8>` (an unknown byte is [`DecodeError::UnknownKind`] named by the
/// string after the enum's name), its encoding, `u8::from`, and `ALL`, every value in order.
/// The variants are listed once, so decoding cannot forget one.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident = $value:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[repr(u8)]
        $vis enum $name {
            $($(#[$vmeta])* $variant = $value,)+
        }

        impl $name {
            /// Every value, in the order of their bytes.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
        }

        impl TryFrom<u8> for $name {
            type Error = $crate::wire::DecodeError;

            fn try_from(value: u8) -> Result<Self, Self::Error> {
                match value {
                    $($value => Ok($name::$variant),)+
                    value => Err($crate::wire::DecodeError::UnknownKind { what: $what, value }),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(value: $name) -> u8 {
                value as u8
            }
        }
    };
}

pub mod message;
pub mod packet;

/// The first byte of every framed datagram. 0xF5 can never appear in valid UTF-8 (it would lead
/// a sequence above U+10FFFF), so no plain-text message starts with it.
pub const MARKER: u8 = 0xF5;

/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;

/// Whether `datagram` is framed (starts with [`MARKER`]) rather than plain text.
pub fn is_framed(datagram: &[u8]) -> bool {
    datagram.first() == Some(&MARKER)
}

/// Why bytes could not be decoded. The peer sent something wrong; it is never the caller's bug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes ended before a field did.
    #[error("truncated: {0} needs more bytes")]
    Truncated(&'static str),
    /// The first byte is not [`MARKER`].
    #[error("not a framed datagram")]
    NotFramed,
    /// A protocol version this crate does not speak.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// An unknown packet kind or message tag.
    #[error("unknown {what} {value:#04x}")]
    UnknownKind {
        /// Which enumeration.
        what: &'static str,
        /// The value found.
        value: u8,
    },
    /// A flag bit this version does not define, or one it reserves (encryption).
    #[error("unsupported flags {0:#04x}")]
    UnsupportedFlags(u8),
    /// A field that must be UTF-8 is not.
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// A length above its limit, or a value outside its range.
    #[error("{0} is out of range")]
    OutOfRange(&'static str),
    /// Bytes left over after the last field.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
}

/// A cursor over received bytes whose every read is checked.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.bytes.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
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

    /// A string with a one-byte length, at most `max` bytes.
    pub(crate) fn str8(&mut self, max: usize, what: &'static str) -> Result<String, DecodeError> {
        let len = usize::from(self.u8(what)?);
        self.utf8(len, max, what)
    }

    /// A string with a four-byte length, at most `max` bytes.
    pub(crate) fn str32(&mut self, max: usize, what: &'static str) -> Result<String, DecodeError> {
        let len = usize::try_from(self.u32(what)?).map_err(|_| DecodeError::OutOfRange(what))?;
        self.utf8(len, max, what)
    }

    fn utf8(&mut self, len: usize, max: usize, what: &'static str) -> Result<String, DecodeError> {
        if len > max {
            return Err(DecodeError::OutOfRange(what));
        }
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8(what))
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// Appends fields to an output buffer.
pub(crate) trait Writer {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    /// A string with a one-byte length; the caller guarantees `s.len() <= 255`.
    fn put_str8(&mut self, s: &str);
    /// A string with a four-byte length.
    fn put_str32(&mut self, s: &str);
}

/// For any growable buffer: a `Vec<u8>`, or a `BytesMut` whose bytes are handed out as
/// [`bytes::Bytes`] (the server's outgoing datagrams). Integers are big-endian.
impl<B: bytes::BufMut> Writer for B {
    fn put_u8(&mut self, v: u8) {
        bytes::BufMut::put_u8(self, v);
    }
    fn put_u16(&mut self, v: u16) {
        bytes::BufMut::put_u16(self, v);
    }
    fn put_u32(&mut self, v: u32) {
        bytes::BufMut::put_u32(self, v);
    }
    fn put_u64(&mut self, v: u64) {
        bytes::BufMut::put_u64(self, v);
    }
    fn put_str8(&mut self, s: &str) {
        // Truncation cannot happen for validated names (at most 32 bytes); clamp to be safe,
        // on a character boundary so that what is written always decodes as UTF-8.
        let len = s.floor_char_boundary(255);
        bytes::BufMut::put_u8(self, len as u8);
        self.put_slice(&s.as_bytes()[..len]);
    }
    fn put_str32(&mut self, s: &str) {
        bytes::BufMut::put_u32(self, u32::try_from(s.len()).unwrap_or(u32::MAX));
        self.put_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Debug;

    use super::message::{ErrorCode, MessageKind};
    use super::packet::{CloseCode, PacketKind};
    use super::*;

    /// Every value of a wire enum survives its byte, and every other byte is refused, named.
    fn round_trips<T>(all: &[T], what: &'static str, bytes: &[u8])
    where
        T: Copy + Debug + PartialEq + TryFrom<u8, Error = DecodeError> + Into<u8>,
    {
        let encoded: Vec<u8> = all.iter().map(|&value| value.into()).collect();
        assert_eq!(encoded, bytes, "{what}");
        for &value in all {
            assert_eq!(T::try_from(value.into()), Ok(value), "{what}");
        }
        for byte in (0..=u8::MAX).filter(|b| !bytes.contains(b)) {
            assert_eq!(
                T::try_from(byte),
                Err(DecodeError::UnknownKind { what, value: byte }),
                "{what}"
            );
        }
    }

    #[test]
    fn wire_enums_round_trip_through_their_byte() {
        round_trips(PacketKind::ALL, "packet kind", &[1, 2, 3, 4, 5, 6, 7, 8]);
        round_trips(CloseCode::ALL, "close reason", &[0, 1, 2, 3, 4]);
        round_trips(MessageKind::ALL, "message kind", &[0, 1]);
        round_trips(ErrorCode::ALL, "error code", &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn plain_text_is_never_framed() {
        assert!(is_framed(&[MARKER, 1]));
        assert!(!is_framed(b"hello"));
        assert!(!is_framed(b""));
        // No valid UTF-8 string starts with the marker.
        assert!(std::str::from_utf8(&[MARKER]).is_err());
        assert!(std::str::from_utf8(&[MARKER, 0x80, 0x80, 0x80]).is_err());
    }

    #[test]
    fn reader_checks_every_read() {
        let mut r = Reader::new(&[0, 1, 2]);
        assert_eq!(r.u16("a"), Ok(1));
        assert_eq!(r.u16("b"), Err(DecodeError::Truncated("b")));
        assert_eq!(r.u8("c"), Ok(2));
        assert_eq!(r.finish(), Ok(()));
        let mut r = Reader::new(&[3, b'a', 0xff, b'c']);
        assert_eq!(r.str8(10, "s"), Err(DecodeError::InvalidUtf8("s")));
        let mut r = Reader::new(&[3, b'a', b'b', b'c']);
        assert_eq!(r.str8(2, "s"), Err(DecodeError::OutOfRange("s")));
        let mut r = Reader::new(&[0, 0, 0, 9, b'a']);
        assert_eq!(r.str32(100, "t"), Err(DecodeError::Truncated("t")));
    }
}
