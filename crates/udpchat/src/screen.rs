//! The chat's two faces: plain lines for pipes and scripts, a line editor on a terminal.
//!
//! - **Plain** (stdin or stdout is not a terminal): each received message is printed on stdout as
//!   its text alone, one per line; everything else (status, who the peer is, why it ended) goes
//!   to stderr. Input lines are read from stdin by a thread.
//! - **Editor** (both are terminals): rustyline edits the input line, and incoming messages are
//!   printed through its external printer, which redraws the line being typed below them, so a
//!   message never breaks what you are typing. Lines are marked with time and sender.
//!
//! In both, text from the network is neutralised before it is printed.

use std::collections::HashSet;
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;

use anyhow::{Context, Result};
use rustyline::ExternalPrinter;
use rustyline::error::ReadlineError;
use tokio::sync::mpsc;
use udpchat_proto::lab::{EndReason, Event, Turn};
use udpchat_proto::text::{self, neutralize};

use crate::{clock, output};

/// Lines typed ahead of the peer are held this many at a time; beyond that, reading stdin
/// pauses until the chat catches up (backpressure, not unbounded memory, for `cat bigfile |`).
const INPUT_QUEUE: usize = 1024;

/// How many different strangers' datagrams are reported one by one; after that they are
/// ignored silently, so that a flood of datagrams from many addresses cannot bury the chat.
const STRANGERS_REPORTED: usize = 8;

/// What the keyboard (or stdin) produced.
#[derive(Debug)]
pub enum Input {
    /// A line, without its line ending.
    Line(String),
    /// End of input (Ctrl-D, or the end of a pipe).
    EndOfInput,
    /// Ctrl-C typed while the line editor had the terminal.
    Interrupt,
}

/// Where the chat shows things.
pub struct Screen {
    /// Plain lines or the line editor.
    face: Face,
    /// Strangers already reported (each is reported once, and only the first few).
    strangers: HashSet<SocketAddr>,
}

/// The two ways of showing the chat.
enum Face {
    /// Lines on stdout, status on stderr.
    Plain,
    /// The line editor's external printer, and the terminal settings to restore on exit.
    Editor {
        /// Prints above the line being edited.
        printer: Box<dyn ExternalPrinter + Send>,
        /// The terminal as it was before the editor touched it.
        saved: Option<nix::sys::termios::Termios>,
        /// The last lines, printed directly once the terminal is restored.
        farewell: Vec<String>,
    },
}

/// One line of output.
enum Line {
    /// A message from the peer: stdout, alone on its line in plain mode.
    Message(String),
    /// Anything else: stderr in plain mode, dimmed in the editor.
    Status(String),
}

impl Line {
    /// The line as the editor shows it, newline included: the external printer writes it
    /// verbatim when the editor is between two lines, and the prompt drawn next would otherwise
    /// overwrite it.
    fn decorated(self) -> String {
        match self {
            Line::Message(text) => format!("{text}\n"),
            Line::Status(text) => format!("\x1b[2m-- {text}\x1b[0m\n"),
        }
    }
}

impl Screen {
    /// Starts reading input on a thread of its own and returns the screen and the input queue.
    ///
    /// # Errors
    /// The line editor could not be set up on the terminal.
    pub fn start(interactive: bool) -> Result<(Self, mpsc::Receiver<Input>)> {
        if !interactive {
            return Ok((Self::with(Face::Plain), spawn_stdin_lines()));
        }
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let saved = nix::sys::termios::tcgetattr(io::stdin()).ok();
        let (printer_tx, printer_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || read_edited_lines(&tx, &printer_tx));
        let printer = printer_rx
            .recv()
            .context("the line editor did not start")?
            .context("cannot start the line editor")?;
        let face = Face::Editor {
            printer,
            saved,
            farewell: Vec::new(),
        };
        Ok((Self::with(face), rx))
    }

    fn with(face: Face) -> Self {
        Self {
            face,
            strangers: HashSet::new(),
        }
    }

