//! Per-sender rate limits: how fast one member (a framed client or a guest) may put messages
//! into the chat, as two token buckets, one counting messages and one counting bytes.
//!
//! A room relays each message to every member, so one sender flooding at full speed would fill
//! every other member's queue until the server evicted them as too slow. With these limits the
//! flooder is the one held back: a framed member's surplus is held by the server and its
//! connection stops taking more (it is slowed down, losing nothing; see
//! [`Connection::pause_receiving`](crate::reliable::Connection::pause_receiving)), and a guest's
//! surplus lines are dropped, and it is told. Pure arithmetic on the `now` it is given.

use std::time::{Duration, Instant};

use crate::reliable::connection::MAX_MESSAGE;

/// How fast one sender may send; a rate of 0 means no limit of that kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SenderLimits {
    /// Messages per second, on average.
    pub messages_per_second: f64,
    /// Messages that may come at once after a quiet spell.
    pub message_burst: f64,
    /// Bytes of messages per second, on average.
    pub bytes_per_second: f64,
    /// Bytes that may come at once; never less than the largest message.
    pub byte_burst: f64,
}

/// The default message rate: far above typing, and above what a member would want to read.
pub const DEFAULT_MESSAGES_PER_SECOND: u32 = 50;
/// The default byte rate: 256 KiB/s.
pub const DEFAULT_BYTES_PER_SECOND: u32 = 256 * 1024;

impl SenderLimits {
    /// Limits of `messages` and `bytes` per second (0: no limit of that kind), with bursts of
    /// four seconds of messages and two of bytes (at least one message of the largest size).
    pub fn per_second(messages: u32, bytes: u32) -> Self {
        Self {
            messages_per_second: f64::from(messages),
            message_burst: f64::from(messages) * 4.0,
            bytes_per_second: f64::from(bytes),
            byte_burst: (f64::from(bytes) * 2.0).max(MAX_MESSAGE as f64),
        }
    }

    /// No limit at all.
    pub fn unlimited() -> Self {
        Self::per_second(0, 0)
    }
}

impl Default for SenderLimits {
    fn default() -> Self {
        Self::per_second(DEFAULT_MESSAGES_PER_SECOND, DEFAULT_BYTES_PER_SECOND)
    }
}

/// One sender's two buckets.
#[derive(Debug, Clone, Copy)]
pub struct SenderBucket {
    messages: f64,
    bytes: f64,
    /// When the buckets were last refilled; `None`: full.
    updated: Option<Instant>,
}

impl Default for SenderBucket {
    fn default() -> Self {
        Self::new()
    }
}

impl SenderBucket {
    /// Full buckets.
    pub fn new() -> Self {
        Self {
            messages: f64::INFINITY,
            bytes: f64::INFINITY,
            updated: None,
        }
    }

    fn refill(&mut self, now: Instant, limits: &SenderLimits) {
        let elapsed = match self.updated {
            Some(then) => now.saturating_duration_since(then).as_secs_f64(),
            None => f64::INFINITY,
        };
        self.messages = (self.messages + elapsed * limits.messages_per_second)
            .min(limits.message_burst.max(1.0));
        self.bytes = (self.bytes + elapsed * limits.bytes_per_second)
            .min(limits.byte_burst.max(MAX_MESSAGE as f64));
        self.updated = Some(now);
    }

    /// Takes one message of `len` bytes if both buckets hold enough now; whether it did.
    pub fn try_take(&mut self, now: Instant, limits: &SenderLimits, len: usize) -> bool {
        let len = len as f64;
        if limits.messages_per_second <= 0.0 && limits.bytes_per_second <= 0.0 {
            return true;
        }
        self.refill(now, limits);
        let messages_ok = limits.messages_per_second <= 0.0 || self.messages >= 1.0;
        let bytes_ok = limits.bytes_per_second <= 0.0 || self.bytes >= len;
        if messages_ok && bytes_ok {
            self.messages -= 1.0;
            self.bytes -= len;
            true
        } else {
            false
        }
    }

    /// When a message of `len` bytes can be taken (`now` if it can be now).
    pub fn ready_at(&mut self, now: Instant, limits: &SenderLimits, len: usize) -> Instant {
        self.refill(now, limits);
        let wait = |missing: f64, rate: f64| {
            if rate <= 0.0 || missing <= 0.0 {
                Duration::ZERO
            } else {
                // Rounded up to the next millisecond so that the tokens are really there then.
                Duration::from_secs_f64(missing / rate) + Duration::from_millis(1)
            }
        };
        let messages = wait(1.0 - self.messages, limits.messages_per_second);
        let bytes = wait(len as f64 - self.bytes, limits.bytes_per_second);
        now + messages.max(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limits = SenderLimits::per_second(10, 0);
        let mut bucket = SenderBucket::new();
        let t0 = Instant::now();
        let taken = (0..100)
            .filter(|_| bucket.try_take(t0, &limits, 10))
            .count();
        assert_eq!(taken, 40, "a burst of four seconds");
        let at = bucket.ready_at(t0, &limits, 10);
        assert!(
            at > t0 && at <= t0 + Duration::from_millis(102),
            "{:?}",
            at - t0
        );
        assert!(bucket.try_take(at, &limits, 10));
        assert!(!bucket.try_take(at, &limits, 10));
        // A second later, ten more.
        let later = at + Duration::from_secs(1);
        let taken = (0..100)
            .filter(|_| bucket.try_take(later, &limits, 10))
            .count();
        assert_eq!(taken, 10);
    }

    #[test]
    fn bytes_are_limited_and_the_largest_message_always_fits_eventually() {
        let limits = SenderLimits::per_second(0, 1000);
        let mut bucket = SenderBucket::new();
        let t0 = Instant::now();
        assert!(
            bucket.try_take(t0, &limits, MAX_MESSAGE),
            "the burst holds one"
        );
        assert!(!bucket.try_take(t0, &limits, 2000));
        let at = bucket.ready_at(t0, &limits, 2000);
        assert!(at >= t0 + Duration::from_secs(2));
        assert!(bucket.try_take(at, &limits, 2000));
    }

    #[test]
    fn no_limit_takes_everything() {
        let limits = SenderLimits::unlimited();
        let mut bucket = SenderBucket::new();
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| bucket.try_take(t0, &limits, MAX_MESSAGE)));
        assert_eq!(bucket.ready_at(t0, &limits, MAX_MESSAGE), t0);
    }
}
