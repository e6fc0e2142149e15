//! Turning datagram payloads into text that is safe to print.
//!
//! The lab's wire format is "one UTF-8 message per datagram, no framing". Peers differ in details:
//! `nc -u` sends the line *with* its newline, the lab's Python programs send it without, and
//! anybody can send bytes that are not UTF-8 at all. [`decode_message`] makes all of these the
//! same message text. Text from the network is untrusted: [`neutralize`] makes every control
//! character visible so that a peer can never move the cursor, repaint the screen, change the
//! window title or reorder text with bidirectional overrides.

use std::borrow::Cow;

/// Decodes one datagram payload as message text.
///
/// Invalid UTF-8 becomes U+FFFD replacement characters (never an error: the network may send
/// anything), and one trailing line ending (`\n` or `\r\n`) is removed, because line-oriented
/// tools such as `nc -u` send the newline the user typed as part of the datagram.
pub fn decode_message(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    strip_line_ending(&text).to_owned()
}

/// Removes one trailing `\n` or `\r\n`, if present.
pub fn strip_line_ending(text: &str) -> &str {
    text.strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(text)
}

/// Returns `true` when `c` could change how a terminal shows what follows it.
///
/// That is every C0 control but tab, DEL, every C1 control (U+0080..=U+009F; some terminals
/// treat U+009B as CSI), and the Unicode bidirectional embedding, override and isolate controls
/// (U+202A..=U+202E, U+2066..=U+2069), which can make text display in a different order than
/// it was sent ("Trojan Source").
pub fn is_unsafe_for_terminal(c: char) -> bool {
    matches!(c, '\0'..='\x08' | '\x0a'..='\x1f' | '\x7f' | '\u{80}'..='\u{9f}')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Makes untrusted text safe to write to a terminal, on one line.
///
/// Each unsafe character (see [`is_unsafe_for_terminal`]) is replaced by a visible spelling:
/// C0 controls and DEL in caret notation as `cat -v` shows them (ESC is `^[`, newline `^J`,
/// DEL `^?`), and C1 and bidi controls as `<U+XXXX>`. Everything else, tab, wide characters,
/// combining marks and emoji included, is kept. Borrows when nothing needs replacing.
pub fn neutralize(text: &str) -> Cow<'_, str> {
    // Printable ASCII and tab (the usual line) are safe: checked a byte at a time, cheaper
    // than decoding characters, before the character-by-character check.
    let plain_ascii = text.bytes().all(|b| matches!(b, b' '..=b'~' | b'\t'));
    if plain_ascii || !text.chars().any(is_unsafe_for_terminal) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !is_unsafe_for_terminal(c) {
            out.push(c);
        } else if c <= '\x1f' {
            out.push('^');
            // C0 control n is shown as the character n + 64 ('@', 'A', ..., '_').
            out.push(char::from(c as u8 + 0x40));
        } else if c == '\x7f' {
            out.push_str("^?");
        } else {
            out.push_str(&format!("<U+{:04X}>", u32::from(c)));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_strips_one_line_ending_only() {
        assert_eq!(decode_message(b"hello"), "hello");
        assert_eq!(decode_message(b"hello\n"), "hello");
        assert_eq!(decode_message(b"hello\r\n"), "hello");
        assert_eq!(decode_message(b"hello\n\n"), "hello\n");
        assert_eq!(decode_message(b"hello\r"), "hello\r");
        assert_eq!(decode_message(b""), "");
        assert_eq!(decode_message(b"\n"), "");
    }

    #[test]
    fn decode_replaces_invalid_utf8() {
        assert_eq!(decode_message(b"caf\xc3\xa9"), "café");
        assert_eq!(decode_message(b"a\xffb"), "a\u{fffd}b");
        // A multi-byte character cut in half at the end of the datagram.
        assert_eq!(decode_message(b"x\xe2\x82"), "x\u{fffd}");
    }

    #[test]
    fn neutralize_keeps_plain_text_borrowed() {
        for s in [
            "hello",
            "héllo wörld",
            "日本語",
            "e\u{301}",
            "👍🏽 ok",
            "tab\there",
            "",
        ] {
            assert!(matches!(neutralize(s), Cow::Borrowed(_)), "{s:?}");
        }
    }

    #[test]
    fn neutralize_borrows_exactly_when_no_character_is_unsafe() {
        let chars = (0..0x3000u32)
            .chain(0xfff0..0x1_0000)
            .filter_map(char::from_u32);
        for c in chars {
            let line = format!("ab\t{c}cd");
            let borrowed = matches!(neutralize(&line), Cow::Borrowed(_));
            assert_eq!(
                borrowed,
                !is_unsafe_for_terminal(c),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn neutralize_shows_c0_controls_in_caret_notation() {
        assert_eq!(neutralize("\x1b[2J\x1b[Hpwned"), "^[[2J^[[Hpwned");
        assert_eq!(neutralize("a\nb\r\n"), "a^Jb^M^J");
        assert_eq!(neutralize("\0\x07\x08"), "^@^G^H");
        assert_eq!(neutralize("\x7f"), "^?");
        // Window-title change (OSC 0) ended by BEL.
        assert_eq!(neutralize("\x1b]0;owned\x07"), "^[]0;owned^G");
    }

    #[test]
    fn neutralize_shows_c1_and_bidi_controls_as_code_points() {
        assert_eq!(neutralize("\u{9b}2J"), "<U+009B>2J");
        assert_eq!(neutralize("abc\u{202e}fed"), "abc<U+202E>fed");
        assert_eq!(neutralize("\u{2066}x\u{2069}"), "<U+2066>x<U+2069>");
    }

    #[test]
    fn neutralized_text_never_contains_unsafe_characters() {
        // Every code point up to U+2FFF, alone and inside text.
        for cp in 0u32..0x3000 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let s = format!("a{c}b");
            let out = neutralize(&s);
            assert!(!out.chars().any(is_unsafe_for_terminal), "U+{cp:04X}");
            assert!(!out.contains('\n'));
        }
    }
}
