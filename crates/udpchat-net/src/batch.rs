//! Batched datagram I/O: `recvmmsg` takes up to [`BATCH`] datagrams in one system call and
//! `sendmmsg` sends up to [`SEND_BATCH`], to as many destinations. Crossing into the kernel costs
//! microseconds per call, more than the server spends on a datagram, so fewer calls is the
//! way to a faster relay. Safe wrappers only (nix); the buffers are allocated once. Neither
//! call blocks (`MSG_DONTWAIT`): the caller waits for readiness its own way.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    MsgFlags, MultiHeaders, SockaddrIn, SockaddrIn6, SockaddrLike, SockaddrStorage, recvmmsg,
    sendmmsg,
};

/// Datagrams per receiving system call (each has a 64 KiB buffer).
pub const BATCH: usize = 32;

/// Datagrams per sending system call: a message to a room goes to every member, so output
/// comes in bigger batches than input (64, as the benchmark's minimal relay: 32 took a
/// `sendmmsg` per 28 deliveries at 200k deliveries/s, 64 about one per 50).
pub const SEND_BATCH: usize = 64;

/// The largest datagram received whole (the largest UDP payload).
const RECV_BUFFER: usize = 65_536;

/// Receive buffers and headers for [`recv_batch`](BatchIo::recv_batch), and send headers.
pub struct BatchIo {
    buffers: Vec<Vec<u8>>,
    received: Vec<(usize, Option<SocketAddr>)>,
    recv_headers: MultiHeaders<SockaddrStorage>,
    v4_headers: MultiHeaders<SockaddrIn>,
    v6_headers: MultiHeaders<SockaddrIn6>,
    /// The destinations of one `sendmmsg`, kept to reuse the allocation.
    v4_addresses: Vec<Option<SockaddrIn>>,
    v6_addresses: Vec<Option<SockaddrIn6>>,
}

impl std::fmt::Debug for BatchIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BatchIo {{ batch: {BATCH}, send_batch: {SEND_BATCH} }}")
    }
}

impl Default for BatchIo {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchIo {
    /// Buffers for [`BATCH`] datagrams of up to 64 KiB each (2 MiB, allocated once).
    pub fn new() -> Self {
        Self {
            buffers: vec![vec![0u8; RECV_BUFFER]; BATCH],
            received: Vec::with_capacity(BATCH),
            recv_headers: MultiHeaders::preallocate(BATCH, None),
            v4_headers: MultiHeaders::preallocate(SEND_BATCH, None),
            v6_headers: MultiHeaders::preallocate(SEND_BATCH, None),
            v4_addresses: Vec::with_capacity(SEND_BATCH),
            v6_addresses: Vec::with_capacity(SEND_BATCH),
        }
    }

    /// For sending only: no receive buffers (a sending thread's; [`recv_batch`](Self::recv_batch)
    /// receives nothing).
    pub fn for_sending() -> Self {
        Self {
            buffers: Vec::new(),
            received: Vec::new(),
            recv_headers: MultiHeaders::preallocate(0, None),
            v4_headers: MultiHeaders::preallocate(SEND_BATCH, None),
            v6_headers: MultiHeaders::preallocate(SEND_BATCH, None),
            v4_addresses: Vec::with_capacity(SEND_BATCH),
            v6_addresses: Vec::with_capacity(SEND_BATCH),
        }
    }

    /// Receives what is waiting on `socket`, up to [`BATCH`] datagrams, without blocking;
    /// calls `each` with every datagram and its source. Returns how many came (0: none was
    /// waiting).
    ///
    /// One `BatchIo` receives on sockets of one family only: nix hands the kernel each
    /// address slot with the length the kernel last wrote into it, so after an IPv4 source
    /// (16 bytes) an IPv6 one (28) would come back cut short.
    ///
    /// # Errors
    /// A socket error other than "nothing waiting" (an ICMP error for an earlier datagram
    /// surfaces here, once).
    pub fn recv_batch(
        &mut self,
        socket: &impl AsFd,
        mut each: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        let fd = socket.as_fd().as_raw_fd();
        let Self {
            buffers,
            received,
            recv_headers,
            ..
        } = self;
        received.clear();
        {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            let messages = match recvmmsg(
                fd,
                recv_headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(messages) => messages,
                Err(Errno::EAGAIN | Errno::EINTR) => return Ok(0),
                Err(e) => return Err(e.into()),
            };
            for message in messages {
                received.push((message.bytes, message.address.and_then(to_std)));
            }
        }
        for (i, (len, from)) in received.iter().enumerate() {
            if let Some(from) = from {
                each(*from, &buffers[i][..*len]);
            }
        }
        Ok(received.len())
    }

