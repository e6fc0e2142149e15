//! End-to-end tests of the client's hardening (issue 15): a line too long for the protocol is
//! refused with an error and the rest still goes; a wrong `--server-key` learns nothing of
//! the user; a server that sends what does not decode ends `join` with an error; a bad key
//! file stops `serve` before it binds.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Proc, TIMEOUT};
use udpchat_proto::crypto::{SEAL_OVERHEAD, ServerHandshake, StaticKeypair};
use udpchat_proto::reliable::{Connection, ConnectionConfig};
use udpchat_proto::rng::SplitMix64;
use udpchat_proto::wire::message::ServerMessage;
use udpchat_proto::wire::packet::{ConnectionId, MAX_DATAGRAM, Packet, PacketRef};

fn serve(extra: &[&str]) -> (Proc, u16) {
    let mut args = vec!["--bind", "127.0.0.1"];
    args.extend_from_slice(extra);
    support::serve_rooms(&args)
}

fn join(port: u16, nick: &str, extra: &[&str]) -> Proc {
    support::join_json(port, nick, extra)
}

/// Reads JSON events until one satisfies `pred`; returns it. Every event read on the way is
/// appended to `seen`.
fn expect_event(
    client: &Proc,
    seen: &mut Vec<Value>,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(
            Instant::now() < deadline,
            "never saw {what}; saw {} events",
            seen.len()
        );
        let line = client.stdout_line();
        let event: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        seen.push(event.clone());
        if pred(&event) {
            return event;
        }
    }
}

fn is_message(event: &Value, from: &str, text: &str) -> bool {
    event["type"] == "message" && event["from"] == from && event["text"] == text
}

#[test]
fn lines_too_long_for_the_protocol_are_refused_with_an_error_and_the_rest_still_goes() {
    let (_server, port) = serve(&[]);
    let mut seen = Vec::new();
    let bob = join(port, "bob", &[]);
    expect_event(&bob, &mut seen, "bob's join", |e| {
        e["type"] == "join" && e["nick"] == "bob"
    });
    let mut ada = join(port, "ada", &[]);
    expect_event(&bob, &mut seen, "ada's join", |e| {
        e["type"] == "join" && e["nick"] == "ada"
    });
    // 70,000 bytes was dropped silently (over the reliable layer's own limit); 66,000 was sent,
    // refused by the server, and cost ada her connection.
    ada.send_line("one");
    ada.send_line(&"x".repeat(70_000));
    ada.send_line("two");
    ada.send_line(&"y".repeat(66_000));
    ada.send_line("three");
    ada.send_line(&"z".repeat(65_536));
    ada.send_line("four");
    for (n, len) in [(2, 70_000), (4, 66_000)] {
        let line = ada.stderr_line_containing(&format!("line {n} is"));
        assert_eq!(
            line,
            format!(
                "udpchat: error: line {n} is {len} bytes, longer than the 65536 bytes a message may carry; not sent"
            )
        );
    }
    let mut said = Vec::new();
    for text in ["one", "two", "three"] {
        let event = expect_event(&bob, &mut seen, text, |e| {
            e["type"] == "message" && e["from"] == "ada"
        });
        said.push(event["text"].as_str().unwrap().to_owned());
    }
    assert_eq!(said, ["one", "two", "three"], "in order, nothing else");
    // The limit itself is allowed.
    let exact = expect_event(&bob, &mut seen, "the 65,536-byte line", |e| {
        e["type"] == "message" && e["from"] == "ada"
    });
    assert_eq!(exact["text"].as_str().map(str::len), Some(65_536));
    expect_event(&bob, &mut seen, "four", |e| is_message(e, "ada", "four"));
    // A room name over 32 bytes is refused the same way, and lines stay in the lobby.
    ada.send_line(&format!("/join {}", "r".repeat(40)));
    ada.send_line("five");
    assert_eq!(
        ada.stderr_line_containing("line 8"),
        "udpchat: error: line 8: the room is 40 bytes, longer than the 32 bytes allowed; not sent"
    );
    expect_event(&bob, &mut seen, "five", |e| is_message(e, "ada", "five"));
    ada.close_stdin();
    assert_eq!(ada.wait().code(), Some(1), "a refused line fails the run");
    let stderr = ada.stderr_so_far();
    assert_eq!(
        stderr
            .iter()
            .filter(|l| l.starts_with("udpchat: error:"))
            .count(),
        3,
        "exactly the three refusals: {stderr:#?}"
    );
    let closed: Vec<Value> = ada
        .rest_of_stdout()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "closed")
        .collect();
    assert_eq!(
        closed,
        [serde_json::json!({"type": "closed", "text": "left"})],
        "ada stayed connected and left normally"
    );
    let left: Vec<&Value> = seen
        .iter()
        .filter(|e| e["type"] == "leave" && e["nick"] == "ada")
        .collect();
    assert!(left.is_empty(), "ada was disconnected: {left:?}");
}

