//! Datagrams of the framed protocol: header, then a body per kind ([`PacketKind`], eight of
//! them: five plain, three for secure mode). Byte by byte, with the reasons, in
//! `docs/PROTOCOL.md`.
//!
//! ```text
//! header (12 bytes)
//!  0      1        2      3       4                              12
//! +------+--------+------+-------+-------------------------------+
//! | 0xF5 | ver=1  | kind | flags |     connection id (u64)       |
//! +------+--------+------+-------+-------------------------------+
//! flags: bit 0 ENCRYPTED (reserved for the encrypted envelope; must be 0 in version 1)
//!        bit 1 ACK_REQUESTED (Data only: answer at once, used by keepalives)
//!
//! kind  name           way   body after the header
//!  1    Hello          c->s  nonce u64, cookie u64 (0: none yet), zero padding to 48 bytes
//!                            in all; connection id 0
//!  2    Welcome        s->c  nonce u64 (echoed), token u64, keepalive_ms u32, idle_timeout_ms u32
//!  3    Data           both  token u64, next_expected u32, sack u64, then segments to the end:
//!                            seq u32, seg_flags u8 (bit 0 FIRST, bit 1 LAST), len u16, payload
//!  4    Close          both  token u64, reason u8 (a CloseCode)
//!  5    Retry          s->c  nonce u64 (echoed), cookie u64; connection id 0
//! secure mode (a Noise NX handshake, then every Data and Close sealed whole):
//!  6    SecureHello    c->s  nonce u64, cookie u64, Noise message 1 (32 bytes), zero padding
//!                            to 160 bytes in all; connection id 0
//!  7    SecureWelcome  s->c  nonce u64 (echoed), Noise message 2 to the end (112 bytes: the
//!                            server's keys, and a Welcome's token and timers, encrypted)
//!  8    Sealed         both  nonce u64 (the AEAD nonce, in clear), then to the end a whole
//!                            Data or Close datagram, header included, encrypted, and its tag
//! ```

use super::{DecodeError, MARKER, Reader, VERSION, Writer};

/// Bytes in the header of every framed datagram.
pub const HEADER_LEN: usize = 12;
/// A Hello is padded to this size so that the Retry (28 bytes) or Welcome (36 bytes) it provokes
/// is never larger: a spoofed Hello cannot make the server an amplifier.
pub const HELLO_LEN: usize = 48;
/// Bytes of a Data body before its segments.
pub const DATA_FIXED_LEN: usize = 8 + 4 + 8;
/// Bytes in front of each segment's payload.
pub const SEGMENT_HEADER_LEN: usize = 4 + 1 + 2;
/// The largest datagram udpchat sends: like QUIC's 1200, it fits every path's MTU without IP
/// fragmentation (IPv6 guarantees 1280).
pub const MAX_DATAGRAM: usize = 1200;
/// The most payload one segment carries in a datagram of [`MAX_DATAGRAM`] bytes.
pub const MAX_SEGMENT_PAYLOAD: usize =
    MAX_DATAGRAM - HEADER_LEN - DATA_FIXED_LEN - SEGMENT_HEADER_LEN;

const FLAG_ENCRYPTED: u8 = 0b01;
const FLAG_ACK_REQUESTED: u8 = 0b10;
const SEG_FIRST: u8 = 0b01;
const SEG_LAST: u8 = 0b10;

/// A connection's identifier, issued by the server in its Welcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

wire_enum! {
    /// The eight kinds of framed datagram: the byte after the version.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum PacketKind ("packet kind") {
        /// A client asks for a connection.
        Hello = 1,
        /// The server grants one.
        Welcome = 2,
        /// Acknowledgements and reliable segments, either way.
        Data = 3,
        /// Either side ends the connection.
        Close = 4,
        /// The server asks the client to prove its address before it gets any state.
        Retry = 5,
        /// A Hello that opens a Noise handshake (secure rooms).
        SecureHello = 6,
        /// The Welcome that completes it.
        SecureWelcome = 7,
        /// A Data or Close datagram, encrypted and authenticated.
        Sealed = 8,
    }
}

