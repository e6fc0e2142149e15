//! Any datagram payload as plain text: `decode_message` and `neutralize` never panic, and the
//! neutralized text holds no character that could change how a terminal shows what follows.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use udpchat_proto::text::{decode_message, is_unsafe_for_terminal, neutralize};

fuzz_target!(|data: &[u8]| {
    let message = decode_message(data);
    check(&message);
    // Valid UTF-8 as it came, line ending included.
    if let Ok(text) = std::str::from_utf8(data) {
        if !text.ends_with('\n') {
            assert_eq!(
                message, text,
                "decode_message changed valid text without a line ending"
            );
        }
        check(text);
    }
});

fn check(text: &str) {
    let out = neutralize(text);
    if let Some(c) = out.chars().find(|&c| is_unsafe_for_terminal(c)) {
        panic!("neutralize({text:?}) kept unsafe {c:?}: {out:?}");
    }
    assert!(
        !out.contains(['\n', '\r', '\x1b']),
        "neutralize({text:?}) = {out:?}"
    );
    if !text.chars().any(is_unsafe_for_terminal) {
        assert!(
            matches!(out, Cow::Borrowed(_)),
            "safe text {text:?} was copied"
        );
        assert_eq!(out, text);
    }
    // Idempotent: neutralized text needs nothing more.
    assert!(
        matches!(neutralize(&out), Cow::Borrowed(_)),
        "{out:?} neutralized again"
    );
}