#[test]
fn a_wrong_server_key_is_refused_before_the_nick_the_room_or_a_line_leaves() {
    let (_server, port) = serve(&[]);
    let mut seen = Vec::new();
    let mut watcher = join(port, "watcher", &[]);
    // The member list that follows the watcher's own join: the next one is the answer to /who.
    expect_event(
        &watcher,
        &mut seen,
        "the watcher's first member list",
        |e| e["type"] == "names",
    );
    let other = "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG-HHHH";
    let mut ada = join(port, "ada", &["--server-key", other]);
    ada.send_line("my secret words");
    assert_eq!(ada.wait().code(), Some(1));
    let errors: Vec<String> = ada
        .stderr_so_far()
        .into_iter()
        .filter(|l| l.starts_with("udpchat: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains(&format!(", not {other}; refusing to talk to it")),
        "{errors:#?}"
    );
    // The server heard nothing from ada but the handshake: ada's nick, room and line went
    // out before the check on the old code, so the watcher saw her join (and leave).
    watcher.send_line("/who");
    let names = expect_event(&watcher, &mut seen, "the member list", |e| {
        e["type"] == "names"
    });
    assert_eq!(names["nicks"], serde_json::json!(["watcher"]));
    assert!(
        !seen.iter().any(|e| e.to_string().contains("ada")),
        "the server learnt of ada: {seen:#?}"
    );
    watcher.close_stdin();
    watcher.expect_success();
}

/// A fake room server on loopback: completes the secure handshake with its own key, waits for
/// the client's first message, then sends `messages` (encoded by the caller) in one datagram.
fn fake_server_sending(messages: Vec<Vec<u8>>) -> (u16, std::thread::JoinHandle<()>) {
    let socket = support::local_socket();
    let port = socket.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let keys = StaticKeypair::from_private([42; 32]).unwrap();
        let (id, token) = (ConnectionId(0x1234), 0x5678_u64);
        let mut buf = vec![0; 65_536];
        let (client, nonce, noise) = loop {
            let (n, from) = socket.recv_from(&mut buf).expect("a Hello in time");
            if let Ok(PacketRef::Other(Packet::SecureHello { nonce, noise, .. })) =
                PacketRef::decode(&buf[..n])
            {
                break (from, nonce, noise);
            }
        };
        let mut secrets = token.to_be_bytes().to_vec();
        secrets.extend_from_slice(&5_000_u32.to_be_bytes());
        secrets.extend_from_slice(&30_000_u32.to_be_bytes());
        let (mut transport, reply) =
            ServerHandshake::respond(&keys, &noise, &secrets, &mut SplitMix64::new(1)).unwrap();
        let welcome = Packet::SecureWelcome {
            connection: id,
            nonce,
            noise: reply,
        };
        send(&socket, client, &welcome.to_bytes());
        // The client's first sealed datagram: it accepted the key and is connected.
        loop {
            let (n, from) = socket
                .recv_from(&mut buf)
                .expect("the client's first message");
            if from == client
                && matches!(PacketRef::decode(&buf[..n]), Ok(PacketRef::Sealed { .. }))
            {
                break;
            }
        }
        let config = ConnectionConfig {
            max_datagram: MAX_DATAGRAM - SEAL_OVERHEAD,
            ..ConnectionConfig::default()
        };
        let now = Instant::now();
        let mut conn = Connection::new(id, token, config, now, None);
        for message in messages {
            conn.send_message(message).unwrap();
        }
        let datagram = conn.poll_transmit(now).expect("a Data datagram");
        let sealed = transport.seal_datagram(id, &datagram).unwrap();
        send(&socket, client, &sealed);
        // Stay around (silent) until the client is done with us.
        let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
        let quiet = Instant::now() + TIMEOUT;
        while Instant::now() < quiet && socket.recv_from(&mut buf).is_ok() {}
    });
    (port, handle)
}

fn send(socket: &UdpSocket, to: SocketAddr, bytes: &[u8]) {
    socket.send_to(bytes, to).expect("send");
}

#[test]
fn a_server_message_that_does_not_decode_ends_join_with_an_error() {
    let said = |text: &str| {
        ServerMessage::Message {
            room: "lobby".into(),
            from: "mallory".into(),
            kind: udpchat_proto::wire::message::MessageKind::Say,
            history: false,
            text: text.into(),
        }
        .to_bytes()
    };
    // A good message, one with an unknown tag, and one after it in the same datagram; in
    // JSON and in text mode, each against a fresh fake.
    for json in [true, false] {
        let (port, server) =
            fake_server_sending(vec![said("before"), vec![0x7f, 0, 1], said("after")]);
        let target = format!("127.0.0.1:{port}");
        let mut args = vec!["join", target.as_str(), "--nick", "ada"];
        if json {
            args.push("--json");
        }
        // The fake's key is pinned in a data directory of its own (see
        // support::fresh_data_home).
        let mut ada = Proc::udpchat_in(&support::fresh_data_home("fake-server"), &args);
        assert_eq!(ada.wait().code(), Some(1), "exit status (json: {json})");
        let errors: Vec<String> = ada
            .stderr_so_far()
            .into_iter()
            .filter(|l| l.starts_with("udpchat: error:"))
            .collect();
        assert_eq!(
            errors,
            [
                "udpchat: error: the server broke the protocol (it sent something this client cannot decode); disconnected"
            ],
            "json: {json}"
        );
        let out = ada.rest_of_stdout().join("\n");
        assert!(out.contains("before"), "{out}");
        assert!(!out.contains("after"), "applied after the violation: {out}");
        server.join().unwrap();
    }
}