/// A SecureHello is padded to this size, so that neither the Retry (28 bytes) nor the
/// SecureWelcome (132 bytes) it provokes is larger.
pub const SECURE_HELLO_LEN: usize = 160;

/// Which data a receiver has: everything below `next_expected`, plus the selective bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ack {
    /// Every sequence number below this one has been received.
    pub next_expected: u32,
    /// Bit `i` set: sequence number `next_expected + 1 + i` has been received too.
    pub sack: u64,
}

/// One piece of a reliable message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Position in the sender's stream, one per segment, starting at 0.
    pub seq: u32,
    /// The first segment of a message.
    pub first: bool,
    /// The last segment of a message (a one-segment message is both first and last).
    pub last: bool,
    /// The bytes of the encoded message this segment carries.
    pub payload: Vec<u8>,
}

wire_enum! {
    /// Why a connection was closed, as told to the other side.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum CloseCode ("close reason") {
        /// The user left.
        Leaving = 0,
        /// The server is shutting down.
        ServerShutdown = 1,
        /// The peer broke the protocol.
        ProtocolViolation = 2,
        /// The peer was too slow to keep up and was disconnected.
        TooSlow = 3,
        /// Nothing was heard from the peer for too long.
        TimedOut = 4,
    }
}

/// A decoded framed datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// A client asks for a connection.
    Hello {
        /// Random, echoed in the Welcome so the client knows it answers this Hello.
        nonce: u64,
        /// The cookie from the server's Retry; 0 before the client has one.
        cookie: u64,
    },
    /// The server's stateless answer to a Hello without a valid cookie: send the Hello again
    /// with this cookie. Only whoever receives datagrams at the Hello's source address can.
    Retry {
        /// The Hello's nonce.
        nonce: u64,
        /// A MAC of the client's address and the time, under a server secret.
        cookie: u64,
    },
    /// A Hello that also carries the first Noise handshake message (the client's ephemeral
    /// key).
    SecureHello {
        /// As in Hello.
        nonce: u64,
        /// As in Hello.
        cookie: u64,
        /// Noise message 1 (32 bytes).
        noise: Vec<u8>,
    },
    /// The server's answer: Noise message 2, which proves the server's static key and carries,
    /// encrypted, what a Welcome carries in clear.
    SecureWelcome {
        /// The new connection.
        connection: ConnectionId,
        /// The Hello's nonce.
        nonce: u64,
        /// Noise message 2.
        noise: Vec<u8>,
    },
    /// An encrypted Data or Close datagram of a secure connection.
    Sealed {
        /// The connection (in clear, to find the keys).
        connection: ConnectionId,
        /// The AEAD nonce, in clear: datagrams may arrive in any order.
        nonce: u64,
        /// The encrypted datagram, tag included.
        ciphertext: Vec<u8>,
    },
    /// The server grants a connection.
    Welcome {
        /// The new connection.
        connection: ConnectionId,
        /// The Hello's nonce.
        nonce: u64,
        /// A secret both sides put in every later datagram: only whoever saw the Welcome can
        /// speak for the connection.
        token: u64,
        /// Send something at least this often when idle (milliseconds).
        keepalive_ms: u32,
        /// The connection dies after this long without hearing from the peer (milliseconds).
        idle_timeout_ms: u32,
    },
    /// Acknowledgements and segments.
    Data {
        /// The connection.
        connection: ConnectionId,
        /// The connection's token.
        token: u64,
        /// Asks the receiver to acknowledge at once (keepalive probes).
        ack_requested: bool,
        /// What the sender has received.
        ack: Ack,
        /// Reliable segments, possibly none (an acknowledgement alone).
        segments: Vec<Segment>,
    },
    /// The connection is over.
    Close {
        /// The connection.
        connection: ConnectionId,
        /// The connection's token.
        token: u64,
        /// Why.
        reason: CloseCode,
    },
}

