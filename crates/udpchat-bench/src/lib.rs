//! `udpchat bench`: measures the room server against the machine's limit and against the
//! obvious alternatives, on loopback, bounded in time.
//!
//! Each run starts a fresh target process, puts N members in one room ([`load`]), lets some of
//! them send for a few seconds and counts what everyone else receives. Targets:
//!
//! - `udpchat-framed`: `udpchat serve` with framed clients (reliable, encrypted);
//! - `udpchat-plain`: `udpchat serve` with plain-text guests (the lab's protocol);
//! - `relay`: a minimal batched relay ([`relay`], `recvmmsg`/`sendmmsg`), the floor;
//! - `python`: the lab-style Python relay (`recvfrom`, then `sendto` to each other peer).
//!
//! Reported per run: messages sent, deliveries per second, loss, latency percentiles, the
//! target's CPU time per delivery (from `/proc/PID/stat`), and for one idle run the target's
//! memory per member (from `/proc/PID/status`). [`report`] writes the table and the plot.
//!
//! A crate of its own (not published), run through the `udpchat` binary: [`BenchArgs`] and
//! [`BenchRelayArgs`] are two of its subcommands, and the targets are started as that same
//! binary (`udpchat serve`, `udpchat bench-relay`).

mod args;
pub mod load;
pub mod relay;
pub mod report;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

pub use args::{BenchArgs, BenchRelayArgs};
use load::{Load, MemberKind, Plan};

/// The lab-style relay in Python: what a student would write after step 4.
const PYTHON_RELAY: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
s.bind(("127.0.0.1", 0))
print("listening on udp %s:%d" % s.getsockname(), file=sys.stderr, flush=True)
peers, known = [], set()
while True:
    data, addr = s.recvfrom(65535)
    if addr not in known:
        known.add(addr)
        peers.append(addr)
    for p in peers:
        if p != addr:
            try:
                s.sendto(data, p)
            except OSError:
                pass
"#;

/// What is benchmarked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `udpchat serve`, framed clients.
    Framed,
    /// `udpchat serve`, plain-text guests that take one line per datagram (the lab's client).
    Plain,
    /// `udpchat serve`, plain-text guests that read lines (`nc -u`).
    Lines,
    /// The minimal batched relay.
    Relay,
    /// The lab-style Python relay.
    Python,
}

impl Target {
    /// The name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Target::Framed => "udpchat-framed",
            Target::Plain => "udpchat-plain",
            Target::Lines => "udpchat-nc",
            Target::Relay => "relay",
            Target::Python => "python",
        }
    }

    fn member_kind(self) -> MemberKind {
        match self {
            Target::Framed => MemberKind::Framed,
            Target::Plain => MemberKind::Guest,
            Target::Lines => MemberKind::LineGuest,
            Target::Relay | Target::Python => MemberKind::Raw,
        }
    }

    /// Parses a target name.
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "udpchat-framed" | "framed" => Target::Framed,
            "udpchat-plain" | "plain" => Target::Plain,
            "udpchat-nc" | "nc" => Target::Lines,
            "relay" => Target::Relay,
            "python" => Target::Python,
            _ => bail!(
                "unknown target '{name}': udpchat-framed, udpchat-plain, udpchat-nc, relay or python"
            ),
        })
    }
}

/// The CPUs of the target (the first) and of the load's engine (the others), when the machine
/// has more than one. Pinned, the two never share a CPU: otherwise the scheduler, waking the
/// target on the CPU of the load that woke it, could queue it behind the load's busy-polling
/// thread for a time slice (measured: milliseconds of latency added at random).
pub fn cpu_split() -> Option<(CpuSet, CpuSet)> {
    let cpus = std::thread::available_parallelism().ok()?.get();
    if cpus < 2 {
        return None;
    }
    let mut target = CpuSet::new();
    let mut load = CpuSet::new();
    target.set(0).ok()?;
    for cpu in 1..cpus.min(CpuSet::count()) {
        load.set(cpu).ok()?;
    }
    Some((target, load))
}

/// Pins every thread of process `pid` to the target's CPU (best effort: unpinned, the numbers
/// only get noisier).
fn pin_target(pid: u32) {
    let Some((cpus, _)) = cpu_split() else {
        return;
    };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        if let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) {
            let _ = sched_setaffinity(Pid::from_raw(tid), &cpus);
        }
    }
}

