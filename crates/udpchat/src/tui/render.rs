//! Drawing the [`App`] with ratatui: a topic bar, the message pane with the member list beside
//! it, the window (tab) bar, the status bar and the input line.
//!
//! ```text
//!  lobby: topic of the room
//! 14:05 ✓✓      ada │ hello everyone             │ ada
//! 14:05          bob │ hi ada, a long line that   │ bob
//!                    │ wraps under its own text   │
//!  1:status  2:lobby  3:bob(2)
//!  ada │ 127.0.0.1:12345 │ key ABCD-… │ rtt 0.3 ms │ loss 0.0% │ connected
//! [lobby] typed text█
//! ```
//!
//! Message lines wrap by display width, never splitting a grapheme (wide characters, combining
//! marks and emoji sequences stay whole); continuation rows align under the text.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line as TextLine, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use unicode_segmentation::UnicodeSegmentation;
use unicode_width::UnicodeWidthStr;

use super::app::{App, Body, Delivery, Line, Link, WindowKind};

/// The member list's width, when shown.
const MEMBERS_WIDTH: u16 = 18;

/// Terminals narrower than this get no member list.
const MEMBERS_MIN_TERMINAL: u16 = 60;

/// Colours nicks are drawn in: chosen by a hash of the nick, so a nick keeps its colour.
const NICK_PALETTE: [Color; 12] = [
    Color::Cyan,
    Color::Green,
    Color::Yellow,
    Color::Blue,
    Color::Magenta,
    Color::LightCyan,
    Color::LightGreen,
    Color::LightYellow,
    Color::LightBlue,
    Color::LightMagenta,
    Color::Indexed(208),
    Color::Indexed(141),
];

/// A nick's colour: the same for the same nick (whatever its case), on every screen and run.
pub fn nick_colour(nick: &str) -> Color {
    // FNV-1a: small, stable across versions and platforms (std's hasher is not).
    let mut hash: u32 = 0x811c_9dc5;
    for byte in nick.to_lowercase().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    NICK_PALETTE[hash as usize % NICK_PALETTE.len()]
}

/// Draws the whole screen, and tells the app the message pane's size (scrolling is measured in
/// its rows).
pub fn draw(frame: &mut Frame, app: &mut App) {
    let area = frame.area();
    let [top, middle, tabs, status, input] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let show_members = app.current().kind == WindowKind::Room && area.width >= MEMBERS_MIN_TERMINAL;
    let (pane, members) = if show_members {
        let [pane, members] =
            Layout::horizontal([Constraint::Min(1), Constraint::Length(MEMBERS_WIDTH)])
                .areas(middle);
        (pane, Some(members))
    } else {
        (middle, None)
    };
    if app.pane != (pane.width, pane.height) {
        app.set_pane(pane.width, pane.height);
    }
    draw_top(frame, app, top);
    draw_pane(frame, app, pane);
    if let Some(members) = members {
        draw_members(frame, app, members);
    }
    draw_tabs(frame, app, tabs);
    draw_status(frame, app, status);
    draw_input(frame, app, input);
}

fn bar_style() -> Style {
    Style::new().bg(Color::Blue).fg(Color::White)
}

fn draw_top(frame: &mut Frame, app: &App, area: Rect) {
    let window = app.current();
    let text = match window.kind {
        WindowKind::Status => " udpchat: status and help (/help)".to_owned(),
        WindowKind::Private if app.peer_mode => format!(" udpchat chat with {}", window.name),
        WindowKind::Private => format!(" private conversation with {}", window.name),
        WindowKind::Room if !window.joined => format!(" {}: joining…", window.name),
        WindowKind::Room if window.topic.is_empty() => format!(" {}", window.name),
        WindowKind::Room => format!(" {}: {}", window.name, window.topic),
    };
    frame.render_widget(Paragraph::new(text).style(bar_style()), area);
}

