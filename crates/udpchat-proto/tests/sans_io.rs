//! The core stays sans-IO: no code of `udpchat-proto` (tests aside) reads the clock, touches
//! the network, files, the environment or the terminal, sleeps, or draws randomness it was not
//! handed. A line that names one of those fails this test with its file and line, so the
//! promise in the crate doc and in ARCHITECTURE.md is checked, not only written.

use std::fs;
use std::path::{Path, PathBuf};

/// What only a driver may do, as it appears in source.
const FORBIDDEN: &[&str] = &[
    "Instant::now",
    "SystemTime",
    "UdpSocket",
    "TcpStream",
    "std::fs",
    "std::env",
    "std::thread::sleep",
    "stdin()",
    "tokio",
    "getrandom",
    "OsRng",
    "thread_rng",
];

#[test]
fn the_core_never_reads_the_clock_nor_does_io() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let test_only = test_only_modules(&src.join("lib.rs"));
    let mut found = Vec::new();
    for file in rust_files(&src) {
        let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if file.parent() == Some(src.as_path()) && test_only.iter().any(|m| m == name) {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            // A file's unit tests come last, after its first `#[cfg(test)]`.
            if line.trim_start() == "#[cfg(test)]" {
                break;
            }
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for word in FORBIDDEN.iter().filter(|w| code.contains(*w)) {
                found.push(format!("{}:{}: {word}", file.display(), number + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "I/O or clock in the core:\n{}",
        found.join("\n")
    );
}

/// The modules `lib.rs` declares under `#[cfg(test)]`: test code, free to use the clock.
fn test_only_modules(lib: &Path) -> Vec<String> {
    let text = fs::read_to_string(lib).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter(|pair| pair[0] == "#[cfg(test)]")
        .filter_map(|pair| {
            let declared = pair[1].strip_suffix(';')?;
            Some(declared.rsplit(' ').next()?.to_owned())
        })
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}
