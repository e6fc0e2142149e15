//! The Noise layer survives hostile input: a server answering arbitrary first messages, a
//! client reading arbitrary second messages, and transports opening arbitrary datagrams never
//! panic; nothing forged opens; replays never open twice.
//!
//! Input: a selector byte, then bytes used as the message under test.
#![no_main]

use libfuzzer_sys::fuzz_target;
use udpchat_proto::crypto::{ClientHandshake, ServerHandshake, StaticKeypair};
use udpchat_proto::rng::SplitMix64;

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(keys) = StaticKeypair::from_private([7; 32]) else { return };
    // Seeded: a crash reproduces from its input alone.
    let rng = &mut SplitMix64::new(1);
    match selector % 3 {
        // Arbitrary first message to the server.
        0 => {
            let _ = ServerHandshake::respond(&keys, rest, b"payload", rng);
        }
        // Arbitrary second message to a client (pinned or not).
        1 => {
            let pinned = (rest.first().copied().unwrap_or(0) & 1 == 1).then_some(keys.public);
            let Ok((client, _hello)) = ClientHandshake::new(pinned, rng) else { return };
            let _ = client.finish(rest);
        }
        // A real session, then arbitrary datagrams: nothing forged opens, and a genuine one
        // opens exactly once.
        _ => {
            let Ok((client, hello)) = ClientHandshake::new(Some(keys.public), rng) else { return };
            let Ok((mut server, welcome)) = ServerHandshake::respond(&keys, &hello, b"", rng) else {
                panic!("a genuine first message was refused")
            };
            let Ok((mut client, _, _)) = client.finish(&welcome) else {
                panic!("a genuine second message was refused")
            };
            for chunk in rest.chunks(40) {
                let nonce = chunk.iter().take(8).fold(0u64, |n, b| n << 8 | u64::from(*b));
                assert!(server.open(nonce, chunk).is_err(), "forged datagram opened");
            }
            let Ok((nonce, sealed)) = client.seal(rest) else { return };
            assert_eq!(server.open(nonce, &sealed).ok().as_deref(), Some(rest));
            assert!(server.open(nonce, &sealed).is_err(), "replay opened");
        }
    }
}