fn draw_pane(frame: &mut Frame, app: &App, area: Rect) {
    let window = app.current();
    let height = area.height as usize;
    let wanted = height + window.scroll;
    // Wrap from the newest line back, only as far as the view needs.
    let mut rows: Vec<TextLine<'static>> = Vec::new();
    for line in window.lines.iter().rev() {
        let mut wrapped = wrapped_rows(line, area.width);
        wrapped.reverse();
        rows.extend(wrapped);
        if rows.len() >= wanted {
            break;
        }
    }
    let skip = window.scroll.min(rows.len());
    let mut visible: Vec<TextLine<'static>> = rows.into_iter().skip(skip).take(height).collect();
    visible.reverse();
    // Short windows start at the top.
    frame.render_widget(Paragraph::new(visible), area);
    if window.scroll > 0 && area.height > 0 {
        let text = if window.new_below > 0 {
            format!(
                " -- more: {} new below (PgDn, Ctrl-End) -- ",
                window.new_below
            )
        } else {
            " -- more below (PgDn, Ctrl-End) -- ".to_owned()
        };
        let row = Rect {
            y: area.y + area.height - 1,
            height: 1,
            ..area
        };
        frame.render_widget(Clear, row);
        frame.render_widget(
            Paragraph::new(text).style(Style::new().add_modifier(Modifier::REVERSED)),
            row,
        );
    }
}

