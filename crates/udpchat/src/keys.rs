//! Keys on disk, for secure rooms (`serve --key-file`, `join`'s pinning).
//!
//! - The server's static key: created on first start with mode 0600 under a fresh, unguessable
//!   temporary name (created exclusively, so nobody can plant a file or link there first), then
//!   linked into place. An existing key file is used only if it is a regular file (not a
//!   symbolic link, directory or device), owned by the user running the server, and readable by
//!   nobody else (as ssh refuses a private key with loose permissions).
//! - The client's known servers, like SSH's `known_hosts`: the first key seen for a server is
//!   pinned (trust on first use), and a later different key is refused loudly. Pins are
//!   written under an exclusive lock (`known_servers.lock`), re-reading the file first, so
//!   several `join`s pinning at once never lose one another's pins.
//!
//! Both live in the user's data directory: `$XDG_DATA_HOME/udpchat`, or
//! `~/.local/share/udpchat`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use udpchat_proto::crypto::{KEY_LEN, StaticKeypair, fingerprint};

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing failed.
    #[error("cannot use {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The file is not what udpchat writes.
    #[error("{path}: not a udpchat key file ({why})")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: &'static str,
    },
    /// Others may read the private key.
    #[error("{path}: the private key is readable by others (mode {mode:o}); run: chmod 600 {path}")]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path is a symbolic link: whoever can change the link chooses the key.
    #[error("{path}: is a symbolic link; refusing it (give the key file's real path)")]
    Symlink {
        /// The file.
        path: PathBuf,
    },
    /// A directory, device, pipe or socket, not a key file.
    #[error("{path}: not a regular file; refusing it")]
    NotAFile {
        /// The file.
        path: PathBuf,
    },
    /// Another user owns the file (and so chose the key, or may change it).
    #[error("{path}: owned by uid {owner}, not by this user (uid {me}); refusing it")]
    NotOwned {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The user running udpchat.
        me: u32,
    },
    /// The key could not be derived.
    #[error("{0}")]
    Crypto(#[from] udpchat_proto::crypto::CryptoError),
}

/// The directory udpchat keeps its keys in.
pub fn data_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("udpchat")),
        None => {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share/udpchat"))
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; KEY_LEN]> {
    let text = text.trim();
    if text.len() != KEY_LEN * 2 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; KEY_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

/// Loads the server's key from `path`, or creates it there (mode 0600, parent directories as
/// needed) from `fresh_private` when the file does not exist. Returns the key and whether it
/// was created.
///
/// # Errors
/// [`KeyError`]: unreadable, malformed, or readable by others.
pub fn load_or_create_server_key(
    path: &Path,
    fresh_private: impl FnOnce() -> [u8; KEY_LEN],
) -> Result<(StaticKeypair, bool), KeyError> {
    // lstat: a symbolic link is reported as one, not followed.
    match fs::symlink_metadata(path) {
        Ok(_) => Ok((load_server_key(path)?, false)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(io_error(dir))?;
            }
            let keys = StaticKeypair::from_private(fresh_private())?;
            let text = format!(
                "# udpchat server key (private: keep it secret). Fingerprint {}\n{}\n",
                fingerprint(&keys.public),
                hex(&keys.private)
            );
            // Written whole under a fresh private name, then linked into place: another
            // server starting at the same moment never reads half a key, and the first link
            // wins. The name is created exclusively (O_CREAT|O_EXCL, mode 0600), so a file or
            // link planted there in advance is never written through.
            let (tmp, mut file) = create_temporary(path)?;
            let written = file
                .write_all(text.as_bytes())
                .and_then(|()| file.sync_all());
            drop(file);
            if let Err(e) = written {
                let _ = fs::remove_file(&tmp);
                return Err(io_error(&tmp)(e));
            }
            let linked = fs::hard_link(&tmp, path);
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Ok((load_server_key(path)?, false));
                }
                Err(e) => return Err(io_error(path)(e)),
            }
            Ok((keys, true))
        }
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Loads an existing server key: a regular file of this user's that nobody else can read.
fn load_server_key(path: &Path) -> Result<StaticKeypair, KeyError> {
    // First by name (lstat), for a clear error; then the file actually opened (fstat), so
    // that swapping the file between the two cannot slip anything past the checks.
    check_private_file(path, &fs::symlink_metadata(path).map_err(io_error(path))?)?;
    let mut file = OpenOptions::new()
        .read(true)
        // Never follow a link; never wait on a pipe put there.
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) => KeyError::Symlink {
                path: path.to_owned(),
            },
            _ => io_error(path)(e),
        })?;
    check_private_file(path, &file.metadata().map_err(io_error(path))?)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io_error(path))?;
    let line = text
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty());
    let private = line.and_then(unhex).ok_or_else(|| KeyError::Malformed {
        path: path.to_owned(),
        why: "expected 64 hex digits",
    })?;
    Ok(StaticKeypair::from_private(private)?)
}

