//! The load of one benchmark run: the members of one room, each on a socket of its own bound
//! to an address of its own in 127.0.0.0/8 (so that per-address limits see N sources, as they
//! would on a real network), all driven by one thread of their own (the load's engine).
//!
//! A member is framed (udpchat's secure, reliable protocol, as `udpchat join`), a plain-text
//! udpchat guest (as `nc -u`, validated with `/ok CODE`), or raw (plain datagrams to a baseline
//! relay). Senders stamp each message with its sender, number and send time; receivers record
//! the latency of every message from someone else.
//!
//! The engine waits on all sockets with one epoll set. During a round it never sleeps: it
//! busy-polls (epoll with a zero timeout), as latency benchmarks do, because a thread that
//! sleeps between datagrams is woken once per datagram, and on a virtual machine each wake-up
//! costs tens of microseconds that would be charged to the target (measured here: a relay's
//! median latency in a room of 100 fell from 3.3 ms to well under 1 ms). So the generator's CPU
//! share reads 100% during rounds; the target's CPU time is what the tables compare.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use tokio::sync::mpsc;
use udpchat_net::OsRandom;
use udpchat_proto::client::{Client, ClientConfig, ClientEvent};
use udpchat_proto::reliable::SendError;
use udpchat_proto::wire::message::{ClientMessage, ServerMessage};

/// How members talk to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKind {
    /// udpchat's framed, encrypted protocol.
    Framed,
    /// A plain-text udpchat guest, one line per datagram (as the lab's Python client).
    Guest,
    /// A plain-text udpchat guest that ends its lines with a newline and reads a stream of
    /// lines (as `nc -u`): the server may join several lines in one datagram to it.
    LineGuest,
    /// Plain datagrams to a relay that forwards each to everyone else.
    Raw,
}

impl MemberKind {
    /// A plain-text udpchat guest, of either kind.
    pub fn is_guest(self) -> bool {
        matches!(self, MemberKind::Guest | MemberKind::LineGuest)
    }
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
    /// The number of the first member (its address, nick and room follow from its number):
    /// a second load joins the same server with members of its own.
    pub first: usize,
    /// How many of them send.
    pub senders: usize,
    /// Bytes of text per message.
    pub payload: usize,
    /// Members per room: member `i` is in room `bench{i / room_size}` (framed members only;
    /// guests all share the server's default room).
    pub room_size: usize,
    /// Run on any CPU and sleep when idle (`bench --unpinned`), instead of busy-polling on
    /// a CPU of its own.
    pub unpinned: bool,
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

/// How often the engine runs its timers (senders' pacing, protocol timers, repeated hellos).
const TICK: Duration = Duration::from_millis(1);

/// A guest that has not been let in says hello again after this long.
const HELLO_AGAIN: Duration = Duration::from_millis(500);

/// The members, in the room, between rounds.
pub struct Load {
    commands: std_mpsc::Sender<Command>,
    updates: mpsc::UnboundedReceiver<Update>,
    engine: Option<JoinHandle<()>>,
    rounds: u64,
}

/// From the orchestrator to the engine.
enum Command {
    Round(Round),
    Stop,
}

/// From the engine to the orchestrator.
enum Update {
    /// This many members are in the room.
    Joined(usize),
    /// The engine stopped on an error.
    Failed(String),
    /// Every member's report of a round.
    Reports(u64, Vec<MemberReport>),
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
    /// Starts the engine with every member and waits (at most `timeout`) until all are in the
    /// room.
    ///
    /// # Errors
    /// A member could not bind, or not everyone joined in time.
    pub async fn join(plan: &Plan, epoch: Instant, timeout: Duration) -> Result<Self> {
        let (commands, command_rx) = std_mpsc::channel();
        let (update_tx, updates) = mpsc::unbounded_channel();
        let engine = Engine::new(plan.clone(), epoch, command_rx, update_tx)?;
        let engine = std::thread::Builder::new()
            .name("bench-load".into())
            .spawn(move || engine.run())
            .context("starting the load's thread")?;
        let mut load = Self {
            commands,
            updates,
            engine: Some(engine),
            rounds: 0,
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut joined = 0;
        while joined < plan.members {
            match tokio::time::timeout_at(deadline, load.updates.recv()).await {
                Ok(Some(Update::Joined(n))) => joined = n,
                Ok(Some(Update::Failed(e))) => bail!("{e}"),
                Ok(Some(Update::Reports(..))) => {}
                Ok(None) => bail!("the load's thread ended"),
                Err(_) => bail!(
                    "only {joined} of {} members joined within {timeout:?}",
                    plan.members
                ),
            }
        }
        Ok(load)
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
        let _ = self.commands.send(Command::Round(round));
        round
    }

    /// Every member's report of the round started last (none if the engine failed: the
    /// round's messages then count as lost).
    pub async fn finish(&mut self, round: Round) -> Vec<MemberReport> {
        let give_up = round.end + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(give_up.into(), self.updates.recv()).await {
                Ok(Some(Update::Reports(id, reports))) if id == round.id => return reports,
                Ok(Some(_)) => {}
                _ => return Vec::new(),
            }
        }
    }
}

impl Drop for Load {
    /// Members leave (framed ones close their sessions) and the engine ends.
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(engine) = self.engine.take() {
            let _ = engine.join();
        }
    }
}