/// A target process; killed when dropped.
struct TargetProcess {
    child: Child,
    address: SocketAddr,
}

impl TargetProcess {
    fn start(target: Target, args: &BenchArgs, scratch: &std::path::Path) -> Result<Self> {
        let exe = std::env::current_exe().context("finding the udpchat binary")?;
        let mut command = match target {
            Target::Framed | Target::Plain | Target::Lines => {
                let mut c = Command::new(&exe);
                c.args([
                    "serve",
                    "--port",
                    "0",
                    "--bind",
                    "127.0.0.1",
                    "--peer-timeout",
                    "120",
                    // The load's senders flood by design: measured without the per-sender
                    // rate limits (the relay and the Python server have none).
                    "--max-message-rate",
                    "0",
                    "--max-byte-rate",
                    "0",
                ])
                .arg("--key-file")
                .arg(scratch.join("bench-server.key"));
                c.arg("--sending-threads")
                    .arg(args.sending_threads.to_string());
                c
            }
            Target::Relay => {
                let mut c = Command::new(&exe);
                c.args(["bench-relay", "--port", "0"]);
                c
            }
            Target::Python => {
                let mut c = Command::new("python3");
                c.args(["-u", "-c", PYTHON_RELAY]);
                c
            }
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "warn")
            .spawn()
            .with_context(|| format!("starting the {} target", target.name()))?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let address = loop {
            let Some(line) = lines.next() else {
                bail!("the {} target ended before listening", target.name());
            };
            let line = line?;
            if let Some(rest) = line.split("listening on udp ").nth(1) {
                let address = rest.split([';', ' ']).next().unwrap_or_default();
                break address
                    .parse::<SocketAddr>()
                    .with_context(|| format!("no address in {line:?}"))?;
            }
        };
        // Keep draining stderr so the target never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        if !args.unpinned {
            pin_target(child.id());
        }
        Ok(Self { child, address })
    }

    /// CPU time used so far (user + system).
    fn cpu(&self) -> Duration {
        cpu_of(&format!("/proc/{}/stat", self.child.id()))
    }

    /// Resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for TargetProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (utime + stime) from a `/proc/…/stat` file; ticks are USER_HZ, 100 on Linux.
fn cpu_of(path: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// One run's numbers.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// What was measured.
    pub target: Target,
    /// Members in the room.
    pub members: usize,
    /// Members sending.
    pub senders: usize,
    /// Offered messages per second (0: as fast as possible).
    pub rate: u32,
    /// Messages sent.
    pub sent: u64,
    /// Deliveries expected: every message to every other member.
    pub expected: u64,
    /// Deliveries counted.
    pub delivered: u64,
    /// Deliveries per second of sending.
    pub deliveries_per_sec: f64,
    /// Latency percentiles (p50, p99, p99.9), microseconds.
    pub latency_us: [u32; 3],
    /// The target's CPU time per delivery, microseconds.
    pub cpu_us_per_delivery: f64,
    /// The target's CPU use during the run, as a share of one core.
    pub target_cpu: f64,
    /// The load generator's CPU use, as a share of one core (near 1.0: it was the bottleneck).
    pub generator_cpu: f64,
    /// The capacity round (the highest offered rate that passed), not the paced one.
    pub capacity: bool,
    /// Which of the repeated measurements this is (1 for the first).
    pub repeat: u32,
}

impl RunResult {
    /// Deliveries lost, as a fraction of those expected.
    pub fn loss(&self) -> f64 {
        if self.expected == 0 {
            return 0.0;
        }
        1.0 - (self.delivered.min(self.expected) as f64 / self.expected as f64)
    }
}

/// The memory run's numbers.
#[derive(Debug, Clone)]
pub struct MemoryResult {
    /// Idle members.
    pub members: usize,
    /// Target RSS before they came, KiB.
    pub empty_kib: u64,
    /// Target RSS with the first half of them, KiB.
    pub half_kib: u64,
    /// Target RSS with them all, KiB.
    pub full_kib: u64,
}

impl MemoryResult {
    /// Bytes per member: what the second half of them added, which leaves out what the
    /// process allocates once (its start-up RSS moves by megabytes from run to run).
    pub fn per_member(&self) -> f64 {
        let second_half = self.members - self.members / 2;
        self.full_kib.saturating_sub(self.half_kib) as f64 * 1024.0 / second_half.max(1) as f64
    }
}