    /// Shows the events of one turn of the driver's loop, in order.
    ///
    /// In the editor, lines normally go through the external printer, which the editor thread
    /// prints asynchronously. When the batch ends the conversation the process is about to
    /// exit, and lines still in flight to that thread could be lost: so that last batch is
    /// printed directly, after the terminal has been restored.
    ///
    /// # Errors
    /// Writing a message to stdout failed (e.g. a broken pipe).
    pub fn show_all(&mut self, events: &[Event]) -> Result<()> {
        let ends = events.iter().any(|e| matches!(e, Event::Ended { .. }));
        for event in events {
            for line in self.render(event) {
                match (&mut self.face, line) {
                    (Face::Plain, Line::Message(text)) => {
                        output::print_line(&text).context("writing a message")?;
                    }
                    (Face::Plain, Line::Status(text)) => output::status(&text),
                    (Face::Editor { farewell, .. }, line) if ends => {
                        farewell.push(line.decorated())
                    }
                    (Face::Editor { printer, .. }, line) => {
                        // Fails only once the editor thread has gone (we are exiting).
                        let _ = printer.print(line.decorated());
                    }
                }
            }
        }
        Ok(())
    }

    /// Shows a status line (stderr in plain mode, dimmed above the input line in the editor).
    pub fn status(&mut self, text: &str) {
        match &mut self.face {
            Face::Plain => output::status(text),
            Face::Editor { printer, .. } => {
                let _ = printer.print(Line::Status(text.to_owned()).decorated());
            }
        }
    }

    /// What to print for `event`; network text is neutralised here.
    fn render(&mut self, event: &Event) -> Vec<Line> {
        let editor = matches!(self.face, Face::Editor { .. });
        match event {
            Event::MessageReceived { from, text } if editor => vec![Line::Message(format!(
                "\x1b[2m{}\x1b[0m \x1b[1;36m<{from}>\x1b[0m {}",
                clock::minutes(clock::now()),
                neutralize(text)
            ))],
            Event::MessageReceived { text, .. } => {
                vec![Line::Message(neutralize(text).into_owned())]
            }
            Event::PeerLearned(peer) => vec![Line::Status(format!("talking with {peer}"))],
            Event::StrangerIgnored { from, len } => self.report_stranger(*from, *len),
            Event::TurnChanged(_) if !editor => vec![],
            Event::TurnChanged(Turn::Ours) => vec![Line::Status("your turn".into())],
            Event::TurnChanged(Turn::Theirs) => {
                vec![Line::Status("waiting for the peer's reply".into())]
            }
            Event::PeerUnreachable { peer, undelivered } => {
                vec![Line::Status(unreachable_notice(*peer, *undelivered))]
            }
            Event::Ended { reason, .. } if reason.is_failure() => {
                // The driver ends with the error line, which says it all.
                vec![]
            }
            Event::Ended {
                reason,
                unsent,
                unconfirmed,
                answered,
            } => farewell(*reason, *unsent, *unconfirmed, *answered)
                .into_iter()
                .map(Line::Status)
                .collect(),
        }
    }

    /// The first datagram of each of the first few strangers is reported; the rest is silence.
    fn report_stranger(&mut self, from: SocketAddr, len: usize) -> Vec<Line> {
        if self.strangers.len() >= STRANGERS_REPORTED || !self.strangers.insert(from) {
            return vec![];
        }
        let mut text = format!(
            "ignored {len} bytes from {from}: not the peer of this chat (further datagrams from \
             it are ignored silently)"
        );
        if self.strangers.len() == STRANGERS_REPORTED {
            text.push_str("; no more strangers will be reported");
        }
        vec![Line::Status(text)]
    }

