//! Round-trip time estimation and the retransmission timeout, per RFC 6298.

use std::time::Duration;

/// RFC 6298 section 2: alpha = 1/8, the gain for the smoothed RTT.
const ALPHA_DENOM: u32 = 8;
/// RFC 6298 section 2: beta = 1/4, the gain for the RTT variation.
const BETA_DENOM: u32 = 4;
/// RFC 6298 section 2: K = 4, how many variations the timeout allows above the mean.
const K: u32 = 4;

/// The estimator's bounds, from the connection's configuration.
#[derive(Debug, Clone, Copy)]
pub struct RtoBounds {
    /// The timeout before any sample (RFC 6298 2.1 says 1 s; chat on a LAN wants less).
    pub initial: Duration,
    /// The lowest timeout (RFC 6298 2.4 says 1 s, for TCP across the Internet; Linux uses
    /// 200 ms). Keeps a timer from firing on mere scheduling noise.
    pub min: Duration,
    /// The highest timeout, also after back-off (RFC 6298 2.5 allows 60 s or more).
    pub max: Duration,
}

/// Smoothed RTT, RTT variation and the current retransmission timeout with back-off.
///
/// The bounds are the connection's (passed to [`rto`](Self::rto) and
/// [`on_timeout`](Self::on_timeout)) rather than copied here: a server keeps one estimator per
/// member, idle or not.
#[derive(Debug, Clone, Default)]
pub struct RttEstimator {
    /// SRTT; `None` until the first sample.
    smoothed: Option<Duration>,
    /// RTTVAR.
    variation: Duration,
    /// The latest sample.
    latest: Option<Duration>,
    /// How many times the timeout has doubled since the last sample (RFC 6298 5.5).
    backoff: u32,
}

impl RttEstimator {
    /// An estimator with no samples yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one RTT measurement, from a segment sent exactly once (Karn's algorithm, RFC 6298
    /// section 3: retransmitted segments give ambiguous samples and are never used).
    pub fn on_sample(&mut self, rtt: Duration) {
        self.latest = Some(rtt);
        self.backoff = 0;
        match self.smoothed {
            // RFC 6298 2.2: the first sample sets SRTT = R, RTTVAR = R/2.
            None => {
                self.smoothed = Some(rtt);
                self.variation = rtt / 2;
            }
            // RFC 6298 2.3: RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|; SRTT = 7/8 SRTT + 1/8 R.
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.variation =
                    self.variation * (BETA_DENOM - 1) / BETA_DENOM + delta / BETA_DENOM;
                self.smoothed = Some(srtt * (ALPHA_DENOM - 1) / ALPHA_DENOM + rtt / ALPHA_DENOM);
            }
        }
    }

    /// The retransmission timeout to use now, back-off included.
    pub fn rto(&self, bounds: &RtoBounds) -> Duration {
        let base = match self.smoothed {
            None => bounds.initial,
            // RFC 6298 2.3: RTO = SRTT + max(G, K * RTTVAR); our clock granularity G is ~0.
            Some(srtt) => srtt + (self.variation * K).max(Duration::from_millis(1)),
        };
        let backed_off = base.saturating_mul(1 << self.backoff.min(16));
        backed_off.clamp(bounds.min, bounds.max)
    }

    /// The timer expired: double the timeout (RFC 6298 5.5).
    pub fn on_timeout(&mut self, bounds: &RtoBounds) {
        if self.rto(bounds) < bounds.max {
            self.backoff += 1;
        }
    }

    /// The smoothed RTT, once measured.
    pub fn smoothed(&self) -> Option<Duration> {
        self.smoothed
    }

    /// The latest sample, once measured.
    pub fn latest(&self) -> Option<Duration> {
        self.latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn bounds() -> RtoBounds {
        RtoBounds {
            initial: ms(300),
            min: ms(50),
            max: ms(10_000),
        }
    }

    #[test]
    fn first_sample_follows_rfc_6298_2_2() {
        let mut rtt = RttEstimator::new();
        assert_eq!(rtt.rto(&bounds()), ms(300));
        rtt.on_sample(ms(100));
        // SRTT 100, RTTVAR 50, RTO = 100 + 4 * 50.
        assert_eq!(rtt.rto(&bounds()), ms(300));
        assert_eq!(rtt.smoothed(), Some(ms(100)));
    }

    #[test]
    fn later_samples_follow_rfc_6298_2_3() {
        let mut rtt = RttEstimator::new();
        rtt.on_sample(ms(100));
        rtt.on_sample(ms(200));
        // RTTVAR = 3/4 * 50 + 1/4 * 100 = 62.5; SRTT = 7/8 * 100 + 1/8 * 200 = 112.5
        assert_eq!(rtt.smoothed(), Some(Duration::from_micros(112_500)));
        assert_eq!(rtt.rto(&bounds()), Duration::from_micros(112_500 + 250_000));
    }

    #[test]
    fn timeouts_back_off_exponentially_up_to_the_max_and_a_sample_resets() {
        let mut rtt = RttEstimator::new();
        rtt.on_sample(ms(10)); // RTO = 10 + 4*5 = 30, clamped to the 50 ms floor
        assert_eq!(rtt.rto(&bounds()), ms(50));
        rtt.on_timeout(&bounds());
        assert_eq!(rtt.rto(&bounds()), ms(60));
        rtt.on_timeout(&bounds());
        assert_eq!(rtt.rto(&bounds()), ms(120));
        for _ in 0..40 {
            rtt.on_timeout(&bounds());
        }
        assert_eq!(rtt.rto(&bounds()), ms(10_000));
        rtt.on_sample(ms(10));
        assert!(rtt.rto(&bounds()) < ms(100));
    }
}