/// Refuses a key file that is not a regular file, belongs to another user, or that others
/// may read.
fn check_private_file(path: &Path, meta: &fs::Metadata) -> Result<(), KeyError> {
    let path = path.to_owned();
    if meta.file_type().is_symlink() {
        return Err(KeyError::Symlink { path });
    }
    if !meta.file_type().is_file() {
        return Err(KeyError::NotAFile { path });
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(KeyError::NotOwned {
            path,
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen { path, mode });
    }
    Ok(())
}

/// Creates a new file beside `path`, exclusively (O_CREAT|O_EXCL: never an existing file or
/// link), mode 0600, under a name nobody can predict: `.NAME.tmp-PID-NANOS-COUNT`, where
/// NANOS is the clock's nanoseconds mixed with the counter. Tries again on a name taken.
fn create_temporary(path: &Path) -> Result<(PathBuf, File), KeyError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "udpchat".into(), |n| n.to_string_lossy().into_owned());
    let mut last = None;
    for _ in 0..16 {
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let tmp = path.with_file_name(format!(
            ".{name}.tmp-{}-{nanos:x}-{count}",
            std::process::id()
        ));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((tmp, e)),
            Err(e) => return Err(io_error(&tmp)(e)),
        }
    }
    let (tmp, e) = last.expect("the loop ran and every name was taken");
    Err(io_error(&tmp)(e))
}

/// What the known-servers file says about a server's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// Never seen: pin it (trust on first use).
    New,
    /// The pinned key.
    Matches,
    /// A different key is pinned: refuse.
    Changed {
        /// The pinned key.
        pinned: [u8; KEY_LEN],
    },
}

/// The client's pinned server keys: one `SERVER KEY-HEX` line each.
#[derive(Debug, Default)]
pub struct KnownServers {
    path: PathBuf,
    keys: BTreeMap<String, [u8; KEY_LEN]>,
}

impl KnownServers {
    /// Reads `path` (a missing file is an empty list).
    ///
    /// # Errors
    /// [`KeyError`] when the file exists but cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let mut keys = BTreeMap::new();
        match fs::read_to_string(path) {
            Ok(text) => {
                for line in text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                {
                    let (server, key) = line
                        .split_once(char::is_whitespace)
                        .and_then(|(s, k)| Some((s.to_owned(), unhex(k)?)))
                        .ok_or_else(|| KeyError::Malformed {
                            path: path.to_owned(),
                            why: "expected SERVER KEY",
                        })?;
                    keys.insert(server, key);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(path)(e)),
        }
        Ok(Self {
            path: path.to_owned(),
            keys,
        })
    }

    /// The key pinned for `server`, if any.
    pub fn pinned(&self, server: &str) -> Option<[u8; KEY_LEN]> {
        self.keys.get(server).copied()
    }

    /// What is known of `server`'s key.
    pub fn check(&self, server: &str, key: &[u8; KEY_LEN]) -> Pin {
        match self.keys.get(server) {
            None => Pin::New,
            Some(pinned) if pinned == key => Pin::Matches,
            Some(pinned) => Pin::Changed { pinned: *pinned },
        }
    }

    /// Pins `key` for `server` and saves the file. Under an exclusive lock on
    /// `known_servers.lock`, the file is read again (another `join` may have pinned since it
    /// was loaded), the pin added, and the whole written to a fresh temporary file that is
    /// renamed into place: concurrent pins never lose one another.
    ///
    /// Returns [`Pin::New`] when pinned now, [`Pin::Matches`] when the same key was pinned
    /// meanwhile, and [`Pin::Changed`] (nothing written: the first pin wins) when another key
    /// was.
    ///
    /// # Errors
    /// [`KeyError::Io`], or [`KeyError::Malformed`] if the file was damaged meanwhile.
    pub fn pin(&mut self, server: &str, key: [u8; KEY_LEN]) -> Result<Pin, KeyError> {
        self.save_pin(server, key, false)
    }

