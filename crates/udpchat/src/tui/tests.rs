//! Screens of the full-screen client, rendered with ratatui's `TestBackend` and compared with
//! snapshots (`snapshots/`, reviewed by hand; `INSTA_UPDATE=always` rewrites them), and the
//! model's behaviour behind them.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use udpchat_proto::reliable::SendError;
use udpchat_proto::wire::message::{ClientMessage, ErrorCode, MessageKind, ServerMessage};

use super::app::{App, Body, Delivery, Link, WindowKind};
use super::render::{self, nick_colour};
use unicode_width::UnicodeWidthStr;

/// A connected app: ada in lobby with bob and cyd.
fn lobby() -> App {
    let mut app = App::new("chat.example:12345", "ada", "lobby");
    app.clock = "14:05".into();
    app.status.link = Link::Connected;
    app.status.fingerprint = Some("7K3Q-9XJD-M2PA-QW4E-HB8N-C6TR-YF5V-ZS1G".into());
    app.status.rtt = Some(std::time::Duration::from_micros(420));
    app.status.loss = Some(0.0);
    for m in [
        ServerMessage::NickSet { nick: "ada".into() },
        ServerMessage::Joined {
            room: "lobby".into(),
            nick: "ada".into(),
        },
        ServerMessage::Topic {
            room: "lobby".into(),
            topic: "Computer Networks II: UDP chat".into(),
            set_by: "bob".into(),
        },
        ServerMessage::Names {
            room: "lobby".into(),
            nicks: vec!["bob".into(), "ada".into(), "cyd".into()],
        },
    ] {
        app.on_server_message(m);
    }
    app
}

fn said(room: &str, from: &str, text: &str) -> ServerMessage {
    ServerMessage::Message {
        room: room.into(),
        from: from.into(),
        kind: MessageKind::Say,
        history: false,
        text: text.into(),
    }
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn ctrl(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
}

fn type_line(app: &mut App, text: &str) {
    for c in text.chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
    app.on_key(key(KeyCode::Enter));
}

/// Hands what the app queued to a pretend connection; returns the messages and numbers.
fn flush(app: &mut App, next: &mut u64) -> Vec<(u64, ClientMessage)> {
    let mut sent = Vec::new();
    app.flush_outgoing(|m| {
        sent.push((*next, m.clone()));
        *next += 1;
        Ok(*next - 1)
    });
    sent
}

fn screen(app: &mut App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| render::draw(f, app)).unwrap();
    terminal
}

