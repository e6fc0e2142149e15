//! The baseline the benchmark compares udpchat with: a minimal relay that forwards each
//! datagram to every other address it has heard from, with batched system calls (`recvmmsg`
//! for up to [`BATCH`] datagrams in, `sendmmsg` for up to [`BATCH`] copies out) and no
//! allocation per datagram. No rooms, no reliability, no encryption: the floor of what
//! relaying costs on this kernel. Runs as its own process (`udpchat bench-relay`), so that its
//! CPU time is measured like the server's.

use std::collections::HashSet;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

use anyhow::{Context, Result};
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg};

/// Datagrams per system call.
pub const BATCH: usize = 64;

/// Largest datagram relayed whole.
const MAX_DATAGRAM: usize = 2048;

/// Runs the relay on `port` of 127.0.0.1 (0: any free port) until killed; prints
/// `listening on udp ADDRESS` on stderr once bound.
///
/// # Errors
/// The socket could not be bound or failed.
pub fn run(port: u16) -> Result<()> {
    let socket = UdpSocket::bind(("127.0.0.1", port)).context("binding the relay")?;
    if let Some(note) = udpchat_net::grow_buffers(&socket) {
        eprintln!("{note}");
    }
    eprintln!("listening on udp {}", socket.local_addr()?);
    let fd = socket.as_raw_fd();
    let mut peers: Vec<SockaddrIn> = Vec::new();
    let mut known: HashSet<SocketAddrV4> = HashSet::new();
    let mut buffers = vec![[0u8; MAX_DATAGRAM]; BATCH];
    let mut lengths = [0usize; BATCH];
    let mut sources: Vec<SockaddrIn> = Vec::with_capacity(BATCH);
    let mut receive_headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut send_headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    // What one sendmmsg sends: (datagram index, destination).
    let mut out: Vec<(usize, SockaddrIn)> = Vec::with_capacity(BATCH);
    loop {
        sources.clear();
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            let received = match recvmmsg(
                fd,
                &mut receive_headers,
                slices.iter_mut(),
                MsgFlags::MSG_WAITFORONE,
                None,
            ) {
                Ok(received) => received,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("recvmmsg"),
            };
            for (i, message) in received.enumerate() {
                lengths[i] = message.bytes;
                if let Some(address) = message.address {
                    sources.push(address);
                }
            }
        }
        for (i, source) in sources.iter().enumerate() {
            let v4 = SocketAddrV4::new(source.ip(), source.port());
            if known.insert(v4) {
                peers.push(*source);
            }
            for peer in &peers {
                if peer.ip() == source.ip() && peer.port() == source.port() {
                    continue;
                }
                out.push((i, *peer));
                if out.len() == BATCH {
                    send_batch(fd, &mut send_headers, &buffers, &lengths, &mut out)?;
                }
            }
        }
        send_batch(fd, &mut send_headers, &buffers, &lengths, &mut out)?;
    }
}

/// Sends the queued copies in one `sendmmsg` (a datagram the kernel refuses is dropped, as a
/// network would).
fn send_batch(
    fd: i32,
    headers: &mut MultiHeaders<SockaddrIn>,
    buffers: &[[u8; MAX_DATAGRAM]],
    lengths: &[usize],
    out: &mut Vec<(usize, SockaddrIn)>,
) -> Result<()> {
    let mut sent = 0;
    while sent < out.len() {
        let slices: Vec<[IoSlice<'_>; 1]> = out[sent..]
            .iter()
            .map(|(i, _)| [IoSlice::new(&buffers[*i][..lengths[*i]])])
            .collect();
        let addresses: Vec<Option<SockaddrIn>> =
            out[sent..].iter().map(|(_, a)| Some(*a)).collect();
        match sendmmsg(
            fd,
            headers,
            slices.iter(),
            &addresses,
            [],
            MsgFlags::empty(),
        ) {
            Ok(results) => {
                let n = results.count();
                // sendmmsg stops at the first refusal: skip that one.
                sent += n.max(1);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => sent += 1,
        }
    }
    out.clear();
    Ok(())
}

/// The relay's address as a std address (for tests).
pub fn to_std(address: &SockaddrIn) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(address.ip(), address.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_convert() {
        let std: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let SocketAddr::V4(v4) = std else { panic!() };
        let nix = SockaddrIn::from(v4);
        assert_eq!(to_std(&nix), std);
        assert_eq!(
            nix::sys::socket::SockaddrLike::family(&nix),
            Some(nix::sys::socket::AddressFamily::Inet)
        );
    }
}
