//! The lab's four steps, udpchat against the lab's own Python programs (`lab/*.py`) and
//! against OpenBSD `nc -u`, in both directions, on loopback.

mod support;

use support::{Proc, free_port, wait_until_bound};

// ---- Step 1: hello ----

#[test]
fn step1_udpchat_send_to_python_server() {
    let server = Proc::python("step1_server.py", &["0"]);
    let port = server.listening_port();
    let mut client = Proc::udpchat(&["send", &format!("127.0.0.1:{port}")]);
    client.expect_success();
    let line = server.stdout_line();
    assert!(line.starts_with("hello ('127.0.0.1', "), "{line}");
}

#[test]
fn step1_python_client_to_udpchat_recv() {
    let mut server = Proc::udpchat(&["recv", "--port", "0"]);
    let port = server.listening_port();
    Proc::python("step1_client.py", &["127.0.0.1", &port.to_string()]).expect_success();
    let line = server.stdout_line();
    assert!(line.starts_with("hello from 127.0.0.1:"), "{line}");
    server.expect_success(); // --count defaults to 1
}

// ---- Step 2: hello, hi ----

#[test]
fn step2_udpchat_send_wait_to_python_server() {
    let mut server = Proc::python("step2_server.py", &["0"]);
    let port = server.listening_port();
    let mut client = Proc::udpchat(&["send", &format!("localhost:{port}"), "--wait", "10"]);
    assert_eq!(client.stdout_line(), format!("hi from 127.0.0.1:{port}"));
    client.expect_success();
    let line = server.stdout_line();
    assert!(line.starts_with("hello from ('127.0.0.1', "), "{line}");
    server.expect_success();
}

#[test]
fn step2_python_client_to_udpchat_recv_reply() {
    let mut server = Proc::udpchat(&["recv", "--port", "0", "--reply", "hi"]);
    let port = server.listening_port();
    let mut client = Proc::python("step2_client.py", &["127.0.0.1", &port.to_string()]);
    assert_eq!(client.stdout_line(), "hi");
    client.expect_success();
    assert!(server.stdout_line().starts_with("hello from 127.0.0.1:"));
    server.expect_success();
}

// ---- Step 3: taking turns ----

#[test]
fn step3_udpchat_turns_client_with_python_server() {
    let mut server = Proc::python("step3_server.py", &["0"]);
    let port = server.listening_port();
    let mut client = Proc::udpchat(&["chat", "--turns", &format!("127.0.0.1:{port}")]);
    client.send_line("hello server");
    assert_eq!(server.stdout_line(), "hello server");
    server.send_line("hello client");
    assert_eq!(client.stdout_line(), "hello client");
    client.send_line("how are you?");
    assert_eq!(server.stdout_line(), "how are you?");
    server.send_line("bye");
    assert_eq!(client.stdout_line(), "bye");
    client.expect_success();
    server.expect_success();
}

#[test]
fn step3_python_client_with_udpchat_turns_listener() {
    let mut server = Proc::udpchat(&["chat", "--turns", "--listen", "0"]);
    let port = server.listening_port();
    // Typed before the client spoke: the listener must hold it until it has received.
    server.send_line("first answer");
    let mut client = Proc::python("step3_client.py", &["127.0.0.1", &port.to_string()]);
    client.send_line("question 1");
    assert_eq!(server.stdout_line(), "question 1");
    assert_eq!(client.stdout_line(), "first answer");
    client.send_line("question 2");
    assert_eq!(server.stdout_line(), "question 2");
    server.send_line("second answer");
    assert_eq!(client.stdout_line(), "second answer");
    client.send_line("bye");
    assert_eq!(server.stdout_line(), "bye");
    server.expect_success();
    client.expect_success();
}

// ---- Step 4: full duplex ----

#[test]
fn step4_udpchat_client_with_python_listener() {
    let mut peer = Proc::python("step4_peer.py", &["listen", "0"]);
    let port = peer.listening_port();
    let mut client = Proc::udpchat(&["chat", &format!("127.0.0.1:{port}")]);
    client.send_line("one");
    assert_eq!(peer.stdout_line(), "one");
    // Either side, any time: two in a row from each.
    peer.send_line("two");
    peer.send_line("three");
    assert_eq!(client.stdout_line(), "two");
    assert_eq!(client.stdout_line(), "three");
    client.send_line("four");
    client.send_line("five");
    assert_eq!(peer.stdout_line(), "four");
    assert_eq!(peer.stdout_line(), "five");
    peer.send_line("bye");
    assert_eq!(client.stdout_line(), "bye");
    client.expect_success();
    peer.expect_success();
}

#[test]
fn step4_python_client_with_udpchat_listener_end_of_input_says_bye() {
    let mut server = Proc::udpchat(&["chat", "--listen", "0"]);
    let port = server.listening_port();
    server.send_line("typed before anyone came");
    let mut peer = Proc::python(
        "step4_peer.py",
        &["connect", "127.0.0.1", &port.to_string()],
    );
    peer.send_line("hello");
    assert_eq!(server.stdout_line(), "hello");
    assert_eq!(peer.stdout_line(), "typed before anyone came");
    server.close_stdin();
    assert_eq!(peer.stdout_line(), "bye");
    peer.expect_success();
    server.expect_success();
}