    /// Pins `key` for `server` in place of any earlier pin (the user named this key), as
    /// [`pin`](Self::pin) does otherwise. Returns what was known before.
    ///
    /// # Errors
    /// As for [`pin`](Self::pin).
    pub fn replace(&mut self, server: &str, key: [u8; KEY_LEN]) -> Result<Pin, KeyError> {
        self.save_pin(server, key, true)
    }

    fn save_pin(
        &mut self,
        server: &str,
        key: [u8; KEY_LEN],
        replace: bool,
    ) -> Result<Pin, KeyError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        let mut lock_name = self.path.file_name().unwrap_or_default().to_owned();
        lock_name.push(".lock");
        let lock_path = self.path.with_file_name(lock_name);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        // flock(LOCK_EX): held until `lock` is dropped at the end of this function.
        lock.lock().map_err(io_error(&lock_path))?;
        self.keys = Self::load(&self.path)?.keys;
        let before = self.check(server, &key);
        match before {
            Pin::New => {}
            Pin::Changed { .. } if replace => {}
            _ => return Ok(before),
        }
        self.keys.insert(server.to_owned(), key);
        let mut text = String::from("# udpchat known servers: SERVER KEY (pinned on first use)\n");
        for (server, key) in &self.keys {
            text.push_str(&format!("{server} {}\n", hex(key)));
        }
        let (tmp, mut file) = create_temporary(&self.path)?;
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all());
        drop(file);
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io_error(&tmp)(e));
        }
        if let Err(e) = fs::rename(&tmp, &self.path) {
            let _ = fs::remove_file(&tmp);
            return Err(io_error(&self.path)(e));
        }
        drop(lock);
        Ok(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("udpchat-keys-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_server_key_is_created_private_then_loaded_the_same() {
        let dir = scratch("create");
        let path = dir.join("deep/server.key");
        let (created, fresh) = load_or_create_server_key(&path, || [9; KEY_LEN]).unwrap();
        assert!(fresh);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (loaded, fresh) =
            load_or_create_server_key(&path, || panic!("must not create")).unwrap();
        assert!(!fresh);
        assert_eq!(loaded.public, created.public);
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn an_open_or_malformed_key_file_is_refused() {
        let dir = scratch("refuse");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.key");
        fs::write(&path, "00".repeat(32)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create_server_key(&path, || [0; KEY_LEN]).unwrap_err();
        assert!(
            err.to_string()
                .contains("readable by others (mode 644); run: chmod 600"),
            "{err}"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "not hex").unwrap();
        let err = load_or_create_server_key(&path, || [0; KEY_LEN]).unwrap_err();
        assert!(matches!(err, KeyError::Malformed { .. }), "{err}");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn known_servers_pin_on_first_use_and_refuse_a_change() {
        let dir = scratch("known");
        let path = dir.join("known_servers");
        let mut known = KnownServers::load(&path).unwrap();
        let (a, b) = ([1; KEY_LEN], [2; KEY_LEN]);
        assert_eq!(known.check("chat.example:12345", &a), Pin::New);
        known.pin("chat.example:12345", a).unwrap();
        let known = KnownServers::load(&path).unwrap();
        assert_eq!(known.check("chat.example:12345", &a), Pin::Matches);
        assert_eq!(
            known.check("chat.example:12345", &b),
            Pin::Changed { pinned: a }
        );
        assert_eq!(known.check("other:1", &b), Pin::New);
        fs::write(&path, "garbage line\n").unwrap();
        assert!(KnownServers::load(&path).is_err());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_symlink_a_directory_or_another_users_key_file_is_refused() {
        let dir = scratch("kinds");
        fs::create_dir_all(&dir).unwrap();
        let real = dir.join("real.key");
        load_or_create_server_key(&real, || [3; KEY_LEN]).unwrap();
        // A link to a good key file: whoever controls the link would choose the key.
        let link = dir.join("link.key");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = load_or_create_server_key(&link, || panic!("must not create")).unwrap_err();
        assert!(matches!(err, KeyError::Symlink { .. }), "{err}");
        assert!(err.to_string().contains("is a symbolic link"), "{err}");
        // A dangling link is not "missing": it is refused, never written through.
        let dangling = dir.join("dangling.key");
        std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
        let err = load_or_create_server_key(&dangling, || [4; KEY_LEN]).unwrap_err();
        assert!(matches!(err, KeyError::Symlink { .. }), "{err}");
        assert!(!dir.join("nowhere").exists());
        let sub = dir.join("a-directory.key");
        fs::create_dir(&sub).unwrap();
        let err = load_or_create_server_key(&sub, || panic!("must not create")).unwrap_err();
        assert!(matches!(err, KeyError::NotAFile { .. }), "{err}");
        // Another user's file (only root can make one to test with).
        let theirs = dir.join("theirs.key");
        fs::copy(&real, &theirs).unwrap();
        fs::set_permissions(&theirs, fs::Permissions::from_mode(0o600)).unwrap();
        if std::os::unix::fs::chown(&theirs, Some(65_534), None).is_ok() {
            let err = load_or_create_server_key(&theirs, || panic!("must not create")).unwrap_err();
            assert!(
                matches!(err, KeyError::NotOwned { owner: 65_534, .. }),
                "{err}"
            );
        }
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn a_new_key_is_never_written_through_a_planted_temporary_name() {
        let dir = scratch("planted");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.key");
        let victim = dir.join("victim");
        fs::write(&victim, "precious").unwrap();
        // The names a predictable writer would use: a link at each points to the victim.
        for name in [
            format!("server.tmp.{}", std::process::id()),
            "server.tmp".into(),
            "server.key.tmp".into(),
        ] {
            std::os::unix::fs::symlink(&victim, dir.join(name)).unwrap();
        }
        let (keys, created) = load_or_create_server_key(&path, || [5; KEY_LEN]).unwrap();
        assert!(created);
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(
            meta.file_type().is_file(),
            "the key file is a file, not a link"
        );
        let (again, _) = load_or_create_server_key(&path, || panic!("must not create")).unwrap();
        assert_eq!(again.public, keys.public);
        // Nothing temporary is left behind.
        let left: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".server.key.tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn concurrent_first_use_pins_are_all_kept() {
        const JOINS: usize = 8;
        let dir = scratch("concurrent");
        let path = dir.join("known_servers");
        for round in 0..5 {
            let _ = fs::remove_file(&path);
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(JOINS));
            let threads: Vec<_> = (0..JOINS)
                .map(|i| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        // Each `join` loaded the file before any of them pinned.
                        let mut known = KnownServers::load(&path).unwrap();
                        barrier.wait();
                        known.pin(&format!("server-{i}:12345"), [i as u8 + 1; KEY_LEN])
                    })
                })
                .collect();
            for thread in threads {
                assert_eq!(thread.join().unwrap().unwrap(), Pin::New, "round {round}");
            }
            let known = KnownServers::load(&path).unwrap();
            for i in 0..JOINS {
                assert_eq!(
                    known.pinned(&format!("server-{i}:12345")),
                    Some([i as u8 + 1; KEY_LEN]),
                    "round {round}: pin {i} lost"
                );
            }
        }
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn the_first_pin_wins_unless_the_user_named_the_key() {
        let dir = scratch("first-wins");
        let path = dir.join("known_servers");
        let mut late = KnownServers::load(&path).unwrap();
        KnownServers::load(&path)
            .unwrap()
            .pin("s:1", [1; KEY_LEN])
            .unwrap();
        // Loaded before that pin, this one learns of it under the lock.
        assert_eq!(
            late.pin("s:1", [2; KEY_LEN]).unwrap(),
            Pin::Changed {
                pinned: [1; KEY_LEN]
            }
        );
        assert_eq!(late.pin("s:1", [1; KEY_LEN]).unwrap(), Pin::Matches);
        assert_eq!(
            late.replace("s:1", [2; KEY_LEN]).unwrap(),
            Pin::Changed {
                pinned: [1; KEY_LEN]
            }
        );
        assert_eq!(
            KnownServers::load(&path).unwrap().pinned("s:1"),
            Some([2; KEY_LEN])
        );
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn data_dir_follows_xdg_then_home() {
        // Read-only check of the rule on this machine's environment.
        let dir = data_dir().expect("HOME is set");
        assert!(dir.ends_with("udpchat"), "{}", dir.display());
    }
}