/// How one member talks.
enum Role {
    Framed {
        client: Box<Client>,
        nick: String,
        room: String,
    },
    Plain {
        guest: bool,
        hello: Vec<u8>,
        last_hello: Instant,
    },
}

/// One member.
struct Member {
    index: usize,
    socket: UdpSocket,
    role: Role,
    joined: bool,
    /// Its session ended (framed): it takes no further part.
    dead: bool,
    report: MemberReport,
}

/// The members and the thread that drives them.
struct Engine {
    plan: Plan,
    epoch: Instant,
    epoll: Epoll,
    members: Vec<Member>,
    joined: usize,
    commands: std_mpsc::Receiver<Command>,
    updates: mpsc::UnboundedSender<Update>,
    round: Option<Round>,
    /// The current round's reports have been sent.
    reported: bool,
    buf: Vec<u8>,
}

impl Engine {
    fn new(
        plan: Plan,
        epoch: Instant,
        commands: std_mpsc::Receiver<Command>,
        updates: mpsc::UnboundedSender<Update>,
    ) -> Result<Self> {
        Ok(Self {
            plan,
            epoch,
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll")?,
            members: Vec::new(),
            joined: 0,
            commands,
            updates,
            round: None,
            reported: true,
            buf: vec![0u8; 65_536],
        })
    }

