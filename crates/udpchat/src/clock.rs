//! The wall clock, as every front end shows it: the machine's local time of day (its time zone,
//! as `date` shows it), so that the time on a line is the one on the user's own clock. The full
//! screen and `--plain` lines show it to the minute, `--trace` to the microsecond.
//!
//! Only the front ends read the clock, here; the sans-IO core never does (it is handed an
//! `Instant`), and these times are for people, never compared or sent.

use chrono::{Local, NaiveTime};

/// The local time of day, now.
pub fn now() -> NaiveTime {
    Local::now().time()
}

/// `HH:MM`: the time a message line carries (the full screen, `chat --plain`).
pub fn minutes(at: NaiveTime) -> String {
    at.format("%H:%M").to_string()
}

/// `HH:MM:SS.micros`: the time a `--trace` line carries.
pub fn micros(at: NaiveTime) -> String {
    at.format("%H:%M:%S%.6f").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day_are_written_to_the_minute_and_to_the_microsecond() {
        let at = NaiveTime::from_hms_micro_opt(1, 2, 3, 42).unwrap();
        assert_eq!(minutes(at), "01:02");
        assert_eq!(micros(at), "01:02:03.000042");
        let late = NaiveTime::from_hms_micro_opt(23, 59, 59, 999_999).unwrap();
        assert_eq!(minutes(late), "23:59");
        assert_eq!(micros(late), "23:59:59.999999");
    }

    #[test]
    fn now_is_the_local_time_of_day() {
        let before = Local::now().time();
        let at = now();
        let after = Local::now().time();
        // Across midnight `after` wraps below `before`; then only one bound can hold.
        assert!(
            (before <= at && at <= after) || after < before,
            "{before} {at} {after}"
        );
    }
}
