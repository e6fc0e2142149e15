//! Test support: run real programs (udpchat, the lab's Python programs, `nc`) as child
//! processes and talk to them through their stdin, stdout and stderr.
//!
//! Every wait is for an event (a line appearing, a process exiting, a port being bound) and is
//! bounded by [`TIMEOUT`]; nothing sleeps to synchronise. A child is killed when its [`Proc`]
//! is dropped, so a failing test never leaves processes behind.

#![allow(dead_code)] // each test file uses a different part of this module

pub mod tmux;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest any single expected event may take. Generous: CI machines are slow and shared.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A running child process with line-by-line access to its output.
pub struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<Receiver<String>>,
    stderr: Receiver<String>,
    /// Everything read from stderr so far, for failure messages.
    stderr_log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `cmd` with all three standard streams piped.
    pub fn spawn(name: &str, mut cmd: Command) -> Self {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdin = child.stdin.take();
        let stdout = lines_of(child.stdout.take().expect("piped"), None);
        let stderr_log = Arc::new(Mutex::new(Vec::new()));
        let stderr = lines_of(
            child.stderr.take().expect("piped"),
            Some(stderr_log.clone()),
        );
        Self {
            name: name.into(),
            child,
            stdin,
            stdout: Some(stdout),
            stderr,
            stderr_log,
        }
    }

    /// Starts the udpchat binary under test, with its data directory (keys, known servers) in
    /// [`data_home`].
    pub fn udpchat(args: &[&str]) -> Self {
        Self::udpchat_in(&data_home(), args)
    }

    /// [`udpchat`](Self::udpchat) with another data directory (see [`fresh_data_home`]).
    pub fn udpchat_in(home: &Path, args: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_udpchat"));
        cmd.args(args).env("XDG_DATA_HOME", home);
        Self::spawn(&format!("udpchat {}", args.join(" ")), cmd)
    }

    /// Starts one of the lab's Python programs from `lab/`, unbuffered.
    pub fn python(script: &str, args: &[&str]) -> Self {
        let mut cmd = Command::new("python3");
        cmd.arg("-u")
            .arg(root().join("lab").join(script))
            .args(args);
        Self::spawn(&format!("python3 {script} {}", args.join(" ")), cmd)
    }

    /// Starts OpenBSD netcat.
    pub fn nc(args: &[&str]) -> Self {
        let mut cmd = Command::new("nc");
        cmd.args(args);
        Self::spawn(&format!("nc {}", args.join(" ")), cmd)
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Types a line (a newline is added).
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| {
                panic!(
                    "{}: cannot write to stdin: {e}\nstderr: {:?}",
                    self.name,
                    self.stderr_so_far()
                )
            });
    }

    /// Closes stdin: end of input.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next line on stdout.
    pub fn stdout_line(&self) -> String {
        let rx = self.stdout.as_ref().expect("stdout still open");
        match rx.recv_timeout(TIMEOUT) {
            Ok(line) => line,
            Err(e) => panic!(
                "{}: no stdout line ({e:?}); stderr so far: {:#?}",
                self.name,
                self.stderr_so_far()
            ),
        }
    }

    /// Reads stderr until a line contains `needle`, and returns that line.
    pub fn stderr_line_containing(&self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!(
                    "{}: no stderr line containing {needle:?} ({e:?}); stderr: {:#?}",
                    self.name,
                    self.stderr_so_far()
                ),
            }
        }
    }

    /// Waits for the "listening on ... PORT" line that udpchat and the lab's servers print once
    /// their socket is bound, and returns the port.
    pub fn listening_port(&self) -> u16 {
        let line = self.stderr_line_containing("listening on");
        // The first number above the well-known range: skips the digits of an IP address.
        line.split(|c: char| !c.is_ascii_digit())
            .filter_map(|s| s.parse::<u16>().ok())
            .find(|&p| p > 1023)
            .unwrap_or_else(|| panic!("{}: no port in {line:?}", self.name))
    }

    /// Waits for the process to exit and returns its status.
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Read stderr to its end, so that `stderr_so_far` then holds all of it.
                while self.stderr.recv_timeout(TIMEOUT).is_ok() {}
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: did not exit; stderr: {:#?}",
                    self.name,
                    self.stderr_so_far()
                );
            }
            // Polling the exit of a child: there is no portable blocking wait with a deadline.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for a successful exit.
    pub fn expect_success(&mut self) {
        let status = self.wait();
        assert!(
            status.success(),
            "{}: {status}; stderr: {:#?}",
            self.name,
            self.stderr_so_far()
        );
    }

    /// Everything its stderr has said so far (after the process exited: everything).
    pub fn stderr_so_far(&self) -> Vec<String> {
        while let Ok(_line) = self.stderr.try_recv() {}
        self.stderr_log.lock().expect("not poisoned").clone()
    }

    /// The rest of stdout until the process closes it.
    pub fn rest_of_stdout(&mut self) -> Vec<String> {
        let rx = self.stdout.take().expect("stdout still open");
        let mut lines = Vec::new();
        loop {
            match rx.recv_timeout(TIMEOUT) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => return lines,
                Err(RecvTimeoutError::Timeout) => panic!("{}: stdout never closed", self.name),
            }
        }
    }

    /// Sends a signal with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `stream` line by line on a thread; lines arrive on the returned channel (and in `log`).
