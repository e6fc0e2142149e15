//! The full-screen client as a user sees it in a real terminal (tmux), for what a rendered
//! buffer cannot show: what the terminal itself draws for text whose width terminals disagree
//! on, how fast a second Ctrl-C leaves, and how `--linger` running out ends the program.
//!
//! Needs tmux (`.ci/run` installs it). Every wait is for text on a screen, bounded.

mod support;

use std::time::{Duration, Instant};

use support::tmux::Tmux;
use support::{Proc, data_home, local_socket, serve_rooms};

/// Shell run after udpchat: its exit status on its own line, then the shell waits.
const AFTER: &str = "echo \"EXITED $?\"; sleep 60";

/// A shell command that runs `join` full-screen as `nick`, with `extra` arguments, then shows
/// its exit status.
fn join_command(port: u16, nick: &str, extra: &str) -> String {
    let home = data_home().join(nick);
    std::fs::create_dir_all(&home).unwrap();
    format!(
        "env XDG_DATA_HOME={} {} join 127.0.0.1:{port} --nick {nick} {extra}; {AFTER}",
        home.display(),
        env!("CARGO_BIN_EXE_udpchat"),
    )
}

/// Waits at most `bound` for the screen to satisfy `ready`; `None` if it never did.
fn screen_within(tmux: &Tmux, bound: Duration, ready: impl Fn(&str) -> bool) -> Option<String> {
    let deadline = Instant::now() + bound;
    loop {
        let screen = tmux.screen();
        if ready(&screen) {
            return Some(screen);
        }
        if Instant::now() >= deadline {
            return None;
        }
        // Polling the screen: tmux has no "wait until the pane shows X".
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A joined client whose server then stops answering (SIGSTOP), with one typed line left
/// pending (⋯) on its screen.
fn a_line_pending_on_a_silent_server(name: &str, extra: &str) -> (Proc, Tmux) {
    let (server, port) = serve_rooms(&[]);
    let tmux = Tmux::start_sized(name, &join_command(port, name, extra), 120, 20);
    tmux.wait_for("the lobby", |s| s.contains("you joined lobby"));
    server.signal("STOP");
    tmux.type_text("lost in the void");
    tmux.keys(&["Enter"]);
    tmux.wait_for("the pending line", |s| {
        s.lines()
            .any(|l| l.contains('⋯') && l.contains("lost in the void"))
    });
    (server, tmux)
}

#[test]
fn the_letter_after_a_skin_tone_emoji_stays_on_screen() {
    let peer = local_socket();
    let peer_addr = peer.local_addr().unwrap();
    let command = format!(
        "{} chat {peer_addr}; {AFTER}",
        env!("CARGO_BIN_EXE_udpchat")
    );
    // A short pane, so that every new line moves the older ones up a row: the terminal then
    // redraws only the cells that changed, and a 4-column emoji drawn where 2 were expected
    // would cover the letter after it.
    let tmux = Tmux::start_sized("polish-emoji", &command, 60, 9);
    tmux.wait_for("the full screen", |s| s.contains("chatting"));
    tmux.type_text("hi");
    tmux.keys(&["Enter"]);
    let (_, from) = support::recv_text(&peer);
    for i in 0..6 {
        let text = if i % 2 == 0 {
            format!("zzx after {i}")
        } else {
            format!("👍🏽x after {i}")
        };
        peer.send_to(text.as_bytes(), from).unwrap();
        tmux.wait_for("the line", |s| s.contains(&format!("after {i}")));
    }
    let screen = tmux.screen();
    let thumbs: Vec<&str> = screen.lines().filter(|l| l.contains('👍')).collect();
    assert!(!thumbs.is_empty(), "{screen}");
    for row in thumbs {
        assert!(
            row.contains("x after"),
            "the letter after 👍🏽 is lost: {row:?}\n{screen}"
        );
    }
    for i in 0..6 {
        assert!(screen.contains(&format!("after {i}")) || i < 2, "{screen}");
    }
}

/// Datagrams sent so far, from a `--trace` file.
fn sent_datagrams(trace: &std::path::Path) -> usize {
    std::fs::read_to_string(trace)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" sent "))
        .count()
}

#[test]
fn a_second_ctrl_c_leaves_at_once() {
    let (server, port) = serve_rooms(&[]);
    let trace = data_home().join("polish-ctrl-c.trace");
    let home = data_home().join("polish-ctrl-c");
    std::fs::create_dir_all(&home).unwrap();
    // The trace goes to a file; what udpchat says on leaving is shown after it exits.
    let command = format!(
        "env XDG_DATA_HOME={} {} join 127.0.0.1:{port} --nick eli --trace 2>{trace}; \
         echo \"EXITED $?\"; grep '^udpchat:' {trace}; sleep 60",
        home.display(),
        env!("CARGO_BIN_EXE_udpchat"),
        trace = trace.display(),
    );
    let tmux = Tmux::start_sized("polish-ctrl-c", &command, 100, 20);
    tmux.wait_for("the lobby", |s| s.contains("you joined lobby"));
    server.signal("STOP");
    let before = sent_datagrams(&trace);
    tmux.type_text("lost in the void");
    tmux.keys(&["Enter"]);
    // Unanswered, the line is sent again and again (eight times 100 ms apart, then each time
    // after twice as long): after thirteen sendings the retransmission timeout is over a
    // second and a half, and the close handshake's linger (three timeouts) much longer than
    // the bound below.
    let deadline = Instant::now() + support::TIMEOUT;
    while sent_datagrams(&trace) < before + 13 {
        assert!(Instant::now() < deadline, "no retransmissions in the trace");
        // Polling a file that another process appends to.
        std::thread::sleep(Duration::from_millis(20));
    }
    tmux.keys(&["C-c"]);
    tmux.wait_for("the first Ctrl-C's notice", |s| s.contains("Ctrl-C again"));
    let pressed = Instant::now();
    tmux.keys(&["C-c"]);
    // Generous for a loaded machine; waiting for the close handshake took 5 s and more.
    screen_within(&tmux, Duration::from_secs(2), |s| s.contains("EXITED ")).unwrap_or_else(|| {
        panic!(
            "still running {:?} after the second Ctrl-C:\n{}",
            pressed.elapsed(),
            tmux.screen()
        )
    });
    let screen = tmux.wait_for("the error line", |s| s.contains("udpchat: error"));
    // Leaving now loses the pending line: it says so.
    assert!(
        screen.contains(
            "udpchat: error: the server did not acknowledge everything in time; 1 line(s) not delivered"
        ),
        "{screen}"
    );
    assert!(screen.contains("EXITED 1"), "{screen}");
}

#[test]
fn linger_running_out_is_an_error_as_in_line_mode() {
    let (_server, tmux) = a_line_pending_on_a_silent_server("polish-linger", "--linger 1");
    tmux.type_text("/quit");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the exit", |s| s.contains("EXITED "));
    assert!(
        screen.contains(
            "udpchat: error: the server did not acknowledge everything in time; 1 line(s) not delivered"
        ),
        "{screen}"
    );
    assert!(screen.contains("EXITED 1"), "{screen}");
}
