//! End-to-end tests of `udpchat serve` and `udpchat join` on loopback: several `--json`
//! clients, plain-text guests, private messages, isolated rooms, history, the peer timeout,
//! backpressure at end of input, shutdown, and a run through a lossy proxy.

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Proc, TIMEOUT};
use udpchat_testkit::{FaultConfig, LossyProxy, ProxyConfig};

fn serve(extra: &[&str]) -> (Proc, u16) {
    support::serve_rooms(extra)
}

fn join(port: u16, nick: &str, extra: &[&str]) -> Proc {
    support::join_json(port, nick, extra)
}

/// Reads JSON events until one satisfies `pred`; returns it.
fn expect_event(client: &Proc, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "never saw {what}");
        let line = client.stdout_line();
        let event: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if pred(&event) {
            return event;
        }
    }
}

fn is_message(event: &Value, from: &str, text: &str) -> bool {
    event["type"] == "message" && event["from"] == from && event["text"] == text
}

/// Waits until `nick` has joined `room` as seen by `client`.
fn expect_join(client: &Proc, room: &str, nick: &str) {
    expect_event(client, &format!("{nick} joining {room}"), |e| {
        e["type"] == "join" && e["room"] == room && e["nick"] == nick
    });
}

#[test]
fn json_clients_chat_with_history_private_messages_and_isolated_rooms() {
    // With sending threads: each client's datagrams may come from one of three threads.
    let (_server, port) = serve(&["--sending-threads", "2"]);
    let mut ada = join(port, "ada", &[]);
    expect_join(&ada, "lobby", "ada");
    ada.send_line("first");
    ada.send_line("second");
    // Her own messages come back once the server has them: "delivered to the room".
    expect_event(&ada, "ada's echo", |e| is_message(e, "ada", "second"));

    let mut bob = join(port, "bob", &[]);
    let h1 = expect_event(&bob, "history 1", |e| e["type"] == "message");
    assert_eq!(
        (
            h1["from"].as_str(),
            h1["text"].as_str(),
            h1["history"].as_bool()
        ),
        (Some("ada"), Some("first"), Some(true))
    );
    let h2 = expect_event(&bob, "history 2", |e| e["type"] == "message");
    assert_eq!(
        (h2["text"].as_str(), h2["history"].as_bool()),
        (Some("second"), Some(true))
    );
    expect_join(&ada, "lobby", "bob");

    let mut cyd = join(port, "cyd", &["--room", "elsewhere"]);
    expect_join(&cyd, "elsewhere", "cyd");
    cyd.send_line("only for elsewhere");
    expect_event(&cyd, "cyd's echo", |e| {
        is_message(e, "cyd", "only for elsewhere")
    });

    bob.send_line("hi ada");
    let live = expect_event(&ada, "bob's line", |e| is_message(e, "bob", "hi ada"));
    assert_eq!(live["history"], false);
    assert_eq!(live["room"], "lobby");

    bob.send_line("/msg ada a secret");
    let private = expect_event(&ada, "the private message", |e| {
        e["type"] == "message" && e["to"] == "ada"
    });
    assert_eq!(
        (private["from"].as_str(), private["text"].as_str()),
        (Some("bob"), Some("a secret"))
    );

    // Leave in order; what each saw is complete: cyd never saw the lobby, ada never saw
    // elsewhere, and nobody but ada and bob saw the secret.
    for c in [&mut ada, &mut bob, &mut cyd] {
        c.close_stdin();
        c.expect_success();
    }
    let ada_rest = ada.rest_of_stdout().join("\n");
    let cyd_rest = cyd.rest_of_stdout().join("\n");
    assert!(!ada_rest.contains("only for elsewhere"));
    assert!(
        !cyd_rest.contains("secret") && !cyd_rest.contains("hi ada"),
        "{cyd_rest}"
    );
}