/// Bytes that are not UTF-8 are replaced, so a test sees them rather than losing the line.
fn lines_of(
    stream: impl Read + Send + 'static,
    log: Option<Arc<Mutex<Vec<String>>>>,
) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&buf)
                .trim_end_matches(['\n', '\r'])
                .to_owned();
            buf.clear();
            if let Some(log) = &log {
                log.lock().expect("not poisoned").push(line.clone());
            }
            // Nobody may listen any more; keep draining so the child never blocks on a pipe.
            let _ = tx.send(line);
        }
    });
    rx
}

/// A data directory of this test process's own, so that tests never touch the user's keys or
/// known servers, and every run starts with none.
pub fn data_home() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("udpchat-test-data-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A data directory of its own for one test, empty: for a test whose servers have keys of
/// their own. The tests of one process share [`data_home`], so its servers share one key and
/// its clients one `known_servers`; a pin made there for a server with another key would be
/// found by a later test whose server happens to get the same port, and refused as a changed
/// key.
pub fn fresh_data_home(tag: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = data_home().join(format!("{tag}-{n}"));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Runs udpchat to completion and returns (exit code, stdout, stderr).
pub fn run_udpchat(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_udpchat"))
        .args(args)
        .env("XDG_DATA_HOME", data_home())
        .stdin(Stdio::null())
        .output()
        .expect("run udpchat");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A UDP socket on 127.0.0.1 with an OS-chosen port, for playing a peer in a test.
pub fn local_socket() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    socket.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    socket
}

/// A port that was free a moment ago, for programs (like `nc -l`) that cannot pick their own
/// and report it. Another process could take it in between; on a test machine that is rare.
pub fn free_port() -> u16 {
    local_socket().local_addr().expect("local addr").port()
}

/// Waits until something is bound to UDP `port` on this machine (read from the kernel's socket
/// tables, as `udpchat check` does).
pub fn wait_until_bound(port: u16) {
    let deadline = Instant::now() + TIMEOUT;
    while udpchat::check::sockets_on_port(Path::new("/proc"), port)
        .map(|s| s.is_empty())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "nothing bound udp port {port}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Receives one datagram on `socket` (bounded by its read timeout).
pub fn recv_text(socket: &UdpSocket) -> (String, SocketAddr) {
    let mut buf = vec![0; 65_536];
    let (n, from) = socket.recv_from(&mut buf).expect("a datagram in time");
    (String::from_utf8_lossy(&buf[..n]).into_owned(), from)
}

/// Starts `udpchat serve` on a free port (every address, as by default, unless `extra` says
/// `--bind`), with `extra` arguments; returns it and its port once it listens.
pub fn serve_rooms(extra: &[&str]) -> (Proc, u16) {
    let mut args = vec!["serve", "--port", "0"];
    args.extend_from_slice(extra);
    let server = Proc::udpchat(&args);
    let port = server.listening_port();
    (server, port)
}

/// Starts `udpchat join --json` as `nick` to the server on `port`, with `extra` arguments.
pub fn join_json(port: u16, nick: &str, extra: &[&str]) -> Proc {
    join_json_in(&data_home(), port, nick, extra)
}

/// [`join_json`] with another data directory (see [`fresh_data_home`]).
pub fn join_json_in(home: &Path, port: u16, nick: &str, extra: &[&str]) -> Proc {
    let target = format!("127.0.0.1:{port}");
    let mut args = vec!["join", target.as_str(), "--nick", nick, "--json"];
    args.extend_from_slice(extra);
    Proc::udpchat_in(home, &args)
}

/// Starts `udpchat join` as `nick` to the server on `port` reading `input` from a pipe (as
/// `seq N | udpchat join`), output discarded, stderr piped; the pipe is written by a thread
/// (ended by a broken pipe if the child is killed first).
pub fn join_piped(port: u16, nick: &str, extra: &[&str], input: String) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_udpchat"))
        .env("XDG_DATA_HOME", data_home())
        .args(["join", &format!("127.0.0.1:{port}"), "--nick", nick])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start udpchat join");
    let mut pipe = child.stdin.take().expect("piped");
    std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    child
}

/// Reads a `--json` client's events until one satisfies `pred`, and returns it (bounded by
/// [`TIMEOUT`]).
pub fn next_json(client: &Proc, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "event never came");
        let event: serde_json::Value = serde_json::from_str(&client.stdout_line()).expect("JSON");
        if pred(&event) {
            return event;
        }
    }
}
