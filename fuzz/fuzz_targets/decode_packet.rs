//! Any bytes as a datagram: `Packet::decode` never panics, and whatever it accepts survives a
//! round trip (encode, decode again: the same packet; encode again: the same bytes). The
//! borrowed read the receive paths use (`PacketRef::decode`) accepts exactly the same
//! datagrams and sees the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use udpchat_proto::wire::is_framed;
use udpchat_proto::wire::packet::{Packet, PacketRef};

fuzz_target!(|data: &[u8]| {
    let borrowed = PacketRef::decode(data);
    let Ok(packet) = Packet::decode(data) else {
        assert!(borrowed.is_err(), "only the borrowed read accepted {data:?}");
        return;
    };
    let seen = match borrowed.expect("both reads accept it") {
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
    };
    assert_eq!(seen, packet, "the borrowed read saw another packet");
    assert!(is_framed(data), "accepted a datagram without the marker");
    let bytes = packet.to_bytes();
    assert_eq!(
        bytes.len(),
        packet.encoded_len(),
        "encoded_len disagrees with encode"
    );
    let again = Packet::decode(&bytes)
        .unwrap_or_else(|e| panic!("re-encoded {packet:?} does not decode: {e}"));
    assert_eq!(again, packet, "round trip changed the packet");
    // The encoding is canonical (a Hello's padding is the only thing decode ignores).
    assert_eq!(again.to_bytes(), bytes, "encoding is not deterministic");
});