impl Packet {
    /// Decodes one datagram.
    ///
    /// # Errors
    /// A [`DecodeError`] for anything that is not a well-formed version-1 datagram.
    pub fn decode(datagram: &[u8]) -> Result<Self, DecodeError> {
        Ok(match PacketRef::decode(datagram)? {
            PacketRef::Data(data) => data.to_packet(),
            PacketRef::Sealed {
                connection,
                nonce,
                ciphertext,
            } => Packet::Sealed {
                connection,
                nonce,
                ciphertext: ciphertext.to_vec(),
            },
            PacketRef::Other(packet) => packet,
        })
    }

    /// Appends the datagram's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let (kind, flags, connection) = match self {
            Packet::Hello { .. } => (PacketKind::Hello, 0, ConnectionId(0)),
            Packet::Retry { .. } => (PacketKind::Retry, 0, ConnectionId(0)),
            Packet::SecureHello { .. } => (PacketKind::SecureHello, 0, ConnectionId(0)),
            Packet::SecureWelcome { connection, .. } => (PacketKind::SecureWelcome, 0, *connection),
            Packet::Sealed { connection, .. } => (PacketKind::Sealed, 0, *connection),
            Packet::Welcome { connection, .. } => (PacketKind::Welcome, 0, *connection),
            Packet::Data {
                connection,
                ack_requested,
                ..
            } => {
                let flags = if *ack_requested {
                    FLAG_ACK_REQUESTED
                } else {
                    0
                };
                (PacketKind::Data, flags, *connection)
            }
            Packet::Close { connection, .. } => (PacketKind::Close, 0, *connection),
        };
        put_header(out, kind, flags, connection);
        match self {
            Packet::Hello { nonce, cookie } => {
                out.put_u64(*nonce);
                out.put_u64(*cookie);
                out.resize(start + HELLO_LEN, 0);
            }
            Packet::Retry { nonce, cookie } => {
                out.put_u64(*nonce);
                out.put_u64(*cookie);
            }
            Packet::SecureHello {
                nonce,
                cookie,
                noise,
            } => {
                out.put_u64(*nonce);
                out.put_u64(*cookie);
                out.extend_from_slice(noise);
                out.resize((start + SECURE_HELLO_LEN).max(out.len()), 0);
            }
            Packet::SecureWelcome { nonce, noise, .. } => {
                out.put_u64(*nonce);
                out.extend_from_slice(noise);
            }
            Packet::Sealed {
                nonce, ciphertext, ..
            } => {
                out.put_u64(*nonce);
                out.extend_from_slice(ciphertext);
            }
            Packet::Welcome {
                nonce,
                token,
                keepalive_ms,
                idle_timeout_ms,
                ..
            } => {
                out.put_u64(*nonce);
                out.put_u64(*token);
                out.put_u32(*keepalive_ms);
                out.put_u32(*idle_timeout_ms);
            }
            Packet::Data {
                token,
                ack,
                segments,
                ..
            } => {
                put_data_fields(out, *token, *ack);
                for segment in segments {
                    put_segment(
                        out,
                        segment.seq,
                        segment.first,
                        segment.last,
                        &segment.payload,
                    );
                }
            }
            Packet::Close { token, reason, .. } => {
                out.put_u64(*token);
                out.put_u8(*reason as u8);
            }
        }
    }

    /// The encoded datagram as a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out
    }

    /// How many bytes [`Packet::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Packet::Hello { .. } => HELLO_LEN - HEADER_LEN,
                Packet::Retry { .. } => 16,
                Packet::SecureHello { noise, .. } => {
                    (SECURE_HELLO_LEN - HEADER_LEN).max(16 + noise.len())
                }
                Packet::SecureWelcome { noise, .. } => 8 + noise.len(),
                Packet::Sealed { ciphertext, .. } => 8 + ciphertext.len(),
                Packet::Welcome { .. } => 24,
                Packet::Data { segments, .. } => {
                    DATA_FIXED_LEN + segments.iter().map(Segment::encoded_len).sum::<usize>()
                }
                Packet::Close { .. } => 9,
            }
    }
}

