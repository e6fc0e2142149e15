//! The first hour of a new user (issue 16): every path a newcomer takes from the README ends in
//! a clear result. Each test drives the real binary as a user would: a command line, a pipe, a
//! terminal (tmux).

mod support;

use support::tmux::Tmux;
use support::{Proc, local_socket, recv_text, run_udpchat, serve_rooms};

/// Asserts a usage error: exit status 2 and one line, `udpchat: error: …`, containing `needle`.
fn assert_usage_error(args: &[&str], needle: &str) {
    let (code, _, stderr) = run_udpchat(args);
    assert_eq!(code, 2, "{args:?}: a usage error exits 2; stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr:?}");
    assert!(
        stderr.starts_with("udpchat: error: "),
        "{args:?}: the one error format: {stderr:?}"
    );
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} lacks {needle:?}"
    );
}

// ---- Exit codes and error lines: one rule everywhere ----

#[test]
fn every_bad_command_line_exits_2_with_one_line() {
    for (args, needle) in [
        // A bad port, in every mode that takes one.
        (&["send", "127.0.0.1:70000"][..], "bad port '70000'"),
        (&["probe", "127.0.0.1:70000"], "bad port '70000'"),
        (&["chat", "127.0.0.1:70000"], "bad port '70000'"),
        (
            &["join", "127.0.0.1:70000", "--nick", "ada"],
            "bad port '70000'",
        ),
        (&["recv", "--port", "70000"], "'70000'"),
        (&["chat", "--listen", "70000"], "'70000'"),
        (&["check", "70000"], "'70000'"),
        (&["serve", "--port", "70000"], "'70000'"),
        // Bad address syntax.
        (&["send", "localhost"], "missing port in 'localhost'"),
        (&["send", "::1:12345"], "IPv6 addresses need brackets"),
        (&["probe", "host:0"], "bad port '0'"),
        // A malformed fingerprint.
        (
            &[
                "join",
                "127.0.0.1:9",
                "--nick",
                "ada",
                "--server-key",
                "zzz",
            ],
            "not a fingerprint",
        ),
        // Nicks and rooms the server would refuse.
        (
            &["join", "127.0.0.1:9", "--nick", "1abc"],
            "not a valid nick",
        ),
        (
            &["join", "127.0.0.1:9", "--nick", "ada", "--room", "no room"],
            "not a valid room",
        ),
        (
            &["join", "127.0.0.1:9", "--nick", "guest-1"],
            "reserved for plain-text guests",
        ),
        // What bench is asked to measure.
        (
            &["bench", "--targets", "relay,redis"],
            "unknown target 'redis'",
        ),
        (&["bench", "--members", "10,1"], "at least 2 members"),
        (
            &["bench", "--members", "ten"],
            "'ten' is not a member count",
        ),
    ] {
        assert_usage_error(args, needle);
    }
}