    fn run(mut self) {
        if let Some((_, cpus)) = super::cpu_split().filter(|_| !self.plan.unpinned) {
            // This thread only (pid 0): the orchestrator's thread stays free.
            let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus);
        }
        if let Err(e) = self.drive() {
            let _ = self.updates.send(Update::Failed(format!("{e:#}")));
        }
        // Leave: framed members close their sessions (best effort, one flush).
        let now = Instant::now();
        for member in &mut self.members {
            if let Role::Framed { client, .. } = &mut member.role {
                client.close(now);
                flush(&member.socket, client, now);
            }
        }
    }

    fn drive(&mut self) -> Result<()> {
        let mut events = vec![EpollEvent::empty(); 256];
        let mut next_tick = Instant::now();
        loop {
            loop {
                match self.commands.try_recv() {
                    Ok(Command::Round(round)) => {
                        self.round = Some(round);
                        self.reported = false;
                        for member in &mut self.members {
                            member.report = MemberReport::default();
                        }
                    }
                    Ok(Command::Stop) | Err(std_mpsc::TryRecvError::Disconnected) => {
                        return Ok(());
                    }
                    Err(std_mpsc::TryRecvError::Empty) => break,
                }
            }
            self.admit()?;
            let now = Instant::now();
            let busy =
                self.round.is_some_and(|r| !self.reported && now < r.end) && !self.plan.unpinned;
            let timeout = if busy {
                EpollTimeout::ZERO
            } else {
                EpollTimeout::from(1u8)
            };
            let ready = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => 0,
                Err(e) => return Err(e).context("epoll_wait"),
            };
            for event in &events[..ready] {
                self.on_readable(event.data() as usize);
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + TICK;
                self.on_tick(now);
            }
        }
    }

    /// Starts the next members once those started before are in: guests one at a time (an
    /// unvalidated guest may be sent no more bytes than it sent, so the others' arrivals
    /// could crowd its code out of its small queue), framed members [`JOIN_WAVE`] at a time
    /// (ten thousand handshakes at once would be a reconnection storm, which the server's
    /// per-source limits are there to slow down).
    fn admit(&mut self) -> Result<()> {
        if self.joined < self.members.len() || self.members.len() == self.plan.members {
            return Ok(());
        }
        let wave = if self.plan.kind.is_guest() {
            1
        } else {
            JOIN_WAVE
        };
        let now = Instant::now();
        let first = self.members.len();
        for index in first..(first + wave).min(self.plan.members) {
            // Its number among every member of the server: address, nick and room.
            let number = self.plan.first + index;
            let address = member_address(number);
            let socket = UdpSocket::bind(address)
                .with_context(|| format!("binding member {index} to {address}"))?;
            socket.connect(self.plan.target)?;
            socket.set_nonblocking(true)?;
            self.epoll
                .add(&socket, EpollEvent::new(EpollFlags::EPOLLIN, index as u64))
                .context("epoll_ctl")?;
            let role = if self.plan.kind == MemberKind::Framed {
                let config = ClientConfig {
                    secure: Some(None),
                    ..ClientConfig::default()
                };
                // (The random source holds a file open: let it go now, ten thousand members
                // would run out of descriptors.)
                let mut client =
                    Client::new(config, &mut OsRandom::new().context("randomness")?, now);
                let nick = format!("m{number}");
                let room = format!("bench{}", number / self.plan.room_size.max(1));
                for message in [
                    ClientMessage::Nick { nick: nick.clone() },
                    ClientMessage::Join { room: room.clone() },
                ] {
                    let _ = client.send(&message);
                }
                flush(&socket, &mut client, now);
                Role::Framed {
                    client: Box::new(client),
                    nick,
                    room,
                }
            } else {
                // Say hello: a relay learns the member from it; a guest gets a code to send
                // back (the server sends an unvalidated guest no more bytes than it sent, so
                // say enough). Guests end their lines with a newline, as `nc` does.
                let newline = if self.plan.kind == MemberKind::LineGuest {
                    "\n"
                } else {
                    ""
                };
                let hello = format!(
                    "hello from bench member {index}, {}{newline}",
                    ".".repeat(80)
                );
                let _ = socket.send(hello.as_bytes());
                Role::Plain {
                    guest: self.plan.kind.is_guest(),
                    hello: hello.into_bytes(),
                    last_hello: now,
                }
            };
            let joined = matches!(role, Role::Plain { guest: false, .. });
            self.members.push(Member {
                index,
                socket,
                role,
                joined,
                dead: false,
                report: MemberReport::default(),
            });
            if joined {
                self.joined += 1;
            }
        }
        let _ = self.updates.send(Update::Joined(self.joined));
        Ok(())
    }

    /// The round being counted, if any.
    fn counting(&self) -> Option<Round> {
        self.round.filter(|_| !self.reported)
    }

    fn on_readable(&mut self, index: usize) {
        let counting = self.counting().is_some();
        let epoch = self.epoch;
        // A guest answers in its own style: a lab client's line has no newline.
        let newline = if self.plan.kind == MemberKind::LineGuest {
            "\n"
        } else {
            ""
        };
        let Some(member) = self.members.get_mut(index) else {
            return;
        };
        let was_joined = member.joined;
        // Until WouldBlock (all read) or another error (an ICMP error: nothing to read).
        while let Ok(n) = member.socket.recv(&mut self.buf) {
            let now = Instant::now();
            let datagram = &self.buf[..n];
            match &mut member.role {
                Role::Framed { client, .. } => client.handle_datagram(now, datagram),
                Role::Plain { guest, .. } => {
                    let line = String::from_utf8_lossy(datagram);
                    if member.joined {
                        if counting {
                            // (A guest that reads lines may get several in one datagram.)
                            for line in line.split('\n') {
                                member.count(line, epoch);
                            }
                        }
                    } else if *guest {
                        if let Some(code) = line.split("/ok ").nth(1) {
                            let code: String = code
                                .chars()
                                .take_while(char::is_ascii_alphanumeric)
                                .collect();
                            let _ = member
                                .socket
                                .send(format!("/ok {code}{newline}").as_bytes());
                        }
                        if line.contains("thanks") {
                            member.joined = true;
                        }
                    }
                }
            }
        }
        if matches!(member.role, Role::Framed { .. }) {
            member.after_framed_input(counting, epoch);
        }
        if member.joined && !was_joined {
            self.joined += 1;
            let _ = self.updates.send(Update::Joined(self.joined));
        }
    }

    fn on_tick(&mut self, now: Instant) {
        let counting = self.counting();
        let senders = self.plan.senders;
        let payload = self.plan.payload;
        let epoch = self.epoch;
        let line_guest = self.plan.kind == MemberKind::LineGuest;
        let mut newly_joined = 0;
        for member in &mut self.members {
            if member.dead {
                continue;
            }
            let was_joined = member.joined;
            // Senders send what is due by now.
            let due = match counting {
                Some(round) if member.index < senders && now >= round.start && now < round.stop => {
                    due_by(now - round.start, round.rate, member.index, senders)
                }
                _ => 0,
            };
            match &mut member.role {
                Role::Framed { client, room, .. } => {
                    while member.report.sent < due {
                        let say = ClientMessage::Say {
                            room: room.clone(),
                            text: stamp(member.index, member.report.sent, epoch, payload),
                        };
                        match client.send(&say) {
                            Ok(_) => member.report.sent += 1,
                            // Behind: the rest waits for the next tick.
                            Err(SendError::QueueFull(_)) => break,
                            Err(_) => break,
                        }
                    }
                    if client.poll_timeout().is_some_and(|t| t <= now) {
                        client.handle_timeout(now);
                    }
                    member.after_framed_input(counting.is_some(), epoch);
                }
                Role::Plain {
                    hello, last_hello, ..
                } => {
                    if !member.joined && now >= *last_hello + HELLO_AGAIN {
                        *last_hello = now;
                        let _ = member.socket.send(hello);
                    }
                    while member.report.sent < due {
                        let mut text = stamp(member.index, member.report.sent, epoch, payload);
                        if line_guest {
                            text.push('\n');
                        }
                        // A full socket buffer drops the datagram, as the network would.
                        let _ = member.socket.send(text.as_bytes());
                        member.report.sent += 1;
                    }
                }
            }
            if member.joined && !was_joined {
                newly_joined += 1;
            }
        }
        if newly_joined > 0 {
            self.joined += newly_joined;
            let _ = self.updates.send(Update::Joined(self.joined));
        }
        if let Some(round) = counting
            && now >= round.end
        {
            let reports = self
                .members
                .iter_mut()
                .map(|m| std::mem::take(&mut m.report))
                .collect();
            let _ = self.updates.send(Update::Reports(round.id, reports));
            self.reported = true;
        }
    }
}