/// Runs `udpchat bench`.
///
/// # Errors
/// A target could not start, or members could not join.
pub fn run(args: &BenchArgs) -> Result<ExitCode> {
    // One thread: the load's members are tasks on it, pinned to the CPU the target leaves.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, drive(args))
}

async fn drive(args: &BenchArgs) -> Result<ExitCode> {
    let targets: Vec<Target> = args
        .targets
        .split(',')
        .map(Target::parse)
        .collect::<Result<_>>()?;
    let sizes: Vec<usize> = args
        .members
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .with_context(|| format!("'{s}' is not a member count"))
        })
        .collect::<Result<_>>()?;
    if sizes.iter().any(|&n| n < 2) {
        bail!("a room needs at least 2 members to relay anything");
    }
    // Before anything starts: a full run takes most of an hour, a quick one minutes.
    eprintln!("bench: {}", Estimate::of(args, targets.len(), sizes.len()));
    let scratch = std::env::temp_dir().join(format!("udpchat-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let mut results: Vec<RunResult> = Vec::new();
    println!("{}", report::header());
    // The repeats of one room size take turns with the other targets, so that a slow minute
    // of the machine falls on one repeat of several targets, not on every repeat of one.
    for &members in &sizes {
        for repeat in 1..=args.repeat {
            for &target in &targets {
                let earlier = report::runs_of(&results, target, members, true);
                let start =
                    report::median_by(&earlier, |r| r.deliveries_per_sec).map(|r| r.rate / 2);
                for mut result in measure(args, target, members, start, &scratch).await? {
                    result.repeat = repeat;
                    println!("{}", report::row(&result));
                    results.push(result);
                }
            }
        }
    }
    let memory = if args.idle > 0 {
        Some(measure_memory(args, &scratch).await?)
    } else {
        None
    };
    if let Some(m) = &memory {
        println!("{}", report::memory_line(m));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if let Some(dir) = &args.out {
        let (table, svg) = report::write(dir, args, &results, memory.as_ref())?;
        println!("wrote {} and {}", table.display(), svg.display());
    }
    for line in report::ratios(&results) {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A target with its members in the room.
struct Rig {
    process: TargetProcess,
    load: Load,
    members: usize,
    /// The target is pinned to its CPU (not `--unpinned`).
    pinned: bool,
}

impl Rig {
    async fn start(
        args: &BenchArgs,
        target: Target,
        members: usize,
        scratch: &std::path::Path,
    ) -> Result<Self> {
        let process = TargetProcess::start(target, args, scratch)?;
        let plan = Plan {
            kind: target.member_kind(),
            target: process.address,
            members,
            first: 0,
            senders: members.min(args.senders),
            payload: args.payload,
            room_size: members,
            unpinned: args.unpinned,
        };
        let load = Load::join(&plan, Instant::now(), Duration::from_secs(300))
            .await
            .with_context(|| format!("{} with {members} members", target.name()))?;
        let rig = Self {
            process,
            load,
            members,
            pinned: !args.unpinned,
        };
        rig.settle().await;
        Ok(rig)
    }

    /// Waits (at most a minute) until the target is idle: the arrivals' notices (N² of them
    /// in a big room) have been delivered, so that the first round does not measure them.
    async fn settle(&self) {
        let give_up = Instant::now() + Duration::from_secs(60);
        let mut before = self.process.cpu();
        while Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.process.cpu();
            // Under 5% of a core.
            if now.saturating_sub(before) <= Duration::from_millis(10) {
                return;
            }
            before = now;
        }
    }

    /// One round at `rate` messages per second.
    async fn round(
        &mut self,
        target: Target,
        senders: usize,
        rate: u32,
        duration: Duration,
    ) -> RunResult {
        // Progress on stderr (the table goes to stdout): a full run takes many minutes, and
        // the process id lets a profiler attach to the target during a round.
        eprintln!(
            "bench: {} with {} members (pid {}): {rate} messages/s for {}s",
            target.name(),
            self.members,
            self.process.child.id(),
            duration.as_secs_f64()
        );
        if self.pinned {
            // Again: threads the target started after it said it was listening (its sending
            // threads) belong on its CPU too.
            pin_target(self.process.child.id());
        }
        let round = self.load.start(rate, duration);
        tokio::time::sleep_until(round.start.into()).await;
        let (cpu_before, generator_before) = (self.process.cpu(), cpu_of("/proc/self/stat"));
        tokio::time::sleep_until(round.stop.into()).await;
        let (cpu, generator) = (
            self.process.cpu().saturating_sub(cpu_before),
            cpu_of("/proc/self/stat").saturating_sub(generator_before),
        );
        let reports = self.load.finish(round).await;
        let sent: u64 = reports.iter().map(|r| r.sent).sum();
        let delivered: u64 = reports.iter().map(|r| r.received).sum();
        let mut latencies: Vec<u32> = reports.into_iter().flat_map(|r| r.latencies_us).collect();
        latencies.sort_unstable();
        let percentile = |p: f64| -> u32 {
            if latencies.is_empty() {
                return 0;
            }
            let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
            latencies[i]
        };
        let seconds = duration.as_secs_f64();
        let result = RunResult {
            target,
            members: self.members,
            senders,
            rate,
            sent,
            expected: sent * (self.members as u64 - 1),
            delivered,
            deliveries_per_sec: delivered as f64 / seconds,
            latency_us: [percentile(0.5), percentile(0.99), percentile(0.999)],
            cpu_us_per_delivery: if delivered == 0 {
                0.0
            } else {
                cpu.as_secs_f64() * 1e6 / delivered as f64
            },
            target_cpu: cpu.as_secs_f64() / seconds,
            generator_cpu: generator.as_secs_f64() / seconds,
            capacity: false,
            repeat: 1,
        };
        eprintln!(
            "bench:   {:.0} deliveries/s, loss {:.2}%, p99 {} µs, {:.2} µs of target CPU per delivery: {}",
            result.deliveries_per_sec,
            result.loss() * 100.0,
            result.latency_us[1],
            result.cpu_us_per_delivery,
            if passes(&result) { "passes" } else { "fails" }
        );
        result
    }
}

/// A round passes when at least 99% of the deliveries arrived, with p99 under 100 ms.
fn passes(r: &RunResult) -> bool {
    r.sent > 0 && r.loss() <= 0.01 && r.latency_us[1] <= P99_LIMIT_US
}

/// The latency a passing round may not exceed at p99 (in a room of 1000, each message is 999
/// datagrams: some 3 ms of kernel time to send alone, and tens of ms at capacity).
pub const P99_LIMIT_US: u32 = 100_000;

/// Bisection steps after the doubling found a failing rate: the capacity is known to within
/// 1/16 of the last doubling step (about 6%; two steps left 25%, more than the differences
/// the targets are about).
const CAPACITY_BISECTIONS: u32 = 4;

/// Measures one target with `members` members: latency at the paced load, then its capacity:
/// the offered rate doubles (from `start` messages/s, or 10,000 deliveries/s) until a round
/// fails, then [`CAPACITY_BISECTIONS`] bisection steps; the best passing round is the
/// capacity. A failed round may leave backlog behind, so the next one gets a fresh target and
/// members. A repeat starts from half the capacity found before: a round or two of doubling
/// instead of five or more.
async fn measure(
    args: &BenchArgs,
    target: Target,
    members: usize,
    start: Option<u32>,
    scratch: &std::path::Path,
) -> Result<Vec<RunResult>> {
    let senders = members.min(args.senders);
    let per_delivery =
        |deliveries: f64| ((deliveries / (members - 1) as f64).round() as u32).max(1);
    let mut rig = Rig::start(args, target, members, scratch).await?;
    let paced = rig
        .round(
            target,
            senders,
            per_delivery(f64::from(args.latency_load)),
            args.duration,
        )
        .await;
    let mut rig = Some(rig);
    let mut best: Option<RunResult> = None;
    let mut failed: Option<u32> = None;
    let mut rate = start.unwrap_or_else(|| per_delivery(10_000.0)).max(1);
    let mut bisections = 0;
    loop {
        let current = match rig.as_mut() {
            Some(r) => r,
            None => rig.insert(Rig::start(args, target, members, scratch).await?),
        };
        let result = current.round(target, senders, rate, args.duration).await;
        if passes(&result) {
            best = Some(result);
        } else {
            failed = Some(rate);
            rig = None;
        }
        let low = best.as_ref().map_or(0, |b| b.rate);
        rate = match failed {
            // Still passing: double, up to what loopback could ever carry.
            None if f64::from(rate) * (members - 1) as f64 >= 4e6 => break,
            None => rate * 2,
            Some(high) => {
                if bisections == CAPACITY_BISECTIONS || high <= low + 1 {
                    break;
                }
                bisections += 1;
                (low + high) / 2
            }
        };
        if failed.is_some() && rate == low {
            break;
        }
    }
    let mut out = vec![paced];
    if let Some(mut best) = best {
        best.capacity = true;
        out.push(best);
    }
    Ok(out)
}

/// Capacity rounds of the first repeat that double the rate before one fails: from 10,000
/// deliveries/s to the few hundred thousand (up to a million) where the targets' capacities lie
/// on loopback (docs/PERFORMANCE.md), plus the failing one.
const TYPICAL_FIRST_DOUBLINGS: u32 = 7;

/// Capacity rounds of a later repeat before the bisection: it starts from half the capacity
/// found before, so one round passes and the next fails.
const TYPICAL_LATER_DOUBLINGS: u32 = 2;

/// Time a round costs beyond its `--duration`: the members' queues drain and the result is
/// counted, and after a failed round a fresh target starts and its members join.
const ROUND_OVERHEAD: Duration = Duration::from_secs(1);

/// How long `bench` should take with its arguments, said before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// Targets × room sizes × repeats.
    pub measurements: u32,
    /// Rounds in all (paced and capacity), typically.
    pub rounds: u32,
    /// Seconds each round sends.
    pub duration: Duration,
    /// The whole run, typically (without the memory run).
    pub total: Duration,
    /// Idle members of the memory run (0: none).
    pub idle: usize,
}

impl Estimate {
    /// The estimate for `args`, with `targets` targets and `sizes` room sizes: per target and
    /// room size, one paced round and a capacity search per repeat (doublings, then
    /// four bisections), each round `--duration` plus a second of overhead.
    pub fn of(args: &BenchArgs, targets: usize, sizes: usize) -> Self {
        let per_repeat = |doublings: u32| 1 + doublings + CAPACITY_BISECTIONS;
        let per_target_and_size = per_repeat(TYPICAL_FIRST_DOUBLINGS)
            + per_repeat(TYPICAL_LATER_DOUBLINGS) * args.repeat.saturating_sub(1);
        let pairs = u32::try_from(targets * sizes).unwrap_or(u32::MAX);
        let rounds = pairs.saturating_mul(per_target_and_size);
        Self {
            measurements: pairs.saturating_mul(args.repeat),
            rounds,
            duration: args.duration,
            total: (args.duration + ROUND_OVERHEAD).saturating_mul(rounds),
            idle: args.idle,
        }
    }
}

impl std::fmt::Display for Estimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.total.as_secs();
        let about = if secs < 90 {
            format!("{secs} seconds")
        } else if secs < 90 * 60 {
            format!("{} minutes", (secs + 30) / 60)
        } else {
            format!("{:.1} hours", secs as f64 / 3600.0)
        };
        write!(
            f,
            "{} measurements, about {} rounds of {}: expect about {about}",
            self.measurements,
            self.rounds,
            args::fmt_secs(self.duration),
        )?;
        if self.idle > 0 {
            write!(f, ", then the memory run with {} idle members", self.idle)?;
        }
        Ok(())
    }
}

