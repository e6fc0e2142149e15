//! Drawing the [`App`] with ratatui: a topic bar, the message pane with the member list beside
//! it, the window (tab) bar, the status bar and the input line.
//!
//! ```text
//!  lobby: topic of the room
//! 14:05       ada ✓✓ │ hello everyone            │ ada
//! 14:05       bob    │ hi ada, a long line that  │ bob
//!                    │ wraps under its own text  │
//!  1:status  2:lobby  3:bob(2)
//!  ada │ 127.0.0.1:12345 │ key ABCD-… │ rtt 0.3 ms │ loss 0.0% │ connected
//! [lobby] typed text█
//! ```
//!
//! Message lines wrap by display width, never splitting a grapheme (wide characters, combining
//! marks stay whole), at spaces or between CJK characters; continuation rows align under the
//! text. Emoji sequences whose width terminals disagree on are drawn as their parts, so that no
//! terminal draws them over the next letter (see `display_units`).

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

/// Colours nicks are drawn in, on terminals with 256 colours: well apart on dark and light
/// backgrounds, ordered so that neighbours differ in hue (a nick whose colour is taken gets the
/// next one). Red (errors), yellow (mentions) and greys (notices) are left out.
const NICK_PALETTE: [Color; 16] = [
    Color::Indexed(33),  // blue
    Color::Indexed(208), // orange
    Color::Indexed(41),  // green
    Color::Indexed(170), // orchid
    Color::Indexed(37),  // teal
    Color::Indexed(214), // amber
    Color::Indexed(99),  // purple
    Color::Indexed(114), // pale green
    Color::Indexed(203), // salmon
    Color::Indexed(75),  // sky blue
    Color::Indexed(178), // gold
    Color::Indexed(135), // violet
    Color::Indexed(43),  // aquamarine
    Color::Indexed(209), // coral
    Color::Indexed(147), // lavender
    Color::Indexed(155), // lime
];

/// The fallback for terminals that say they have only the 16 basic colours.
const BASIC_NICK_PALETTE: [Color; 10] = [
    Color::Cyan,
    Color::Green,
    Color::Blue,
    Color::Magenta,
    Color::LightCyan,
    Color::LightGreen,
    Color::LightBlue,
    Color::LightMagenta,
    Color::LightYellow,
    Color::White,
];

/// Which colours nicks are drawn in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Palette {
    /// 16 colours of the 256-colour set, well apart.
    #[default]
    Wide,
    /// 10 of the basic colours every terminal has.
    Basic,
}

impl Palette {
    /// The palette the terminal can show, from `COLORTERM` and `TERM` (a terminal that says
    /// nothing of 256 colours gets the basic one).
    pub fn detect() -> Self {
        let var = |name| std::env::var(name).unwrap_or_default();
        let (colorterm, term) = (var("COLORTERM"), var("TERM"));
        if colorterm.is_empty() && !term.contains("256") && !term.contains("direct") {
            Self::Basic
        } else {
            Self::Wide
        }
    }

    fn colours(self) -> &'static [Color] {
        match self {
            Self::Wide => &NICK_PALETTE,
            Self::Basic => &BASIC_NICK_PALETTE,
        }
    }
}

/// A nick's own place in a palette of `len` colours: the same for the same nick (whatever its
/// case), on every screen and run.
fn preferred(nick: &str, len: usize) -> usize {
    // FNV-1a: small, stable across versions and platforms (std's hasher is not).
    let mut hash: u32 = 0x811c_9dc5;
    for byte in nick.to_lowercase().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash as usize % len
}

/// A nick's own colour (in the 256-colour palette), before [`NickColours`] moves it away from
/// another nick's on the same screen.
pub fn nick_colour(nick: &str) -> Color {
    NICK_PALETTE[preferred(nick, NICK_PALETTE.len())]
}

/// The colours of the nicks on one screen, all different (while the palette lasts).
///
/// The nicks are taken in alphabetical order; each gets its own colour unless a nick before it
/// has it, and then the next free one. So a nick's colour depends only on who is on the
/// screen, and is its own unless it would be confused with another's.
#[derive(Debug, Default)]
pub struct NickColours {
    palette: Palette,
    /// By lowercased nick.
    assigned: std::collections::HashMap<String, Color>,
}