    /// Gives the terminal back as it was. The editor thread may still sit in `readline` with the
    /// terminal in raw mode; the process is about to exit, so restore the saved settings here.
    pub fn finish(self) {
        if let Face::Editor {
            printer,
            saved,
            farewell,
        } = self.face
        {
            // Let the printer's last lines out before the editor thread dies with the process.
            drop(printer);
            if let Some(saved) = saved {
                let _ = nix::sys::termios::tcsetattr(
                    io::stdin(),
                    nix::sys::termios::SetArg::TCSADRAIN,
                    &saved,
                );
            }
            let mut out = io::stdout().lock();
            let _ = out.write_all(b"\r\n");
            for line in farewell {
                let _ = out.write_all(line.as_bytes());
            }
            let _ = out.flush();
        }
    }
}

/// What to tell the user when the kernel reports that nobody listens at `peer` mid-chat.
pub fn unreachable_notice(peer: SocketAddr, undelivered: usize) -> String {
    format!(
        "nobody is listening at {peer} (ICMP port unreachable): start the other side first; {}",
        not_delivered(undelivered)
    )
}

/// "N messages were not delivered", in good grammar.
pub fn not_delivered(messages: usize) -> String {
    if messages == 1 {
        "1 message was not delivered".to_owned()
    } else {
        format!("{messages} messages were not delivered")
    }
}

/// The last lines of a chat that ended well (a failure is one error line instead).
pub fn farewell(
    reason: EndReason,
    unsent: usize,
    unconfirmed: usize,
    answered: bool,
) -> Vec<String> {
    let mut lines = vec![
        match reason {
            EndReason::ByeSent => "you said bye; chat over",
            EndReason::ByeReceived => "the peer said bye; chat over",
            EndReason::Interrupted => "interrupted before any peer came; nothing was sent",
            EndReason::NobodyListening | EndReason::NoReply => "chat over",
        }
        .to_owned(),
    ];
    if !answered && unconfirmed > 0 {
        lines.push(match unconfirmed {
            1 => "the peer never answered: UDP cannot tell whether your message arrived".to_owned(),
            n => format!(
                "the peer never answered: UDP cannot tell whether your {n} messages arrived"
            ),
        });
    }
    if unsent > 0 {
        lines.push(unsent_lines(unsent));
    }
    lines
}

/// "N typed lines were not sent", in good grammar.
pub fn unsent_lines(unsent: usize) -> String {
    if unsent == 1 {
        "1 typed line was not sent".to_owned()
    } else {
        format!("{unsent} typed lines were not sent")
    }
}

/// Reads stdin line by line on a thread of its own; lines arrive on the returned queue, then
/// [`Input::EndOfInput`]. The queue is bounded: reading pauses while it is full.
pub fn spawn_stdin_lines() -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    std::thread::spawn(move || read_plain_lines(&tx));
    rx
}

/// Reads stdin line by line (any bytes; invalid UTF-8 is replaced) until it ends.
fn read_plain_lines(tx: &mpsc::Sender<Input>) {
    let mut stdin = io::stdin().lock();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match stdin.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                let line = text::strip_line_ending(&line).to_owned();
                if tx.blocking_send(Input::Line(line)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = tx.blocking_send(Input::EndOfInput);
}

type PrinterResult = Result<Box<dyn ExternalPrinter + Send>, ReadlineError>;

/// Runs the line editor: sends its printer back first, then each line typed.
fn read_edited_lines(
    tx: &mpsc::Sender<Input>,
    printer_tx: &std::sync::mpsc::Sender<PrinterResult>,
) {
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(editor) => editor,
        Err(e) => {
            let _ = printer_tx.send(Err(e));
            return;
        }
    };
    match editor.create_external_printer() {
        Ok(printer) => {
            let _ = printer_tx.send(Ok(Box::new(printer)));
        }
        Err(e) => {
            let _ = printer_tx.send(Err(e));
            return;
        }
    }
    let last = loop {
        match editor.readline("you> ") {
            Ok(line) => {
                let _ = editor.add_history_entry(line.as_str());
                if tx.blocking_send(Input::Line(line)).is_err() {
                    return;
                }
            }
            Err(ReadlineError::Interrupted) => break Input::Interrupt,
            Err(_) => break Input::EndOfInput,
        }
    };
    let _ = tx.blocking_send(last);
}
