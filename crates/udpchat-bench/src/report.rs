//! The benchmark's output: a Markdown table (printed as runs finish, and written with the
//! ratios to `bench-results.md`) and an SVG bar chart of deliveries per second
//! (`bench-deliveries.svg`), drawn by hand: no plotting dependency for a few rectangles.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{MemoryResult, RunResult, Target};
use crate::BenchArgs;

/// The table's header.
pub fn header() -> String {
    "| target | members | run | repeat | senders | offered msg/s | sent | deliveries/s | loss | p50 µs | p99 µs | p99.9 µs | target CPU µs/delivery | target CPU | generator CPU |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|".to_owned()
}

/// One run as a table row.
pub fn row(r: &RunResult) -> String {
    let run = if r.capacity { "capacity" } else { "paced" };
    format!(
        "| {} | {} | {run} | {} | {} | {} | {} | {:.0} | {:.2}% | {} | {} | {} | {:.2} | {:.0}% | {:.0}% |",
        r.target.name(),
        r.members,
        r.repeat,
        r.senders,
        r.rate,
        r.sent,
        r.deliveries_per_sec,
        r.loss() * 100.0,
        r.latency_us[0],
        r.latency_us[1],
        r.latency_us[2],
        r.cpu_us_per_delivery,
        r.target_cpu * 100.0,
        r.generator_cpu * 100.0,
    )
}

/// The memory run, in words.
pub fn memory_line(m: &MemoryResult) -> String {
    format!(
        "memory: {} idle framed members took the server from {} KiB to {} KiB ({} KiB with half of them): {:.0} bytes per member (what the second half added)",
        m.members,
        m.empty_kib,
        m.full_kib,
        m.half_kib,
        m.per_member()
    )
}

/// The element whose `key` is the median (the lower of the middle two for an even count).
pub fn median_by<'a>(
    runs: &[&'a RunResult],
    key: impl Fn(&RunResult) -> f64,
) -> Option<&'a RunResult> {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| key(a).total_cmp(&key(b)));
    sorted.get(sorted.len().saturating_sub(1) / 2).copied()
}

/// The capacity runs (`capacity`) or paced runs of `target` with `members` members.
pub fn runs_of(
    results: &[RunResult],
    target: Target,
    members: usize,
    capacity: bool,
) -> Vec<&RunResult> {
    results
        .iter()
        .filter(|r| r.target == target && r.members == members && r.capacity == capacity)
        .collect()
}

/// The runs that stand for all the repeats, in the order first measured: for each target
/// and room size, the paced run of median p99 latency and the capacity run of median
/// deliveries per second.
pub fn medians(results: &[RunResult]) -> Vec<RunResult> {
    let mut out: Vec<RunResult> = Vec::new();
    for r in results {
        if out
            .iter()
            .any(|o| o.target == r.target && o.members == r.members && o.capacity == r.capacity)
        {
            continue;
        }
        let runs = runs_of(results, r.target, r.members, r.capacity);
        let median = if r.capacity {
            median_by(&runs, |r| r.deliveries_per_sec)
        } else {
            median_by(&runs, |r| f64::from(r.latency_us[1]))
        };
        out.extend(median.cloned());
    }
    out
}