#[test]
fn a_bad_key_file_stops_serve_before_it_binds_its_port() {
    use std::os::unix::fs::PermissionsExt;
    let dir = support::data_home().join(format!("bad-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.key");
    std::fs::write(
        &good,
        format!("# a udpchat server key\n{}\n", "07".repeat(32)),
    )
    .unwrap();
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o600)).unwrap();
    let link = dir.join("link.key");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    let directory = dir.join("directory.key");
    std::fs::create_dir(&directory).unwrap();

    // Someone holds the port: the key file is what serve reports, so it never tried the port.
    let held = support::local_socket();
    let port = held.local_addr().unwrap().port().to_string();
    for (bad, why) in [
        (
            &link,
            "is a symbolic link; refusing it (give the key file's real path)",
        ),
        (&directory, "not a regular file; refusing it"),
    ] {
        let bad = bad.to_str().unwrap();
        let args = [
            "serve",
            "--bind",
            "127.0.0.1",
            "--port",
            &port,
            "--key-file",
            bad,
        ];
        let (code, _, stderr) = support::run_udpchat(&args);
        assert_eq!(code, 1, "{stderr}");
        assert_eq!(
            stderr.lines().collect::<Vec<_>>(),
            [format!("udpchat: error: {bad}: {why}")],
            "one clear line"
        );
    }
    drop(held);
    // Nobody holds it: serve still fails, and the port is free the moment it has exited.
    let free = support::free_port().to_string();
    let args = [
        "serve",
        "--bind",
        "127.0.0.1",
        "--port",
        &free,
        "--key-file",
        link.to_str().unwrap(),
    ];
    let (code, _, stderr) = support::run_udpchat(&args);
    assert_eq!(code, 1, "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
    UdpSocket::bind(format!("127.0.0.1:{free}")).expect("the port stayed free");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Shell run after udpchat in tmux: its exit status, then it waits (the pane stays readable).
const AFTER: &str = "echo \"EXITED $?\"; sleep 60";

/// `join` full-screen in a tmux terminal of its own, with its own data directory.
fn join_full_screen(name: &str, port: u16, nick: &str, extra: &str) -> support::tmux::Tmux {
    let home = support::fresh_data_home(name);
    let command = format!(
        "env XDG_DATA_HOME={} {} join 127.0.0.1:{port} --nick {nick} {extra}; {AFTER}",
        home.display(),
        env!("CARGO_BIN_EXE_udpchat"),
    );
    support::tmux::Tmux::start_sized(name, &command, 120, 20)
}

#[test]
fn the_full_screen_client_ends_with_an_error_on_a_violation_and_sends_nothing_under_a_wrong_key() {
    // A server message that does not decode: the error on the normal screen, exit status 1.
    let garbage = vec![0x7f, 0, 1];
    let (port, fake) = fake_server_sending(vec![garbage]);
    let tui = join_full_screen("tui-violation", port, "ada", "");
    let screen = tui.wait_for("the exit", |s| s.contains("EXITED"));
    assert!(
        screen.contains("udpchat: error: the server broke the protocol"),
        "{screen}"
    );
    assert!(screen.contains("EXITED 1"), "{screen}");
    fake.join().unwrap();

    // A wrong --server-key: refused, and the room never hears of ada.
    let (_server, port) = serve(&[]);
    let mut seen = Vec::new();
    let mut watcher = join(port, "watcher", &[]);
    expect_event(
        &watcher,
        &mut seen,
        "the watcher's first member list",
        |e| e["type"] == "names",
    );
    let other = "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG-HHHH";
    let tui = join_full_screen(
        "tui-wrong-key",
        port,
        "ada",
        &format!("--server-key {other}"),
    );
    let screen = tui.wait_for("the exit", |s| s.contains("EXITED"));
    // (The line wraps: its two halves.)
    assert!(
        screen.contains(&format!("not {other}")) && screen.contains("refusing to talk to it"),
        "{screen}"
    );
    assert!(screen.contains("EXITED 1"), "{screen}");
    watcher.send_line("/who");
    let names = expect_event(&watcher, &mut seen, "the member list", |e| {
        e["type"] == "names"
    });
    assert_eq!(names["nicks"], serde_json::json!(["watcher"]));
    assert!(
        !seen.iter().any(|e| e.to_string().contains("ada")),
        "the server learnt of ada: {seen:#?}"
    );
    watcher.close_stdin();
    watcher.expect_success();
}
