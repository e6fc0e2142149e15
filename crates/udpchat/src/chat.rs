//! `udpchat chat`: the lab's two-party chat (steps 3 and 4), a thin async driver around
//! [`udpchat_proto::lab::Conversation`]: full-screen ([`crate::tui`]) on a terminal, a line
//! editor with `--plain`, plain lines in pipes.
//!
//! The driver owns the socket, the keyboard and the signals and does nothing else: every decision
//! (when a line may be sent, who the peer is, when the chat is over) is the conversation's. One
//! loop selects over the socket, typed lines and signals; after each input it drains the
//! datagrams to send, then the events to show, in that order.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use udpchat_proto::lab::{Config, Conversation, Mode, Role};

use crate::addr::{self, canonical};
use crate::cli::ChatArgs;
use crate::net::{self, MAX_DATAGRAM};
use crate::screen::{Input, Screen};
use crate::trace::{Direction, Tracer};

/// Runs `udpchat chat` on a single-threaded runtime.
///
/// # Errors
/// Bad target, port in use, socket failure.
pub fn run(args: &ChatArgs, tracer: Tracer) -> Result<ExitCode> {
    let runtime = crate::runtime()?;
    runtime.block_on(drive(args, tracer))
}

async fn drive(args: &ChatArgs, tracer: Tracer) -> Result<ExitCode> {
    let (std_socket, role) = match (args.listen, &args.target) {
        (Some(port), _) => (net::bind(SocketAddr::new(args.bind, port))?, Role::Listen),
        (None, Some(target)) => {
            let peer = addr::resolve(target)?;
            let socket = net::bind_for(peer)?;
            // Connected, so that ICMP "port unreachable" is reported (nobody listening yet).
            socket
                .connect(peer)
                .with_context(|| format!("cannot talk to {peer}"))?;
            (socket, Role::Connect(peer))
        }
        (None, None) => bail!("give the peer as HOST:PORT, or --listen"),
    };
    std_socket.set_nonblocking(true)?;
    let socket = UdpSocket::from_std(std_socket)?;
    let local = socket.local_addr()?;

    // Registered before anything is printed, so that a Ctrl-C right after the first status
    // line is already ours: it says bye instead of killing the process.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle Ctrl-C")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;

    let mode = if args.turns {
        Mode::Turns
    } else {
        Mode::FullDuplex
    };
    let mut conversation = Conversation::new(
        mode,
        role,
        Config {
            append_newline: args.newline,
        },
    );
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if interactive && !args.plain {
        let greeting = greeting(role, mode, canonical(local));
        return crate::tui::run_chat(tracer, socket, conversation, args.turns, &greeting).await;
    }
    let (mut screen, mut inputs) = Screen::start(interactive)?;
    screen.status(&greeting(role, mode, canonical(local)));

    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut input_open = true;
    while !conversation.is_ended() {
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => {
                    tracing::debug!(%from, len = n, "datagram received");
                    tracer.datagram(Direction::Received, local, from, &buf[..n]);
                    conversation.handle_datagram(canonical(from), &buf[..n]);
                }
                Err(e) if net::is_icmp_report(&e) => screen.status(&format!(
                    "nobody is listening at {} (ICMP port unreachable): start the other side \
                     first; that message was lost",
                    conversation.peer().map_or_else(|| "the peer".to_owned(), |p| p.to_string())
                )),
                Err(e) => return Err(e).context("receiving"),
            },
            input = inputs.recv(), if input_open => match input {
                Some(Input::Line(line)) => conversation.handle_line(&line),
                Some(Input::Interrupt) => conversation.handle_interrupt(),
                Some(Input::EndOfInput) | None => {
                    input_open = false;
                    conversation.handle_end_of_input();
                }
            },
            _ = sigint.recv() => conversation.handle_interrupt(),
            _ = sigterm.recv() => conversation.handle_interrupt(),
            _ = sighup.recv() => conversation.handle_interrupt(),
        }
        while let Some(transmit) = conversation.poll_transmit() {
            let to = net::same_family(transmit.destination, local);
            match socket.send_to(&transmit.payload, to).await {
                Ok(_) => {
                    tracing::debug!(%to, len = transmit.payload.len(), "datagram sent");
                    tracer.datagram(Direction::Sent, local, to, &transmit.payload);
                }
                // Not fatal: say so, and the chat goes on (UDP promises nothing anyway).
                Err(e) => screen.status(&format!("could not send to {to}: {e}")),
            }
        }
        let events: Vec<_> = std::iter::from_fn(|| conversation.poll_event()).collect();
        screen.show_all(&events)?;
    }
    screen.finish();
    Ok(ExitCode::SUCCESS)
}

/// The first status line: who we are, whom we wait for, how to stop.
fn greeting(role: Role, mode: Mode, local: SocketAddr) -> String {
    let how = match mode {
        Mode::FullDuplex => "type a line and press Enter to send it, any time",
        Mode::Turns => "taking turns",
    };
    match role {
        Role::Listen => format!(
            "listening on udp {local}; waiting for a peer (whoever sends first); {how}; \
             `bye` or Ctrl-D ends"
        ),
        Role::Connect(peer) => {
            let first = if mode == Mode::Turns {
                "; you speak first"
            } else {
                ""
            };
            format!("chatting with {peer} from udp {local}; {how}{first}; `bye` or Ctrl-D ends")
        }
    }
}