/// The ratios the targets are judged by, one line each: median capacities, with every
/// repeat's capacity (thousands of deliveries/s) in brackets.
pub fn ratios(results: &[RunResult]) -> Vec<String> {
    let mut sizes: Vec<usize> = results.iter().map(|r| r.members).collect();
    sizes.dedup();
    let each = |target: Target, n: usize| -> String {
        runs_of(results, target, n, true)
            .iter()
            .map(|r| format!("{:.0}", r.deliveries_per_sec / 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut lines = Vec::new();
    for n in sizes {
        let capacity =
            |target| median_by(&runs_of(results, target, n, true), |r| r.deliveries_per_sec);
        let Some(relay) = capacity(Target::Relay) else {
            continue;
        };
        let base = relay.deliveries_per_sec.max(1.0);
        let mut parts = Vec::new();
        for target in [Target::Plain, Target::Lines, Target::Framed, Target::Python] {
            if let Some(r) = capacity(target) {
                parts.push(format!(
                    "{} {:.2}x [{}]",
                    target.name(),
                    r.deliveries_per_sec / base,
                    each(target, n)
                ));
            }
        }
        lines.push(format!(
            "N={n}: median capacity in deliveries/s, relative to the minimal relay's ({base:.0}/s) [each repeat, thousands/s: {}]: {}",
            each(Target::Relay, n),
            parts.join(", ")
        ));
    }
    lines
}

/// Writes `bench-results.md` and `bench-deliveries.svg` into `dir`.
///
/// # Errors
/// The files could not be written.
pub fn write(
    dir: &Path,
    args: &BenchArgs,
    results: &[RunResult],
    memory: Option<&MemoryResult>,
) -> Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let mut md = String::new();
    let _ = writeln!(md, "# udpchat bench: results\n");
    let _ = writeln!(
        md,
        "Written by `udpchat bench` (see [PERFORMANCE.md](PERFORMANCE.md)); arguments: members {}, targets {}, {} repeats, {} s per run, {}-byte messages, up to {} senders, paced runs at {} deliveries/s.\n",
        args.members,
        args.targets,
        args.repeat,
        args.duration.as_secs_f64(),
        args.payload,
        args.senders,
        args.latency_load
    );
    if args.sending_threads > 0 || args.unpinned {
        let _ = writeln!(
            md,
            "The udpchat targets ran with `--sending-threads {}`; target and load {}.\n",
            args.sending_threads,
            if args.unpinned {
                "unpinned, the load sleeping when idle"
            } else {
                "pinned to CPUs of their own"
            }
        );
    }
    let _ = writeln!(md, "Machine: {}.\n", machine());
    let _ = writeln!(
        md,
        "The median of the repeats: for each target and room size, the paced run of median p99 and the capacity run of median deliveries/s (column *repeat* says which).\n"
    );
    let _ = writeln!(md, "{}", header());
    for r in medians(results) {
        let _ = writeln!(md, "{}", row(&r));
    }
    let _ = writeln!(md);
    for line in ratios(results) {
        let _ = writeln!(md, "- {line}");
    }
    if let Some(m) = memory {
        let _ = writeln!(md, "- {}", memory_line(m));
    }
    if args.repeat > 1 {
        let _ = writeln!(md, "\n## Every run\n\n{}", header());
        for r in results {
            let _ = writeln!(md, "{}", row(r));
        }
    }
    let table = dir.join("bench-results.md");
    std::fs::write(&table, md).with_context(|| format!("writing {}", table.display()))?;
    let svg_path = dir.join("bench-deliveries.svg");
    std::fs::write(&svg_path, svg(results))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    Ok((table, svg_path))
}

/// A few facts about the machine the numbers come from.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    format!("{cores} cores of {cpu}, Linux {kernel}")
}

/// Grouped bars: capacity in deliveries per second, one group per room size, one bar per
/// target.
pub fn svg(results: &[RunResult]) -> String {
    let medians = medians(results);
    let flat: Vec<&RunResult> = medians.iter().filter(|r| r.capacity).collect();
    let mut sizes: Vec<usize> = flat.iter().map(|r| r.members).collect();
    sizes.dedup();
    let mut targets: Vec<Target> = Vec::new();
    for r in &flat {
        if !targets.contains(&r.target) {
            targets.push(r.target);
        }
    }
    let max = flat
        .iter()
        .map(|r| r.deliveries_per_sec)
        .fold(1.0_f64, f64::max);
    let (width, height, left, bottom, top) = (760.0, 400.0, 70.0, 50.0, 40.0);
    let plot_h = height - bottom - top;
    let group_w = (width - left - 20.0) / sizes.len().max(1) as f64;
    let bar_w = (group_w - 20.0) / targets.len().max(1) as f64;
    let colours = ["#1f77b4", "#2ca02c", "#ff7f0e", "#7f7f7f", "#d62728"];
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14">Capacity (median): deliveries per second with ≤1% loss and p99 ≤ 100 ms, by room size</text>"#,
        width / 2.0
    );
    for i in 0..=4 {
        let value = max * f64::from(i) / 4.0;
        let y = top + plot_h - plot_h * f64::from(i) / 4.0;
        let _ = writeln!(
            out,
            r##"<line x1="{left}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            width - 20.0,
            left - 5.0,
            y + 4.0,
            human(value)
        );
    }
    for (g, n) in sizes.iter().enumerate() {
        let x0 = left + g as f64 * group_w + 10.0;
        for (t, target) in targets.iter().enumerate() {
            let Some(r) = flat.iter().find(|r| r.members == *n && r.target == *target) else {
                continue;
            };
            let h = plot_h * r.deliveries_per_sec / max;
            let x = x0 + t as f64 * bar_w;
            let _ = writeln!(
                out,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{} N={n}: {:.0}/s</title></rect>"#,
                top + plot_h - h,
                bar_w - 2.0,
                colours[t % colours.len()],
                target.name(),
                r.deliveries_per_sec
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">N = {n}</text>"#,
            x0 + (group_w - 20.0) / 2.0,
            top + plot_h + 18.0
        );
    }
    for (t, target) in targets.iter().enumerate() {
        let x = left + t as f64 * 135.0;
        let y = height - 12.0;
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{y}">{}</text>"#,
            y - 10.0,
            colours[t % colours.len()],
            x + 16.0,
            target.name()
        );
    }
    out.push_str("</svg>\n");
    out
}

