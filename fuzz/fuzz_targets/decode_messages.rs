//! Any bytes as a reassembled message: `ClientMessage::decode` and `ServerMessage::decode` never
//! panic, and whatever they accept survives a round trip. The two tag ranges are disjoint
//! (0x01.. and 0x81..), so every input is tried as both.
#![no_main]

use libfuzzer_sys::fuzz_target;
use udpchat_proto::wire::message::{ClientMessage, ServerMessage};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = ClientMessage::decode(data) {
        let bytes = msg.to_bytes();
        assert_eq!(
            bytes, data,
            "decode accepted a non-canonical encoding of {msg:?}"
        );
        let again = ClientMessage::decode(&bytes)
            .unwrap_or_else(|e| panic!("re-encoded {msg:?} does not decode: {e}"));
        assert_eq!(again, msg, "round trip changed the message");
    }
    if let Ok(msg) = ServerMessage::decode(data) {
        let bytes = msg.to_bytes();
        assert_eq!(
            bytes, data,
            "decode accepted a non-canonical encoding of {msg:?}"
        );
        let again = ServerMessage::decode(&bytes)
            .unwrap_or_else(|e| panic!("re-encoded {msg:?} does not decode: {e}"));
        assert_eq!(again, msg, "round trip changed the message");
    }
});
