//! `udpchat chat --plain` on a real terminal (tmux): the line editor keeps the line being typed intact
//! while messages arrive, marks who said what, neutralises escapes, and gives the terminal back.
//!
//! Needs tmux (`.ci/run` installs it). Each test runs its own tmux server on a private socket,
//! and waits for text to appear on the screen (bounded), never for a fixed time.

mod support;

use support::tmux::Tmux;
use support::{local_socket, recv_text};

/// The last non-empty line on the screen.
fn last_line(screen: &str) -> &str {
    screen
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}

#[test]
fn incoming_messages_never_break_the_typed_line() {
    let peer = local_socket();
    let peer_addr = peer.local_addr().unwrap();
    let command = format!(
        "{} chat --plain {peer_addr}; echo \"EXITED $?\"; stty -a; sleep 60",
        env!("CARGO_BIN_EXE_udpchat")
    );
    let tmux = Tmux::start("typed-line", &command);
    tmux.wait_for("the prompt", |s| last_line(s) == "you>");

    tmux.type_text("hello");
    tmux.keys(&["Enter"]);
    let (text, udpchat_addr) = recv_text(&peer);
    assert_eq!(text, "hello");

    // Half a line typed when a hostile message arrives.
    tmux.type_text("half typed");
    tmux.wait_for("the typed text", |s| last_line(s) == "you> half typed");
    peer.send_to(b"\x1b[2J\x1b]0;pwned\x07incoming", udpchat_addr)
        .unwrap();
    let screen = tmux.wait_for("the message", |s| s.contains("incoming"));
    let message_line = screen.lines().find(|l| l.contains("incoming")).unwrap();
    assert!(
        message_line.ends_with(&format!("<{peer_addr}> ^[[2J^[]0;pwned^Gincoming")),
        "{message_line}"
    );
    assert_eq!(last_line(&screen), "you> half typed", "{screen}");
    assert!(
        screen.contains("you> hello"),
        "the screen was not cleared: {screen}"
    );

    // The rest of the line joins what was typed before the message came.
    tmux.type_text(" and finished");
    tmux.keys(&["Enter"]);
    assert_eq!(recv_text(&peer).0, "half typed and finished");

    peer.send_to(b"bye", udpchat_addr).unwrap();
    let screen = tmux.wait_for("the exit and stty", |s| {
        s.contains("EXITED") && s.contains("icanon")
    });
    assert!(screen.contains("EXITED 0"), "{screen}");
    assert!(
        screen.contains("-- the peer said bye; chat over"),
        "{screen}"
    );
    // The terminal is back in cooked mode with echo.
    assert!(
        screen.contains(" icanon ") && screen.contains(" echo "),
        "{screen}"
    );
}

#[test]
fn ctrl_c_on_the_terminal_says_bye_and_restores_it() {
    let peer = local_socket();
    let peer_addr = peer.local_addr().unwrap();
    let command = format!(
        "{} chat --plain --turns {peer_addr}; echo \"EXITED $?\"; stty -a; sleep 60",
        env!("CARGO_BIN_EXE_udpchat")
    );
    let tmux = Tmux::start("ctrl-c", &command);
    tmux.wait_for("the prompt", |s| last_line(s) == "you>");
    tmux.type_text("my turn");
    tmux.keys(&["Enter"]);
    assert_eq!(recv_text(&peer).0, "my turn");
    tmux.wait_for("the turn status", |s| {
        s.contains("-- waiting for the peer's reply")
    });
    tmux.type_text("not sent");
    tmux.keys(&["C-c"]);
    assert_eq!(recv_text(&peer).0, "bye");
    let screen = tmux.wait_for("the exit and stty", |s| {
        s.contains("EXITED") && s.contains("icanon")
    });
    assert!(screen.contains("EXITED 0"), "{screen}");
    assert!(screen.contains("-- you said bye; chat over"), "{screen}");
    assert!(
        screen.contains(" icanon ") && screen.contains(" echo "),
        "{screen}"
    );
}