fn own_states(app: &App) -> Vec<(String, Delivery)> {
    app.current()
        .lines
        .iter()
        .filter_map(|l| match &l.body {
            Body::Message {
                text, own: Some(d), ..
            } => Some((text.clone(), *d)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_busy_room() {
    let mut app = lobby();
    let mut next = 2;
    app.on_server_message(ServerMessage::Message {
        room: "lobby".into(),
        from: "cyd".into(),
        kind: MessageKind::Say,
        history: true,
        text: "(said before you came) anyone here?".into(),
    });
    app.on_server_message(said("lobby", "bob", "hi ada! welcome to the lab"));
    type_line(&mut app, "hello everyone");
    type_line(&mut app, "the second one is only acknowledged");
    flush(&mut app, &mut next);
    type_line(&mut app, "and this one is still on its way");
    app.on_acknowledged(4);
    app.on_server_message(said("lobby", "ada", "hello everyone"));
    app.on_server_message(ServerMessage::Message {
        room: "lobby".into(),
        from: "cyd".into(),
        kind: MessageKind::Action,
        history: false,
        text: "waves from the back row".into(),
    });
    app.on_server_message(ServerMessage::Private {
        from: "bob".into(),
        to: "ada".into(),
        text: "psst, the answer is 12345".into(),
    });
    for c in "still typ".chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
    let terminal = screen(&mut app, 80, 16);
    insta::assert_snapshot!(terminal.backend());

    // Styles the text cannot show: nick colours, message states, the private tab.
    let buffer = terminal.backend().buffer();
    let find = |needle: &str| {
        (0..buffer.area.height)
            .find_map(|y| {
                let row: String = (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect();
                row.find(needle)
                    .map(|x| (row[..x].chars().count() as u16, y))
            })
            .unwrap_or_else(|| panic!("{needle} not on screen"))
    };
    let (x, y) = find("bob    │ hi ada");
    assert_eq!(buffer[(x, y)].fg, nick_colour("bob"));
    let (x, y) = find("✓✓");
    assert_eq!(buffer[(x, y)].fg, Color::Green);
    let (x, y) = find("3:bob(1)");
    assert_eq!(
        buffer[(x, y)].fg,
        Color::LightRed,
        "a private message is set apart"
    );
}

#[test]
fn message_states_follow_acknowledgements_and_echoes() {
    let mut app = lobby();
    let mut next = 2;
    type_line(&mut app, "one");
    type_line(&mut app, "two");
    type_line(&mut app, "/me three");
    assert_eq!(
        own_states(&app).iter().map(|s| s.1).collect::<Vec<_>>(),
        [Delivery::Pending; 3]
    );
    let sent = flush(&mut app, &mut next);
    assert_eq!(
        sent,
        [
            (
                2,
                ClientMessage::Say {
                    room: "lobby".into(),
                    text: "one".into()
                }
            ),
            (
                3,
                ClientMessage::Say {
                    room: "lobby".into(),
                    text: "two".into()
                }
            ),
            (
                4,
                ClientMessage::Action {
                    room: "lobby".into(),
                    text: "three".into()
                }
            ),
        ]
    );
    app.on_acknowledged(4);
    assert_eq!(
        own_states(&app).iter().map(|s| s.1).collect::<Vec<_>>(),
        [
            Delivery::Acknowledged,
            Delivery::Acknowledged,
            Delivery::Pending
        ]
    );
    // The echo of "two" arrives: it is delivered, and not shown twice.
    app.on_server_message(said("lobby", "ada", "two"));
    app.on_acknowledged(5);
    assert_eq!(
        own_states(&app),
        [
            ("one".into(), Delivery::Acknowledged),
            ("two".into(), Delivery::Delivered),
            ("three".into(), Delivery::Acknowledged),
        ]
    );
    // A late acknowledgement never demotes a delivered message.
    app.on_acknowledged(5);
    assert_eq!(own_states(&app)[1].1, Delivery::Delivered);
    // Someone else's message with the same text is theirs.
    app.on_server_message(said("lobby", "bob", "one"));
    assert_eq!(own_states(&app)[0].1, Delivery::Acknowledged);
}

#[test]
fn a_full_queue_keeps_messages_pending_in_order() {
    let mut app = lobby();
    type_line(&mut app, "a");
    type_line(&mut app, "b");
    let mut taken = Vec::new();
    app.flush_outgoing(|m| {
        if taken.is_empty() {
            taken.push(m.clone());
            Ok(7)
        } else {
            Err(SendError::QueueFull(Vec::new()))
        }
    });
    assert_eq!(taken.len(), 1);
    assert_eq!(app.outgoing_len(), 1);
    let mut next = 8;
    let rest = flush(&mut app, &mut next);
    assert_eq!(
        rest,
        [(
            8,
            ClientMessage::Say {
                room: "lobby".into(),
                text: "b".into()
            }
        )]
    );
}

#[test]
fn a_refused_private_message_is_marked_failed() {
    let mut app = lobby();
    let mut next = 2;
    type_line(&mut app, "/msg nobody are you there?");
    flush(&mut app, &mut next);
    app.on_acknowledged(3);
    app.on_server_message(ServerMessage::Error {
        code: ErrorCode::NoSuchNick,
        text: "no such nick: nobody".into(),
    });
    let private = app
        .windows
        .iter()
        .find(|w| w.kind == WindowKind::Private)
        .unwrap();
    assert!(matches!(
        private.lines.back().unwrap().body,
        Body::Message {
            own: Some(Delivery::Failed),
            ..
        }
    ));
    // The error is shown where the user is.
    assert!(matches!(
        app.current().lines.back().unwrap().body,
        Body::Error(_)
    ));
}

#[test]
fn a_private_conversation_has_its_own_window() {
    let mut app = lobby();
    let mut next = 2;
    app.on_server_message(ServerMessage::Private {
        from: "bob".into(),
        to: "ada".into(),
        text: "psst".into(),
    });
    assert_eq!(app.windows[2].name, "bob");
    assert_eq!(app.windows[2].unread, 1);
    assert!(app.windows[2].mentioned);
    // Alt-3 shows it, and reading it clears the count.
    app.on_key(KeyEvent::new(KeyCode::Char('3'), KeyModifiers::ALT));
    assert_eq!(app.active, 2);
    assert_eq!(app.windows[2].unread, 0);
    type_line(&mut app, "what?");
    assert_eq!(
        flush(&mut app, &mut next),
        [(
            2,
            ClientMessage::Private {
                to: "bob".into(),
                text: "what?".into()
            }
        )]
    );
    app.on_acknowledged(3);
    app.on_server_message(ServerMessage::Private {
        from: "ada".into(),
        to: "bob".into(),
        text: "what?".into(),
    });
    let mut terminal = screen(&mut app, 60, 8);
    insta::assert_snapshot!(terminal.backend());
    // /me is for rooms.
    type_line(&mut app, "/me shrugs");
    terminal.draw(|f| render::draw(f, &mut app)).unwrap();
    assert!(matches!(
        app.current().lines.back().unwrap().body,
        Body::Error(_)
    ));
}

#[test]
fn a_narrow_terminal_wraps_wide_and_combining_text_and_hides_the_members() {
    let mut app = lobby();
    app.on_server_message(said(
        "lobby",
        "bob",
        "漢字とかなの長い行は二桁の幅で折り返されます and 👩‍🔬 emoji stay whole, e\u{301}e\u{301} too",
    ));
    app.on_server_message(said("lobby", "a-very-long-nick", "short"));
    let terminal = screen(&mut app, 40, 14);
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn escapes_from_the_network_are_shown_not_obeyed() {
    let mut app = lobby();
    app.on_server_message(said(
        "lobby",
        "ev\x1bil",
        "\x1b[2J\x1b]0;pwned\x07 clear screen? \u{202e}reversed\u{202c} \u{9b}31m",
    ));
    app.on_server_message(ServerMessage::Topic {
        room: "lobby".into(),
        topic: "\x1b[5mblink".into(),
        set_by: "bob".into(),
    });
    let terminal = screen(&mut app, 80, 10);
    insta::assert_snapshot!(terminal.backend());
    for cell in terminal.backend().buffer().content() {
        assert!(
            !cell
                .symbol()
                .chars()
                .any(udpchat_proto::text::is_unsafe_for_terminal),
            "{:?}",
            cell.symbol()
        );
    }
}

#[test]
fn scrolling_up_holds_the_view_while_lines_arrive() {
    let mut app = lobby();
    for i in 1..=30 {
        app.on_server_message(said("lobby", "bob", &format!("line {i}")));
    }
    let _ = screen(&mut app, 70, 12);
    app.on_key(key(KeyCode::PageUp));
    app.on_server_message(said("lobby", "cyd", "a new line below"));
    let terminal = screen(&mut app, 70, 12);
    insta::assert_snapshot!(terminal.backend());
    // The wheel scrolls too; PgDn at the bottom follows new lines again.
    app.on_mouse(MouseEvent {
        kind: MouseEventKind::ScrollDown,
        column: 5,
        row: 5,
        modifiers: KeyModifiers::NONE,
    });
    for _ in 0..5 {
        app.on_key(key(KeyCode::PageDown));
    }
    assert_eq!(app.current().scroll, 0);
    assert_eq!(app.current().new_below, 0);
    // Never further up than the first line.
    for _ in 0..50 {
        app.on_key(key(KeyCode::PageUp));
    }
    let terminal = screen(&mut app, 70, 12);
    let first = terminal.backend().buffer();
    let row: String = (0..70).map(|x| first[(x, 1)].symbol()).collect();
    assert!(row.contains("you joined lobby"), "{row}");
}

#[test]
fn help_lists_commands_and_keys() {
    let mut app = lobby();
    type_line(&mut app, "/help");
    let terminal = screen(&mut app, 100, 14);
    insta::assert_snapshot!(terminal.backend());
}

#[test]
fn members_follow_joins_parts_and_nick_changes() {
    let mut app = lobby();
    app.on_server_message(ServerMessage::Joined {
        room: "lobby".into(),
        nick: "Dee".into(),
    });
    app.on_server_message(ServerMessage::Left {
        room: "lobby".into(),
        nick: "bob".into(),
        reason: "quit".into(),
    });
    app.on_server_message(ServerMessage::NickChanged {
        old: "cyd".into(),
        new: "cy".into(),
    });
    assert_eq!(app.current().members, ["ada", "cy", "Dee"]);
    // Joining a second room opens (and shows) its window; leaving it closes it.
    type_line(&mut app, "/join rust");
    let mut next = 2;
    assert_eq!(
        flush(&mut app, &mut next),
        [(
            2,
            ClientMessage::Join {
                room: "rust".into()
            }
        )]
    );
    assert_eq!(app.current().name, "rust");
    assert!(!app.current().joined);
    app.on_server_message(ServerMessage::Joined {
        room: "Rust".into(),
        nick: "ada".into(),
    });
    assert!(app.current().joined);
    assert_eq!(app.current().name, "Rust");
    app.on_server_message(said("lobby", "Dee", "over here, ada"));
    assert_eq!(app.windows[1].unread, 1);
    assert!(app.windows[1].mentioned, "the nick was mentioned");
    app.on_server_message(ServerMessage::Left {
        room: "rust".into(),
        nick: "ada".into(),
        reason: "part".into(),
    });
    assert_eq!(app.windows.len(), 2);
    assert_eq!(app.current().name, "lobby");
}

#[test]
fn keys_edit_recall_complete_and_quit() {
    let mut app = lobby();
    type_line(&mut app, "first");
    app.on_key(key(KeyCode::Up));
    assert_eq!(app.editor.text(), "first");
    app.on_key(ctrl('u'));
    for c in "b".chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.editor.text(), "bob: ");
    app.on_paste("two\nlines");
    app.on_key(key(KeyCode::Enter));
    let mut next = 0;
    let sent: Vec<_> = flush(&mut app, &mut next)
        .into_iter()
        .map(|s| s.1)
        .collect();
    assert_eq!(
        sent[1..],
        [
            ClientMessage::Say {
                room: "lobby".into(),
                text: "bob: two".into()
            },
            ClientMessage::Say {
                room: "lobby".into(),
                text: "lines".into()
            }
        ]
    );
    assert!(!app.quit);
    app.on_key(ctrl('c'));
    assert!(app.quit);
}

#[test]
fn any_terminal_size_renders_without_panicking() {
    let mut app = lobby();
    app.on_server_message(said(
        "lobby",
        "bob",
        "漢字 👩‍🔬 e\u{301} and a rather long line to wrap",
    ));
    type_line(&mut app, "mine");
    for c in "typing 漢字".chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
    for width in [1, 2, 3, 5, 8, 13, 21, 34, 59, 60, 61, 200] {
        for height in [1, 2, 3, 5, 8, 40] {
            let _ = screen(&mut app, width, height);
            app.on_key(key(KeyCode::PageUp));
            let _ = screen(&mut app, width, height);
            app.on_key(key(KeyCode::PageDown));
        }
    }
}

#[test]
fn a_line_too_long_for_the_protocol_is_refused_visibly_and_the_next_one_goes() {
    use udpchat_proto::client::{Client, ClientConfig};
    use udpchat_proto::rng::SplitMix64;
    // The real client core decides (its one check), before anything is queued for sending.
    let mut client = Client::new(
        ClientConfig::default(),
        &mut SplitMix64::new(1),
        std::time::Instant::now(),
    );
    let mut app = lobby();
    app.on_paste(&"x".repeat(66_000));
    app.on_key(key(KeyCode::Enter));
    type_line(&mut app, "short");
    app.flush_outgoing(|m| client.send(m));
    assert_eq!(app.outgoing_len(), 0);
    let states: Vec<(usize, Delivery)> = own_states(&app)
        .into_iter()
        .map(|(text, d)| (text.len(), d))
        .collect();
    assert_eq!(
        states,
        [(66_000, Delivery::Failed), (5, Delivery::Pending)],
        "the long line is marked refused, the next one is on its way"
    );
    let errors: Vec<&str> = app
        .current()
        .lines
        .iter()
        .filter_map(|l| match &l.body {
            Body::Error(text) => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        ["this line is 66000 bytes, longer than the 65536 bytes a message may carry; not sent"]
    );
}

// ---------------------------------------------------------------- issue 16: the terminal UI

/// The screen's rows as text (a wide cell's hidden neighbour is left out).
fn rows_of(terminal: &Terminal<TestBackend>) -> Vec<String> {
    let buffer = terminal.backend().buffer();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect()
        })
        .collect()
}

/// The (column, row) where `needle` starts on screen.
fn position_of(terminal: &Terminal<TestBackend>, needle: &str) -> (u16, u16) {
    let buffer = terminal.backend().buffer();
    for y in 0..buffer.area.height {
        // Columns, counting the cells a wide character hides.
        let mut row = String::new();
        let mut columns = Vec::new();
        for x in 0..buffer.area.width {
            let symbol = buffer[(x, y)].symbol();
            for _ in 0..symbol.len() {
                columns.push(x);
            }
            row.push_str(symbol);
        }
        if let Some(at) = row.find(needle) {
            return (columns[at], y);
        }
    }
    panic!(
        "{needle:?} not on screen:\n{}",
        rows_of(terminal).join("\n")
    );
}

#[test]
fn under_thirty_columns_every_row_fits_and_no_character_is_lost() {
    let text = "the quick brown fox jumps over the lazy dog, 12345";
    let own = "my own words are all here";
    for width in 8..=30u16 {
        let mut app = lobby();
        let mut next = 2;
        app.on_server_message(said("lobby", "bob", text));
        app.on_server_message(said(
            "lobby",
            "a-long-nick-of-32-characters-abc",
            "漢字漢字 👍🏽 ok",
        ));
        type_line(&mut app, own);
        flush(&mut app, &mut next);
        app.on_acknowledged(3);
        let terminal = screen(&mut app, width, 40);
        for line in &app.current().lines {
            for row in render::wrapped_rows(line, width) {
                assert!(
                    row.width() <= usize::from(width),
                    "{width} columns: a row of {} columns: {row:?}",
                    row.width()
                );
            }
        }
        let rows = rows_of(&terminal);
        for word in text.split(' ').chain(own.split(' ')) {
            assert!(
                rows.iter().any(|r| r.split(' ').any(|w| w == word)),
                "{width} columns: {word:?} lost:\n{}",
                rows.join("\n")
            );
        }
    }
}

#[test]
fn a_skin_tone_emoji_is_drawn_as_two_cells_so_no_terminal_overwrites_the_next_letter() {
    let mut app = lobby();
    app.on_server_message(said("lobby", "bob", "ok 👍🏽x and 👩‍🔬y"));
    let terminal = screen(&mut app, 80, 12);
    let buffer = terminal.backend().buffer();
    let (x, y) = position_of(&terminal, "👍");
    // The base and the modifier each get their own two columns (what tmux draws), so a terminal
    // that draws the sequence 4 columns wide cannot cover the letter after it.
    assert_eq!(buffer[(x, y)].symbol(), "👍");
    assert_eq!(buffer[(x + 2, y)].symbol(), "🏽");
    assert_eq!(buffer[(x + 4, y)].symbol(), "x");
    // A ZWJ sequence: its parts, each in its own cells.
    let (x, y) = position_of(&terminal, "👩");
    assert_eq!(buffer[(x, y)].symbol(), "👩");
    assert_eq!(buffer[(x + 2, y)].symbol(), "🔬");
    assert_eq!(buffer[(x + 4, y)].symbol(), "y");
}

#[test]
fn the_delivery_mark_sits_after_the_nick_in_one_column() {
    let mut app = lobby();
    let mut next = 2;
    type_line(&mut app, "hello everyone");
    type_line(&mut app, "only acknowledged");
    flush(&mut app, &mut next);
    type_line(&mut app, "on its way");
    app.on_acknowledged(4);
    app.on_server_message(said("lobby", "ada", "hello everyone"));
    for width in [80, 50] {
        let terminal = screen(&mut app, width, 16);
        let delivered = position_of(&terminal, "ada ✓✓ │ hello everyone");
        let acknowledged = position_of(&terminal, "ada ✓  │ only acknowledged");
        let pending = position_of(&terminal, "ada ⋯  │ on its way");
        assert_eq!(delivered.0, acknowledged.0, "aligned");
        assert_eq!(delivered.0, pending.0, "aligned");
    }
}

#[test]
fn a_short_word_stays_with_the_cjk_text_after_it() {
    // CJK text may break between any two characters: a row ends at the last such place, not
    // at the space before the run (which would leave "ok" alone on its row).
    assert_eq!(
        render::wrap_text("ok 漢字漢字漢字", 8),
        ["ok 漢字", "漢字漢字"]
    );
    assert_eq!(
        render::wrap_text("see 漢字とかなの長い行", 10),
        ["see 漢字と", "かなの長い", "行"]
    );
    // Closing punctuation never starts a row.
    assert_eq!(render::wrap_text("漢字漢。字", 6), ["漢字", "漢。字"]);
    // The parts of a split emoji sequence stay together.
    assert_eq!(render::wrap_text("ab 👩‍🔬", 5), ["ab", "👩🔬"]);
    // Latin text still breaks at spaces only.
    assert_eq!(
        render::wrap_text("hello big world", 9),
        ["hello big", "world"]
    );
}

#[test]
fn the_member_list_title_lines_up_with_the_names() {
    let mut app = lobby();
    let terminal = screen(&mut app, 80, 12);
    let title = position_of(&terminal, "3 here");
    let first = position_of(&terminal, "ada  ");
    assert_eq!(title.0, first.0, "{:?}", rows_of(&terminal));
}

#[test]
fn a_narrow_status_bar_is_cut_with_an_ellipsis_and_keeps_the_port() {
    let mut app = lobby();
    for width in [50, 40, 34] {
        let terminal = screen(&mut app, width, 12);
        let rows = rows_of(&terminal);
        let status = &rows[rows.len() - 2];
        assert!(status.contains(":12345"), "{width}: {status:?}");
        assert!(status.contains('…'), "{width}: {status:?}");
        assert!(
            status.trim_end().width() <= usize::from(width),
            "{status:?}"
        );
    }
    // Wide enough: everything, the whole fingerprint too.
    let terminal = screen(&mut app, 120, 12);
    let rows = rows_of(&terminal);
    assert!(
        rows[rows.len() - 2].contains("chat.example:12345 │ key 7K3Q-9XJD-M2PA"),
        "{rows:?}"
    );
}

#[test]
fn nicks_on_one_screen_get_different_colours() {
    let mut app = lobby();
    // "bob" and "kim" hash to the same colour of a 12-colour palette.
    for nick in ["kim", "ned", "eve", "oli"] {
        app.on_server_message(ServerMessage::Joined {
            room: "lobby".into(),
            nick: nick.into(),
        });
        app.on_server_message(said("lobby", nick, "hi"));
    }
    app.on_server_message(said("lobby", "bob", "hi"));
    let terminal = screen(&mut app, 80, 20);
    let buffer = terminal.backend().buffer();
    let members = app.current().members.clone();
    let mut seen = std::collections::HashMap::new();
    for nick in &members {
        // In the member list (right-hand column) and on the nick's message row.
        let (x, y) = position_of(&terminal, &format!(" {nick}  "));
        let colour = buffer[(x + 1, y)].fg;
        if let Some(other) = seen.insert(colour, nick.clone()) {
            panic!("{nick} and {other} share {colour:?}");
        }
    }
    for (colour, nick) in seen {
        if ["ada", "cyd"].contains(&nick.as_str()) {
            continue;
        }
        let (x, y) = position_of(&terminal, &format!("{nick}    │ hi"));
        assert_eq!(buffer[(x, y)].fg, colour, "{nick}: one colour everywhere");
    }
}

#[test]
fn a_very_narrow_terminal_starts_each_message_with_its_nick_and_mark() {
    let mut app = lobby();
    let mut next = 2;
    app.on_server_message(said("lobby", "bob", "ok 漢字漢字漢字漢字 and 👍🏽 thanks"));
    type_line(&mut app, "a message of mine that wraps");
    flush(&mut app, &mut next);
    app.on_acknowledged(3);
    let terminal = screen(&mut app, 24, 14);
    insta::assert_snapshot!(terminal.backend());
}
