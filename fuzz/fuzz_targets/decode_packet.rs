//! Any bytes as a datagram: `Packet::decode` never panics, and whatever it accepts survives a
//! round trip (encode, decode again: the same packet; encode again: the same bytes).
//! `Packet::decode` is the borrowed read the receive paths use (`PacketRef::decode`, segments
//! read back through `DataRef::segments`) made owned, so this covers that read too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use udpchat_proto::wire::is_framed;
use udpchat_proto::wire::packet::Packet;

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = Packet::decode(data) else {
        return;
    };
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