#[test]
fn a_runtime_failure_exits_1() {
    let (code, _, stderr) = run_udpchat(&["send", "no-such-host.invalid:12345"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.starts_with("udpchat: error: unknown host"),
        "{stderr}"
    );
}

#[test]
fn a_port_alone_suggests_a_host_to_put_before_it() {
    assert_usage_error(&["send", "12345"], "127.0.0.1:12345");
    let (_, _, stderr) = run_udpchat(&["send", "12345"]);
    assert!(stderr.contains("localhost:12345"), "{stderr}");
    assert!(!stderr.contains("12345:12345"), "{stderr}");
}

#[test]
fn a_nick_starting_with_a_dash_is_refused_as_a_nick() {
    for flag in ["--nick", "-n"] {
        assert_usage_error(
            &["join", "127.0.0.1:9", flag, "-dash"],
            "a nick cannot start with '-'",
        );
    }
}

// ---- `join` to something that is not a room server ----

#[test]
fn join_to_a_plain_text_answer_says_it_is_not_a_room_server() {
    // What `udpchat chat --listen` (or `recv --reply`, or an echo service) does with the Hello.
    let impostor = local_socket();
    let target = impostor.local_addr().unwrap().to_string();
    let mut join = Proc::udpchat(&["join", &target, "--nick", "ada"]);
    let (_hello, from) = recv_text(&impostor);
    impostor.send_to(b"who are you?\n", from).unwrap();
    let status = join.wait();
    let stderr = join.stderr_so_far();
    assert_eq!(status.code(), Some(1), "{stderr:#?}");
    let errors: Vec<&String> = stderr.iter().filter(|l| !l.starts_with("* ")).collect();
    assert_eq!(
        errors,
        [&format!(
            "udpchat: error: {target} answered, but it is not a udpchat room server \
             (is `udpchat serve` running there?)"
        )],
        "{stderr:#?}"
    );
}

#[test]
fn full_screen_join_to_a_plain_text_answer_says_it_is_not_a_room_server() {
    let impostor = local_socket();
    let target = impostor.local_addr().unwrap().to_string();
    let command = format!(
        "env XDG_DATA_HOME={} {} join {target} --nick ada; echo EXIT=$?; sleep 60",
        support::data_home().display(),
        env!("CARGO_BIN_EXE_udpchat"),
    );
    let tmux = Tmux::start_sized("first-hour-impostor", &command, 100, 10);
    let (_hello, from) = recv_text(&impostor);
    impostor.send_to(b"who are you?\n", from).unwrap();
    let screen = tmux.wait_for("the exit", |s| s.contains("EXIT="));
    assert!(screen.contains("EXIT=1"), "{screen}");
    assert!(
        screen.contains(&format!(
            "udpchat: error: {target} answered, but it is not a udpchat room server"
        )),
        "{screen}"
    );
}

#[test]
fn join_to_a_silent_port_gives_up_after_the_connect_timeout_in_one_error_line() {
    let silent = local_socket();
    let target = silent.local_addr().unwrap().to_string();
    let mut join = Proc::udpchat(&["join", &target, "--nick", "ada", "--connect-timeout", "0.5"]);
    let status = join.wait();
    let stderr = join.stderr_so_far();
    assert_eq!(status.code(), Some(1), "{stderr:#?}");
    let errors: Vec<&String> = stderr.iter().filter(|l| !l.starts_with("* ")).collect();
    assert_eq!(
        errors,
        [&format!(
            "udpchat: error: no answer from {target} within 0.5s (is `udpchat serve` running there?)"
        )],
        "{stderr:#?}"
    );
}

#[test]
fn join_shows_its_progress_on_a_terminal_while_it_waits() {
    let silent = local_socket();
    let target = silent.local_addr().unwrap().to_string();
    let command = format!(
        "env XDG_DATA_HOME={} {} join {target} --nick ada --plain",
        support::data_home().display(),
        env!("CARGO_BIN_EXE_udpchat"),
    );
    let tmux = Tmux::start_sized("first-hour-progress", &command, 100, 10);
    let waiting = format!("waiting for {target}");
    tmux.wait_for("the wait shown", |s| s.contains(&waiting));
    // One line, updated in place each second.
    let screen = tmux.wait_for("two seconds counted", |s| {
        s.contains(&format!("{waiting}… 2 s"))
    });
    assert_eq!(screen.matches(&waiting).count(), 1, "{screen}");
}

// ---- A taken nick ----

#[test]
fn a_taken_nick_is_one_error_line_and_exit_1() {
    let (_server, port) = serve_rooms(&["--bind", "127.0.0.1"]);
    let ada = support::join_json(port, "ada", &[]);
    while !ada.stdout_line().contains(r#""type":"join""#) {}
    let target = format!("127.0.0.1:{port}");
    let mut impostor = Proc::udpchat(&["join", &target, "--nick", "ADA"]);
    impostor.send_line("hello, it is me");
    let status = impostor.wait();
    let stdout = impostor.rest_of_stdout();
    let stderr = impostor.stderr_so_far();
    assert_eq!(status.code(), Some(1), "{stderr:#?}");
    assert_eq!(stdout, Vec::<String>::new(), "nothing but the error line");
    let errors: Vec<&String> = stderr.iter().filter(|l| !l.starts_with("* ")).collect();
    assert_eq!(errors, ["udpchat: error: nick ADA is taken"], "{stderr:#?}");
    assert!(
        !stderr
            .iter()
            .any(|l| l.contains("choose a nick") || l == "* left"),
        "{stderr:#?}"
    );
}

#[test]
fn a_taken_nick_in_the_full_screen_ui_leaves_one_error_line() {
    let (_server, port) = serve_rooms(&["--bind", "127.0.0.1"]);
    let ada = support::join_json(port, "dee", &[]);
    while !ada.stdout_line().contains(r#""type":"join""#) {}
    let command = format!(
        "env XDG_DATA_HOME={} {} join 127.0.0.1:{port} --nick dee; echo EXIT=$?; sleep 60",
        support::data_home().display(),
        env!("CARGO_BIN_EXE_udpchat"),
    );
    let tmux = Tmux::start_sized("first-hour-taken", &command, 80, 20);
    let screen = tmux.wait_for("the exit", |s| s.contains("EXIT="));
    assert!(screen.contains("EXIT=1"), "{screen}");
    assert_eq!(screen.matches("taken").count(), 1, "{screen}");
    assert!(
        screen.contains("udpchat: error: nick dee is taken"),
        "{screen}"
    );
    assert!(!screen.contains("choose a nick"), "{screen}");
}

// ---- The README: how to get the command, and samples that stay true ----

/// The README's text.
fn readme() -> String {
    std::fs::read_to_string(support::root().join("README.md")).expect("README.md")
}

/// The README's section under the heading `title` (up to the next `## ` heading).
fn section(readme: &str, title: &str) -> String {
    let start = readme
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("no section {title:?}"));
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_owned()
}

/// The README's fenced blocks: (info string, lines).
fn fenced_blocks(text: &str) -> Vec<(String, Vec<String>)> {
    let mut blocks = Vec::new();
    // The open block, and the indentation of its fence (a block in a list item is indented).
    let mut current: Option<(String, Vec<String>)> = None;
    let mut indent = 0;
    for line in text.lines() {
        let trimmed = line.trim_start();
        match (&mut current, trimmed.strip_prefix("```")) {
            (None, Some(info)) => {
                indent = line.len() - trimmed.len();
                current = Some((info.to_owned(), Vec::new()));
            }
            (Some(_), Some(_)) => blocks.extend(current.take()),
            (Some((_, lines)), None) => {
                let cut = line.len().min(indent).min(line.len() - trimmed.len());
                lines.push(line[cut..].to_owned());
            }
            (None, None) => {}
        }
    }
    blocks
}

#[test]
fn the_readme_says_how_to_get_the_udpchat_command_right_after_the_two_commands() {
    let readme = readme();
    let intro = &readme[..readme.find("\n## ").unwrap()];
    assert!(
        !intro.contains("Coming next"),
        "the TUI and bench exist: {intro}"
    );
    let two = section(&readme, "Two commands");
    let blocks = fenced_blocks(&two);
    assert_eq!(blocks.len(), 1, "{two}");
    let commands = blocks[0].1.iter().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(commands, 2, "exactly two commands: {two}");
    // The next section, before any bare `udpchat` command is used.
    let after = &readme[readme.find(&two).unwrap() + two.len()..];
    let next = &after[..after[3..].find("\n## ").unwrap()];
    assert!(
        next.contains("cargo install --path crates/udpchat"),
        "{next}"
    );
    assert!(next.contains("target/release/udpchat"), "{next}");
    let manifest =
        std::fs::read_to_string(support::root().join("crates/udpchat/Cargo.toml")).unwrap();
    assert!(
        manifest.contains("name = \"udpchat\""),
        "the path installs udpchat"
    );
    let before = &readme[..readme.find(next).unwrap()];
    let lab = &readme[readme.find(next).unwrap() + next.len()..];
    assert!(
        !before.contains("\nudpchat "),
        "no bare udpchat before it is explained"
    );
    assert!(lab.contains("\nudpchat recv"), "the lab's steps use it");
}

/// A line reduced to its shape: what changes from run to run (times, ports, fingerprints,
/// paths, connection ids, guest names, buffer sizes) becomes a placeholder, and a `^C` echoed by
/// the terminal is dropped.
fn shape(line: &str) -> String {
    let rules = [
        (r"^\^C", ""),
        (r"\b\d{2}:\d{2}:\d{2}\.\d{6}\b", "TIME"),
        (r"\b[0-9A-Z]{4}(-[0-9A-Z]{4}){7}\b", "FINGERPRINT"),
        (r"/[^\s;]+", "PATH"),
        (r"\b[0-9a-f]{16}\b", "ID"),
        (r"\bguest-[0-9a-z]+\b", "GUEST"),
        (
            r"\b\d+ KiB receive and \d+ KiB send",
            "N KiB receive and N KiB send",
        ),
        (r"\budp port \d+", "udp port PORT"),
        (r"(\d|\]):\d+\b", "$1:PORT"),
    ];
    let mut line = line.trim_end().to_owned();
    for (pattern, replacement) in rules {
        let re = regex::Regex::new(pattern).expect("a valid pattern");
        line = re.replace_all(&line, replacement).into_owned();
    }
    line
}

/// The README's `text` block that starts with the line `first`.
fn readme_sample(first: &str) -> Vec<String> {
    fenced_blocks(&readme())
        .into_iter()
        .find(|(info, lines)| info == "text" && lines.first().is_some_and(|l| l == first))
        .unwrap_or_else(|| panic!("no README sample starting {first:?}"))
        .1
}

/// Asserts that `real` lines have the shape of the README's `sample` lines, one for one.
fn assert_same_shape(what: &str, sample: &[String], real: &[String]) {
    let sample: Vec<String> = sample.iter().map(|l| shape(l)).collect();
    let real: Vec<String> = real.iter().map(|l| shape(l)).collect();
    assert_eq!(
        sample, real,
        "the README's sample of {what} (left) no longer matches the real output (right)"
    );
}

#[test]
fn the_readmes_trace_sample_is_what_send_trace_prints() {
    let sample = readme_sample("$ udpchat send 127.0.0.1:12345 --wait 2 --trace");
    let server = Proc::udpchat(&[
        "recv",
        "--reply",
        "hi",
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
    ]);
    let port = server.listening_port();
    // Both streams in one pipe, in the order the user's terminal shows them.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} send 127.0.0.1:{port} --wait 2 --trace 2>&1",
            env!("CARGO_BIN_EXE_udpchat")
        ))
        .output()
        .expect("sh");
    assert!(out.status.success(), "{out:?}");
    let mut real = vec![sample[0].clone()];
    real.extend(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned),
    );
    assert_same_shape("send --trace", &sample, &real);
}