/// Idle members are spread over rooms of this many (in one room, each arrival would be
/// announced to everyone before: N² notices).
const IDLE_ROOM: usize = 100;

async fn measure_memory(args: &BenchArgs, scratch: &std::path::Path) -> Result<MemoryResult> {
    let members = args.idle;
    let process = TargetProcess::start(Target::Framed, args, scratch)?;
    let empty_kib = process.rss_kib();
    let half = members / 2;
    let plan = |first: usize, count: usize| Plan {
        kind: MemberKind::Framed,
        target: process.address,
        members: count,
        first,
        senders: 0,
        payload: 0,
        room_size: IDLE_ROOM,
        unpinned: args.unpinned,
    };
    let first_half = Load::join(&plan(0, half), Instant::now(), Duration::from_secs(300))
        .await
        .with_context(|| format!("{half} idle members"))?;
    let half_kib = process.rss_kib();
    let second_half = Load::join(
        &plan(half, members - half),
        Instant::now(),
        Duration::from_secs(300),
    )
    .await
    .with_context(|| format!("{members} idle members"))?;
    let full_kib = process.rss_kib();
    drop((first_half, second_half));
    Ok(MemoryResult {
        members,
        empty_kib,
        half_kib,
        full_kib,
    })
}

/// Where `bench --out` writes by default.
pub fn default_out() -> PathBuf {
    PathBuf::from("docs")
}
