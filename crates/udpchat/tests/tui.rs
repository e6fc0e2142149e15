//! The full-screen client end to end: two `udpchat join` in their own tmux terminals, talking
//! through `udpchat serve`. What one types appears on the other's screen; the sender's line
//! shows the message delivered; resizing, hostile text, Ctrl-C and a panic are handled and the
//! terminal is given back in cooked mode.
//!
//! Needs tmux (`.ci/run` installs it). Every wait is for text on a screen, bounded.

mod support;

use support::tmux::Tmux;
use support::{Proc, data_home, local_socket};

/// Shell run after udpchat: its exit status, and whether the terminal is cooked (`icanon`)
/// with `echo` again (`-icanon`/`-echo` when left raw), on one short line.
const AFTER: &str = "echo \"EXITED $?\"; echo \"MODE $(stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo)' | tr '\\n' ' ')\"; sleep 60";

/// A shell command that runs `join` full-screen, then shows its exit status and the terminal
/// mode once it ends.
fn join_command(port: u16, nick: &str, env: &str) -> String {
    let home = data_home().join(nick);
    std::fs::create_dir_all(&home).unwrap();
    format!(
        "env XDG_DATA_HOME={} {env} {} join 127.0.0.1:{port} --nick {nick}; {AFTER}",
        home.display(),
        env!("CARGO_BIN_EXE_udpchat"),
    )
}

fn serve() -> (Proc, u16) {
    let server = Proc::udpchat(&["serve", "--port", "0"]);
    let port = server.listening_port();
    (server, port)
}

/// The screen's row that contains `needle`.
fn row_with<'a>(screen: &'a str, needle: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no row with {needle:?} in:\n{screen}"))
}

/// The terminal is back in cooked mode with echo, and the program said how it ended.
fn assert_restored(screen: &str, status: i32) {
    assert!(
        screen.contains(&format!("EXITED {status}")),
        "exit status: {screen}"
    );
    assert!(
        screen.contains("MODE icanon echo"),
        "the terminal is left raw: {screen}"
    );
}

#[test]
fn two_clients_chat_through_a_server_on_full_screens() {
    let (_server, port) = serve();
    let ada = Tmux::start_sized("tui-ada", &join_command(port, "ada", ""), 90, 20);
    ada.wait_for("ada in the lobby", |s| s.contains("you joined lobby"));
    let bob = Tmux::start_sized("tui-bob", &join_command(port, "bob", ""), 70, 16);
    bob.wait_for("bob in the lobby", |s| s.contains("you joined lobby"));
    let screen = ada.wait_for("bob in ada's member list", |s| s.contains(" bob joined"));
    // The member list, the status bar (connected, encrypted, a round-trip time), the tabs.
    assert!(screen.contains("2 here"), "{screen}");
    let status = row_with(&screen, " ada │ ");
    assert!(
        status.contains("connected") && status.contains("│ key "),
        "{status}"
    );
    assert!(
        row_with(&screen, "1:status").contains("2:lobby"),
        "{screen}"
    );

    // Ada speaks: bob sees it; ada's own line shows it relayed to the room (✓✓).
    ada.type_text("hello bob, 漢字 and e\u{301}");
    ada.keys(&["Enter"]);
    let seen = bob.wait_for("ada's message on bob's screen", |s| {
        s.contains("ada    │ hello bob, 漢字 and e\u{301}")
    });
    assert!(
        row_with(&seen, "hello bob").contains(":"),
        "timestamped: {seen}"
    );
    let mine = ada.wait_for("ada's message delivered", |s| {
        s.lines()
            .any(|l| l.contains("✓✓") && l.contains("hello bob"))
    });
    assert_eq!(
        mine.matches("hello bob").count(),
        1,
        "shown once, not again when it comes back: {mine}"
    );

    // An action, and a private message that opens its own window on ada's side.
    bob.type_text("/me waves");
    bob.keys(&["Enter"]);
    ada.wait_for("bob's action", |s| s.contains("*    │ bob waves"));
    bob.type_text("/msg ada psst");
    bob.keys(&["Enter"]);
    ada.wait_for("a private window with one unread", |s| {
        s.contains("3:bob(1)")
    });
    ada.keys(&["M-3"]);
    let private = ada.wait_for("the private window", |s| {
        s.contains("private conversation with bob")
    });
    assert!(private.contains("bob    │ psst"), "{private}");
    ada.keys(&["M-2"]);
    ada.wait_for("the lobby again", |s| s.contains("2 here"));

    // Hostile text from a plain-text guest in the lobby shows as text.
    let guest = local_socket();
    guest
        .send_to(b"\x1b[2J\x1b]0;pwned\x07 evil", ("127.0.0.1", port))
        .unwrap();
    let screen = ada.wait_for("the guest's line", |s| s.contains("evil"));
    assert!(
        row_with(&screen, "evil").contains("^[[2J^[]0;pwned^G evil"),
        "{screen}"
    );
    assert!(
        screen.contains("hello bob"),
        "the screen was not cleared: {screen}"
    );

    // A narrower terminal: no member list, the long line wraps under its text.
    ada.resize(44, 16);
    // (tmux cuts the old screen at once; wait for udpchat's own redraw, with its narrower nick
    // column: "HH:MM", a space, 8 columns, so "--" ends at column 14, before the mark column.)
    let narrow = ada.wait_for("the narrow layout", |s| {
        !s.contains("here")
            && s.lines()
                .any(|l| l.find("--    │ you joined lobby") == Some(12))
    });
    assert!(narrow.contains("hello bob"), "{narrow}");
    // Scrolling back up and down again.
    ada.keys(&["PPage"]);
    ada.wait_for("the scrolled view", |s| s.contains("-- more"));
    ada.keys(&["NPage", "NPage", "NPage"]);
    ada.wait_for("the bottom again", |s| !s.contains("-- more"));

    // Ctrl-C leaves: bob sees ada go, ada's terminal is cooked again.
    ada.keys(&["C-c"]);
    let screen = ada.wait_for("ada's exit", |s| s.contains("MODE "));
    assert_restored(&screen, 0);
    bob.wait_for("ada leaving", |s| s.contains("ada left (quit)"));
    bob.type_text("/quit");
    bob.keys(&["Enter"]);
    let screen = bob.wait_for("bob's exit", |s| s.contains("MODE "));
    assert_restored(&screen, 0);
}