#[test]
fn the_readmes_serve_sample_is_what_serve_prints() {
    let sample = readme_sample("$ udpchat serve");
    // A server key of its own, loaded (not created) as in the sample.
    // Its own data directory: its client pins a key other servers of this process do not
    // have (see support::fresh_data_home).
    let home = support::fresh_data_home("readme-serve");
    let key = home.join("readme-serve.key");
    let key = key.to_str().unwrap();
    let (mut first, _) = serve_rooms(&["--key-file", key]);
    first.signal("INT");
    first.expect_success();
    let (mut server, port) = serve_rooms(&["--key-file", key]);
    let target = format!("127.0.0.1:{port}");
    // The events of the sample, one after the other, each awaited in the server's log.
    let mut client = Proc::udpchat_in(&home, &["join", &target, "--nick", "ada", "--json"]);
    server.stderr_line_containing("connected (connection");
    let guest = local_socket();
    guest.send_to(b"hello", ("127.0.0.1", port)).unwrap();
    server.stderr_line_containing("+ guest");
    guest.send_to(b"bye", ("127.0.0.1", port)).unwrap();
    server.stderr_line_containing("- guest");
    client.close_stdin();
    client.expect_success();
    server.stderr_line_containing("disconnected");
    server.signal("INT");
    server.expect_success();
    let mut real = vec![sample[0].clone()];
    real.extend(server.stderr_so_far());
    // The sample shows the note on socket buffers; a kernel that grants them prints none.
    let note = |l: &String| l.starts_with("note: the kernel capped");
    let sample: Vec<String> = if real.iter().any(note) {
        sample
    } else {
        sample.into_iter().filter(|l| !note(l)).collect()
    };
    assert_same_shape("serve", &sample, &real);
}

