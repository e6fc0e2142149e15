//! `udpchat chat`: the lab's two-party chat (steps 3 and 4), a thin async driver around
//! [`udpchat_proto::lab::Conversation`]: full-screen ([`crate::tui`]) on a terminal, a line
//! editor with `--plain`, plain lines in pipes.
//!
//! The driver owns the socket, the keyboard and the signals and does nothing else: every decision
//! (when a line may be sent, who the peer is, when the chat is over) is the conversation's. One
//! loop selects over the socket, typed lines, the conversation's timer and signals; after each
//! input it drains the datagrams to send, then the events to show, in that order.
//!
//! A chat that ends badly (nobody listening, no reply in turn) ends with one error line and
//! exit 1; the conversation decides which, the driver only words it (`failure`).

use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use udpchat_proto::lab::{Config, Conversation, EndReason, Event, Mode, Role, Transmit};

use crate::addr::{self, canonical};
use crate::cli::ChatArgs;
use crate::net::{self, MAX_DATAGRAM};
use crate::screen::{Input, Screen, not_delivered, unsent_lines};
use crate::send::fmt_secs;
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
            reply_wait: args.linger,
            // Only a connected socket hears the kernel's "port unreachable" reports.
            refusal_wait: match role {
                Role::Connect(_) => Config::default().refusal_wait,
                Role::Listen => None,
            },
        },
    );
    let interactive = io::stdin().is_terminal() && io::stdout().is_terminal();
    if interactive && !args.plain {
        let greeting = greeting(role, mode, canonical(local));
        return crate::tui::run_chat(tracer, socket, conversation, args, &greeting).await;
    }
    let (mut screen, mut inputs) = Screen::start(interactive)?;
    screen.status(&greeting(role, mode, canonical(local)));
    // Someone typing can start the other side when told nobody listens; a pipe cannot, and
    // gets the whole story in one line at the end.
    let tell_unreachable = io::stdin().is_terminal();

    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut input_open = true;
    let mut failed = None;
    while !conversation.is_ended() {
        let timer = conversation.poll_timeout();
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => {
                    tracing::debug!(%from, len = n, "datagram received");
                    tracer.datagram(Direction::Received, local, from, &buf[..n]);
                    conversation.handle_datagram(Instant::now(), canonical(from), &buf[..n]);
                }
                Err(e) if net::is_icmp_report(&e) => conversation.handle_unreachable(Instant::now()),
                Err(e) => return Err(e).context("receiving"),
            },
            input = inputs.recv(), if input_open => match input {
                Some(Input::Line(line)) => conversation.handle_line(Instant::now(), &line),
                Some(Input::Interrupt) => conversation.handle_interrupt(Instant::now()),
                Some(Input::EndOfInput) | None => {
                    input_open = false;
                    conversation.handle_end_of_input(Instant::now());
                }
            },
            () = sleep_until(timer) => {
                conversation.handle_timeout(Instant::now());
            }
            _ = sigint.recv() => conversation.handle_interrupt(Instant::now()),
            _ = sigterm.recv() => conversation.handle_interrupt(Instant::now()),
            _ = sighup.recv() => conversation.handle_interrupt(Instant::now()),
        }
        while let Some(transmit) = conversation.poll_transmit() {
            // Not fatal: say so, and the chat goes on (UDP promises nothing anyway).
            if let Err(text) = send(&socket, &mut conversation, &transmit, local, tracer).await {
                screen.status(&text);
            }
        }
        let mut events: Vec<_> = std::iter::from_fn(|| conversation.poll_event()).collect();
        events.retain(|e| tell_unreachable || !matches!(e, Event::PeerUnreachable { .. }));
        if let Some(Event::Ended {
            reason,
            unsent,
            unconfirmed,
            ..
        }) = events.last()
        {
            failed = failure(
                *reason,
                *unsent,
                *unconfirmed,
                conversation.peer(),
                args.linger,
            );
        }
        screen.show_all(&events)?;
    }
    screen.finish();
    if let Some(text) = failed {
        bail!(text);
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends one datagram for the conversation; on failure, the line to show.
///
/// The kernel keeps a "port unreachable" report for an earlier datagram on a connected socket
/// and fails the next call with it, this send included, and then this datagram is *not* sent.
/// So such a failure is handed to the conversation as the report it is, and the datagram is
/// sent once more.
pub(crate) async fn send(
    socket: &UdpSocket,
    conversation: &mut Conversation,
    transmit: &Transmit,
    local: SocketAddr,
    tracer: Tracer,
) -> Result<(), String> {
    let to = net::same_family(transmit.destination, local);
    let mut result = socket.send_to(&transmit.payload, to).await;
    if let Err(e) = &result
        && net::is_icmp_report(e)
    {
        conversation.handle_unreachable(Instant::now());
        result = socket.send_to(&transmit.payload, to).await;
    }
    match result {
        Ok(_) => {
            tracing::debug!(%to, len = transmit.payload.len(), "datagram sent");
            tracer.datagram(Direction::Sent, local, to, &transmit.payload);
            Ok(())
        }
        Err(e) if net::is_icmp_report(&e) => {
            conversation.handle_unreachable(Instant::now());
            Ok(())
        }
        Err(e) => Err(format!("could not send to {to}: {e}")),
    }
}

/// Sleeps until the conversation's deadline (a branch disabled when there is none).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The error line for a chat that ended badly, or `None` when it ended well.
pub(crate) fn failure(
    reason: EndReason,
    unsent: usize,
    unconfirmed: usize,
    peer: Option<SocketAddr>,
    reply_wait: Duration,
) -> Option<String> {
    let peer = peer.map_or_else(|| "the peer".to_owned(), |p| p.to_string());
    let mut text = match reason {
        EndReason::NobodyListening => {
            format!(
                "nobody is listening at {peer}: {}",
                not_delivered(unconfirmed)
            )
        }
        EndReason::NoReply => format!(
            "no reply from {peer} within {} after the end of input; said bye out of turn",
            fmt_secs(reply_wait)
        ),
        EndReason::ByeSent | EndReason::ByeReceived | EndReason::Interrupted => return None,
    };
    if unsent > 0 {
        text.push_str("; ");
        text.push_str(&unsent_lines(unsent));
    }
    Some(text)
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
