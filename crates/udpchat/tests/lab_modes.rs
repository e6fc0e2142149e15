//! The lab modes' edges (issue 16): how `udpchat chat` ends when the other side is gone or
//! silent, what it says when nobody listens, and the lab's own scripts started wrongly. Each test
//! drives the real programs through pipes, as a user's shell would, on loopback.

mod support;

use std::time::{Duration, Instant};

use support::tmux::Tmux;
use support::{Proc, free_port, local_socket, recv_text};

// ---- the lab's scripts ----

#[test]
fn step4_peer_without_arguments_prints_its_usage() {
    for args in [&[][..], &["connect", "127.0.0.1"][..], &["talk"][..]] {
        let mut peer = Proc::python("step4_peer.py", args);
        let status = peer.wait();
        let stderr = peer.stderr_so_far().join("\n");
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("usage: step4_peer.py listen [PORT]"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("Traceback"), "{args:?}: {stderr}");
    }
}

// ---- how a chat ends ----

#[test]
fn the_automatic_bye_is_not_counted_as_a_typed_line() {
    // `printf 'q1\nq2\n' | udpchat chat --turns PEER`, then Ctrl-C while waiting for the reply:
    // q2 was typed and never sent, and so was nothing else (the bye was said, not typed).
    let peer = local_socket();
    let target = peer.local_addr().unwrap().to_string();
    let mut client = Proc::udpchat(&["chat", "--turns", &target]);
    client.send_line("q1");
    client.send_line("q2");
    client.close_stdin();
    assert_eq!(recv_text(&peer).0, "q1");
    client.signal("INT");
    assert_eq!(recv_text(&peer).0, "bye");
    client.expect_success();
    let stderr = client.stderr_so_far();
    assert!(
        stderr.iter().any(|l| l == "1 typed line was not sent"),
        "{stderr:#?}"
    );
}

/// `udpchat chat ARGS` with `lines` piped in (then end of input), as `printf … | udpchat chat`.
fn chat_piped(args: &[&str], lines: &[&str]) -> Proc {
    let mut args = args.to_vec();
    args.insert(0, "chat");
    let mut chat = Proc::udpchat(&args);
    for line in lines {
        chat.send_line(line);
    }
    chat.close_stdin();
    chat
}

/// Waits for the exit; returns its code and everything said on stderr.
fn finish(chat: &mut Proc) -> (Option<i32>, Vec<String>) {
    let status = chat.wait();
    (status.code(), chat.stderr_so_far())
}

#[test]
fn nobody_listening_is_one_clear_line_and_exit_1() {
    // `seq 5 | udpchat chat 127.0.0.1:CLOSED`
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let mut chat = chat_piped(&[&target], &["1", "2", "3", "4", "5"]);
    let (code, stderr) = finish(&mut chat);
    assert_eq!(code, Some(1), "{stderr:#?}");
    assert!(stderr[0].starts_with("chatting with"), "{stderr:#?}");
    assert_eq!(
        stderr[1..],
        [format!(
            "udpchat: error: nobody is listening at {target}: 5 messages were not delivered"
        )],
    );
}

#[test]
fn turns_with_nobody_listening_ends_at_once() {
    // `echo hello | udpchat chat 127.0.0.1:CLOSED --turns` used to wait for a reply forever.
    let port = free_port();
    let target = format!("127.0.0.1:{port}");
    let mut chat = chat_piped(&[&target, "--turns"], &["hello"]);
    let (code, stderr) = finish(&mut chat);
    assert_eq!(code, Some(1), "{stderr:#?}");
    assert_eq!(
        stderr.last().unwrap(),
        &format!("udpchat: error: nobody is listening at {target}: 1 message was not delivered"),
    );
}

#[test]
fn turns_with_a_silent_peer_gives_up_after_the_linger() {
    // `echo hello | udpchat chat SILENT --turns`, with the default --linger of 10 s: it used to
    // wait for the peer's turn forever (this test then fails in Proc::wait, after 15 s).
    let peer = local_socket();
    let target = peer.local_addr().unwrap().to_string();
    let started = Instant::now();
    let mut chat = chat_piped(&[&target, "--turns"], &["hello"]);
    assert_eq!(recv_text(&peer).0, "hello");
    assert_eq!(recv_text(&peer).0, "bye", "bye out of turn");
    let (code, stderr) = finish(&mut chat);
    assert_eq!(code, Some(1), "{stderr:#?}");
    assert_eq!(
        stderr.last().unwrap(),
        &format!(
            "udpchat: error: no reply from {target} within 10s after the end of input; said bye \
             out of turn"
        ),
    );
    assert!(started.elapsed() >= Duration::from_secs(10));
}

