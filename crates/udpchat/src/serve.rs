//! `udpchat serve`: the room server, on a socket, until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::{Context, Result};
use udpchat_net::{OsRandom, Wire};
use udpchat_proto::server::{Server, ServerConfig, ServerEvent};

use crate::addr::canonical;
use crate::cli::ServeArgs;
use crate::keys;
use crate::trace::{Direction, Tracer};
use crate::{net, output};
use udpchat_proto::crypto::fingerprint;
use udpchat_proto::rng::RandomSource;
use udpchat_proto::sender_limit::SenderLimits;

/// Runs `udpchat serve`.
///
/// # Errors
/// The key file cannot be used (checked first, before the port is bound), the port cannot be
/// bound, or the socket fails.
pub fn run(args: &ServeArgs, tracer: Tracer) -> Result<ExitCode> {
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let key_file = match &args.key_file {
            Some(path) => path.clone(),
            None => keys::data_dir().context("no data directory: set HOME or give --key-file")?.join("server.key"),
        };
        let mut rng = OsRandom::new().context("no randomness")?;
        let (identity, created) = keys::load_or_create_server_key(&key_file, || {
            let mut private = [0u8; 32];
            for chunk in private.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next_u64().to_ne_bytes());
            }
            private
        })?;
        output::status(&format!(
            "server key {} {}; fingerprint {} (clients can pin it: udpchat join ... --server-key {})",
            if created { "created in" } else { "loaded from" },
            key_file.display(),
            fingerprint(&identity.public),
            fingerprint(&identity.public)
        ));
        // Only now, with a usable key, the port: a bad key file never holds it, even briefly.
        let socket = net::bind(SocketAddr::new(args.bind, args.port))?;
        // Said after the address, not before: it matters only under bursts, and says how to
        // raise the cap then.
        let buffer_note = udpchat_net::grow_buffers(&socket);
        let mut config = ServerConfig::with_peer_timeout(args.peer_timeout);
        config.guests = !args.no_guests;
        config.senders = SenderLimits::per_second(args.max_message_rate, args.max_byte_rate);
        config.identity = Some(identity);
        let server = Server::new(config, Box::new(OsRandom::new().context("no randomness")?));
        let mut interrupt =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        output::status(&format!(
            "listening on udp {}; framed clients and {} (Ctrl-C stops)",
            canonical(socket.local_addr()?),
            if args.no_guests {
                "no plain-text guests"
            } else {
                "plain-text guests"
            }
        ));
        if let Some(note) = buffer_note {
            output::status(&note);
        }
        let shutdown = async {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            output::status("shutting down: telling everyone");
        };
        let local = socket.local_addr()?;
        let watch = move |wire: Wire<'_>| match wire {
            Wire::Received(from, bytes) => tracer.datagram(Direction::Received, local, from, bytes),
            Wire::Sent(to, bytes) => tracer.datagram(Direction::Sent, local, to, bytes),
        };
        let options = udpchat_net::ServeOptions {
            sending_threads: usize::from(args.sending_threads),
        };
        udpchat_net::serve_with(socket, server, &options, shutdown, log_event, watch).await?;
        output::status("stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// One stderr line per event worth knowing.
fn log_event(event: ServerEvent) {
    let line = match event {
        ServerEvent::Connected { id, addr } => {
            format!("+ {} connected (connection {:016x})", canonical(addr), id.0)
        }
        ServerEvent::Disconnected { id, addr, reason } => {
            format!(
                "- {} disconnected ({reason:?}, connection {:016x})",
                canonical(addr),
                id.0
            )
        }
        ServerEvent::GuestArrived { addr, nick } => {
            format!("+ guest {nick} at {}", canonical(addr))
        }
        ServerEvent::GuestLeft { addr, nick, reason } => {
            format!("- guest {nick} at {} left ({reason})", canonical(addr))
        }
        ServerEvent::Moved { id, from, to } => format!(
            "~ connection {:016x} moved from {} to {}",
            id.0,
            canonical(from),
            canonical(to)
        ),
        ServerEvent::Refused { addr, why } => format!("! refused {}: {why}", canonical(addr)),
    };
    output::status(&line);
}