impl NickColours {
    /// Colours for `nicks` (repeats and case do not matter).
    pub fn new<'a>(palette: Palette, nicks: impl IntoIterator<Item = &'a str>) -> Self {
        let colours = palette.colours();
        let mut keys: Vec<String> = nicks.into_iter().map(str::to_lowercase).collect();
        keys.sort();
        keys.dedup();
        let mut taken = vec![false; colours.len()];
        let mut assigned = std::collections::HashMap::new();
        for key in keys {
            let own = preferred(&key, colours.len());
            let index = (0..colours.len())
                .map(|step| (own + step) % colours.len())
                .find(|&i| !taken[i])
                .unwrap_or(own);
            taken[index] = true;
            assigned.insert(key, colours[index]);
        }
        Self { palette, assigned }
    }

    /// The colours for what the window shows: its members, whoever speaks in it, and you.
    fn for_window(app: &App) -> Self {
        let window = app.current();
        let senders = window.lines.iter().filter_map(|line| match &line.body {
            Body::Message { from, .. } => Some(from.as_str()),
            _ => None,
        });
        let nicks = window
            .members
            .iter()
            .map(String::as_str)
            .chain(senders)
            .chain([app.nick.as_str()]);
        Self::new(app.palette, nicks)
    }

    /// The colour of `nick`.
    pub fn of(&self, nick: &str) -> Color {
        let colours = self.palette.colours();
        self.assigned
            .get(&nick.to_lowercase())
            .copied()
            .unwrap_or_else(|| colours[preferred(nick, colours.len())])
    }
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
    let colours = NickColours::for_window(app);
    draw_top(frame, app, top);
    draw_pane(frame, app, pane, &colours);
    if let Some(members) = members {
        draw_members(frame, app, members, &colours);
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

fn draw_pane(frame: &mut Frame, app: &App, area: Rect, colours: &NickColours) {
    let window = app.current();
    let height = area.height as usize;
    let wanted = height + window.scroll;
    // Wrap from the newest line back, only as far as the view needs.
    let mut rows: Vec<TextLine<'static>> = Vec::new();
    for line in window.lines.iter().rev() {
        let mut wrapped = styled_rows(line, area.width, colours);
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

fn draw_members(frame: &mut Frame, app: &App, area: Rect, colours: &NickColours) {
    let window = app.current();
    let block = Block::new()
        .borders(Borders::LEFT)
        .border_style(Style::new().fg(Color::DarkGray))
        // Indented as the names are.
        .title(format!(" {} here", window.members.len()));
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
            let mut style = Style::new().fg(colours.of(nick));
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

/// The status bar, fitted to `width` columns: the nick and the connection first, then the
/// numbers, the server and its key. When that is too long, the key's fingerprint is cut to its
/// first groups, then the loss and the round-trip time are left out, then the key (a `…` at
/// the end says something was); the server's address is cut last, from its start, with a `…`
/// (its port, which tells servers on one machine apart, stays).
fn status_text(app: &App, width: usize) -> String {
    let status = &app.status;
    let link = match &status.link {
        Link::Connecting => "connecting…".to_owned(),
        Link::Connected => "connected".to_owned(),
        Link::Closed(why) | Link::Note(why) => why.clone(),
    };
    let head = [app.nick.clone(), link];
    // Each says less than the one before: (parts before the server, parts after it).
    let fallbacks: Vec<(Vec<String>, Vec<String>)> = if app.peer_mode {
        vec![
            (vec![], vec!["plain UDP, not encrypted".to_owned()]),
            (vec![], vec!["not encrypted".to_owned()]),
        ]
    } else {
        let rtt = match status.rtt {
            Some(rtt) => format!("rtt {:.1} ms", rtt.as_secs_f64() * 1000.0),
            None => "rtt -".to_owned(),
        };
        let loss = match status.loss {
            Some(loss) => format!("loss {:.1}%", loss * 100.0),
            None => "loss -".to_owned(),
        };
        // The key's fingerprint, whole or cut to its first `groups`.
        let key = |groups: Option<usize>| match (&status.fingerprint, groups) {
            (None, _) => "not encrypted yet".to_owned(),
            (Some(fp), None) => format!("key {fp}"),
            (Some(fp), Some(n)) => {
                format!(
                    "key {}…",
                    fp.split('-').take(n).collect::<Vec<_>>().join("-")
                )
            }
        };
        vec![
            (vec![rtt.clone(), loss.clone()], vec![key(None)]),
            (vec![rtt.clone(), loss], vec![key(Some(2))]),
            (vec![rtt], vec![key(Some(2))]),
            (vec![], vec![key(Some(2))]),
            (vec![], vec![key(Some(1))]),
        ]
    };
    let compose = |before: &[String], server: &str, after: &[String]| {
        let parts: Vec<&str> = head
            .iter()
            .chain(before)
            .map(String::as_str)
            .chain([server])
            .chain(after.iter().map(String::as_str))
            .collect();
        format!(" {}", parts.join(" │ "))
    };
    for (before, after) in &fallbacks {
        let text = compose(before, &status.server, after);
        if text.width() <= width {
            return text;
        }
    }
    let rest = ["…".to_owned()];
    let text = compose(&[], &status.server, &rest);
    if text.width() <= width {
        return text;
    }
    // The address cut from its start, when at least its port and a little more still fit.
    let around = compose(&[], "", &rest).width();
    let room = width.saturating_sub(around);
    if room >= 8 {
        return compose(&[], &cut_start(&status.server, room), &rest);
    }
    truncate(&text, width)
}

/// The last `width` columns of `text`, after a `…` when cut.
fn cut_start(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_owned();
    }
    let mut kept = Vec::new();
    let mut used = 1;
    for g in text.graphemes(true).rev() {
        if used + g.width() > width {
            break;
        }
        used += g.width();
        kept.push(g);
    }
    kept.push("…");
    kept.reverse();
    kept.concat()
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
///
/// Wide enough, a message is laid out in columns: the time, the nick (right-aligned), the
/// delivery mark of your own messages, then the text, wrapped under itself:
///
/// ```text
/// 14:05          ada ✓✓ │ hello everyone, a long line
///                       │ that wraps under its text
/// ```
///
/// When the text would get fewer than 10 columns, the nick and the mark start
/// the first row and the text follows, wrapped on the whole width.
pub fn wrapped_rows(line: &Line, width: u16) -> Vec<TextLine<'static>> {
    styled_rows(line, width, &NickColours::default())
}

/// [`wrapped_rows`], with the nick in its colour on this screen.
fn styled_rows(line: &Line, width: u16, colours: &NickColours) -> Vec<TextLine<'static>> {
    let width = width as usize;
    let nick_width = if width >= 60 { 12 } else { 8 };
    // time, nick, mark, separator
    let prefix_width = 5 + 1 + nick_width + 1 + 2 + 3;
    let dim = Style::new().fg(Color::DarkGray);
    let time = if line.time.is_empty() {
        "     ".to_owned()
    } else {
        format!("{:<5}", truncate(&line.time, 5))
    };
    let (time, mark, nick, nick_style, text, text_style, lead) = match &line.body {
        Body::Message {
            from,
            text,
            action,
            history,
            own,
            mention,
        } => {
            let mark = own.map(|delivery| match delivery {
                Delivery::Pending => Span::styled("⋯ ", dim),
                Delivery::Acknowledged => Span::styled("✓ ", Style::new().fg(Color::Gray)),
                Delivery::Delivered => Span::styled("✓✓", Style::new().fg(Color::Green)),
                Delivery::Failed => Span::styled("✗ ", Style::new().fg(Color::Red)),
            });
            let mut nick_style = Style::new().fg(colours.of(from));
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
                    mark,
                    "*".to_owned(),
                    nick_style,
                    text.clone(),
                    text_style,
                    Some((from.clone(), nick_style)),
                )
            } else {
                (
                    time,
                    mark,
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
            None,
            "--".to_owned(),
            dim,
            text.clone(),
            Style::new().fg(Color::Gray),
            None,
        ),
        Body::Error(text) => (
            time,
            None,
            "!!".to_owned(),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            text.clone(),
            Style::new().fg(Color::Red),
            None,
        ),
    };
    // An action reads "* ada waves": the nick starts the text.
    let mut units = Vec::new();
    if let Some((from, style)) = &lead {
        units.extend(display_units(from, *style));
        units.extend(display_units(" ", text_style));
    }
    units.extend(display_units(&text, text_style));

    if width < prefix_width + MIN_TEXT_WIDTH {
        // Too narrow for columns: "nick ✓✓ text", the text wrapped on the whole width after
        // the nick and the mark (at most half the row, so the text keeps room).
        let width = width.max(1);
        let shown_nick = truncate(&nick, (width / 2).max(1));
        let mut head = vec![Span::styled(shown_nick.clone(), nick_style)];
        let mut head_width = shown_nick.width();
        if let Some(mark) = &mark {
            let mark = Span::styled(mark.content.trim_end().to_owned(), mark.style);
            head_width += 1 + mark.width();
            head.push(Span::raw(" "));
            head.push(mark);
        }
        let mut rows = Vec::new();
        let first = if head_width + 1 < width {
            head.push(Span::raw(" "));
            width - head_width - 1
        } else {
            // Not even room for the head and one column of text: the head has its row.
            rows.push(TextLine::from(std::mem::take(&mut head)));
            width
        };
        for (i, row) in wrap_units(units, first, width).into_iter().enumerate() {
            let mut spans = if i == 0 {
                std::mem::take(&mut head)
            } else {
                Vec::new()
            };
            spans.extend(row_spans(row));
            rows.push(TextLine::from(spans));
        }
        return rows;
    }
    let text_width = width - prefix_width;
    let shown_nick = truncate(&nick, nick_width);
    let nick_cell = format!(
        "{}{shown_nick}",
        " ".repeat(nick_width.saturating_sub(shown_nick.width()))
    );
    let rows = wrap_units(units, text_width, text_width);
    let mut lines = Vec::with_capacity(rows.len());
    for (i, row) in rows.into_iter().enumerate() {
        let mut spans = Vec::new();
        if i == 0 {
            spans.push(Span::styled(time.clone(), dim));
            spans.push(Span::raw(" "));
            spans.push(Span::styled(nick_cell.clone(), nick_style));
            spans.push(Span::raw(" "));
            spans.push(mark.clone().unwrap_or_else(|| Span::raw("  ")));
        } else {
            spans.push(Span::raw(" ".repeat(prefix_width - 3)));
        }
        spans.push(Span::styled(" │ ", dim));
        spans.extend(row_spans(row));
        lines.push(TextLine::from(spans));
    }
    lines
}

/// A message pane narrower than its columns' prefix and this many columns of text shows
/// "nick text" rows instead of columns.
const MIN_TEXT_WIDTH: usize = 10;

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

/// What is drawn in one cell (or two, when wide): a grapheme of the text, or a part of one
/// whose width terminals disagree on (see [`display_units`]).
#[derive(Debug, Clone)]
struct Unit {
    text: String,
    width: usize,
    style: Style,
    /// A later part of a split sequence: no row ends before it.
    continues: bool,
}

impl Unit {
    fn is_space(&self) -> bool {
        self.text == " "
    }
}

/// The zero-width joiner that glues emoji into one (👩 + ZWJ + 🔬 = 👩‍🔬).
const ZWJ: char = '\u{200D}';

/// The five skin-tone modifiers (👍 + 🏽 = 👍🏽).
fn is_skin_tone(c: char) -> bool {
    ('\u{1F3FB}'..='\u{1F3FF}').contains(&c)
}

/// The text as the units it is drawn in. Most graphemes are one unit, measured as Unicode
/// says. Emoji sequences that terminals draw at different widths are split into their parts,
/// each drawn in cells of its own: a skin-tone sequence (👍🏽) is 2 columns on a terminal that
/// knows it and 4 on one that does not (tmux 3.3), a ZWJ sequence (👩‍🔬) 2 or the sum of its
/// parts. Drawn as one 2-column cell, the wider rendering covers the next letters; drawn as
/// parts (👍 then 🏽, 👩 then 🔬, the joiner left out), each part is placed at its own column
/// and nothing is covered: a terminal that joins them anyway leaves a gap after them.
/// (Flags, keycaps and VS16 emoji are at most as wide as measured on every terminal tried, so
/// at worst they leave a gap, and stay whole.)
fn display_units(text: &str, style: Style) -> Vec<Unit> {
    let mut units = Vec::new();
    for g in text.graphemes(true) {
        let mut chars = g.chars();
        let several = chars.next().is_some() && chars.next().is_some();
        if !(several && g.chars().any(|c| c == ZWJ || is_skin_tone(c))) {
            units.push(Unit {
                text: g.to_owned(),
                width: g.width(),
                style,
                continues: false,
            });
            continue;
        }
        let mut part = String::new();
        let mut continues = false;
        let mut flush = |part: &mut String, units: &mut Vec<Unit>| {
            if part.is_empty() {
                return;
            }
            let width = part.width();
            match units.last_mut() {
                // A stray selector left alone after a joiner: it stays with what it follows.
                Some(last) if width == 0 => last.text.push_str(part),
                _ => {
                    units.push(Unit {
                        text: part.clone(),
                        width,
                        style,
                        continues,
                    });
                    continues = true;
                }
            }
            part.clear();
        };
        for c in g.chars() {
            if c == ZWJ {
                flush(&mut part, &mut units);
                continue;
            }
            if is_skin_tone(c) {
                flush(&mut part, &mut units);
            }
            part.push(c);
        }
        flush(&mut part, &mut units);
    }
    units
}

/// Characters a row never starts with (closing punctuation: "漢字。" keeps its "。").
const NO_BREAK_BEFORE: &str = "、。，．！？：；）」』】〉》〕｝〗〙〛’”ー々ゝゞヽヾ…‥,.!?:;)]}%";

/// Characters a row never ends with (opening punctuation).
const NO_BREAK_AFTER: &str = "（「『【〈《〔｛〖〘〚‘“([{";

/// A row may end between `before` and `after`: after a space, or next to a wide character
/// (CJK text, emoji), which may break anywhere, except inside punctuation's pairs above.
fn can_break_between(before: &Unit, after: &Unit) -> bool {
    if after.is_space() || after.continues {
        return false;
    }
    if before.is_space() {
        return true;
    }
    let wide = before.width >= 2 || after.width >= 2;
    wide && !NO_BREAK_BEFORE.contains(after.text.as_str())
        && !NO_BREAK_AFTER.contains(before.text.as_str())
}

/// Splits units into rows: the first at most `first` columns, the others at most `width`.
/// A row ends at the last place it may (see [`can_break_between`]); with none, inside a word.
/// A unit wider than the row gets a row of its own. Spaces where a row ends are dropped.
fn wrap_units(units: Vec<Unit>, first: usize, width: usize) -> Vec<Vec<Unit>> {
    let mut rows = Vec::new();
    let mut row: Vec<Unit> = Vec::new();
    let mut used = 0;
    let mut limit = first.max(1);
    for unit in units {
        if rows.is_empty() && row.is_empty() && unit.width > limit && limit < width {
            // The first row is narrower (it follows the nick) and this does not fit in it.
            rows.push(Vec::new());
            limit = width.max(1);
        }
        while used + unit.width > limit && !row.is_empty() {
            if unit.is_space() {
                break;
            }
            // The last place to end the row: before this unit, or between two before it (not
            // in leading spaces, which would leave an empty row).
            let starts = row.iter().position(|u| !u.is_space()).unwrap_or(row.len());
            let at = (starts + 1..=row.len()).rev().find(|&i| {
                let after = row.get(i).unwrap_or(&unit);
                can_break_between(&row[i - 1], after)
            });
            let rest = match at {
                Some(i) => row.split_off(i),
                None => Vec::new(),
            };
            while row.len() > 1 && row.last().is_some_and(Unit::is_space) {
                row.pop();
            }
            rows.push(std::mem::replace(&mut row, rest));
            let leading = row.iter().take_while(|u| u.is_space()).count();
            row.drain(..leading);
            used = row.iter().map(|u| u.width).sum();
            limit = width.max(1);
        }
        if unit.is_space() && used + unit.width > limit && !row.is_empty() {
            // The row ends just before this space.
            rows.push(std::mem::take(&mut row));
            used = 0;
            limit = width.max(1);
            continue;
        }
        used += unit.width;
        row.push(unit);
    }
    if !row.is_empty() || rows.is_empty() {
        rows.push(row);
    }
    rows
}

/// A row's units as spans: consecutive units of one style share a span, but for parts of a
/// split sequence, which get a span each so that nothing joins them into one cell again.
fn row_spans(row: Vec<Unit>) -> Vec<Span<'static>> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut last: Option<String> = None;
    for unit in row {
        let joins = last
            .as_ref()
            .is_some_and(|prev| format!("{prev}{}", unit.text).graphemes(true).count() < 2);
        match spans.last_mut() {
            Some(span) if span.style == unit.style && !joins => {
                span.content.to_mut().push_str(&unit.text);
            }
            _ => spans.push(Span::styled(unit.text.clone(), unit.style)),
        }
        last = Some(unit.text);
    }
    spans
}

/// Splits `text` into rows of at most `width` columns: at the last space or place next to a
/// CJK character that fits (never before closing punctuation), inside a word only when there
/// is none; never inside a grapheme, which gets a row of its own when wider than the row.
pub fn wrap_text(text: &str, width: usize) -> Vec<String> {
    wrap_units(display_units(text, Style::new()), width, width)
        .into_iter()
        .map(|row| row.into_iter().map(|u| u.text).collect())
        .collect()
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

    #[test]
    fn nicks_on_a_screen_differ_in_either_palette_and_keep_their_own_when_they_can() {
        let nicks = ["ada", "bob", "kim", "ned", "eve", "oli", "cyd", "dee"];
        for palette in [Palette::Wide, Palette::Basic] {
            let colours = NickColours::new(palette, nicks);
            let distinct: std::collections::HashSet<_> =
                nicks.iter().map(|n| colours.of(n)).collect();
            assert_eq!(distinct.len(), nicks.len(), "{palette:?}");
            assert!(
                nicks
                    .iter()
                    .all(|n| palette.colours().contains(&colours.of(n)))
            );
            assert_eq!(colours.of("ADA"), colours.of("ada"));
        }
        // Alone, a nick has its own colour.
        let alone = NickColours::new(Palette::Wide, ["kim"]);
        assert_eq!(alone.of("kim"), nick_colour("kim"));
    }
}