#[test]
fn the_readmes_first_start_sample_is_what_serve_prints() {
    let sample = fenced_blocks(&readme())
        .into_iter()
        .find(|(_, lines)| lines.len() == 1 && lines[0].starts_with("server key created in"))
        .expect("the README's first-start sample")
        .1;
    let key = support::data_home().join("readme-first-start.key");
    let _ = std::fs::remove_file(&key);
    let server = Proc::udpchat(&["serve", "--port", "0", "--key-file", key.to_str().unwrap()]);
    let line = server.stderr_line_containing("server key");
    assert_same_shape("serve's first start", &sample, &[line]);
}

// ---- bench says how long it will take ----

#[test]
fn bench_says_how_long_it_will_take_before_it_starts() {
    let mut bench = Proc::udpchat(&[
        "bench",
        "--members",
        "2",
        "--targets",
        "relay",
        "--duration",
        "0.2",
        "--repeat",
        "1",
        "--idle",
        "0",
    ]);
    let estimate = bench.stderr_line_containing("bench:");
    assert_eq!(
        shape(&estimate),
        shape("bench: 1 measurements, about 12 rounds of 0.2s: expect about 14 seconds"),
        "the first line says it, before any round"
    );
    bench.expect_success();
}

#[test]
fn the_readmes_bench_estimate_is_what_bench_says() {
    use clap::Parser;
    let readme = readme();
    let command = readme
        .lines()
        .find(|l| l.contains("bench --members 10") && l.contains("# one quick comparison"))
        .expect("the README's quick comparison");
    let (command, comment) = command.split_once('#').unwrap();
    let args = command
        .trim()
        .strip_prefix("cargo run --release -- ")
        .unwrap();
    let cli = udpchat::cli::Cli::try_parse_from(
        std::iter::once("udpchat").chain(args.split_whitespace()),
    )
    .unwrap();
    let udpchat::cli::Command::Bench(args) = cli.command else {
        panic!("not a bench command: {command}")
    };
    let estimate = udpchat_bench::Estimate::of(
        &args,
        args.targets.split(',').count(),
        args.members.split(',').count(),
    );
    let said = format!("bench: {estimate}");
    let sample = readme_sample(&said);
    assert_eq!(sample, std::slice::from_ref(&said));
    let about = said.split("expect ").nth(1).unwrap();
    assert!(comment.trim().ends_with(about), "{comment:?} vs {said:?}");
}

