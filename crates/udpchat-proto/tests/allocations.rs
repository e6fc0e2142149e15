//! The server's hot path allocates per message, not per datagram: relaying a room's messages
//! to 4x as many members (4x the datagrams, both ways) costs no more allocations.
//!
//! Every allocation of this test's process is counted (`stats_alloc` as the global
//! allocator), only while the server works: the members (clients, in memory) run between the
//! counted stretches. One test in this file, so that no other test allocates meanwhile.

use std::alloc::System;
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use udpchat_proto::rng::SplitMix64;
use udpchat_proto::server::{Server, ServerConfig};

#[path = "support/room.rs"]
mod support;
use support::{Room, address};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Counts the server's allocations and datagrams over `messages` messages to a room of
/// `members` framed members, after as many unmeasured (queues, maps and buffers grow to their
/// working size).
fn measure_framed(members: usize, secure: bool, messages: usize) -> (usize, usize) {
    let mut room = Room::new(members, secure);
    for n in 0..messages {
        room.say(&format!("message {n} for everyone in the room"));
    }
    let allocations = Rc::new(Cell::new(0));
    let mut region: Option<Region<'static, System>> = None;
    let counted = Rc::clone(&allocations);
    room.measure_with(Box::new(move |start| {
        if start {
            region = Some(Region::new(GLOBAL));
        } else if let Some(region) = region.take() {
            let change = region.change();
            counted.set(counted.get() + change.allocations + change.reallocations);
        }
    }));
    room.datagrams = 0;
    let before = room.delivered;
    for n in 0..messages {
        room.say(&format!("message {n} for everyone in the room"));
    }
    assert!(
        room.delivered - before >= messages * (members - 1),
        "every other member gets every message"
    );
    (allocations.get(), room.datagrams)
}

/// Counts the server's allocations and datagrams while `messages` lines of one plain-text
/// guest go to a room of `members` validated guests (after as many unmeasured); guests that
/// end their lines with a newline (`nc`) or not (the lab's client).
fn measure_guests(members: usize, newline: bool, messages: usize) -> (usize, usize) {
    let now = Instant::now();
    let mut server = Server::new(ServerConfig::default(), Box::new(SplitMix64::new(1)));
    let end = if newline { "\n" } else { "" };
    let guests: Vec<SocketAddr> = (0..members).map(address).collect();
    for &guest in &guests {
        // (Long enough that the line with its code fits the bytes it may be sent before it
        // is validated.)
        let arrival = format!("{}{end}", "here ".repeat(20));
        server.handle_datagram(now, guest, arrival.as_bytes());
        let mut code = None;
        while let Some(transmit) = server.poll_transmit(now) {
            let text = String::from_utf8_lossy(&transmit.payload).into_owned();
            if transmit.destination == guest
                && let Some(digits) = text.split("/ok ").nth(1)
            {
                code = Some(
                    digits
                        .chars()
                        .take_while(char::is_ascii_alphanumeric)
                        .collect::<String>(),
                );
            }
        }
        let code = code.expect("the guest is told its code");
        server.handle_datagram(now, guest, format!("/ok {code}{end}").as_bytes());
        while server.poll_transmit(now).is_some() {}
    }
    while server.poll_event().is_some() {}
    let (mut allocations, mut datagrams) = (0, 0);
    for counting in [false, true] {
        let mut delivered = 0;
        for n in 0..messages {
            let line = format!("line {n} for everyone here{end}");
            let mut sent = Vec::with_capacity(members);
            let region = Region::new(GLOBAL);
            server.handle_datagram(now, guests[0], line.as_bytes());
            while let Some(transmit) = server.poll_transmit(now) {
                sent.push(transmit);
            }
            let change = region.change();
            if counting {
                allocations += change.allocations + change.reallocations;
                datagrams += 1 + sent.len();
            }
            delivered += sent
                .iter()
                .filter(|t| t.destination != guests[0])
                .filter(|t| String::from_utf8_lossy(&t.payload).contains(&format!("line {n} ")))
                .count();
            while server.poll_event().is_some() {}
        }
        assert_eq!(
            delivered,
            messages * (members - 1),
            "every guest gets every line"
        );
    }
    (allocations, datagrams)
}

#[test]
fn relaying_allocates_per_message_not_per_datagram() {
    const MESSAGES: usize = 40;
    for secure in [true, false] {
        let (small_allocations, small_datagrams) = measure_framed(8, secure, MESSAGES);
        let (big_allocations, big_datagrams) = measure_framed(32, secure, MESSAGES);
        eprintln!(
            "secure {secure}: 8 members: {small_allocations} allocations for {small_datagrams} \
             datagrams; 32 members: {big_allocations} for {big_datagrams}"
        );
        // Each message goes out to every other member and is acknowledged by each.
        assert!(big_datagrams >= 2 * 31 * MESSAGES, "{big_datagrams}");
        assert!(big_datagrams >= 3 * small_datagrams, "{big_datagrams}");
        // Four times the members and datagrams, no more allocations (a few for the maps and
        // queues of a bigger room at most): what is allocated is per message.
        assert!(
            big_allocations <= small_allocations + MESSAGES,
            "32 members: {big_allocations} allocations, 8 members: {small_allocations}"
        );
        // A bounded few per message (decoding the command, the room's message and its
        // encodings, the sender's reassembled bytes), fewer than the datagrams of one.
        assert!(
            big_allocations <= 16 * MESSAGES,
            "{big_allocations} allocations for {MESSAGES} messages"
        );
    }
    for newline in [true, false] {
        let (small_allocations, small_datagrams) = measure_guests(8, newline, MESSAGES);
        let (big_allocations, big_datagrams) = measure_guests(32, newline, MESSAGES);
        eprintln!(
            "guests, newline {newline}: 8 members: {small_allocations} allocations for \
             {small_datagrams} datagrams; 32 members: {big_allocations} for {big_datagrams}"
        );
        assert!(big_datagrams >= 32 * MESSAGES, "{big_datagrams}");
        assert!(
            big_allocations <= small_allocations + MESSAGES,
            "32 guests: {big_allocations} allocations, 8 guests: {small_allocations}"
        );
    }
}