/// A datagram as the receive path reads it: a Data or Sealed datagram borrowed from the
/// received bytes (segments and ciphertext are not copied), every other kind (handshakes and
/// Close: rare, and small) as a [`Packet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketRef<'a> {
    /// Acknowledgements and segments.
    Data(DataRef<'a>),
    /// An encrypted Data or Close.
    Sealed {
        /// The connection.
        connection: ConnectionId,
        /// The nonce it was sealed with.
        nonce: u64,
        /// The encrypted datagram and its tag.
        ciphertext: &'a [u8],
    },
    /// Any other kind.
    Other(Packet),
}

impl<'a> PacketRef<'a> {
    /// Decodes one datagram, as [`Packet::decode`] does (the same checks, the same errors).
    ///
    /// # Errors
    /// A [`DecodeError`] for anything that is not a well-formed version-1 datagram.
    pub fn decode(datagram: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(datagram);
        if r.u8("marker")? != MARKER {
            return Err(DecodeError::NotFramed);
        }
        let version = r.u8("version")?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let kind = r.u8("kind")?;
        let flags = r.u8("flags")?;
        let connection = ConnectionId(r.u64("connection id")?);
        let allowed = if kind == PacketKind::Data as u8 {
            FLAG_ACK_REQUESTED
        } else {
            0
        };
        if flags & !allowed != 0 {
            return Err(DecodeError::UnsupportedFlags(flags));
        }
        debug_assert_eq!(flags & FLAG_ENCRYPTED, 0);
        let packet = match PacketKind::try_from(kind)? {
            PacketKind::Hello => {
                if datagram.len() < HELLO_LEN {
                    return Err(DecodeError::Truncated("hello padding"));
                }
                if connection.0 != 0 {
                    return Err(DecodeError::OutOfRange("hello connection id"));
                }
                let nonce = r.u64("nonce")?;
                let cookie = r.u64("cookie")?;
                // The padding is ignored (any content, any length above the minimum).
                let rest = r.remaining();
                r.take(rest, "padding")?;
                PacketRef::Other(Packet::Hello { nonce, cookie })
            }
            PacketKind::Welcome => PacketRef::Other(Packet::Welcome {
                connection,
                nonce: r.u64("nonce")?,
                token: r.u64("token")?,
                keepalive_ms: r.u32("keepalive")?,
                idle_timeout_ms: r.u32("idle timeout")?,
            }),
            PacketKind::Data => PacketRef::Data(read_data(&mut r, connection, flags)?),
            PacketKind::Close => {
                let token = r.u64("token")?;
                let reason = CloseCode::try_from(r.u8("close reason")?)?;
                PacketRef::Other(Packet::Close {
                    connection,
                    token,
                    reason,
                })
            }
            PacketKind::SecureHello => {
                if datagram.len() < SECURE_HELLO_LEN || connection.0 != 0 {
                    return Err(DecodeError::OutOfRange("secure hello"));
                }
                let nonce = r.u64("nonce")?;
                let cookie = r.u64("cookie")?;
                let noise = r.take(32, "noise message 1")?.to_vec();
                let rest = r.remaining();
                r.take(rest, "padding")?;
                PacketRef::Other(Packet::SecureHello {
                    nonce,
                    cookie,
                    noise,
                })
            }
            PacketKind::SecureWelcome => {
                let nonce = r.u64("nonce")?;
                let rest = r.remaining();
                PacketRef::Other(Packet::SecureWelcome {
                    connection,
                    nonce,
                    noise: r.take(rest, "noise message 2")?.to_vec(),
                })
            }
            PacketKind::Sealed => {
                let nonce = r.u64("nonce")?;
                let rest = r.remaining();
                PacketRef::Sealed {
                    connection,
                    nonce,
                    ciphertext: r.take(rest, "ciphertext")?,
                }
            }
            PacketKind::Retry => {
                if connection.0 != 0 {
                    return Err(DecodeError::OutOfRange("retry connection id"));
                }
                PacketRef::Other(Packet::Retry {
                    nonce: r.u64("nonce")?,
                    cookie: r.u64("cookie")?,
                })
            }
        };
        r.finish()?;
        Ok(packet)
    }
}

