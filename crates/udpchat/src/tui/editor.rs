//! The input line: a single-line editor that moves by grapheme clusters and measures by display
//! width, so that wide characters, combining marks and emoji edit and display as one character.
//!
//! Emacs-style keys as in readline (Ctrl-A/E/B/F/W/U/K, Alt-B/F), Up/Down through the history.
//! Pasted text keeps its line breaks: [`LineEditor::submit`] then returns one line per pasted
//! line. The editor never sees the network, only what the user typed.

use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

use udpchat_proto::text::is_unsafe_for_terminal;

/// How many submitted lines Up/Down can recall.
pub const HISTORY_LEN: usize = 500;

/// At most this many bytes in the input (a paste beyond it is cut).
pub const MAX_INPUT: usize = 256 * 1024;

/// The input line and its history.
#[derive(Debug, Default, Clone)]
pub struct LineEditor {
    text: String,
    /// Byte index of the cursor, always on a grapheme boundary.
    cursor: usize,
    history: Vec<String>,
    /// Where Up/Down is in the history (`None`: editing a new line).
    browsing: Option<usize>,
    /// The new line being typed when browsing started.
    draft: String,
}

impl LineEditor {
    /// The text being edited (pasted line breaks are `\n`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor, as a byte index into [`text`](Self::text).
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Inserts typed or pasted text at the cursor. Control characters are dropped, except
    /// that line breaks stay (one message per line) and a tab becomes a space.
    pub fn insert(&mut self, text: &str) {
        let room = MAX_INPUT.saturating_sub(self.text.len());
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let mut clean = String::with_capacity(text.len().min(room));
        for c in text.chars() {
            let c = if c == '\t' { ' ' } else { c };
            if c != '\n' && is_unsafe_for_terminal(c) {
                continue;
            }
            if clean.len() + c.len_utf8() > room {
                break;
            }
            clean.push(c);
        }
        self.text.insert_str(self.cursor, &clean);
        self.cursor += clean.len();
        self.cursor = self.snap(self.cursor);
        self.browsing = None;
    }

    /// One grapheme left.
    pub fn left(&mut self) {
        self.cursor = self.prev_boundary(self.cursor);
    }

    /// One grapheme right.
    pub fn right(&mut self) {
        self.cursor = self.next_boundary(self.cursor);
    }

    /// To the start of the line.
    pub fn home(&mut self) {
        self.cursor = 0;
    }

    /// To the end of the line.
    pub fn end(&mut self) {
        self.cursor = self.text.len();
    }

    /// To the start of the previous word.
    pub fn word_left(&mut self) {
        self.cursor = self.word_start(self.cursor);
    }

    /// Past the end of the next word.
    pub fn word_right(&mut self) {
        let rest = &self.text[self.cursor..];
        let skipped = rest.len() - rest.trim_start().len();
        let word = rest[skipped..]
            .find(char::is_whitespace)
            .unwrap_or(rest.len() - skipped);
        self.cursor += skipped + word;
    }

    /// Deletes the grapheme before the cursor.
    pub fn backspace(&mut self) {
        let start = self.prev_boundary(self.cursor);
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Deletes the grapheme under the cursor.
    pub fn delete(&mut self) {
        let end = self.next_boundary(self.cursor);
        self.text.replace_range(self.cursor..end, "");
    }

    /// Deletes the word before the cursor (Ctrl-W).
    pub fn delete_word(&mut self) {
        let start = self.word_start(self.cursor);
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Deletes from the start of the line to the cursor (Ctrl-U).
    pub fn kill_to_start(&mut self) {
        self.text.replace_range(..self.cursor, "");
        self.cursor = 0;
    }

    /// Deletes from the cursor to the end (Ctrl-K).
    pub fn kill_to_end(&mut self) {
        self.text.truncate(self.cursor);
    }

    /// The previous line from the history (Up).
    pub fn history_up(&mut self) {
        let index = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = std::mem::take(&mut self.text);
                self.history.len() - 1
            }
            Some(0) => return,
            Some(i) => i - 1,
        };
        self.browsing = Some(index);
        self.text = self.history[index].clone();
        self.cursor = self.text.len();
    }

    /// The next line from the history, then the line being typed (Down).
    pub fn history_down(&mut self) {
        let Some(index) = self.browsing else {
            return;
        };
        if index + 1 < self.history.len() {
            self.browsing = Some(index + 1);
            self.text = self.history[index + 1].clone();
        } else {
            self.browsing = None;
            self.text = std::mem::take(&mut self.draft);
        }
        self.cursor = self.text.len();
    }

    /// Completes the word before the cursor with the first of `candidates` it starts
    /// (case-insensitively); at the start of the line a `: ` follows, as IRC clients do.
    pub fn complete(&mut self, candidates: &[String]) {
        let start = self.text[..self.cursor]
            .rfind(char::is_whitespace)
            .map_or(0, |i| i + 1);
        let word = self.text[start..self.cursor].to_lowercase();
        if word.is_empty() {
            return;
        }
        let Some(found) = candidates
            .iter()
            .find(|c| c.to_lowercase().starts_with(&word))
        else {
            return;
        };
        let suffix = if start == 0 { ": " } else { " " };
        let replacement = format!("{found}{suffix}");
        self.text.replace_range(start..self.cursor, &replacement);
        self.cursor = start + replacement.len();
    }

