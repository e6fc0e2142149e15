//! The full-screen client as a user sees it in a real terminal (tmux), for what a rendered
//! buffer cannot show: what the terminal itself draws for text whose width terminals disagree
//! on, how fast a second Ctrl-C leaves, and how `--linger` running out ends the program.
//!
//! Needs tmux (`.ci/run` installs it). Every wait is for text on a screen, bounded.

mod support;

use support::local_socket;
use support::tmux::Tmux;

/// Shell run after udpchat: its exit status on its own line, then the shell waits.
const AFTER: &str = "echo \"EXITED $?\"; sleep 60";

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