// ---- One error format for every failure ----

#[test]
fn the_server_going_away_ends_join_with_one_error_line() {
    let (mut server, port) = serve_rooms(&["--bind", "127.0.0.1"]);
    let ada = support::join_json(port, "ada", &[]);
    while !ada.stdout_line().contains(r#""type":"join""#) {}
    let target = format!("127.0.0.1:{port}");
    let mut bob = Proc::udpchat(&["join", &target, "--nick", "bob"]);
    bob.stderr_line_containing("connected to");
    server.stderr_line_containing("+ 127.0.0.1");
    server.stderr_line_containing("+ 127.0.0.1");
    server.signal("INT");
    server.expect_success();
    let status = bob.wait();
    let stderr = bob.stderr_so_far();
    assert_eq!(status.code(), Some(1), "{stderr:#?}");
    assert_eq!(
        stderr.last().map(String::as_str),
        Some("udpchat: error: the server shut down"),
        "{stderr:#?}"
    );
}

/// The output the README quotes in the comment of its command line that starts with
/// `command`: `udpchat recv   # server: prints "hello from …", then exits` gives `hello from …`.
fn readme_quoted_output(command: &str) -> String {
    let readme = readme();
    let line = readme
        .lines()
        .find(|l| l.starts_with(command) && l.contains('#'))
        .unwrap_or_else(|| panic!("no README line {command:?}"));
    let comment = line.split_once('#').unwrap().1;
    let quoted = comment.split('"').nth(1).expect("a quoted output");
    quoted.to_owned()
}

#[test]
fn the_readmes_lab_steps_print_what_it_quotes() {
    // Step 1: recv prints the hello with its sender.
    let mut recv = Proc::udpchat(&["recv", "--port", "0", "--bind", "127.0.0.1"]);
    let port = recv.listening_port();
    let target = format!("127.0.0.1:{port}");
    let (code, _, stderr) = run_udpchat(&["send", &target]);
    assert_eq!(code, 0, "{stderr}");
    assert_same_shape(
        "recv",
        &[readme_quoted_output("udpchat recv  ")],
        &[recv.stdout_line()],
    );
    recv.expect_success();
    // Step 2: send --wait prints the answer with its sender.
    let recv = Proc::udpchat(&[
        "recv",
        "--reply",
        "hi",
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
    ]);
    let target = format!("127.0.0.1:{}", recv.listening_port());
    let (code, stdout, stderr) = run_udpchat(&["send", &target, "--wait", "2"]);
    assert_eq!(code, 0, "{stderr}");
    assert_same_shape(
        "send --wait",
        &[readme_quoted_output(
            "udpchat send 127.0.0.1:12345 --wait 2",
        )],
        &[stdout.trim_end().to_owned()],
    );
    // The slide's question: check finds the bound port and its process.
    let mut python = Proc::spawn("python3 bound", {
        let mut c = std::process::Command::new("python3");
        c.args([
            "-u",
            "-c",
            "import socket, sys\n\
                 s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                 s.bind(('0.0.0.0', 0))\n\
                 print('listening on udp %s:%d' % s.getsockname(), file=sys.stderr)\n\
                 sys.stdin.read()",
        ]);
        c
    });
    let port = python.listening_port();
    let (code, stdout, _) = run_udpchat(&["check", &port.to_string()]);
    assert_eq!(code, 0, "{stdout}");
    let pid = regex::Regex::new(r"\(pid \d+\)").unwrap();
    let sample = readme_quoted_output("udpchat check 12345");
    assert_eq!(
        shape(&pid.replace_all(&sample, "(pid N)")),
        shape(&pid.replace_all(stdout.trim_end(), "(pid N)")),
    );
    python.close_stdin();
    python.expect_success();
}