    /// Enter: the lines typed (one per pasted line; empty ones dropped), remembered in the
    /// history, and a fresh empty line.
    pub fn submit(&mut self) -> Vec<String> {
        let text = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.browsing = None;
        self.draft.clear();
        if text.trim().is_empty() {
            return Vec::new();
        }
        if self.history.last() != Some(&text) {
            if self.history.len() == HISTORY_LEN {
                self.history.remove(0);
            }
            self.history.push(text.clone());
        }
        text.split('\n')
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// What to show in `width` columns: the visible part of the line (pasted line breaks as
    /// `↵`) and the cursor's column in it. Scrolls horizontally to keep the cursor in view.
    pub fn view(&self, width: usize) -> (String, usize) {
        if width == 0 {
            return (String::new(), 0);
        }
        let graphemes: Vec<(usize, &str)> = self.text.grapheme_indices(true).collect();
        let shown = |g: &str| -> (String, usize) {
            if g == "\n" {
                ("↵".to_owned(), 1)
            } else {
                (g.to_owned(), g.width())
            }
        };
        let cursor_index = graphemes
            .iter()
            .position(|(i, _)| *i >= self.cursor)
            .unwrap_or(graphemes.len());
        // Leave one column for the cursor after the last character.
        let mut start = cursor_index;
        let mut used = 1;
        while start > 0 {
            let (_, w) = shown(graphemes[start - 1].1);
            if used + w > width {
                break;
            }
            used += w;
            start -= 1;
        }
        let mut out = String::new();
        let mut column = 0;
        let mut cursor_column = 0;
        for (index, (_, g)) in graphemes.iter().enumerate().skip(start) {
            if index == cursor_index {
                cursor_column = column;
            }
            let (s, w) = shown(g);
            if column + w > width {
                break;
            }
            out.push_str(&s);
            column += w;
        }
        if cursor_index == graphemes.len() {
            cursor_column = column;
        }
        (out, cursor_column.min(width - 1))
    }

    fn snap(&self, index: usize) -> usize {
        let mut last = 0;
        for (i, _) in self.text.grapheme_indices(true) {
            if i >= index {
                return if i == index { i } else { last.max(i) };
            }
            last = i;
        }
        self.text.len()
    }

    fn prev_boundary(&self, index: usize) -> usize {
        self.text[..index]
            .grapheme_indices(true)
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    fn next_boundary(&self, index: usize) -> usize {
        self.text[index..]
            .graphemes(true)
            .next()
            .map_or(index, |g| index + g.len())
    }

    fn word_start(&self, index: usize) -> usize {
        let before = &self.text[..index];
        let trimmed = before.trim_end();
        trimmed.rfind(char::is_whitespace).map_or(0, |i| {
            i + trimmed[i..].chars().next().map_or(1, char::len_utf8)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: &str) -> LineEditor {
        let mut e = LineEditor::default();
        e.insert(text);
        e
    }

    #[test]
    fn moves_and_deletes_whole_graphemes() {
        // e + combining acute, a family emoji (ZWJ sequence), a wide CJK character.
        let mut e = typed("ae\u{301}👨‍👩‍👧漢");
        e.left();
        assert_eq!(&e.text()[e.cursor()..], "漢");
        e.left();
        assert_eq!(&e.text()[e.cursor()..], "👨‍👩‍👧漢");
        e.backspace();
        assert_eq!(e.text(), "a👨‍👩‍👧漢");
        e.delete();
        assert_eq!(e.text(), "a漢");
        e.home();
        e.right();
        e.insert("b");
        assert_eq!(e.text(), "ab漢");
    }

    #[test]
    fn words_and_kills() {
        let mut e = typed("hello big world");
        e.word_left();
        assert_eq!(&e.text()[e.cursor()..], "world");
        e.delete_word();
        assert_eq!(e.text(), "hello world");
        e.word_left();
        e.word_right();
        assert_eq!(&e.text()[..e.cursor()], "hello");
        e.kill_to_end();
        assert_eq!(e.text(), "hello");
        e.kill_to_start();
        assert_eq!(e.text(), "");
    }

    #[test]
    fn history_recalls_lines_and_keeps_the_draft() {
        let mut e = typed("one");
        assert_eq!(e.submit(), ["one"]);
        e.insert("two");
        e.submit();
        e.insert("dra");
        e.history_up();
        assert_eq!(e.text(), "two");
        e.history_up();
        assert_eq!(e.text(), "one");
        e.history_up();
        assert_eq!(e.text(), "one");
        e.history_down();
        e.history_down();
        assert_eq!(e.text(), "dra");
    }

    #[test]
    fn a_paste_keeps_its_lines_and_drops_controls() {
        let mut e = typed("first\r\nsecond\x1b[31m\nthird\tx\n");
        assert_eq!(e.text(), "first\nsecond[31m\nthird x\n");
        assert_eq!(e.submit(), ["first", "second[31m", "third x"]);
        assert!(e.submit().is_empty());
    }

    #[test]
    fn the_view_scrolls_to_keep_the_cursor_visible() {
        let e = typed("0123456789");
        let (text, col) = e.view(6);
        assert_eq!(text, "56789");
        assert_eq!(col, 5);
        let mut e = typed("漢字漢字");
        e.home();
        let (text, col) = e.view(5);
        assert_eq!((text.as_str(), col), ("漢字", 0));
        let e = typed("a\nb");
        assert_eq!(e.view(10), ("a↵b".to_owned(), 3));
    }

    #[test]
    fn completion_uses_the_candidates() {
        let mut e = typed("ad");
        e.complete(&["bob".into(), "Ada".into()]);
        assert_eq!(e.text(), "Ada: ");
        let mut e = typed("hi b");
        e.complete(&["bob".into()]);
        assert_eq!(e.text(), "hi bob ");
    }
}
