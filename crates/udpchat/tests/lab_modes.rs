//! The lab modes' edges (issue 16): how `udpchat chat` ends when the other side is gone or
//! silent, what it says when nobody listens, and the lab's own scripts started wrongly. Each test
//! drives the real programs through pipes, as a user's shell would, on loopback.

mod support;

use support::{Proc, local_socket, recv_text};

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