#[test]
fn turns_linger_bounds_the_wait_and_counts_the_lines_left() {
    let peer = local_socket();
    let target = peer.local_addr().unwrap().to_string();
    let mut chat = chat_piped(&[&target, "--turns", "--linger", "0.3"], &["q1", "q2"]);
    assert_eq!(recv_text(&peer).0, "q1");
    assert_eq!(recv_text(&peer).0, "bye");
    let (code, stderr) = finish(&mut chat);
    assert_eq!(code, Some(1), "{stderr:#?}");
    assert_eq!(
        stderr.last().unwrap(),
        &format!(
            "udpchat: error: no reply from {target} within 0.3s after the end of input; said bye \
             out of turn; 1 typed line was not sent"
        ),
    );
}

#[test]
fn a_silent_peer_in_full_duplex_ends_well_with_a_caveat() {
    // `seq 3 | udpchat chat SILENT`: the messages may well have arrived (a listener that never
    // answers, as `nc -ul`), and UDP cannot tell: exit 0, and say so.
    let peer = local_socket();
    let target = peer.local_addr().unwrap().to_string();
    let mut chat = chat_piped(&[&target], &["1", "2", "3"]);
    for expected in ["1", "2", "3", "bye"] {
        assert_eq!(recv_text(&peer).0, expected);
    }
    let (code, stderr) = finish(&mut chat);
    assert_eq!(code, Some(0), "{stderr:#?}");
    assert_eq!(
        stderr[1..],
        [
            "you said bye; chat over",
            "the peer never answered: UDP cannot tell whether your 3 messages arrived",
        ]
    );
}

#[test]
fn a_peer_that_answered_is_left_at_once_on_bye() {
    let peer = local_socket();
    let target = peer.local_addr().unwrap().to_string();
    let mut chat = Proc::udpchat(&["chat", "--turns", &target]);
    chat.send_line("hello");
    let (text, from) = recv_text(&peer);
    assert_eq!(text, "hello");
    peer.send_to(b"hi", from).unwrap();
    assert_eq!(chat.stdout_line(), "hi");
    chat.close_stdin();
    assert_eq!(recv_text(&peer).0, "bye");
    let (code, stderr) = finish(&mut chat);
    assert_eq!(code, Some(0), "{stderr:#?}");
    assert_eq!(stderr[1..], ["you said bye; chat over"]);
}

// ---- the full-screen chat ----

#[test]
fn the_full_screen_chat_shows_the_peers_port_not_a_cut_address() {
    let peer = local_socket();
    let peer_addr = peer.local_addr().unwrap();
    let command = format!(
        "{} chat --turns {peer_addr}; echo \"EXITED $?\"; sleep 60",
        env!("CARGO_BIN_EXE_udpchat")
    );
    for (name, columns) in [("label-wide", 80), ("label-narrow", 50)] {
        let tmux = Tmux::start_sized(name, &command, columns, 12);
        tmux.wait_for("the full screen", |s| s.contains("your turn"));
        tmux.type_text("hello");
        tmux.keys(&["Enter"]);
        let (text, from) = recv_text(&peer);
        assert_eq!(text, "hello");
        peer.send_to(b"hi back", from).unwrap();
        let screen = tmux.wait_for("the reply", |s| s.contains("hi back"));
        let row = screen
            .lines()
            .find(|l| l.contains("hi back"))
            .expect("a row");
        // (The delivery-mark column, blank for the peer's rows, stands between the two.)
        let label = format!(" :{} ", peer_addr.port());
        assert!(
            row.contains(&label) && row.contains("│ hi back"),
            "{columns} columns: {screen}"
        );
        assert!(!row.contains('…'), "{columns} columns: {screen}");
        // The whole address is in the top bar.
        assert!(
            screen.contains(&format!("udpchat chat with {peer_addr}")),
            "{screen}"
        );
        peer.send_to(b"bye", from).unwrap();
        tmux.wait_for("the end", |s| s.contains("EXITED 0"));
    }
}

#[test]
fn the_full_screen_chat_tells_at_once_that_nobody_listens_and_fails_at_the_end() {
    let port = free_port();
    let command = format!(
        "{} chat 127.0.0.1:{port}; echo \"EXITED $?\"; sleep 60",
        env!("CARGO_BIN_EXE_udpchat")
    );
    let tmux = Tmux::start_sized("nobody-tui", &command, 100, 16);
    tmux.wait_for("the full screen", |s| s.contains("chatting"));
    tmux.type_text("anyone?");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the notice", |s| {
        s.contains(&format!(
            "nobody is listening at 127.0.0.1:{port} (ICMP port unreachable)"
        )) && s.contains("1 message was not delivered")
    });
    tmux.type_text("/quit");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the end", |s| s.contains("EXITED"));
    assert!(
        screen.contains(&format!(
            "udpchat: error: nobody is listening at 127.0.0.1:{port}: 1 message was not delivered"
        )),
        "{screen}"
    );
    assert!(screen.contains("EXITED 1"), "{screen}");
}