impl Segment {
    /// How many bytes this segment takes in a Data datagram.
    pub fn encoded_len(&self) -> usize {
        SEGMENT_HEADER_LEN + self.payload.len()
    }

    /// The segment as a [`SegmentRef`].
    pub fn as_segment_ref(&self) -> SegmentRef<'_> {
        SegmentRef {
            seq: self.seq,
            first: self.first,
            last: self.last,
            payload: &self.payload,
        }
    }
}

/// A Data datagram read in place: the fields of [`Packet::Data`], with its segments left in
/// the received bytes, already checked to be well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRef<'a> {
    /// The connection.
    pub connection: ConnectionId,
    /// The connection's token.
    pub token: u64,
    /// Asks the receiver to acknowledge at once (keepalive probes).
    pub ack_requested: bool,
    /// What the sender has received.
    pub ack: Ack,
    /// The segments, back to back.
    segments: &'a [u8],
    /// How many.
    count: usize,
}

impl<'a> DataRef<'a> {
    /// The segments, in the order they were written.
    pub fn segments(&self) -> Segments<'a> {
        Segments {
            rest: self.segments,
            left: self.count,
        }
    }

    /// As an owned [`Packet::Data`] (a copy of every payload).
    pub fn to_packet(&self) -> Packet {
        Packet::Data {
            connection: self.connection,
            token: self.token,
            ack_requested: self.ack_requested,
            ack: self.ack,
            segments: self.segments().map(|s| s.to_segment()).collect(),
        }
    }
}

/// One segment of a [`DataRef`], its payload borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRef<'a> {
    /// Position in the sender's stream.
    pub seq: u32,
    /// The first segment of a message.
    pub first: bool,
    /// The last segment of a message.
    pub last: bool,
    /// The bytes it carries.
    pub payload: &'a [u8],
}

impl SegmentRef<'_> {
    /// An owned copy.
    pub fn to_segment(&self) -> Segment {
        Segment {
            seq: self.seq,
            first: self.first,
            last: self.last,
            payload: self.payload.to_vec(),
        }
    }
}

/// The segments of a [`DataRef`].
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for Segments<'a> {
    type Item = SegmentRef<'a>;

    fn next(&mut self) -> Option<SegmentRef<'a>> {
        // The bytes were checked when the datagram was decoded: each read succeeds.
        let mut r = Reader::new(self.rest);
        let seq = r.u32("segment seq").ok()?;
        let flags = r.u8("segment flags").ok()?;
        let len = usize::from(r.u16("segment length").ok()?);
        let payload = r.take(len, "segment payload").ok()?;
        self.rest = &self.rest[SEGMENT_HEADER_LEN + len..];
        self.left -= 1;
        Some(SegmentRef {
            seq,
            first: flags & SEG_FIRST != 0,
            last: flags & SEG_LAST != 0,
            payload,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Segments<'_> {}

/// The body of a Data datagram after its header: the fixed fields, then the segments, each
/// checked (a segment cut short or with unknown flags makes the whole datagram invalid).
fn read_data<'a>(
    r: &mut Reader<'a>,
    connection: ConnectionId,
    flags: u8,
) -> Result<DataRef<'a>, DecodeError> {
    let token = r.u64("token")?;
    let ack = Ack {
        next_expected: r.u32("ack")?,
        sack: r.u64("sack")?,
    };
    let rest = r.remaining();
    let segments = r.take(rest, "segments")?;
    let mut check = Reader::new(segments);
    let mut count = 0;
    while check.remaining() > 0 {
        check.u32("segment seq")?;
        let seg_flags = check.u8("segment flags")?;
        if seg_flags & !(SEG_FIRST | SEG_LAST) != 0 {
            return Err(DecodeError::UnsupportedFlags(seg_flags));
        }
        let len = usize::from(check.u16("segment length")?);
        check.take(len, "segment payload")?;
        count += 1;
    }
    Ok(DataRef {
        connection,
        token,
        ack_requested: flags & FLAG_ACK_REQUESTED != 0,
        ack,
        segments,
        count,
    })
}