    /// Sends `datagrams` (destination, bytes) on `socket` in as few calls as it can, without
    /// blocking. Returns how many went out; the rest did not fit in the socket's buffer (retry
    /// them when it is writable). A datagram the kernel refuses for any other reason counts as
    /// sent (dropped, as a network would drop it).
    pub fn send_batch<'a>(
        &mut self,
        socket: &impl AsFd,
        datagrams: impl ExactSizeIterator<Item = (SocketAddr, &'a [u8])> + Clone,
    ) -> usize {
        let fd = socket.as_fd().as_raw_fd();
        let total = datagrams.len();
        let mut done = 0;
        while done < total {
            let rest = datagrams.clone().skip(done);
            let Some((first, _)) = rest.clone().next() else {
                break;
            };
            // One call per run of destinations of one family, each address as small as
            // its family allows (a `sockaddr_storage` is 128 bytes to fill and copy).
            let chunk = rest
                .take(SEND_BATCH)
                .take_while(|(a, _)| a.is_ipv4() == first.is_ipv4());
            let result = if first.is_ipv4() {
                let v4 = |a| match a {
                    SocketAddr::V4(v4) => Some(SockaddrIn::from(v4)),
                    SocketAddr::V6(_) => None,
                };
                send_chunk(fd, &mut self.v4_headers, &mut self.v4_addresses, chunk, v4)
            } else {
                let v6 = |a| match a {
                    SocketAddr::V6(v6) => Some(SockaddrIn6::from(v6)),
                    SocketAddr::V4(_) => None,
                };
                send_chunk(fd, &mut self.v6_headers, &mut self.v6_addresses, chunk, v6)
            };
            match result {
                Ok(0) | Err(Errno::EAGAIN) => return done,
                Ok(n) => done += n,
                Err(Errno::EINTR) => {}
                // The first datagram was refused (unreachable, too big): skip it.
                Err(e) => {
                    tracing::debug!(to = %first, error = %e, "send failed");
                    done += 1;
                }
            }
        }
        done
    }
}

/// One `sendmmsg` of `chunk`, its destinations converted by `address` into `addresses` (kept
/// to reuse the allocation); how many went out.
fn send_chunk<'a, S: SockaddrLike + Copy>(
    fd: RawFd,
    headers: &mut MultiHeaders<S>,
    addresses: &mut Vec<Option<S>>,
    chunk: impl Iterator<Item = (SocketAddr, &'a [u8])> + Clone,
    address: impl Fn(SocketAddr) -> Option<S>,
) -> Result<usize, Errno> {
    addresses.clear();
    addresses.extend(chunk.clone().map(|(a, _)| address(a)));
    let slices: Vec<[IoSlice<'_>; 1]> = chunk.map(|(_, d)| [IoSlice::new(d)]).collect();
    sendmmsg(
        fd,
        headers,
        slices.iter(),
        addresses.as_slice(),
        [],
        MsgFlags::MSG_DONTWAIT,
    )
    .map(Iterator::count)
}

fn to_std(address: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    let v6 = address.as_sockaddr_in6()?;
    Some(SocketAddr::from(std::net::SocketAddrV6::new(
        v6.ip(),
        v6.port(),
        v6.flowinfo(),
        v6.scope_id(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::poll::{PollFd, PollFlags, poll};
    use std::net::UdpSocket;

    /// Waits (at most 10 s) until `socket` is ready for `flags`.
    fn wait(socket: &UdpSocket, flags: PollFlags) {
        let mut fds = [PollFd::new(socket.as_fd(), flags)];
        let ready = poll(&mut fds, 10_000u16).unwrap();
        assert_eq!(ready, 1, "socket not ready within 10 s");
    }

    #[test]
    fn a_batch_goes_out_and_comes_back_whole_with_its_sources() {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let a = UdpSocket::bind(local).unwrap();
            let b = UdpSocket::bind(local).unwrap();
            let to = b.local_addr().unwrap();
            let big = vec![7u8; 60_000];
            let small: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; usize::from(i) + 1]).collect();
            let mut datagrams: Vec<(SocketAddr, &[u8])> =
                small.iter().map(|d| (to, d.as_slice())).collect();
            datagrams.push((to, &big));
            let mut io = BatchIo::new();
            let mut sent = 0;
            while sent < datagrams.len() {
                wait(&a, PollFlags::POLLOUT);
                sent += io.send_batch(&a, datagrams[sent..].iter().copied());
            }
            let mut io = BatchIo::new();
            let mut got: Vec<Vec<u8>> = Vec::new();
            let from_a = a.local_addr().unwrap();
            while got.len() < 41 {
                wait(&b, PollFlags::POLLIN);
                io.recv_batch(&b, |from, d| {
                    assert_eq!(from, from_a);
                    got.push(d.to_vec());
                })
                .unwrap();
            }
            assert_eq!(got[..40], small[..]);
            assert_eq!(got[40], big);
            // Nothing more is waiting: a receive says so at once instead of blocking.
            assert_eq!(
                io.recv_batch(&b, |_, _| panic!("nothing was sent"))
                    .unwrap(),
                0
            );
        }
    }

    /// A dual-stack socket (IPv6, `IPV6_V6ONLY` off) bound to `[::]` on any free port.
    fn dual_stack() -> UdpSocket {
        use nix::sys::socket::{AddressFamily, SockFlag, SockType, bind, socket, sockopt};
        let fd = socket(
            AddressFamily::Inet6,
            SockType::Datagram,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        nix::sys::socket::setsockopt(&fd, sockopt::Ipv6V6Only, &false).unwrap();
        let any = std::net::SocketAddrV6::new(std::net::Ipv6Addr::UNSPECIFIED, 0, 0, 0);
        bind(fd.as_raw_fd(), &SockaddrIn6::from(any)).unwrap();
        UdpSocket::from(fd)
    }

    #[test]
    fn a_batch_to_both_families_goes_out_in_order_from_a_dual_stack_socket() {
        let a = dual_stack();
        let port = a.local_addr().unwrap().port();
        let b4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b6 = UdpSocket::bind("[::1]:0").unwrap();
        let (to4, to6) = (b4.local_addr().unwrap(), b6.local_addr().unwrap());
        // Runs of one family, each ended by the other: one `sendmmsg` per run.
        let order = [to6, to4, to4, to6, to6, to4, to6];
        let payloads: Vec<Vec<u8>> = (0..order.len() as u8).map(|i| vec![i; 3]).collect();
        let datagrams: Vec<(SocketAddr, &[u8])> = order
            .iter()
            .zip(&payloads)
            .map(|(to, d)| (*to, d.as_slice()))
            .collect();
        let mut io = BatchIo::for_sending();
        let mut sent = 0;
        while sent < datagrams.len() {
            wait(&a, PollFlags::POLLOUT);
            sent += io.send_batch(&a, datagrams[sent..].iter().copied());
        }
        for (socket, to, from) in [
            (&b4, to4, SocketAddr::from(([127, 0, 0, 1], port))),
            (
                &b6,
                to6,
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
            ),
        ] {
            let expected: Vec<Vec<u8>> = order
                .iter()
                .zip(&payloads)
                .filter(|(t, _)| **t == to)
                .map(|(_, d)| d.clone())
                .collect();
            let mut io = BatchIo::new();
            let mut got = Vec::new();
            while got.len() < expected.len() {
                wait(socket, PollFlags::POLLIN);
                io.recv_batch(socket, |source, d| {
                    assert_eq!(source, from);
                    got.push(d.to_vec());
                })
                .unwrap();
            }
            assert_eq!(got, expected, "to {to}: every datagram, in order");
        }
    }
}
