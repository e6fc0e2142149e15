//! The load of one benchmark run: the members of one room, each on a socket of its own bound
//! to an address of its own in 127.0.0.0/8 (so that per-address limits see N sources, as they
//! would on a real network), driven by one single-threaded runtime.
//!
//! A member is framed (udpchat's secure, reliable protocol, as `udpchat join`), a plain-text
//! udpchat guest (as `nc -u`, validated with `/ok CODE`), or raw (plain datagrams to a baseline
//! relay). Senders stamp each message with its sender, number and send time; receivers record
//! the latency of every message from someone else.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use udpchat_net::OsRandom;
use udpchat_proto::client::{Client, ClientConfig, ClientEvent};
use udpchat_proto::reliable::SendError;
use udpchat_proto::wire::message::{ClientMessage, ServerMessage};

/// How members talk to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    /// udpchat's framed, encrypted protocol.
    Framed,
    /// A plain-text udpchat guest.
    Guest,
    /// Plain datagrams to a relay that forwards each to everyone else.
    Raw,
}

/// The members of a run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How members talk.
    pub kind: MemberKind,
    /// The target's address.
    pub target: SocketAddr,
    /// Members in the room.
    pub members: usize,
    /// How many of them send.
    pub senders: usize,
    /// Bytes of text per message.
    pub payload: usize,
    /// Members per room: member `i` is in room `bench{i / room_size}` (framed members only;
    /// guests all share the server's default room).
    pub room_size: usize,
}

/// What one member saw in one round.
#[derive(Debug, Default)]
pub struct MemberReport {
    /// Messages it sent.
    pub sent: u64,
    /// Messages from others it received during the round (and its drain).
    pub received: u64,
    /// Their latencies, in microseconds.
    pub latencies_us: Vec<u32>,
}

/// One round: senders send `rate` messages per second in all from `start` to `stop`;
/// receivers count until `end`.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// Rounds are numbered from 1.
    pub id: u64,
    /// Messages per second over all senders.
    pub rate: u32,
    /// Sending starts.
    pub start: Instant,
    /// Sending stops.
    pub stop: Instant,
    /// Counting stops.
    pub end: Instant,
}

/// Time after the stop during which late deliveries still count: as long as the round, within
/// these bounds.
pub const DRAIN: (Duration, Duration) = (Duration::from_millis(200), Duration::from_millis(1000));

/// Framed members that start their handshakes together.
pub const JOIN_WAVE: usize = 250;

/// The members, in the room, between rounds.
pub struct Load {
    go: watch::Sender<Option<Round>>,
    reports: mpsc::UnboundedReceiver<(u64, MemberReport)>,
    members: usize,
    rounds: u64,
}

/// The text of a bench message: sender, number and send time (µs since `epoch`), padded.
fn stamp(sender: usize, seq: u64, epoch: Instant, payload: usize) -> String {
    let micros = epoch.elapsed().as_micros();
    let mut text = format!("~b~{sender}~{seq}~{micros}~");
    while text.len() < payload {
        text.push('.');
    }
    text
}

/// Reads a stamp anywhere in `text` (guests and relays get it inside a line): the sender and
/// the latency.
fn read_stamp(text: &str, epoch: Instant) -> Option<(usize, u32)> {
    let start = text.find("~b~")?;
    let mut parts = text[start + 3..].split('~');
    let sender = parts.next()?.parse().ok()?;
    let _seq: u64 = parts.next()?.parse().ok()?;
    let sent: u128 = parts.next()?.parse().ok()?;
    let now = epoch.elapsed().as_micros();
    Some((
        sender,
        now.saturating_sub(sent).min(u128::from(u32::MAX)) as u32,
    ))
}

/// The address member `i` sends from: one /24 of its own in 127.0.0.0/8.
fn member_address(i: usize) -> SocketAddr {
    let i = i + 1;
    SocketAddr::V4(SocketAddrV4::new(
        Ipv4Addr::new(127, (1 + i / 250) as u8, (i % 250) as u8, 1),
        0,
    ))
}