/// The header every packet starts with.
fn put_header(out: &mut impl Writer, kind: PacketKind, flags: u8, connection: ConnectionId) {
    out.put_u8(MARKER);
    out.put_u8(VERSION);
    out.put_u8(kind as u8);
    out.put_u8(flags);
    out.put_u64(connection.0);
}

/// Appends what precedes the ciphertext of a Sealed datagram: its header and nonce.
pub(crate) fn put_sealed_header(out: &mut impl Writer, connection: ConnectionId, nonce: u64) {
    put_header(out, PacketKind::Sealed, 0, connection);
    out.put_u64(nonce);
}

/// A Data packet's fields after the header, before its segments.
fn put_data_fields(out: &mut Vec<u8>, token: u64, ack: Ack) {
    out.put_u64(token);
    out.put_u32(ack.next_expected);
    out.put_u64(ack.sack);
}

fn put_segment(out: &mut Vec<u8>, seq: u32, first: bool, last: bool, payload: &[u8]) {
    out.put_u32(seq);
    let mut flags = 0;
    if first {
        flags |= SEG_FIRST;
    }
    if last {
        flags |= SEG_LAST;
    }
    out.put_u8(flags);
    // Payloads are at most MAX_SEGMENT_PAYLOAD bytes, far below u16::MAX.
    out.put_u16(u16::try_from(payload.len()).unwrap_or(u16::MAX));
    out.extend_from_slice(payload);
}

/// Writes a Data datagram a segment at a time from borrowed payloads, at the end of a buffer
/// the caller keeps (a sender reuses one for every datagram): the bytes [`Packet::Data`]
/// encodes to, without each payload copied into a [`Segment`] first (a sender keeps its
/// payloads queued for retransmission, so a packet would need copies).
#[derive(Debug)]
pub struct DataWriter {
    /// Where the datagram starts in the buffer.
    start: usize,
}

impl DataWriter {
    /// Appends the header and fixed fields of a Data datagram of `connection` to `out`.
    pub fn begin(out: &mut Vec<u8>, connection: ConnectionId, token: u64, ack: Ack) -> Self {
        let start = out.len();
        put_header(out, PacketKind::Data, 0, connection);
        put_data_fields(out, token, ack);
        Self { start }
    }

    /// Appends a segment.
    pub fn push_segment(
        &self,
        out: &mut Vec<u8>,
        seq: u32,
        first: bool,
        last: bool,
        payload: &[u8],
    ) {
        put_segment(out, seq, first, last, payload);
    }

