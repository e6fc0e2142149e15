//! How the udpchat binary behaves at its edges: big, hostile and odd datagrams, broken pipes,
//! bad command lines, ports in use, IPv6, signals, `check`, `probe` and `--trace`.

mod support;

use std::net::UdpSocket;

use support::{Proc, local_socket, recv_text, run_udpchat};

/// Asserts that a failed run said one line on stderr, containing `needle`, and no panic.
fn assert_one_line_error(code: i32, stderr: &str, expected_code: i32, needle: &str) {
    assert_eq!(code, expected_code, "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr:?}");
    assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// ---- What a datagram can hold ----

#[test]
fn largest_ipv4_datagram_arrives_whole() {
    let mut server = Proc::udpchat(&["recv", "--port", "0"]);
    let port = server.listening_port();
    let text = "x".repeat(65_507);
    let (code, _, stderr) = run_udpchat(&["send", &format!("127.0.0.1:{port}"), &text]);
    assert_eq!(code, 0, "{stderr}");
    let line = server.stdout_line();
    assert_eq!(
        line.len(),
        65_507 + " from 127.0.0.1:".len() + line.rsplit(':').next().unwrap().len()
    );
    assert!(line.starts_with(&text));
    server.expect_success();
}

#[test]
fn too_long_message_is_refused_before_sending() {
    let text = "x".repeat(65_508);
    let (code, _, stderr) = run_udpchat(&["send", "127.0.0.1:9", &text]);
    assert_one_line_error(
        code,
        &stderr,
        1,
        "message too long for one UDP datagram (65508 bytes; the maximum is 65507)",
    );
}

#[test]
fn escapes_and_invalid_utf8_are_neutralised() {
    let mut server = Proc::udpchat(&["recv", "--port", "0", "--count", "3"]);
    let port = server.listening_port();
    let peer = local_socket();
    peer.send_to(b"\x1b[2J\x1b[Hgotcha\x07", ("127.0.0.1", port))
        .unwrap();
    peer.send_to(b"caf\xc3\xa9 \xff\xfe", ("127.0.0.1", port))
        .unwrap();
    peer.send_to(
        "evil\u{202e}txt.exe\u{9b}31m".as_bytes(),
        ("127.0.0.1", port),
    )
    .unwrap();
    let from = format!(" from {}", peer.local_addr().unwrap());
    assert_eq!(server.stdout_line(), format!("^[[2J^[[Hgotcha^G{from}"));
    assert_eq!(server.stdout_line(), format!("café \u{fffd}\u{fffd}{from}"));
    assert_eq!(
        server.stdout_line(),
        format!("evil<U+202E>txt.exe<U+009B>31m{from}")
    );
    server.expect_success();
}

#[test]
fn empty_datagram_is_a_message_too() {
    let mut server = Proc::udpchat(&["recv", "--port", "0"]);
    let port = server.listening_port();
    let peer = local_socket();
    peer.send_to(b"", ("127.0.0.1", port)).unwrap();
    assert_eq!(
        server.stdout_line(),
        format!(" from {}", peer.local_addr().unwrap())
    );
    server.expect_success();
}

// ---- Output ----

#[test]
fn closed_stdout_pipe_ends_quietly() {
    // `udpchat recv --count 0 | head -1`, run by bash so that the pipe lives only in the
    // pipeline (a pipe end held by the test process could leak into children that other tests
    // fork at the same moment, and keep the pipe open). The reader side closes its stdin
    // explicitly and then says "closed", so the next datagram must hit a broken pipe.
    let script = r#"{ "$UDPCHAT" recv --port 0 --count 0; echo "udpchat exit=$?" >&2; } \
        | { head -1; exec 0<&-; echo "reader closed" >&2; }"#;
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-c", script])
        .env("UDPCHAT", env!("CARGO_BIN_EXE_udpchat"));
    let mut pipeline = Proc::spawn("udpchat recv | head -1", cmd);
    let port = pipeline.listening_port();
    let peer = local_socket();
    peer.send_to(b"one", ("127.0.0.1", port)).unwrap();
    assert!(pipeline.stdout_line().starts_with("one from"));
    pipeline.stderr_line_containing("reader closed");
    peer.send_to(b"two", ("127.0.0.1", port)).unwrap();
    pipeline.stderr_line_containing("udpchat exit=0");
    pipeline.expect_success();
    let stderr = pipeline.stderr_so_far().join("\n");
    assert!(
        !stderr.contains("error") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[test]
fn trace_dumps_every_datagram_in_hex_and_text() {
    let mut server = Proc::udpchat(&["recv", "--port", "0", "--reply", "hi", "--trace"]);
    let port = server.listening_port();
    let (code, stdout, stderr) = run_udpchat(&[
        "send",
        &format!("127.0.0.1:{port}"),
        "--wait",
        "10",
        "--trace",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("hi from 127.0.0.1:{port}\n"));
    let sent = stderr
        .lines()
        .find(|l| l.contains(" sent "))
        .expect("a sent line");
    assert!(
        sent.ends_with(&format!("-> 127.0.0.1:{port} 5 bytes")),
        "{sent}"
    );
    assert!(stderr.contains("  0000  68 65 6c 6c 6f "), "{stderr}");
    assert!(stderr.contains("|hello|"), "{stderr}");
    assert!(
        stderr.contains(" recv 127.0.0.1:") && stderr.contains("|hi|"),
        "{stderr}"
    );
    server.expect_success();
    let server_err = server.stderr_so_far().join("\n");
    assert!(
        server_err.contains("|hello|") && server_err.contains("|hi|"),
        "{server_err}"
    );
}

// ---- Errors ----

#[test]
fn port_in_use_is_one_clear_line() {
    let holder = UdpSocket::bind("0.0.0.0:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let (code, _, stderr) = run_udpchat(&["recv", "--port", &port]);
    assert_one_line_error(
        code,
        &stderr,
        1,
        &format!("udp port {port} is already in use"),
    );
    let (code, _, stderr) = run_udpchat(&["chat", "--listen", &port]);
    assert_one_line_error(
        code,
        &stderr,
        1,
        &format!("udp port {port} is already in use"),
    );
}

#[test]
fn bad_command_lines_are_one_clear_line() {
    for (args, needle) in [
        (
            &["recv", "--port", "65536"][..],
            "invalid value '65536' for '--port <PORT>'",
        ),
        (&["recv", "--port", "http"], "invalid value 'http'"),
        (
            &["send"],
            "required arguments were not provided: <HOST:PORT>",
        ),
        (
            &["chat"],
            "required arguments were not provided: <HOST:PORT>",
        ),
        (
            &["send", "h:1", "--wait", "soon"],
            "'soon' is not a number of seconds",
        ),
        (&["recv", "--bogus"], "unexpected argument '--bogus'"),
        (&["fly"], "unrecognized subcommand 'fly'"),
        // Malformed targets are bad command lines too (issue 16: they exited 1).
        (&["send", "localhost"], "missing port in 'localhost'"),
        (
            &["send", "::1:12345"],
            "IPv6 addresses need brackets around them: [::1]:PORT",
        ),
        (&["send", "host:0"], "bad port '0'"),
    ] {
        let (code, _, stderr) = run_udpchat(args);
        assert_one_line_error(code, &stderr, 2, needle);
    }
    for (args, needle) in [
        (
            &["send", "no-such-host.invalid:12345"][..],
            "unknown host 'no-such-host.invalid'",
        ),
        (
            &["chat", "no-such-host.invalid:12345"],
            "unknown host 'no-such-host.invalid'",
        ),
        (
            &["probe", "no-such-host.invalid:12345"],
            "unknown host 'no-such-host.invalid'",
        ),
        (&["recv", "--bind", "192.0.2.1"], "cannot bind 192.0.2.1"),
    ] {
        let (code, _, stderr) = run_udpchat(args);
        assert_one_line_error(code, &stderr, 1, needle);
    }
}

#[test]
fn no_reply_in_time_is_an_error() {
    let silent = local_socket();
    let port = silent.local_addr().unwrap().port();
    let (code, _, stderr) = run_udpchat(&["send", &format!("127.0.0.1:{port}"), "--wait", "0.2"]);
    assert_eq!(code, 1);
    assert!(stderr.ends_with(&format!(
        "udpchat: error: no reply from 127.0.0.1:{port} within 0.2s\n"
    )));
}

#[test]
fn sending_to_a_closed_port_with_wait_fails_fast() {
    let port = support::free_port();
    let (code, _, stderr) = run_udpchat(&["send", &format!("127.0.0.1:{port}"), "--wait", "30"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("ICMP port unreachable"), "{stderr}");
}

#[test]
fn help_explains_ss() {
    let (code, stdout, _) = run_udpchat(&["check", "--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("ss -ulpn"), "{stdout}");
}

// ---- IPv6 and names ----

#[test]
fn ipv6_loopback_works_both_ways() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    let mut server = Proc::udpchat(&["recv", "--bind", "::1", "--port", "0", "--reply", "hi"]);
    let port = server.listening_port();
    let (code, stdout, stderr) =
        run_udpchat(&["send", &format!("[::1]:{port}"), "v6 hello", "--wait", "10"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("hi from [::1]:{port}\n"));
    let line = server.stdout_line();
    assert!(line.starts_with("v6 hello from [::1]:"), "{line}");
    server.expect_success();
}

#[test]
fn dual_stack_listener_shows_ipv4_peers_as_ipv4() {
    if UdpSocket::bind("[::]:0").is_err() {
        eprintln!("no IPv6 here; skipped");
        return;
    }
    let mut server = Proc::udpchat(&["recv", "--bind", "::", "--port", "0", "--reply", "hi"]);
    let port = server.listening_port();
    let (code, stdout, _) = run_udpchat(&["send", &format!("127.0.0.1:{port}"), "--wait", "10"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, format!("hi from 127.0.0.1:{port}\n"));
    assert!(server.stdout_line().starts_with("hello from 127.0.0.1:"));
    server.expect_success();
}

// ---- chat ----

#[test]
fn chat_between_two_udpchats_ctrl_c_says_bye() {
    let mut listener = Proc::udpchat(&["chat", "--listen", "0"]);
    let port = listener.listening_port();
    let mut client = Proc::udpchat(&["chat", &format!("127.0.0.1:{port}")]);
    client.stderr_line_containing("chatting with");
    client.send_line("ping");
    assert_eq!(listener.stdout_line(), "ping");
    listener.send_line("pong");
    assert_eq!(client.stdout_line(), "pong");
    client.signal("INT");
    assert_eq!(listener.stdout_line(), "bye");
    client.expect_success();
    listener.expect_success();
    assert!(
        listener
            .stderr_so_far()
            .iter()
            .any(|l| l.contains("the peer said bye"))
    );
}

#[test]
fn chat_listener_ignores_strangers_once_it_has_a_peer() {
    let mut listener = Proc::udpchat(&["chat", "--listen", "0"]);
    let port = listener.listening_port();
    let peer = local_socket();
    let stranger = local_socket();
    peer.send_to(b"I am the peer", ("127.0.0.1", port)).unwrap();
    assert_eq!(listener.stdout_line(), "I am the peer");
    stranger.send_to(b"bye", ("127.0.0.1", port)).unwrap();
    listener.stderr_line_containing("ignored 3 bytes from");
    listener.send_line("still here");
    assert_eq!(recv_text(&peer).0, "still here");
    peer.send_to(b"bye\n", ("127.0.0.1", port)).unwrap();
    listener.expect_success();
}

#[test]
fn chat_reports_only_a_few_strangers_and_keeps_working_under_a_flood() {
    let mut listener = Proc::udpchat(&["chat", "--listen", "0"]);
    let port = listener.listening_port();
    let peer = local_socket();
    peer.send_to(b"first", ("127.0.0.1", port)).unwrap();
    assert_eq!(listener.stdout_line(), "first");
    let strangers: Vec<_> = (0..20).map(|_| local_socket()).collect();
    for round in 0..3 {
        for stranger in &strangers {
            stranger
                .send_to(format!("noise {round}").as_bytes(), ("127.0.0.1", port))
                .unwrap();
        }
    }
    // Loopback delivers in send order: once this arrives, all the noise has been handled.
    peer.send_to(b"still talking", ("127.0.0.1", port)).unwrap();
    assert_eq!(listener.stdout_line(), "still talking");
    peer.send_to(b"bye", ("127.0.0.1", port)).unwrap();
    listener.expect_success();
    let reports = listener
        .stderr_so_far()
        .iter()
        .filter(|l| l.contains("ignored"))
        .count();
    assert_eq!(reports, 8, "{:#?}", listener.stderr_so_far());
}

#[test]
fn chat_trace_shows_both_directions() {
    let mut listener = Proc::udpchat(&["chat", "--listen", "0", "--trace"]);
    let port = listener.listening_port();
    let peer = local_socket();
    peer.send_to(b"traced in", ("127.0.0.1", port)).unwrap();
    assert_eq!(listener.stdout_line(), "traced in");
    listener.send_line("traced out");
    assert_eq!(recv_text(&peer).0, "traced out");
    listener.close_stdin();
    assert_eq!(recv_text(&peer).0, "bye");
    listener.expect_success();
    let stderr = listener.stderr_so_far().join("\n");
    for dumped in ["|traced in|", "|traced out|", "|bye|"] {
        assert!(stderr.contains(dumped), "{dumped} missing: {stderr}");
    }
    let peer_addr = peer.local_addr().unwrap();
    assert!(
        stderr.contains(&format!(" recv {peer_addr} -> 0.0.0.0:{port} 9 bytes")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(" sent 0.0.0.0:{port} -> {peer_addr} 10 bytes")),
        "{stderr}"
    );
}

#[test]
fn chat_sigint_before_any_peer_exits_cleanly() {
    let mut listener = Proc::udpchat(&["chat", "--listen", "0"]);
    listener.listening_port();
    listener.signal("INT");
    listener.expect_success();
    assert!(
        listener
            .stderr_so_far()
            .iter()
            .any(|l| l.contains("nothing was sent"))
    );
}

#[test]
fn chat_client_is_told_when_nobody_listens() {
    let port = support::free_port();
    let mut client = Proc::udpchat(&["chat", &format!("127.0.0.1:{port}")]);
    client.send_line("anyone?");
    client.close_stdin();
    // In a pipe, once, at the end (on a terminal, also as soon as the kernel reports it).
    assert_eq!(client.wait().code(), Some(1));
    assert_eq!(
        client.stderr_so_far().last().unwrap(),
        &format!(
            "udpchat: error: nobody is listening at 127.0.0.1:{port}: 1 message was not delivered"
        )
    );
}

// ---- check and probe ----

#[test]
fn check_finds_the_socket_and_its_process() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let (code, stdout, _) = run_udpchat(&["check", &port.to_string()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!("udp port {port} is bound on 127.0.0.1:{port}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("(pid {})", std::process::id())),
        "{stdout}"
    );
    drop(socket);
    let (code, stdout, _) = run_udpchat(&["check", &port.to_string()]);
    assert_eq!(code, 1);
    assert_eq!(stdout, format!("nothing is bound on udp port {port}\n"));
}

#[test]
fn check_sees_a_running_udpchat_recv() {
    let server = Proc::udpchat(&["recv", "--port", "0"]);
    let port = server.listening_port();
    let (code, stdout, _) = run_udpchat(&["check", &port.to_string()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains(&format!(
            "0.0.0.0:{port} (all IPv4 addresses) by udpchat (pid {})",
            server.pid()
        )),
        "{stdout}"
    );
}

#[test]
fn probe_tells_open_closed_and_open_filtered() {
    let mut server = Proc::udpchat(&["recv", "--port", "0", "--reply", "hi"]);
    let port = server.listening_port();
    let (code, stdout, _) = run_udpchat(&["probe", &format!("127.0.0.1:{port}")]);
    assert_eq!(
        (code, stdout),
        (
            0,
            format!("open: udp 127.0.0.1:{port} answered: hi from 127.0.0.1:{port}\n")
        )
    );
    server.expect_success();

    let closed = support::free_port();
    let (code, stdout, _) = run_udpchat(&["probe", &format!("127.0.0.1:{closed}")]);
    assert_eq!(code, 1);
    assert!(
        stdout.starts_with(&format!("closed: udp 127.0.0.1:{closed}")),
        "{stdout}"
    );

    let silent = local_socket();
    let silent_port = silent.local_addr().unwrap().port();
    let (code, stdout, _) = run_udpchat(&[
        "probe",
        &format!("127.0.0.1:{silent_port}"),
        "--timeout",
        "0.2",
    ]);
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with(&format!(
            "open|filtered: no answer from udp 127.0.0.1:{silent_port} within 0.2s"
        )),
        "{stdout}"
    );
    assert_eq!(recv_text(&silent).0, "hello");
}

#[test]
fn bench_measures_a_small_room_and_writes_its_report() {
    let out = support::data_home().join("bench-out");
    let (code, stdout, stderr) = support::run_udpchat(&[
        "bench",
        "--members",
        "2",
        "--targets",
        "relay,udpchat-plain,udpchat-nc",
        "--duration",
        "0.2",
        "--repeat",
        "2",
        "--sending-threads",
        "1",
        "--idle",
        "20",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    for row in [
        "| relay | 2 | paced |",
        "| relay | 2 | capacity |",
        "| udpchat-plain | 2 | capacity |",
        "| udpchat-nc | 2 | capacity |",
    ] {
        assert!(stdout.contains(row), "{row} missing from:\n{stdout}");
    }
    assert!(
        stdout.contains("memory: 20 idle framed members"),
        "{stdout}"
    );
    assert!(
        stdout.contains("N=2: median capacity in deliveries/s, relative to the minimal relay"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| relay | 2 | capacity | 2 |"),
        "the second repeat is run and shown: {stdout}"
    );
    let table = std::fs::read_to_string(out.join("bench-results.md")).unwrap();
    assert!(table.contains("| relay | 2 | capacity |"), "{table}");
    assert!(table.contains("## Every run"), "{table}");
    assert!(table.contains("ran with `--sending-threads 1`"), "{table}");
    let svg = std::fs::read_to_string(out.join("bench-deliveries.svg")).unwrap();
    assert!(svg.contains("<title>relay N=2"), "{svg}");
}

#[test]
fn bench_refuses_bad_arguments_in_one_line() {
    // Usage errors, exit 2, like every bad argument (issue 16: these exited 1).
    let (code, _, stderr) = support::run_udpchat(&["bench", "--targets", "redis"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("unknown target 'redis'"), "{stderr}");
    let (code, _, stderr) = support::run_udpchat(&["bench", "--members", "1"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("at least 2 members"), "{stderr}");
    let (code, _, stderr) = support::run_udpchat(&["bench", "--repeat", "0"]);
    assert_eq!(code, 2, "a usage error, as clap reports them");
    assert!(stderr.contains("--repeat"), "{stderr}");
}

#[test]
fn serve_refuses_a_bad_number_of_sending_threads_in_one_line() {
    for bad in ["65", "two"] {
        let (code, _, stderr) =
            support::run_udpchat(&["serve", "--port", "0", "--sending-threads", bad]);
        assert_eq!(code, 2, "{bad}: a usage error");
        assert!(stderr.contains("--sending-threads"), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}