impl Load {
    /// Starts every member and waits (at most `timeout`) until all are in the room.
    ///
    /// # Errors
    /// A member could not bind, or not everyone joined in time.
    pub async fn join(plan: &Plan, epoch: Instant, timeout: Duration) -> Result<Self> {
        let (go, go_rx) = watch::channel(None);
        let (ready_tx, mut ready) = mpsc::unbounded_channel();
        let (report_tx, reports) = mpsc::unbounded_channel();
        let plan = Rc::new(plan.clone());
        // Members arrive in waves, each in before the next starts: guests one at a time (an
        // unvalidated guest may be sent no more bytes than it sent, so the others' arrivals
        // could crowd its code out of its small queue), framed members [`JOIN_WAVE`] at a time
        // (ten thousand handshakes at once would be a reconnection storm, which the server's
        // per-source limits are there to slow down).
        let wave = if plan.kind == MemberKind::Guest {
            1
        } else {
            JOIN_WAVE
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut joined = 0;
        for i in 0..plan.members {
            let std_socket = std::net::UdpSocket::bind(member_address(i))
                .with_context(|| format!("binding member {i} to {}", member_address(i)))?;
            std_socket.connect(plan.target)?;
            std_socket.set_nonblocking(true)?;
            let socket = UdpSocket::from_std(std_socket)?;
            let member = Member {
                index: i,
                plan: Rc::clone(&plan),
                socket,
                epoch,
                go: go_rx.clone(),
                reports: report_tx.clone(),
            };
            let ready_tx = ready_tx.clone();
            tokio::task::spawn_local(async move {
                if let Err(e) = member.run(ready_tx).await {
                    tracing::debug!(member = i, error = %e, "member ended");
                }
            });
            if (i + 1) % wave == 0 || i + 1 == plan.members {
                while joined <= i {
                    match tokio::time::timeout_at(deadline, ready.recv()).await {
                        Ok(Some(())) => joined += 1,
                        _ => bail!(
                            "only {joined} of {} members joined within {timeout:?}",
                            plan.members
                        ),
                    }
                }
            }
        }
        Ok(Self {
            go,
            reports,
            members: plan.members,
            rounds: 0,
        })
    }

    /// Starts a round: `rate` messages per second for `duration`, from now.
    pub fn start(&mut self, rate: u32, duration: Duration) -> Round {
        self.rounds += 1;
        let start = Instant::now() + Duration::from_millis(5);
        let round = Round {
            id: self.rounds,
            rate,
            start,
            stop: start + duration,
            end: start + duration + duration.clamp(DRAIN.0, DRAIN.1),
        };
        let _ = self.go.send(Some(round));
        round
    }

    /// Every member's report of the round started last (a member that died reports
    /// nothing: its share counts as lost).
    pub async fn finish(&mut self, round: Round) -> Vec<MemberReport> {
        let mut reports = Vec::with_capacity(self.members);
        let give_up = round.end + Duration::from_secs(5);
        while reports.len() < self.members {
            match tokio::time::timeout_at(give_up.into(), self.reports.recv()).await {
                Ok(Some((id, report))) if id == round.id => reports.push(report),
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        reports
    }
}

/// One member's task.
struct Member {
    index: usize,
    plan: Rc<Plan>,
    socket: UdpSocket,
    epoch: Instant,
    go: watch::Receiver<Option<Round>>,
    reports: mpsc::UnboundedSender<(u64, MemberReport)>,
}

/// A member's place in the rounds.
#[derive(Default)]
struct Progress {
    round: Option<Round>,
    /// The current round's report has been sent.
    reported: bool,
    report: MemberReport,
}

impl Progress {
    /// Moves to the newest round, if it is new.
    fn follow(&mut self, go: &mut watch::Receiver<Option<Round>>) {
        if let Some(next) = *go.borrow_and_update()
            && self.round.is_none_or(|r| r.id < next.id)
        {
            self.round = Some(next);
            self.reported = false;
            self.report = MemberReport::default();
        }
    }

    /// The round being counted, if any.
    fn counting(&self) -> Option<Round> {
        self.round.filter(|_| !self.reported)
    }

    /// Sends the report once the round's counting is over.
    fn report_if_over(&mut self, now: Instant, out: &mpsc::UnboundedSender<(u64, MemberReport)>) {
        if let Some(round) = self.counting()
            && now >= round.end
        {
            let _ = out.send((round.id, std::mem::take(&mut self.report)));
            self.reported = true;
        }
    }

    /// Counts a message received now, if it is a stamped one from someone else.
    fn received(&mut self, text: &str, me: usize, epoch: Instant) {
        if self.counting().is_some()
            && let Some((sender, latency)) = read_stamp(text, epoch)
            && sender != me
        {
            self.report.received += 1;
            self.report.latencies_us.push(latency);
        }
    }
}

impl Member {
    async fn run(self, ready: mpsc::UnboundedSender<()>) -> Result<()> {
        match self.plan.kind {
            MemberKind::Framed => self.run_framed(ready).await,
            MemberKind::Guest | MemberKind::Raw => self.run_plain(ready).await,
        }
    }

    fn is_sender(&self) -> bool {
        self.index < self.plan.senders
    }

    /// How many messages this member should have sent by `now` in `round`.
    fn due(&self, round: &Round, now: Instant) -> u64 {
        if !self.is_sender() || now < round.start {
            return 0;
        }
        let elapsed = now.min(round.stop) - round.start;
        let per_sender = f64::from(round.rate) / self.plan.senders as f64;
        (elapsed.as_secs_f64() * per_sender) as u64 + 1
    }

    /// When this member must wake for its round: the next send, or the end of counting.
    fn round_wake(&self, progress: &Progress, now: Instant) -> Option<Instant> {
        let round = progress.counting()?;
        if self.is_sender() && now < round.stop {
            return Some((now + Duration::from_millis(1)).max(round.start));
        }
        Some(round.end)
    }

    fn text(&self, seq: u64) -> String {
        stamp(self.index, seq, self.epoch, self.plan.payload)
    }

    async fn run_framed(mut self, ready: mpsc::UnboundedSender<()>) -> Result<()> {
        let config = ClientConfig {
            secure: Some(None),
            ..ClientConfig::default()
        };
        // (The random source holds a file open: let it go now, ten thousand members would
        // run out of descriptors.)
        let mut client = Client::new(
            config,
            &mut OsRandom::new().context("randomness")?,
            Instant::now(),
        );
        let nick = format!("m{}", self.index);
        let room = format!("bench{}", self.index / self.plan.room_size.max(1));
        for message in [
            ClientMessage::Nick { nick: nick.clone() },
            ClientMessage::Join { room: room.clone() },
        ] {
            let _ = client.send(&message);
        }
        let mut ready = Some(ready);
        let mut progress = Progress::default();
        let mut go_open = true;
        let mut buf = vec![0u8; 65_536];
        loop {
            let now = Instant::now();
            progress.report_if_over(now, &self.reports);
            if !go_open && progress.counting().is_none() {
                client.close(now);
                flush_framed(&self.socket, &mut client).await;
                return Ok(());
            }
            if let Some(round) = progress.counting()
                && now < round.stop
            {
                let due = self.due(&round, now);
                while progress.report.sent < due {
                    let say = ClientMessage::Say {
                        room: room.clone(),
                        text: self.text(progress.report.sent),
                    };
                    match client.send(&say) {
                        Ok(_) => progress.report.sent += 1,
                        // Behind: the rest of this millisecond's share waits.
                        Err(SendError::QueueFull(_)) => break,
                        Err(_) => bail!("connection closed"),
                    }
                }
            }
            flush_framed(&self.socket, &mut client).await;
            while let Some(event) = client.poll_event() {
                match event {
                    ClientEvent::Message(ServerMessage::Joined { nick: who, .. })
                        if who == nick =>
                    {
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                    }
                    ClientEvent::Message(ServerMessage::Message { text, .. }) => {
                        progress.received(&text, self.index, self.epoch);
                    }
                    ClientEvent::Closed(reason) => bail!("closed: {reason:?}"),
                    _ => {}
                }
            }
            let wake = [client.poll_timeout(), self.round_wake(&progress, now)]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| now + Duration::from_secs(1));
            tokio::select! {
                received = self.socket.recv(&mut buf) => {
                    if let Ok(n) = received {
                        client.handle_datagram(Instant::now(), &buf[..n]);
                    }
                    while let Ok(n) = self.socket.try_recv(&mut buf) {
                        client.handle_datagram(Instant::now(), &buf[..n]);
                    }
                }
                () = tokio::time::sleep_until(wake.max(now).into()) => {}
                changed = self.go.changed(), if go_open => match changed {
                    Ok(()) => progress.follow(&mut self.go),
                    Err(_) => go_open = false,
                },
            }
            let now = Instant::now();
            if client.poll_timeout().is_some_and(|t| t <= now) {
                client.handle_timeout(now);
            }
        }
    }

    async fn run_plain(mut self, ready: mpsc::UnboundedSender<()>) -> Result<()> {
        let guest = self.plan.kind == MemberKind::Guest;
        let mut buf = vec![0u8; 65_536];
        // Say hello: a relay learns the member from it; a guest gets a code to send back
        // (the server sends an unvalidated guest no more bytes than it sent, so say enough).
        let hello = format!("hello from bench member {}, {}", self.index, ".".repeat(80));
        self.socket.send(hello.as_bytes()).await?;
        if guest {
            let mut hello_again = tokio::time::interval(Duration::from_millis(500));
            hello_again.tick().await;
            loop {
                tokio::select! {
                    received = self.socket.recv(&mut buf) => {
                        let Ok(n) = received else { continue };
                        let line = String::from_utf8_lossy(&buf[..n]);
                        if let Some(code) = line.split("/ok ").nth(1) {
                            let code: String = code.chars().take_while(char::is_ascii_digit).collect();
                            self.socket.send(format!("/ok {code}").as_bytes()).await?;
                        }
                        if line.contains("thanks") {
                            break;
                        }
                    }
                    _ = hello_again.tick() => {
                        self.socket.send(hello.as_bytes()).await?;
                    }
                }
            }
        }
        let _ = ready.send(());
        let mut progress = Progress::default();
        let mut go_open = true;
        loop {
            let now = Instant::now();
            progress.report_if_over(now, &self.reports);
            if !go_open && progress.counting().is_none() {
                return Ok(());
            }
            if let Some(round) = progress.counting()
                && now < round.stop
            {
                let due = self.due(&round, now);
                while progress.report.sent < due {
                    let text = self.text(progress.report.sent);
                    // A full socket buffer drops the datagram, as the network would.
                    let _ = self.socket.try_send(text.as_bytes());
                    progress.report.sent += 1;
                }
            }
            let wake = self
                .round_wake(&progress, now)
                .unwrap_or_else(|| now + Duration::from_secs(1));
            tokio::select! {
                received = self.socket.recv(&mut buf) => {
                    if let Ok(n) = received {
                        progress.received(&String::from_utf8_lossy(&buf[..n]), self.index, self.epoch);
                    }
                    while let Ok(n) = self.socket.try_recv(&mut buf) {
                        progress.received(&String::from_utf8_lossy(&buf[..n]), self.index, self.epoch);
                    }
                }
                () = tokio::time::sleep_until(wake.max(now).into()) => {}
                changed = self.go.changed(), if go_open => match changed {
                    Ok(()) => progress.follow(&mut self.go),
                    Err(_) => go_open = false,
                },
            }
        }
    }
}

async fn flush_framed(socket: &UdpSocket, client: &mut Client) {
    while let Some(datagram) = client.poll_transmit(Instant::now()) {
        let _ = socket.send(&datagram).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_read_back_anywhere_in_a_line() {
        let epoch = Instant::now();
        let text = stamp(7, 3, epoch, 64);
        assert_eq!(text.len(), 64);
        let line = format!("[bench] m7: {text}");
        let (sender, latency) = read_stamp(&line, epoch).unwrap();
        assert_eq!(sender, 7);
        assert!(latency < 10_000_000);
        assert_eq!(read_stamp("no stamp here", epoch), None);
        assert_eq!(read_stamp("~b~x~1~2~", epoch), None);
    }

    #[test]
    fn members_get_distinct_networks() {
        let a = member_address(0);
        let b = member_address(1);
        let c = member_address(9_999);
        assert_ne!(a.ip(), b.ip());
        assert!(c.ip().is_loopback());
    }
}