fn human(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.0}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(target: Target, members: usize, rate: u32, per_sec: f64) -> RunResult {
        let capacity = rate != 2222;
        RunResult {
            target,
            members,
            senders: 2,
            rate,
            sent: 100,
            expected: 100 * (members as u64 - 1),
            delivered: 90 * (members as u64 - 1),
            deliveries_per_sec: per_sec,
            latency_us: [100, 900, 2000],
            cpu_us_per_delivery: 3.25,
            target_cpu: 0.5,
            generator_cpu: 0.9,
            capacity,
            repeat: 1,
        }
    }

    #[test]
    fn rows_ratios_and_the_plot_show_the_numbers() {
        let results = vec![
            result(Target::Relay, 10, 0, 200_000.0),
            result(Target::Plain, 10, 0, 180_000.0),
            result(Target::Framed, 10, 0, 100_000.0),
            result(Target::Framed, 10, 2222, 20_000.0),
        ];
        let r = row(&results[1]);
        assert!(
            r.contains("| udpchat-plain | 10 | capacity | 1 | 2 | 0 | 100 | 180000 | 10.00% | 100 | 900 | 2000 | 3.25 |"),
            "{r}"
        );
        assert_eq!(
            ratios(&results),
            [
                "N=10: median capacity in deliveries/s, relative to the minimal relay's (200000/s) [each repeat, thousands/s: 200]: udpchat-plain 0.90x [180], udpchat-framed 0.50x [100]"
            ]
        );
        let svg = svg(&results);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<title>").count(),
            3,
            "one bar per capacity run"
        );
        assert!(svg.contains("udpchat-framed N=10: 100000/s"));
    }

    #[test]
    fn repeats_are_summed_up_by_their_median() {
        let repeat = |mut r: RunResult, n: u32| {
            r.repeat = n;
            r
        };
        let paced = |p99: u32, n: u32| {
            let mut r = repeat(result(Target::Plain, 10, 2222, 20_000.0), n);
            r.latency_us[1] = p99;
            r
        };
        let results = vec![
            paced(900, 1),
            repeat(result(Target::Plain, 10, 5, 300_000.0), 1),
            repeat(result(Target::Relay, 10, 5, 400_000.0), 1),
            paced(5000, 2),
            repeat(result(Target::Plain, 10, 5, 360_000.0), 2),
            repeat(result(Target::Relay, 10, 5, 380_000.0), 2),
            paced(700, 3),
            repeat(result(Target::Plain, 10, 5, 380_000.0), 3),
            repeat(result(Target::Relay, 10, 5, 350_000.0), 3),
        ];
        let medians = medians(&results);
        let picked: Vec<(Target, bool, u32)> = medians
            .iter()
            .map(|r| (r.target, r.capacity, r.repeat))
            .collect();
        assert_eq!(
            picked,
            [
                (Target::Plain, false, 1),
                (Target::Plain, true, 2),
                (Target::Relay, true, 2)
            ]
        );
        assert_eq!(
            ratios(&results),
            [
                "N=10: median capacity in deliveries/s, relative to the minimal relay's (380000/s) [each repeat, thousands/s: 400, 380, 350]: udpchat-plain 0.95x [300, 360, 380]"
            ]
        );
        assert!(svg(&results).contains("udpchat-plain N=10: 360000/s"));
        let two = [&results[1], &results[4]];
        assert_eq!(
            median_by(&two, |r| r.deliveries_per_sec).map(|r| r.repeat),
            Some(1),
            "of two, the lower"
        );
        assert!(median_by(&[], |r| r.deliveries_per_sec).is_none());
    }
}
