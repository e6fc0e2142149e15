//! The lab modes' edges (issue 16): how `udpchat chat` ends when the other side is gone or
//! silent, what it says when nobody listens, and the lab's own scripts started wrongly. Each test
//! drives the real programs through pipes, as a user's shell would, on loopback.

mod support;

use support::Proc;

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