#[test]
fn a_taken_nick_is_refused() {
    let (server, port) = serve(&[]);
    let ada = join(port, "ada", &[]);
    expect_join(&ada, "lobby", "ada");
    let mut impostor = join(port, "ADA", &[]);
    let status = impostor.wait();
    assert_eq!(status.code(), Some(1));
    assert!(
        impostor
            .stderr_so_far()
            .iter()
            .any(|l| l.contains("nick ADA is taken")),
        "{:?}",
        impostor.stderr_so_far()
    );
    // The refused client said goodbye: the server frees it at once, not after the peer timeout.
    server.stderr_line_containing("disconnected (ClosedByPeer(Leaving)");
}

#[test]
fn bad_nicks_and_rooms_are_refused_before_connecting() {
    for (args, needle) in [
        (
            &["--nick", "bad nick"][..],
            "invalid value 'bad nick' for '--nick <NICK>': not a valid nick",
        ),
        (
            &["--nick", "ada", "--room", "no room"],
            "invalid value 'no room' for '--room <ROOM>': not a valid room",
        ),
        (&["--nick", "guest-1"], "reserved for plain-text guests"),
    ] {
        let mut all = vec!["join", "127.0.0.1:9"];
        all.extend_from_slice(args);
        let (code, _, stderr) = support::run_udpchat(&all);
        // A usage error (issue 16: these exited 1, as if the run had failed).
        assert_eq!(code, 2, "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
}

#[test]
fn a_plain_text_guest_takes_part_and_sees_the_room_once_validated() {
    let (_server, port) = serve(&[]);
    let ada = join(port, "ada", &[]);
    expect_join(&ada, "lobby", "ada");
    // The lab's step-4 program is the guest: every datagram it receives is a line on stdout.
    let mut guest = Proc::python(
        "step4_peer.py",
        &["connect", "127.0.0.1", &port.to_string()],
    );
    guest.send_line("hello from the lab, with enough words to earn the welcome line back");
    let said = expect_event(&ada, "the guest's line", |e| {
        e["type"] == "message" && e["from"].as_str().is_some_and(|f| f.starts_with("guest-"))
    });
    let guest_nick = said["from"].as_str().unwrap().to_owned();
    // First the line to send back, then what it means.
    let code_line = guest.stdout_line();
    assert!(code_line.starts_with("/ok "), "{code_line}");
    let welcome = guest.stdout_line();
    assert!(
        welcome.starts_with(&format!("* you are {guest_nick}; ")),
        "{welcome}"
    );
    guest.send_line(&code_line);
    // Lines held back for want of budget come first, then the thanks.
    let mut line = guest.stdout_line();
    while !line.contains("you now see everything") {
        assert!(line.starts_with("* "), "{line}");
        line = guest.stdout_line();
    }
    let mut ada = ada;
    ada.send_line("welcome, guest");
    line = guest.stdout_line();
    while !line.starts_with("ada:") {
        line = guest.stdout_line();
    }
    assert_eq!(line, "ada: welcome, guest");
    guest.send_line("bye");
    guest.expect_success();
    let left = expect_event(&ada, "the guest leaving", |e| {
        e["type"] == "leave" && e["nick"] == guest_nick.as_str()
    });
    assert_eq!(left["reason"], "quit");
}

#[test]
fn no_guests_means_plain_text_is_refused() {
    let (mut server, port) = serve(&["--no-guests"]);
    let socket = support::local_socket();
    socket.send_to(b"hello?", ("127.0.0.1", port)).unwrap();
    server.stderr_line_containing("refused 127.0.0.1:");
    let ada = join(port, "ada", &[]);
    expect_join(&ada, "lobby", "ada");
    server.signal("INT");
    server.expect_success();
}

#[test]
fn a_frozen_client_times_out_and_the_room_sees_it_leave() {
    let (_server, port) = serve(&["--peer-timeout", "1"]);
    let ada = join(port, "ada", &[]);
    expect_join(&ada, "lobby", "ada");
    let bob = join(port, "bob", &[]);
    expect_join(&ada, "lobby", "bob");
    bob.signal("STOP"); // no more keepalives, no more acks
    let left = expect_event(&ada, "bob timing out", |e| {
        e["type"] == "leave" && e["nick"] == "bob"
    });
    assert_eq!(left["reason"], "timeout");
    bob.signal("CONT");
}

#[test]
fn end_of_input_delivers_every_line_in_order_before_leaving() {
    let (_server, port) = serve(&[]);
    let ada = join(port, "ada", &[]);
    expect_join(&ada, "lobby", "ada");
    let input: String = (1..=200).map(|i| format!("{i}\n")).collect();
    let mut seq = support::join_piped(port, "seq", &[], input);
    let mut got = Vec::new();
    while got.len() < 200 {
        let e = expect_event(&ada, "seq's lines", |e| {
            e["type"] == "message" && e["from"] == "seq"
        });
        got.push(e["text"].as_str().unwrap().to_owned());
    }
    let expected: Vec<String> = (1..=200).map(|i| i.to_string()).collect();
    assert_eq!(got, expected);
    let status = wait_child(&mut seq);
    assert!(status.success(), "{status}");
    expect_event(&ada, "seq leaving", |e| {
        e["type"] == "leave" && e["nick"] == "seq" && e["reason"] == "quit"
    });
}

#[test]
fn ctrl_c_on_the_server_tells_the_clients() {
    let (mut server, port) = serve(&[]);
    let mut ada = join(port, "ada", &[]);
    expect_join(&ada, "lobby", "ada");
    server.signal("INT");
    let closed = expect_event(&ada, "the server going", |e| e["type"] == "closed");
    assert_eq!(closed["text"], "the server shut down");
    assert_eq!(ada.wait().code(), Some(1));
    server.expect_success();
}

#[test]
fn through_a_lossy_proxy_nothing_is_lost_duplicated_or_reordered() {
    let (_server, port) = serve(&[]);
    let faults = FaultConfig {
        loss: 0.2,
        duplicate: 0.05,
        reorder: 0.1,
        delay: Duration::from_millis(1),
        jitter: Duration::from_millis(3),
    };
    let mut config = ProxyConfig::new(format!("127.0.0.1:{port}").parse().unwrap());
    config.seed = 7;
    config.up = faults;
    config.down = faults;
    let proxy = LossyProxy::start(config).unwrap();
    let via = proxy.addr().port();

    let listener = join(via, "watcher", &[]);
    expect_join(&listener, "lobby", "watcher");
    let nicks = ["ann", "ben", "cat"];
    let mut senders: Vec<_> = nicks
        .iter()
        .map(|nick| {
            let input: String = (1..=40).map(|i| format!("{nick} {i}\n")).collect();
            let mut child = Command::new(env!("CARGO_BIN_EXE_udpchat"))
                .env("XDG_DATA_HOME", support::data_home())
                .args([
                    "join",
                    &format!("127.0.0.1:{via}"),
                    "--nick",
                    nick,
                    "--linger",
                    "30",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            child
        })
        .collect();
    let mut got: HashMap<String, Vec<String>> = HashMap::new();
    let mut count = 0;
    while count < 120 {
        let e = expect_event(&listener, "the senders' lines", |e| {
            e["type"] == "message" && nicks.contains(&e["from"].as_str().unwrap_or(""))
        });
        got.entry(e["from"].as_str().unwrap().into())
            .or_default()
            .push(e["text"].as_str().unwrap().into());
        count += 1;
    }
    for nick in nicks {
        let expected: Vec<String> = (1..=40).map(|i| format!("{nick} {i}")).collect();
        assert_eq!(got[nick], expected, "{nick}'s lines");
    }
    for child in &mut senders {
        assert!(wait_child(child).success());
    }
    let stats = proxy.stats();
    assert!(stats.dropped_up > 0 && stats.dropped_down > 0, "{stats:?}");
    assert!(stats.duplicated_up + stats.duplicated_down > 0, "{stats:?}");
}

/// Waits for a child without a `Proc` (bounded).
fn wait_child(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child did not exit");
        }
        // Polling a child's exit: there is no blocking wait with a deadline.
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_line_of_64_kib_crosses_in_one_piece() {
    let (_server, port) = serve(&[]);
    let bob = join(port, "bob", &[]);
    expect_join(&bob, "lobby", "bob");
    let mut ada = join(port, "ada", &[]);
    expect_join(&bob, "lobby", "ada");
    let unit = "é€😀";
    let text = unit.repeat(65_536 / unit.len());
    ada.send_line(&text);
    let got = expect_event(&bob, "the long line", |e| {
        e["type"] == "message" && e["from"] == "ada"
    });
    assert_eq!(got["text"].as_str().map(str::len), Some(text.len()));
    assert_eq!(got["text"], text.as_str());
}

#[test]
fn serve_trace_shows_the_datagrams() {
    let (server, port) = serve(&["--trace"]);
    let socket = support::local_socket();
    socket
        .send_to(b"traced guest", ("127.0.0.1", port))
        .unwrap();
    let from = socket.local_addr().unwrap();
    server.stderr_line_containing(&format!(" recv {from} -> 0.0.0.0:{port} 12 bytes"));
    server.stderr_line_containing("|traced guest|");
}

/// The fingerprint `serve` printed on stderr.
fn fingerprint_of(server: &Proc) -> String {
    let line = server.stderr_line_containing("fingerprint");
    line.split("fingerprint ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("a fingerprint")
        .to_owned()
}

#[test]
fn the_server_key_is_pinned_on_first_use_and_a_changed_key_is_refused() {
    // Keys of its own: pins of its own (see support::fresh_data_home).
    let dir = support::fresh_data_home("pinning");
    let join =
        |port: u16, nick: &str, extra: &[&str]| support::join_json_in(&dir, port, nick, extra);
    let key_a = dir.join(format!("a-{}.key", std::process::id()));
    let key_b = dir.join(format!("b-{}.key", std::process::id()));
    let a = key_a.to_str().unwrap();
    let mut first = Proc::udpchat(&["serve", "--port", "0", "--key-file", a]);
    let fp_a = fingerprint_of(&first);
    let port = first.listening_port();
    let mut ada = join(port, "ada", &[]);
    let pinned = expect_event(&ada, "the pin", |e| e["type"] == "pinned");
    assert!(
        pinned["text"].as_str().unwrap().ends_with(&fp_a),
        "{pinned}"
    );
    expect_join(&ada, "lobby", "ada");
    ada.close_stdin();
    ada.expect_success();
    // Same server again: the pin matches, nothing new is pinned.
    let mut again = join(port, "ada", &[]);
    expect_join(&again, "lobby", "ada");
    again.close_stdin();
    again.expect_success();
    assert!(!again.rest_of_stdout().iter().any(|l| l.contains("pinned")));
    first.signal("INT");
    first.expect_success();

    // Another key at the same address: refused, loudly.
    let b = key_b.to_str().unwrap();
    let second = Proc::udpchat(&["serve", "--port", &port.to_string(), "--key-file", b]);
    let fp_b = fingerprint_of(&second);
    assert_ne!(fp_a, fp_b);
    second.listening_port();
    let mut impostor_check = join(port, "ada", &[]);
    assert_eq!(impostor_check.wait().code(), Some(1));
    let stderr = impostor_check.stderr_so_far().join("\n");
    assert!(
        stderr.contains(&format!(
            "the server's key changed: pinned {fp_a}, offered {fp_b}"
        )),
        "{stderr}"
    );
    let said = impostor_check.rest_of_stdout().join("\n");
    assert!(
        !said.contains("connected") && !said.contains("closed"),
        "after the refusal: {said}"
    );
    // Told explicitly that the new key is right, the client accepts it and pins it instead.
    let trusted = join(port, "ada", &["--server-key", &fp_b]);
    expect_join(&trusted, "lobby", "ada");
    let mut later = join(port, "bob", &[]);
    expect_join(&later, "lobby", "bob");
    later.close_stdin();
    later.expect_success();
}

#[test]
fn server_key_pins_explicitly() {
    let server = Proc::udpchat(&["serve", "--port", "0"]);
    // The key's line comes first, then the listening line.
    let fp = fingerprint_of(&server);
    let port = server.listening_port();
    let ok = join(port, "ada", &["--server-key", &fp.to_lowercase()]);
    expect_join(&ok, "lobby", "ada");
    let wrong = "0000-0000-0000-0000-0000-0000-0000-0000";
    let mut refused = join(port, "bob", &["--server-key", wrong]);
    assert_eq!(refused.wait().code(), Some(1));
    let said = refused.rest_of_stdout().join("\n");
    assert!(!said.contains("\"connected\""), "after the refusal: {said}");
    assert!(
        refused
            .stderr_so_far()
            .iter()
            .any(|l| l.contains(&format!("the server's key is {fp}, not {wrong}")))
    );
    let (code, _, stderr) = support::run_udpchat(&[
        "join",
        "127.0.0.1:9",
        "--nick",
        "x",
        "--server-key",
        "nonsense",
    ]);
    // A malformed fingerprint is a usage error (issue 16: it exited 1).
    assert_eq!(code, 2);
    assert!(
        stderr.contains(
            "invalid value 'nonsense' for '--server-key <FINGERPRINT>': not a fingerprint"
        ),
        "{stderr}"
    );
}

#[test]
fn no_captured_datagram_of_a_room_contains_its_text() {
    let (server, port) = serve(&["--trace"]);
    let mut ada = join(port, "ada", &[]);
    expect_join(&ada, "lobby", "ada");
    ada.send_line("TOP-SECRET-PLANS for the lab");
    expect_event(&ada, "the echo", |e| {
        is_message(e, "ada", "TOP-SECRET-PLANS for the lab")
    });
    ada.close_stdin();
    ada.expect_success();
    // Rebuild every datagram the server saw or sent from its hex dump, and search them.
    let mut datagrams: Vec<Vec<u8>> = Vec::new();
    for line in server.stderr_so_far() {
        if line.contains(" recv ") || line.contains(" sent ") {
            datagrams.push(Vec::new());
        } else if let (Some(current), Some(row)) = (datagrams.last_mut(), line.strip_prefix("  ")) {
            let hex = row
                .get(6..)
                .and_then(|r| r.split("  |").next())
                .unwrap_or("");
            current.extend(
                hex.split_whitespace()
                    .filter_map(|h| u8::from_str_radix(h, 16).ok()),
            );
        }
    }
    assert!(
        datagrams.len() >= 6,
        "handshake and data were captured: {}",
        datagrams.len()
    );
    for needle in [&b"TOP-SECRET"[..], b"lobby", b"ada"] {
        let found = datagrams
            .iter()
            .any(|d| d.windows(needle.len()).any(|w| w == needle));
        assert!(
            !found,
            "{:?} crossed the wire in clear",
            String::from_utf8_lossy(needle)
        );
    }
}

#[test]
fn a_secure_session_survives_the_client_moving_to_a_new_address() {
    let server = Proc::udpchat(&["serve", "--port", "0"]);
    let port = server.listening_port();
    let proxy = LossyProxy::start(ProxyConfig::new(
        format!("127.0.0.1:{port}").parse().unwrap(),
    ))
    .unwrap();
    let bob = join(port, "bob", &[]);
    expect_join(&bob, "lobby", "bob");
    let mut ada = join(proxy.addr().port(), "ada", &[]);
    expect_join(&bob, "lobby", "ada");
    ada.send_line("before the move");
    expect_event(&bob, "ada before", |e| {
        is_message(e, "ada", "before the move")
    });
    // A NAT rebinding: ada's datagrams now reach the server from another port.
    proxy.rebind_clients();
    ada.send_line("after the move");
    expect_event(&bob, "ada after", |e| {
        is_message(e, "ada", "after the move")
    });
    server.stderr_line_containing("moved from");
    // The server answers her at the new address.
    let mut bob = bob;
    bob.send_line("welcome back");
    expect_event(&ada, "bob's answer", |e| {
        is_message(e, "bob", "welcome back")
    });
    ada.close_stdin();
    ada.expect_success();
}