    /// Ends the datagram, with the ack-requested flag as given.
    pub fn finish(self, out: &mut [u8], ack_requested: bool) {
        if ack_requested {
            out[self.start + 3] |= FLAG_ACK_REQUESTED;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(packet: &Packet) -> Vec<u8> {
        let bytes = packet.to_bytes();
        assert_eq!(bytes.len(), packet.encoded_len(), "{packet:?}");
        assert_eq!(Packet::decode(&bytes).as_ref(), Ok(packet));
        bytes
    }

    #[test]
    fn data_writer_writes_what_a_data_packet_encodes_to() {
        for (segments, ack_requested) in [(0usize, false), (0, true), (1, false), (3, true)] {
            let segments: Vec<Segment> = (0..segments)
                .map(|i| Segment {
                    seq: 1000 + i as u32,
                    first: i == 0,
                    last: i % 2 == 1,
                    payload: vec![i as u8; 10 * i],
                })
                .collect();
            let (connection, token) = (ConnectionId(0x0102_0304_0506_0708), 42);
            let ack = Ack {
                next_expected: 7,
                sack: 0b101,
            };
            let packet = Packet::Data {
                connection,
                token,
                ack_requested,
                ack,
                segments: segments.clone(),
            };
            // Behind whatever the buffer held before.
            let mut out = b"earlier".to_vec();
            let writer = DataWriter::begin(&mut out, connection, token, ack);
            for s in &segments {
                writer.push_segment(&mut out, s.seq, s.first, s.last, &s.payload);
            }
            writer.finish(&mut out, ack_requested);
            assert_eq!(out[7..], round_trip(&packet));
            assert_eq!(&out[..7], b"earlier");
        }
    }

    #[test]
    fn hello_golden_bytes() {
        let bytes = round_trip(&Packet::Hello {
            cookie: 0x1111_2222_3333_4444,
            nonce: 0x0102_0304_0506_0708,
        });
        let mut expected = vec![
            0xF5, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x11, 0x22, 0x22,
            0x33, 0x33, 0x44, 0x44,
        ];
        expected.resize(HELLO_LEN, 0);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn retry_golden_bytes_and_no_amplification() {
        let bytes = round_trip(&Packet::Retry {
            nonce: 7,
            cookie: 0xAB,
        });
        assert_eq!(
            bytes,
            [
                0xF5, 1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0,
                0xAB
            ]
        );
        assert!(bytes.len() <= HELLO_LEN);
        let mut with_id = bytes.clone();
        with_id[11] = 1;
        assert!(Packet::decode(&with_id).is_err());
    }

    #[test]
    fn welcome_golden_bytes_and_no_amplification() {
        let welcome = Packet::Welcome {
            connection: ConnectionId(0xAA),
            nonce: 7,
            token: 0x1122_3344_5566_7788,
            keepalive_ms: 10_000,
            idle_timeout_ms: 30_000,
        };
        let bytes = round_trip(&welcome);
        assert_eq!(
            bytes,
            [
                0xF5, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0xAA, // header
                0, 0, 0, 0, 0, 0, 0, 7, // nonce
                0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, // token
                0, 0, 0x27, 0x10, 0, 0, 0x75, 0x30, // keepalive, idle timeout
            ]
        );
        assert!(bytes.len() <= HELLO_LEN);
    }

    /// A Data of connection 1 (token 2, ACK_REQUESTED, ack 5 with sack 0b101) with `segments`.
    fn data_of_connection_1(segments: Vec<Segment>) -> Packet {
        Packet::Data {
            connection: ConnectionId(1),
            token: 2,
            ack_requested: true,
            ack: Ack {
                next_expected: 5,
                sack: 0b101,
            },
            segments,
        }
    }

    #[test]
    fn data_golden_bytes() {
        let data = data_of_connection_1(vec![
            Segment {
                seq: 9,
                first: true,
                last: false,
                payload: b"ab".to_vec(),
            },
            Segment {
                seq: 10,
                first: false,
                last: true,
                payload: vec![],
            },
        ]);
        let bytes = round_trip(&data);
        assert_eq!(
            bytes,
            [
                0xF5, 1, 3, 2, 0, 0, 0, 0, 0, 0, 0, 1, // header, ACK_REQUESTED
                0, 0, 0, 0, 0, 0, 0, 2, // token
                0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 5, // ack
                0, 0, 0, 9, 1, 0, 2, b'a', b'b', // segment 9, FIRST
                0, 0, 0, 10, 2, 0, 0, // segment 10, LAST, empty
            ]
        );
    }

    #[test]
    fn the_borrowed_read_sees_what_the_owned_decode_sees() {
        let data = data_of_connection_1(
            (0..4)
                .map(|i| Segment {
                    seq: 9 + i,
                    first: i == 0,
                    last: i == 3,
                    payload: vec![i as u8; 3 * i as usize],
                })
                .collect(),
        );
        let bytes = data.to_bytes();
        let Ok(PacketRef::Data(view)) = PacketRef::decode(&bytes) else {
            panic!("a Data datagram");
        };
        assert_eq!(view.segments().len(), 4);
        assert_eq!(view.to_packet(), data);
        let Packet::Data { segments, .. } = &data else {
            unreachable!()
        };
        assert!(
            view.segments()
                .eq(segments.iter().map(Segment::as_segment_ref))
        );
        // A Sealed datagram's ciphertext is the rest of the datagram, not a copy.
        let sealed = Packet::Sealed {
            connection: ConnectionId(3),
            nonce: 4,
            ciphertext: b"0123456789abcdef!".to_vec(),
        }
        .to_bytes();
        assert_eq!(
            PacketRef::decode(&sealed),
            Ok(PacketRef::Sealed {
                connection: ConnectionId(3),
                nonce: 4,
                ciphertext: &sealed[20..],
            })
        );
        // A segment cut short invalidates the whole datagram before anything is read from it.
        assert_eq!(
            PacketRef::decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Truncated("segment payload"))
        );
    }

    #[test]
    fn close_golden_bytes() {
        let close = Packet::Close {
            connection: ConnectionId(3),
            token: 4,
            reason: CloseCode::TooSlow,
        };
        assert_eq!(
            round_trip(&close),
            [
                0xF5, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 3
            ]
        );
    }

    #[test]
    fn malformed_datagrams_are_errors_not_panics() {
        let good = Packet::Data {
            connection: ConnectionId(1),
            token: 2,
            ack_requested: false,
            ack: Ack::default(),
            segments: vec![Segment {
                seq: 0,
                first: true,
                last: true,
                payload: b"xyz".to_vec(),
            }],
        }
        .to_bytes();
        // Every truncation fails cleanly, but the one that cuts exactly before the segment,
        // which is a well-formed acknowledgement alone.
        for len in 0..good.len() {
            let decoded = Packet::decode(&good[..len]);
            if len == HEADER_LEN + DATA_FIXED_LEN {
                assert!(
                    matches!(decoded, Ok(Packet::Data { segments, .. }) if segments.is_empty())
                );
            } else {
                assert!(decoded.is_err(), "len {len}");
            }
        }
        let mut bad = good.clone();
        bad[1] = 2;
        assert_eq!(
            Packet::decode(&bad),
            Err(DecodeError::UnsupportedVersion(2))
        );
        let mut bad = good.clone();
        bad[3] = 1; // ENCRYPTED is reserved
        assert_eq!(Packet::decode(&bad), Err(DecodeError::UnsupportedFlags(1)));
        let mut bad = good.clone();
        bad[2] = 9;
        assert!(matches!(
            Packet::decode(&bad),
            Err(DecodeError::UnknownKind { .. })
        ));
        assert_eq!(Packet::decode(b"hello"), Err(DecodeError::NotFramed));
        let short_hello = [
            0xF5, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert!(Packet::decode(&short_hello).is_err());
    }

    #[test]
    fn a_full_segment_fits_the_datagram_budget() {
        let data = Packet::Data {
            connection: ConnectionId(1),
            token: 2,
            ack_requested: false,
            ack: Ack::default(),
            segments: vec![Segment {
                seq: 0,
                first: true,
                last: true,
                payload: vec![0; MAX_SEGMENT_PAYLOAD],
            }],
        };
        assert_eq!(round_trip(&data).len(), MAX_DATAGRAM);
    }
}