fn draw_members(frame: &mut Frame, app: &App, area: Rect) {
    let window = app.current();
    let block = Block::new()
        .borders(Borders::LEFT)
        .border_style(Style::new().fg(Color::DarkGray))
        .title(format!("{} here", window.members.len()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let height = inner.height as usize;
    let total = window.members.len();
    let shown = if total > height {
        height.saturating_sub(1)
    } else {
        total
    };
    let mut lines: Vec<TextLine> = window.members[..shown]
        .iter()
        .map(|nick| {
            let mut style = Style::new().fg(nick_colour(nick));
            if nick.to_lowercase() == app.nick.to_lowercase() {
                style = style.add_modifier(Modifier::BOLD);
            }
            TextLine::from(Span::styled(format!(" {nick}"), style))
        })
        .collect();
    if shown < total {
        lines.push(TextLine::from(Span::styled(
            format!(" … {} more", total - shown),
            Style::new().fg(Color::DarkGray),
        )));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

fn draw_tabs(frame: &mut Frame, app: &App, area: Rect) {
    let mut spans = Vec::new();
    for (i, window) in app.windows.iter().enumerate() {
        let mut label = format!(" {}:{}", i + 1, window.name);
        if window.unread > 0 {
            label.push_str(&format!("({})", window.unread));
        }
        label.push(' ');
        let style = if i == app.active {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        } else if window.mentioned {
            Style::new()
                .fg(Color::LightRed)
                .add_modifier(Modifier::BOLD)
        } else if window.unread > 0 {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new()
        };
        spans.push(Span::styled(label, style));
    }
    frame.render_widget(
        Paragraph::new(TextLine::from(spans)).style(Style::new().bg(Color::Black)),
        area,
    );
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let text = status_text(app, area.width as usize);
    frame.render_widget(Paragraph::new(text).style(bar_style()), area);
}

/// The status bar: the changing numbers first, the long key fingerprint last (cut to its first
/// groups when the terminal is narrow).
fn status_text(app: &App, width: usize) -> String {
    let status = &app.status;
    let mut parts = vec![app.nick.clone()];
    parts.push(match &status.link {
        Link::Connecting => "connecting…".to_owned(),
        Link::Connected => "connected".to_owned(),
        Link::Closed(why) | Link::Note(why) => why.clone(),
    });
    if app.peer_mode {
        parts.push(status.server.clone());
        return format!(" {} │ plain UDP, not encrypted", parts.join(" │ "));
    }
    parts.push(match status.rtt {
        Some(rtt) => format!("rtt {:.1} ms", rtt.as_secs_f64() * 1000.0),
        None => "rtt -".to_owned(),
    });
    parts.push(match status.loss {
        Some(loss) => format!("loss {:.1}%", loss * 100.0),
        None => "loss -".to_owned(),
    });
    parts.push(status.server.clone());
    let text = format!(" {}", parts.join(" │ "));
    let Some(fp) = &status.fingerprint else {
        return format!("{text} │ not encrypted yet");
    };
    let full = format!("{text} │ key {fp}");
    if full.width() <= width {
        return full;
    }
    let short: String = fp.split('-').take(2).collect::<Vec<_>>().join("-");
    format!("{text} │ key {short}…")
}

fn draw_input(frame: &mut Frame, app: &App, area: Rect) {
    let window = app.current();
    let prompt = match window.kind {
        WindowKind::Status => "[status] ".to_owned(),
        WindowKind::Room => format!("[{}] ", window.name),
        WindowKind::Private if app.peer_mode => "you> ".to_owned(),
        WindowKind::Private => format!("[→{}] ", window.name),
    };
    let prompt_width = (prompt.width() as u16).min(area.width / 2);
    let room = area.width.saturating_sub(prompt_width) as usize;
    let (text, cursor) = app.editor.view(room);
    let line = TextLine::from(vec![
        Span::styled(prompt, Style::new().fg(Color::Cyan)),
        Span::raw(text),
    ]);
    frame.render_widget(Paragraph::new(line), area);
    frame.set_cursor_position(Position {
        x: area.x + prompt_width + cursor as u16,
        y: area.y,
    });
}

/// A line as the rows it takes in a pane `width` columns wide.
pub fn wrapped_rows(line: &Line, width: u16) -> Vec<TextLine<'static>> {
    let width = width as usize;
    let nick_width = if width >= 60 { 12 } else { 8 };
    // time, marker, nick, separator
    let prefix_width = 5 + 1 + 2 + 1 + nick_width + 3;
    let dim = Style::new().fg(Color::DarkGray);
    let time = if line.time.is_empty() {
        "     ".to_owned()
    } else {
        format!("{:<5}", truncate(&line.time, 5))
    };
    let (time, marker, nick, nick_style, text, text_style, lead) = match &line.body {
        Body::Message {
            from,
            text,
            action,
            history,
            own,
            mention,
        } => {
            let marker = match own {
                None => Span::raw("  "),
                Some(Delivery::Pending) => Span::styled("⋯ ", dim),
                Some(Delivery::Acknowledged) => Span::styled("✓ ", Style::new().fg(Color::Gray)),
                Some(Delivery::Delivered) => Span::styled("✓✓", Style::new().fg(Color::Green)),
                Some(Delivery::Failed) => Span::styled("✗ ", Style::new().fg(Color::Red)),
            };
            let mut nick_style = Style::new().fg(nick_colour(from));
            if own.is_some() {
                nick_style = nick_style.add_modifier(Modifier::BOLD);
            }
            let mut text_style = Style::new();
            if *mention {
                text_style = text_style.fg(Color::Yellow).add_modifier(Modifier::BOLD);
            }
            if *history {
                text_style = text_style.fg(Color::Gray);
            }
            let time = if *history { "hist ".to_owned() } else { time };
            if *action {
                text_style = text_style.add_modifier(Modifier::ITALIC);
                (
                    time,
                    marker,
                    "*".to_owned(),
                    nick_style,
                    text.clone(),
                    text_style,
                    Some((from.clone(), nick_style)),
                )
            } else {
                (
                    time,
                    marker,
                    from.clone(),
                    nick_style,
                    text.clone(),
                    text_style,
                    None,
                )
            }
        }
        Body::Notice(text) => (
            time,
            Span::raw("  "),
            "--".to_owned(),
            dim,
            text.clone(),
            Style::new().fg(Color::Gray),
            None,
        ),
        Body::Error(text) => (
            time,
            Span::raw("  "),
            "!!".to_owned(),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            text.clone(),
            Style::new().fg(Color::Red),
            None,
        ),
    };
    // An action reads "* ada waves": the nick starts the text.
    let full_text = match &lead {
        Some((from, _)) => format!("{from} {text}"),
        None => text,
    };
    if width < prefix_width + 10 {
        // Too narrow for columns: "nick: text", wrapped on the whole width.
        let head = format!("{nick} ");
        let mut rows = Vec::new();
        for (i, chunk) in wrap_text(&format!("{head}{full_text}"), width.max(1))
            .into_iter()
            .enumerate()
        {
            if i == 0 && chunk.starts_with(&head) {
                rows.push(TextLine::from(vec![
                    marker.clone(),
                    Span::styled(head.clone(), nick_style),
                    Span::styled(chunk[head.len()..].to_owned(), text_style),
                ]));
            } else {
                rows.push(TextLine::from(Span::styled(chunk, text_style)));
            }
        }
        return rows;
    }
    let text_width = width - prefix_width;
    let shown_nick = truncate(&nick, nick_width);
    let nick_cell = format!(
        "{}{shown_nick}",
        " ".repeat(nick_width.saturating_sub(shown_nick.width()))
    );
    let chunks = wrap_text(&full_text, text_width);
    let mut rows = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.into_iter().enumerate() {
        let mut spans = Vec::new();
        if i == 0 {
            spans.push(Span::styled(time.clone(), dim));
            spans.push(Span::raw(" "));
            spans.push(marker.clone());
            spans.push(Span::raw(" "));
            spans.push(Span::styled(nick_cell.clone(), nick_style));
        } else {
            spans.push(Span::raw(" ".repeat(prefix_width - 3)));
        }
        spans.push(Span::styled(" │ ", dim));
        match (&lead, i) {
            (Some((from, style)), 0) if chunk.starts_with(from.as_str()) => {
                spans.push(Span::styled(from.clone(), *style));
                spans.push(Span::styled(chunk[from.len()..].to_owned(), text_style));
            }
            _ => spans.push(Span::styled(chunk, text_style)),
        }
        rows.push(TextLine::from(spans));
    }
    rows
}

/// At most `width` columns of `text`, with `…` when cut.
fn truncate(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for g in text.graphemes(true) {
        let w = g.width();
        if used + w + 1 > width {
            break;
        }
        out.push_str(g);
        used += w;
    }
    out.push('…');
    out
}

/// Splits `text` into rows of at most `width` columns, at spaces when it can, never inside a
/// grapheme. A grapheme wider than the row gets a row of its own.
pub fn wrap_text(text: &str, width: usize) -> Vec<String> {
    let mut rows = Vec::new();
    let mut row = String::new();
    let mut used = 0;
    // Byte index in `row` just after the last space, and the width before it.
    let mut last_space: Option<(usize, usize)> = None;
    for g in text.graphemes(true) {
        let w = g.width();
        if used + w > width && !row.is_empty() {
            if g == " " {
                // The row ends just before this space.
                rows.push(std::mem::take(&mut row));
                used = 0;
                last_space = None;
                continue;
            }
            match last_space {
                Some((at, before)) if at < row.len() => {
                    let rest = row.split_off(at);
                    row.truncate(at - 1);
                    rows.push(std::mem::take(&mut row));
                    row = rest;
                    used -= before + 1;
                }
                _ => {
                    rows.push(std::mem::take(&mut row));
                    used = 0;
                }
            }
            last_space = None;
        }
        row.push_str(g);
        used += w;
        if g == " " {
            last_space = Some((row.len(), used - 1));
        }
    }
    if !row.is_empty() || rows.is_empty() {
        rows.push(row);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_breaks_at_spaces_and_keeps_graphemes_whole() {
        assert_eq!(wrap_text("hello big world", 9), ["hello big", "world"]);
        assert_eq!(wrap_text("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap_text("漢字漢字漢", 5), ["漢字", "漢字", "漢"]);
        assert_eq!(
            wrap_text("e\u{301}e\u{301}e\u{301}", 2),
            ["e\u{301}e\u{301}", "e\u{301}"]
        );
        assert_eq!(wrap_text("", 5), [""]);
        assert_eq!(wrap_text("漢", 1), ["漢"]);
        for row in wrap_text("👨‍👩‍👧 family 👨‍👩‍👧 again and 漢字 and more", 7)
        {
            assert!(row.width() <= 7, "{row:?}");
        }
    }

    #[test]
    fn a_nick_keeps_its_colour() {
        assert_eq!(nick_colour("ada"), nick_colour("ADA"));
        let colours: std::collections::HashSet<_> =
            ["ada", "bob", "cyd", "dee", "eve", "fay", "gus"]
                .iter()
                .map(|n| nick_colour(n))
                .collect();
        assert!(colours.len() >= 4, "nicks spread over the palette");
    }
}
