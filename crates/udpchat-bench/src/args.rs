//! The command-line arguments of `udpchat bench` and of the hidden `udpchat bench-relay`; the
//! `udpchat` binary parses them as two of its subcommands.

use std::time::Duration;

use clap::Args;

use crate::Target;

/// Arguments of `udpchat bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Room sizes to measure, comma-separated.
    #[arg(long, default_value = "2,10,100,1000", value_parser = parse_room_sizes)]
    pub members: String,
    /// What to measure, comma-separated: udpchat-framed, udpchat-plain (guests taking one
    /// line per datagram, as the lab's client), udpchat-nc (guests reading lines, as `nc -u`),
    /// relay, python.
    #[arg(
        long,
        default_value = "udpchat-framed,udpchat-plain,udpchat-nc,relay,python",
        value_parser = parse_bench_targets
    )]
    pub targets: String,
    /// Members that send (at most the room size).
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Seconds each run sends.
    #[arg(long, value_name = "SECONDS", default_value = "3", value_parser = parse_seconds)]
    pub duration: Duration,
    /// Bytes of text per message.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Deliveries per second offered in the paced (latency) runs.
    #[arg(long, default_value_t = 20_000)]
    pub latency_load: u32,
    /// Times each target's latency and capacity are measured (in turns with the other
    /// targets); the median is reported, and every repeat's capacity with it.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeat: u32,
    /// Sending threads for the udpchat targets (`serve --sending-threads`).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=64))]
    pub sending_threads: u16,
    /// Pin neither target nor load to a CPU, and let the load sleep when idle instead of
    /// busy-polling: the target may use every CPU the load leaves (to measure sending
    /// threads; latency gets noisier).
    #[arg(long)]
    pub unpinned: bool,
    /// Idle framed members for the memory run (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    pub idle: usize,
    /// Write bench-results.md and bench-deliveries.svg into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
}

/// Arguments of the hidden `udpchat bench-relay`.
#[derive(Debug, Args)]
pub struct BenchRelayArgs {
    /// UDP port on 127.0.0.1 (0: any free one, printed on stderr).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

/// `bench --targets`: comma-separated names of targets `bench` knows.
///
/// # Errors
/// The first unknown name, with the known ones.
pub fn parse_bench_targets(text: &str) -> Result<String, String> {
    for name in text.split(',') {
        Target::parse(name).map_err(|e| e.to_string())?;
    }
    Ok(text.to_owned())
}

/// `bench --members`: comma-separated room sizes, each at least 2.
///
/// # Errors
/// The first size that is not a number, or under 2.
pub fn parse_room_sizes(text: &str) -> Result<String, String> {
    for size in text.split(',') {
        match size.trim().parse::<usize>() {
            Ok(n) if n >= 2 => {}
            Ok(_) => return Err("a room needs at least 2 members to relay anything".into()),
            Err(_) => return Err(format!("'{size}' is not a member count")),
        }
    }
    Ok(text.to_owned())
}

/// `bench --duration`: a positive number of seconds, fractions allowed (`0.5`, `2`, `30`); the
/// same rule as every other seconds argument of `udpchat` (this crate cannot use the CLI's).
fn parse_seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 * 365.0 {
        return Err(format!(
            "'{text}' seconds is out of range (give more than 0)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Seconds as the CLI writes them: `2s`, `0.5s`, `1.25s`.
pub(crate) fn fmt_secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!(
            "{}s",
            format!("{:.3}", d.as_secs_f64()).trim_end_matches('0')
        )
    }
}