/// How many messages sender `index` of `senders` has to have sent `elapsed` into a round at
/// `rate` messages per second from all of them. Senders are staggered: sender `index` starts
/// `index / senders` of its interval late, so that the messages reach the target evenly spread
/// (senders in step would arrive together, one burst of `senders` messages per interval: in a
/// room of 100, ten messages at once are 990 datagrams to send, and the latency measured would
/// be the burst's, not the rate's).
fn due_by(elapsed: Duration, rate: u32, index: usize, senders: usize) -> u64 {
    let per_sender = f64::from(rate) / senders.max(1) as f64;
    let phase = index as f64 / senders.max(1) as f64;
    let due = elapsed.as_secs_f64() * per_sender + 1.0 - phase;
    if due < 1.0 { 0 } else { due as u64 }
}

impl Member {
    /// Counts a message received now, if it is a stamped one from someone else.
    fn count(&mut self, text: &str, epoch: Instant) {
        if let Some((sender, latency)) = read_stamp(text, epoch)
            && sender != self.index
        {
            self.report.received += 1;
            self.report.latencies_us.push(latency);
        }
    }

    /// After a framed member's client took input: send what it has to send, act on its
    /// events.
    fn after_framed_input(&mut self, counting: bool, epoch: Instant) {
        let Role::Framed { client, nick, .. } = &mut self.role else {
            return;
        };
        flush(&self.socket, client, Instant::now());
        let mut texts = Vec::new();
        while let Some(event) = client.poll_event() {
            match event {
                ClientEvent::Message(ServerMessage::Joined { nick: who, .. }) if who == *nick => {
                    self.joined = true;
                }
                ClientEvent::Message(ServerMessage::Message { text, .. }) if counting => {
                    texts.push(text);
                }
                // The bench's own server: its key is accepted (nothing is sent before).
                ClientEvent::ServerKey(_) => {
                    client.accept_key(Instant::now());
                    flush(&self.socket, client, Instant::now());
                }
                ClientEvent::Closed(reason) => {
                    tracing::debug!(member = self.index, ?reason, "member's session ended");
                    self.dead = true;
                }
                _ => {}
            }
        }
        for text in texts {
            self.count(&text, epoch);
        }
    }
}

/// Sends what the client has to send (a full socket buffer drops it, as the network would).
fn flush(socket: &UdpSocket, client: &mut Client, now: Instant) {
    while let Some(datagram) = client.poll_transmit(now) {
        let _ = socket.send(&datagram);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_staggered_over_their_interval() {
        // 10 senders at 100 messages/s in all: 10/s each, one every 100 ms.
        let at = |ms: u64, index: usize| due_by(Duration::from_millis(ms), 100, index, 10);
        // At the start only the first is due; sender 5 is half an interval late.
        assert_eq!((0..10).map(|i| at(0, i)).sum::<u64>(), 1);
        assert_eq!(at(49, 5), 0);
        assert_eq!(at(50, 5), 1);
        assert_eq!(at(150, 5), 2);
        // Over a whole interval, every sender sends one: ten messages, one every 10 ms.
        let sent_by = |ms: u64| (0..10).map(|i| at(ms, i)).sum::<u64>();
        for k in 1..=10 {
            assert_eq!(sent_by(k * 10 - 1), k);
        }
        assert_eq!(sent_by(1_000 - 1), 100);
    }

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
