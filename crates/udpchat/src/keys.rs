//! Keys on disk, for secure rooms (`serve --key-file`, `join`'s pinning).
//!
//! - The server's static key: created on first start with mode 0600, and refused if anyone but
//!   its owner can read it (as ssh refuses a private key with loose permissions).
//! - The client's known servers, like SSH's `known_hosts`: the first key seen for a server is
//!   pinned (trust on first use), and a later different key is refused loudly.
//!
//! Both live in the user's data directory: `$XDG_DATA_HOME/udpchat`, or
//! `~/.local/share/udpchat`.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
    match fs::metadata(path) {
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
            // Written whole under a private name, then linked into place: another server
            // starting at the same moment never reads half a key, and the first link wins.
            let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
            let written = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .and_then(|mut file| {
                    file.write_all(text.as_bytes())
                        .and_then(|()| file.sync_all())
                });
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

/// Loads an existing server key, refusing one that others may read.
fn load_server_key(path: &Path) -> Result<StaticKeypair, KeyError> {
    let meta = fs::metadata(path).map_err(io_error(path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let mut text = String::new();
    fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(io_error(path))?;
    let line = text
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty());
    let private = line.and_then(unhex).ok_or_else(|| KeyError::Malformed {
        path: path.to_owned(),
        why: "expected 64 hex digits",
    })?;
    Ok(StaticKeypair::from_private(private)?)
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

    /// Pins `key` for `server` and saves the file (written whole, then renamed into place).
    ///
    /// # Errors
    /// [`KeyError::Io`].
    pub fn pin(&mut self, server: &str, key: [u8; KEY_LEN]) -> Result<(), KeyError> {
        self.keys.insert(server.to_owned(), key);
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        let mut text = String::from("# udpchat known servers: SERVER KEY (pinned on first use)\n");
        for (server, key) in &self.keys {
            text.push_str(&format!("{server} {}\n", hex(key)));
        }
        let tmp = self.path.with_extension("tmp");
        fs::write(&tmp, text).map_err(io_error(&tmp))?;
        fs::rename(&tmp, &self.path).map_err(io_error(&self.path))
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
    fn data_dir_follows_xdg_then_home() {
        // Read-only check of the rule on this machine's environment.
        let dir = data_dir().expect("HOME is set");
        assert!(dir.ends_with("udpchat"), "{}", dir.display());
    }
}
