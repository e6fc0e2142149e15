//! A room in memory, for the criterion benchmarks and the tests: a server and framed members
//! (clients), datagrams moved by hand, virtual time. Included by path (`#[path]`) where used.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use udpchat_proto::client::{Client, ClientConfig, ClientEvent};
use udpchat_proto::crypto::StaticKeypair;
use udpchat_proto::reliable::ConnectionConfig;
use udpchat_proto::rng::SplitMix64;
use udpchat_proto::server::{Server, ServerConfig};
use udpchat_proto::wire::message::{ClientMessage, ServerMessage};

/// The room every member joins.
pub const ROOM: &str = "room";

/// The address of member `i`.
pub fn address(i: usize) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::new(10, (i >> 8) as u8, i as u8, 1), 4000))
}

/// Told before (`true`) and after (`false`) each stretch of the server's work, so that a test
/// can measure the server alone.
pub type Meter = Box<dyn FnMut(bool)>;

/// A server and its members in one room.
pub struct Room {
    /// The virtual clock.
    pub now: Instant,
    /// The server.
    pub server: Server,
    /// Each member's address and client.
    pub members: Vec<(SocketAddr, Client)>,
    /// Room messages the members received.
    pub delivered: usize,
    /// Datagrams the server took in and sent out.
    pub datagrams: usize,
    meter: Option<Meter>,
}

impl Room {
    /// `members` framed members (encrypted with `secure`), all in [`ROOM`], settled.
    pub fn new(members: usize, secure: bool) -> Self {
        let now = Instant::now();
        let mut config = ServerConfig::default();
        if secure {
            config.identity = Some(StaticKeypair::from_private([7; 32]).unwrap());
        }
        let server = Server::new(config, Box::new(SplitMix64::new(1)));
        let members = (0..members)
            .map(|i| {
                let config = ClientConfig {
                    secure: secure.then_some(None),
                    ..ClientConfig::default()
                };
                let mut client = Client::new(config, &mut SplitMix64::new(i as u64 + 9), now);
                client
                    .send(&ClientMessage::Nick {
                        nick: format!("m{i}"),
                    })
                    .unwrap();
                client
                    .send(&ClientMessage::Join { room: ROOM.into() })
                    .unwrap();
                (address(i), client)
            })
            .collect();
        let mut room = Self {
            now,
            server,
            members,
            delivered: 0,
            datagrams: 0,
            meter: None,
        };
        room.settle();
        room
    }

    /// From now on, `meter` is told when the server works.
    #[allow(dead_code)]
    pub fn measure_with(&mut self, meter: Meter) {
        self.meter = Some(meter);
    }

    /// Runs `work` on the server, between the meter's start and stop.
    fn server<T>(&mut self, work: impl FnOnce(&mut Server) -> T) -> T {
        if let Some(meter) = &mut self.meter {
            meter(true);
        }
        let result = work(&mut self.server);
        if let Some(meter) = &mut self.meter {
            meter(false);
        }
        result
    }

    /// The first member says `text`, and the room moves until everyone has it.
    pub fn say(&mut self, text: &str) {
        let say = ClientMessage::Say {
            room: ROOM.into(),
            text: text.into(),
        };
        self.members[0].1.send(&say).unwrap();
        self.settle();
    }

    /// Moves datagrams (and lets delayed acknowledgements fall due) until nobody has anything
    /// left to send.
    pub fn settle(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.members.len() {
                let address = self.members[i].0;
                while let Some(datagram) = self.members[i].1.poll_transmit(self.now) {
                    let now = self.now;
                    self.server(|s| s.handle_datagram(now, address, &datagram));
                    self.datagrams += 1;
                    moved = true;
                }
                while let Some(event) = self.members[i].1.poll_event() {
                    match event {
                        ClientEvent::Message(ServerMessage::Message { .. }) => self.delivered += 1,
                        // The room's own key: accepted (the client holds everything till then).
                        ClientEvent::ServerKey(_) => {
                            self.members[i].1.accept_key(self.now);
                            moved = true;
                        }
                        _ => {}
                    }
                }
            }
            loop {
                let now = self.now;
                let Some(transmit) = self.server(|s| s.poll_transmit(now)) else {
                    break;
                };
                self.datagrams += 1;
                moved = true;
                if let Some((_, member)) = self
                    .members
                    .iter_mut()
                    .find(|(a, _)| *a == transmit.destination)
                {
                    member.handle_datagram(self.now, &transmit.payload);
                }
            }
            while self.server.poll_event().is_some() {}
            if !moved {
                // Let delayed acknowledgements fall due.
                self.now += ConnectionConfig::default().max_ack_delay + Duration::from_millis(1);
                for (_, member) in &mut self.members {
                    member.handle_timeout(self.now);
                }
                let now = self.now;
                self.server(|s| s.handle_timeout(now));
                let pending = self
                    .members
                    .iter()
                    .any(|(_, c)| c.poll_timeout().is_some_and(|t| t <= self.now));
                if !pending {
                    return;
                }
            }
        }
    }
}