// ---- nc -u ----

#[test]
fn nc_client_to_udpchat_recv() {
    let mut server = Proc::udpchat(&["recv", "--port", "0", "--count", "2"]);
    let port = server.listening_port();
    let mut nc = Proc::nc(&["-u", "127.0.0.1", &port.to_string()]);
    nc.send_line("hello from nc");
    let first = server.stdout_line();
    assert!(
        first.starts_with("hello from nc from 127.0.0.1:"),
        "{first}"
    );
    nc.send_line("second line");
    assert!(
        server
            .stdout_line()
            .starts_with("second line from 127.0.0.1:")
    );
    server.expect_success();
}

#[test]
fn udpchat_send_to_nc_listener() {
    let port = free_port();
    let nc = Proc::nc(&["-u", "-l", "127.0.0.1", &port.to_string()]);
    wait_until_bound(port);
    let mut client = Proc::udpchat(&["send", &format!("127.0.0.1:{port}"), "--newline"]);
    client.expect_success();
    assert_eq!(nc.stdout_line(), "hello");
}

#[test]
fn udpchat_chat_listener_with_nc() {
    let mut server = Proc::udpchat(&["chat", "--listen", "0", "--newline"]);
    let port = server.listening_port();
    let mut nc = Proc::nc(&["-u", "127.0.0.1", &port.to_string()]);
    nc.send_line("hi from nc");
    assert_eq!(server.stdout_line(), "hi from nc");
    server.send_line("hi from udpchat");
    assert_eq!(nc.stdout_line(), "hi from udpchat");
    nc.send_line("bye");
    assert_eq!(server.stdout_line(), "bye");
    server.expect_success();
}

#[test]
fn udpchat_chat_client_with_nc_listener() {
    let port = free_port();
    let mut nc = Proc::nc(&["-u", "-l", "127.0.0.1", &port.to_string()]);
    wait_until_bound(port);
    let mut client = Proc::udpchat(&["chat", &format!("127.0.0.1:{port}"), "--newline"]);
    client.send_line("hello nc");
    assert_eq!(nc.stdout_line(), "hello nc");
    nc.send_line("hello udpchat");
    assert_eq!(client.stdout_line(), "hello udpchat");
    client.close_stdin();
    assert_eq!(nc.stdout_line(), "bye");
    client.expect_success();
}

// ---- examples/: the Rust twins of the slides ----

/// Starts one of the `examples/` programs, which `cargo test` builds next to the test binaries.
fn example(name: &str, args: &[&str]) -> Proc {
    let exe = std::env::current_exe().expect("test binary path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps")
        .join("examples")
        .join(name);
    let mut cmd = std::process::Command::new(&path);
    cmd.args(args);
    Proc::spawn(&format!("example {name}"), cmd)
}

#[test]
fn example_step2_server_answers_udpchat() {
    let port = free_port();
    let mut server = example("step2_server", &[&port.to_string()]);
    wait_until_bound(port);
    let mut client = Proc::udpchat(&["send", &format!("127.0.0.1:{port}"), "--wait", "10"]);
    assert_eq!(client.stdout_line(), format!("hi from 127.0.0.1:{port}"));
    client.expect_success();
    assert!(server.stdout_line().starts_with("hello from 127.0.0.1:"));
    server.expect_success();
}

#[test]
fn example_step4_peer_chats_with_udpchat() {
    let mut server = Proc::udpchat(&["chat", "--listen", "0"]);
    let port = server.listening_port();
    let mut peer = example("step4_peer", &["connect", &format!("127.0.0.1:{port}")]);
    peer.send_line("hello from the example");
    assert_eq!(server.stdout_line(), "hello from the example");
    server.send_line("hello back");
    // The examples mark each message with its sender, as step 1 does.
    assert!(peer.stdout_line().starts_with("hello back from 127.0.0.1:"));
    peer.close_stdin();
    assert_eq!(server.stdout_line(), "bye");
    server.expect_success();
    peer.expect_success();
}

#[test]
fn example_step3_client_takes_turns_with_udpchat() {
    let mut server = Proc::udpchat(&["chat", "--turns", "--listen", "0"]);
    let port = server.listening_port();
    let mut client = example("step3_client", &[&format!("127.0.0.1:{port}")]);
    client.send_line("first");
    assert_eq!(server.stdout_line(), "first");
    server.send_line("second");
    assert!(client.stdout_line().starts_with("second from 127.0.0.1:"));
    // The listener's next line waits for the client's turn.
    server.send_line("bye");
    client.send_line("third");
    assert_eq!(server.stdout_line(), "third");
    assert!(client.stdout_line().starts_with("bye from 127.0.0.1:"));
    client.expect_success();
    server.expect_success();
}
