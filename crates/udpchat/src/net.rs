//! Opening UDP sockets, with errors a user can act on.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// The largest UDP payload over IPv4: 65535 minus the 8-byte UDP header and the 20-byte IPv4
/// header. (IPv6 allows 65527 without jumbograms; one buffer of 65535 bytes fits both.) The lab's
/// 1024-byte buffer silently truncates anything longer; ours never does.
pub const MAX_DATAGRAM: usize = 65_535;

/// Why a socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another socket holds the port.
    #[error(
        "udp port {port} is already in use on {ip} (see which process with `udpchat check {port}`)"
    )]
    PortInUse {
        /// The address we tried to bind.
        ip: IpAddr,
        /// The port.
        port: u16,
    },
    /// Ports below 1024 need privileges.
    #[error("permission denied binding udp port {port} (ports below 1024 need root)")]
    PermissionDenied {
        /// The port.
        port: u16,
    },
    /// The address is not one of this machine's.
    #[error("cannot bind {ip}: it is not an address of this machine")]
    AddrNotAvailable {
        /// The address we tried to bind.
        ip: IpAddr,
    },
    /// Anything else the operating system refused.
    #[error("cannot open a udp socket on {addr}: {source}")]
    Other {
        /// The address we tried to bind.
        addr: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
}

/// Binds a UDP socket to `addr`.
///
/// Binding `::` accepts IPv4 too (dual stack), as users of `--bind ::` expect, whatever the
/// system default (`net.ipv6.bindv6only`) is.
///
/// # Errors
/// A [`BindError`] that says what went wrong in words.
pub fn bind(addr: SocketAddr) -> Result<UdpSocket, BindError> {
    let other = |source| BindError::Other { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(other)?;
    if addr.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        socket.set_only_v6(false).map_err(other)?;
    }
    socket.bind(&addr.into()).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => BindError::PortInUse {
            ip: addr.ip(),
            port: addr.port(),
        },
        io::ErrorKind::PermissionDenied => BindError::PermissionDenied { port: addr.port() },
        io::ErrorKind::AddrNotAvailable => BindError::AddrNotAvailable { ip: addr.ip() },
        _ => other(e),
    })?;
    Ok(socket.into())
}

/// Binds an ephemeral port of the same family as `peer`, for talking to it.
///
/// # Errors
/// See [`bind`].
pub fn bind_for(peer: SocketAddr) -> Result<UdpSocket, BindError> {
    let any: IpAddr = match peer {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    bind(SocketAddr::new(any, 0))
}

/// The largest payload one UDP datagram can carry to `peer`: 65507 bytes over IPv4 (65535
/// minus 20 bytes of IPv4 header and 8 of UDP header), 65527 over IPv6 (whose 40-byte header is
/// not counted in its 16-bit payload length).
pub fn max_payload(peer: SocketAddr) -> usize {
    match peer {
        SocketAddr::V4(_) => 65_507,
        SocketAddr::V6(_) => 65_527,
    }
}

/// Refuses a message that cannot travel in one datagram, before trying to send it.
///
/// # Errors
/// [`TooLong`] when `len` exceeds [`max_payload`].
pub fn check_fits_one_datagram(len: usize, peer: SocketAddr) -> Result<(), TooLong> {
    let max = max_payload(peer);
    if len > max {
        Err(TooLong { len, max })
    } else {
        Ok(())
    }
}

/// A message longer than one UDP datagram can carry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("message too long for one UDP datagram ({len} bytes; the maximum is {max})")]
pub struct TooLong {
    /// The message's length in bytes.
    pub len: usize,
    /// The most one datagram can carry to that peer.
    pub max: usize,
}

/// `dest` in the address family of our socket bound at `local`: an IPv4 peer of a dual-stack
/// `::` socket is addressed as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
pub fn same_family(dest: SocketAddr, local: SocketAddr) -> SocketAddr {
    match (dest, local) {
        (SocketAddr::V4(v4), SocketAddr::V6(_)) => {
            SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        _ => dest,
    }
}

/// Whether a receive error only reports an earlier ICMP error (port unreachable) for a datagram
/// we sent, rather than a problem with our socket.
pub fn is_icmp_report(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_in_use_is_reported_in_words() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap();
        let err = bind(addr).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "udp port {0} is already in use on 127.0.0.1 (see which process with `udpchat check {0}`)",
                addr.port()
            )
        );
    }

    #[test]
    fn foreign_address_is_reported_in_words() {
        // TEST-NET-1 (RFC 5737) is never configured on a test machine.
        let err = bind("192.0.2.1:0".parse().unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot bind 192.0.2.1: it is not an address of this machine"
        );
    }

    #[test]
    fn unspecified_ipv6_is_dual_stack() {
        let Ok(v6) = bind("[::]:0".parse().unwrap()) else {
            eprintln!("no IPv6 on this machine; skipped");
            return;
        };
        let port = v6.local_addr().unwrap().port();
        let client = bind_for("127.0.0.1:1".parse().unwrap()).unwrap();
        client.send_to(b"v4", ("127.0.0.1", port)).unwrap();
        v6.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0; 8];
        let (n, from) = v6.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"v4");
        assert!(from.ip().to_canonical().is_ipv4(), "{from}");
    }
}