#[test]
fn a_panic_gives_the_terminal_back_and_shows_its_message() {
    let (_server, port) = serve();
    let tmux = Tmux::start_sized(
        "tui-panic",
        &join_command(port, "cyd", "RUST_BACKTRACE=0 UDPCHAT_DEBUG_PANIC=1"),
        100,
        30,
    );
    let screen = tmux.wait_for("the exit", |s| s.contains("MODE "));
    assert!(screen.contains("panicking on purpose"), "{screen}");
    assert_restored(&screen, 101);
}

#[test]
fn a_taken_nick_ends_with_the_error_on_the_normal_screen() {
    let (_server, port) = serve();
    let first = Tmux::start_sized("tui-first", &join_command(port, "dee", ""), 80, 20);
    first.wait_for("dee in the lobby", |s| s.contains("you joined lobby"));
    let home = data_home().join("dee2");
    std::fs::create_dir_all(&home).unwrap();
    let command = format!(
        "env XDG_DATA_HOME={} {} join 127.0.0.1:{port} --nick dee; {AFTER}",
        home.display(),
        env!("CARGO_BIN_EXE_udpchat"),
    );
    let second = Tmux::start_sized("tui-second", &command, 80, 20);
    let screen = second.wait_for("the exit", |s| s.contains("MODE "));
    assert!(
        screen.contains("udpchat: error:") && screen.contains("dee"),
        "{screen}"
    );
    assert_restored(&screen, 1);
}

#[test]
fn the_lab_chat_runs_full_screen_and_ends_on_the_peers_bye() {
    let peer = local_socket();
    let peer_addr = peer.local_addr().unwrap();
    let command = format!(
        "{} chat --turns {peer_addr}; {AFTER}",
        env!("CARGO_BIN_EXE_udpchat")
    );
    let tmux = Tmux::start_sized("tui-chat", &command, 80, 20);
    let screen = tmux.wait_for("the full screen", |s| s.contains("udpchat chat with"));
    assert!(
        screen.contains("your turn"),
        "the client speaks first: {screen}"
    );
    assert!(screen.contains("plain UDP, not encrypted"), "{screen}");
    tmux.type_text("hello, 漢字");
    tmux.keys(&["Enter"]);
    let (text, from) = support::recv_text(&peer);
    assert_eq!(text, "hello, 漢字");
    tmux.wait_for("the turn passing", |s| s.contains("their turn"));
    peer.send_to(b"\x1b[2J\x1b]0;pwned\x07hi back", from)
        .unwrap();
    let screen = tmux.wait_for("the reply", |s| s.contains("hi back"));
    assert!(
        row_with(&screen, "hi back").contains("│ ^[[2J^[]0;pwned^Ghi back"),
        "{screen}"
    );
    assert!(screen.contains("you    │ hello, 漢字"), "{screen}");
    assert!(screen.contains("your turn"), "{screen}");
    peer.send_to(b"bye", from).unwrap();
    let screen = tmux.wait_for("the end", |s| s.contains("MODE "));
    assert!(
        screen.contains("-- the peer said bye; chat over"),
        "{screen}"
    );
    assert_restored(&screen, 0);
}

#[test]
fn ctrl_c_in_the_full_screen_lab_chat_says_bye() {
    let peer = local_socket();
    let peer_addr = peer.local_addr().unwrap();
    let command = format!(
        "{} chat {peer_addr}; {AFTER}",
        env!("CARGO_BIN_EXE_udpchat")
    );
    let tmux = Tmux::start_sized("tui-chat-ctrl-c", &command, 80, 20);
    tmux.wait_for("the full screen", |s| s.contains("chatting"));
    tmux.keys(&["C-c"]);
    assert_eq!(support::recv_text(&peer).0, "bye");
    let screen = tmux.wait_for("the end", |s| s.contains("MODE "));
    assert!(screen.contains("-- you said bye; chat over"), "{screen}");
    assert_restored(&screen, 0);
}
