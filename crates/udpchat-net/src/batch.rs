//! Batched datagram I/O: `recvmmsg` takes up to [`BATCH`] datagrams in one system call and
//! `sendmmsg` sends up to [`SEND_BATCH`], to as many destinations. Crossing into the kernel costs
//! microseconds per call, more than the server spends on a datagram, so fewer calls is the
//! way to a faster relay. Safe wrappers only (nix); the buffers are allocated once.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;

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
    send_headers: MultiHeaders<SockaddrStorage>,
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
            send_headers: MultiHeaders::preallocate(SEND_BATCH, None),
        }
    }

    /// Receives what is waiting, up to [`BATCH`] datagrams, without blocking; calls `each`
    /// with every datagram and its source. Returns how many came (0: none was waiting).
    ///
    /// # Errors
    /// A socket error other than "nothing waiting".
    pub fn recv_batch(
        &mut self,
        socket: &UdpSocket,
        mut each: impl FnMut(SocketAddr, &[u8]),
    ) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        let Self {
            buffers,
            received,
            recv_headers,
            ..
        } = self;
        received.clear();
        let result = socket.try_io(Interest::READABLE, || {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            let messages = recvmmsg(
                fd,
                recv_headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from)?;
            for message in messages {
                received.push((message.bytes, message.address.and_then(to_std)));
            }
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(e),
        }
        for (i, (len, from)) in received.iter().enumerate() {
            if let Some(from) = from {
                each(*from, &buffers[i][..*len]);
            }
        }
        Ok(received.len())
    }

    /// Sends `datagrams` (destination, bytes) in as few calls as it can, without blocking.
    /// Returns how many went out; the rest did not fit in the socket's buffer (retry them
    /// when it is writable). A datagram the kernel refuses for any other reason counts as sent
    /// (dropped, as a network would drop it).
    ///
    /// # Errors
    /// Never for a single datagram; kept for socket-level failures to come.
    pub fn send_batch(
        &mut self,
        socket: &UdpSocket,
        datagrams: &[(SocketAddr, &[u8])],
    ) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        let mut done = 0;
        while done < datagrams.len() {
            let chunk = &datagrams[done..datagrams.len().min(done + SEND_BATCH)];
            let headers = &mut self.send_headers;
            let result = socket.try_io(Interest::WRITABLE, || {
                let slices: Vec<[IoSlice<'_>; 1]> =
                    chunk.iter().map(|(_, d)| [IoSlice::new(d)]).collect();
                let addresses: Vec<Option<SockaddrStorage>> = chunk
                    .iter()
                    .map(|(a, _)| Some(SockaddrStorage::from(*a)))
                    .collect();
                match sendmmsg(
                    fd,
                    headers,
                    slices.iter(),
                    &addresses,
                    [],
                    MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(results) => Ok(results.count()),
                    Err(Errno::EAGAIN) => Err(io::ErrorKind::WouldBlock.into()),
                    // The first datagram was refused (unreachable, too big): skip it.
                    Err(e) => {
                        tracing::debug!(to = %chunk[0].0, error = %e, "send failed");
                        Ok(1)
                    }
                }
            });
            match result {
                Ok(0) => return Ok(done),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(done),
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
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

    #[tokio::test]
    async fn a_batch_goes_out_and_comes_back_whole_with_its_sources() {
        for local in ["127.0.0.1:0", "[::1]:0"] {
            let a = UdpSocket::bind(local).await.unwrap();
            let b = UdpSocket::bind(local).await.unwrap();
            let to = b.local_addr().unwrap();
            let big = vec![7u8; 60_000];
            let small: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; usize::from(i) + 1]).collect();
            let mut datagrams: Vec<(SocketAddr, &[u8])> =
                small.iter().map(|d| (to, d.as_slice())).collect();
            datagrams.push((to, &big));
            let mut io = BatchIo::new();
            // Like every tokio I/O, a batch goes out once the socket is known writable.
            let mut sent = 0;
            while sent < datagrams.len() {
                a.writable().await.unwrap();
                sent += io.send_batch(&a, &datagrams[sent..]).unwrap();
            }
            let mut io = BatchIo::new();
            let mut got: Vec<Vec<u8>> = Vec::new();
            let from_a = a.local_addr().unwrap();
            let all = async {
                while got.len() < 41 {
                    b.readable().await.unwrap();
                    io.recv_batch(&b, |from, d| {
                        assert_eq!(from, from_a);
                        got.push(d.to_vec());
                    })
                    .unwrap();
                }
            };
            tokio::time::timeout(std::time::Duration::from_secs(10), all)
                .await
                .expect("every datagram arrives on loopback");
            assert_eq!(got[..40], small[..]);
            assert_eq!(got[40], big);
        }
    }
}
