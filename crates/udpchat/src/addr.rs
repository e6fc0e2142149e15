//! Parsing and resolving `HOST:PORT` targets, and showing addresses the way users expect.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Why a `HOST:PORT` target could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddrError {
    /// The text was empty.
    #[error("empty address (expected HOST:PORT, e.g. 127.0.0.1:12345)")]
    Empty,
    /// No `:PORT` part.
    #[error("missing port in '{0}' (expected HOST:PORT, e.g. {0}:12345)")]
    MissingPort(String),
    /// A port alone (`12345`, `:12345`): the host is missing.
    #[error(
        "missing host in '{text}' (expected HOST:PORT, e.g. 127.0.0.1:{port} or localhost:{port})"
    )]
    MissingHost {
        /// The whole target text.
        text: String,
        /// The port it gave.
        port: String,
    },
    /// The port is not a number from 1 to 65535.
    #[error("bad port '{port}' in '{text}' (expected a number from 1 to 65535)")]
    BadPort {
        /// The whole target text.
        text: String,
        /// The part after the last colon.
        port: String,
    },
    /// An IPv6 address without brackets, so the port cannot be told apart.
    #[error("IPv6 addresses need brackets around them: [{0}]:PORT, e.g. [::1]:12345")]
    UnbracketedIpv6(String),
    /// `[` without a matching `]`, or text after `]` that is not `:PORT`.
    #[error("malformed bracketed address '{0}' (expected [IPV6]:PORT, e.g. [::1]:12345)")]
    BadBrackets(String),
    /// The host name did not resolve.
    #[error("unknown host '{host}': {reason}")]
    UnknownHost {
        /// The host name.
        host: String,
        /// What the resolver said.
        reason: String,
    },
}

/// A parsed but not yet resolved `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// A host name or an IP address literal (without brackets).
    pub host: String,
    /// The UDP port.
    pub port: u16,
}

impl Target {
    /// Parses `HOST:PORT`, `IPV4:PORT` or `[IPV6]:PORT`.
    ///
    /// # Errors
    /// Any [`AddrError`] but `UnknownHost`: nothing is resolved here.
    pub fn parse(text: &str) -> Result<Self, AddrError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AddrError::Empty);
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| AddrError::BadBrackets(text.into()))?;
            if after.is_empty() {
                return Err(AddrError::MissingPort(text.into()));
            }
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| AddrError::BadBrackets(text.into()))?;
            if host.is_empty() || host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(AddrError::BadBrackets(text.into()));
            }
            (host, port)
        } else {
            if text.parse::<std::net::Ipv6Addr>().is_ok() {
                return Err(AddrError::UnbracketedIpv6(text.into()));
            }
            // Digits alone are a port (`udpchat send 12345`), not a host name.
            let missing = |port: &str| {
                if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                    AddrError::MissingHost {
                        text: text.into(),
                        port: port.into(),
                    }
                } else {
                    AddrError::MissingPort(text.into())
                }
            };
            let Some((host, port)) = text.rsplit_once(':') else {
                return Err(missing(text));
            };
            if host.contains(':') {
                return Err(AddrError::UnbracketedIpv6(host.into()));
            }
            if host.is_empty() {
                return Err(missing(port));
            }
            (host, port)
        };
        let port = match port.parse::<u16>() {
            Ok(p) if p != 0 => p,
            _ => {
                return Err(AddrError::BadPort {
                    text: text.into(),
                    port: port.into(),
                });
            }
        };
        Ok(Self {
            host: host.into(),
            port,
        })
    }

    /// Resolves the host, preferring an IPv4 address when it has both (the lab's servers bind
    /// IPv4 only, and `localhost` often resolves to `::1` first).
    ///
    /// # Errors
    /// [`AddrError::UnknownHost`] when the name does not resolve.
    pub fn resolve(&self) -> Result<SocketAddr, AddrError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        let unknown = |reason: String| AddrError::UnknownHost {
            host: self.host.clone(),
            reason,
        };
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| unknown(resolver_message(&e)))?
            .collect();
        pick_preferred(&addrs).ok_or_else(|| unknown("no addresses".into()))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses and resolves `HOST:PORT` in one go.
///
/// # Errors
/// See [`Target::parse`] and [`Target::resolve`].
pub fn resolve(text: &str) -> Result<SocketAddr, AddrError> {
    Target::parse(text)?.resolve()
}

/// The first IPv4 address, else the first address.
fn pick_preferred(addrs: &[SocketAddr]) -> Option<SocketAddr> {
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
}

/// The resolver's message without Rust's "(os error N)" noise.
fn resolver_message(e: &std::io::Error) -> String {
    let msg = e.to_string();
    msg.strip_prefix("failed to lookup address information: ")
        .unwrap_or(&msg)
        .to_owned()
}

/// An address as people read it: an IPv4-mapped IPv6 address (what a dual-stack `::` socket
/// reports for IPv4 peers) is shown as plain IPv4, so `[::ffff:127.0.0.1]:5000` is
/// `127.0.0.1:5000`.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16) -> Target {
        Target {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(
            Target::parse("127.0.0.1:12345"),
            Ok(target("127.0.0.1", 12345))
        );
        assert_eq!(Target::parse("localhost:80"), Ok(target("localhost", 80)));
        assert_eq!(Target::parse("[::1]:12345"), Ok(target("::1", 12345)));
        assert_eq!(
            Target::parse("[fe80::1%lo]:9"),
            Err(AddrError::BadBrackets("[fe80::1%lo]:9".into()))
        );
        assert_eq!(
            Target::parse(" example.org:5000 "),
            Ok(target("example.org", 5000))
        );
    }

    #[test]
    fn refuses_what_cannot_be_a_target() {
        use AddrError::*;
        assert_eq!(Target::parse(""), Err(Empty));
        assert_eq!(
            Target::parse("localhost"),
            Err(MissingPort("localhost".into()))
        );
        assert_eq!(
            Target::parse(":12345"),
            Err(MissingHost {
                text: ":12345".into(),
                port: "12345".into()
            })
        );
        assert_eq!(
            Target::parse("12345"),
            Err(MissingHost {
                text: "12345".into(),
                port: "12345".into()
            })
        );
        assert_eq!(Target::parse("[::1]"), Err(MissingPort("[::1]".into())));
        assert_eq!(Target::parse("::1"), Err(UnbracketedIpv6("::1".into())));
        // Not an address as a whole (12345 is not a hex group), so the host part is named.
        assert_eq!(
            Target::parse("::1:12345"),
            Err(UnbracketedIpv6("::1".into()))
        );
        assert_eq!(
            Target::parse("fe80::2:80"),
            Err(UnbracketedIpv6("fe80::2:80".into()))
        );
        assert_eq!(Target::parse("[::1:80"), Err(BadBrackets("[::1:80".into())));
        assert_eq!(Target::parse("[::1]80"), Err(BadBrackets("[::1]80".into())));
        assert_eq!(
            Target::parse("[nothost]:80"),
            Err(BadBrackets("[nothost]:80".into()))
        );
        for port in ["0", "65536", "-1", "x", ""] {
            let text = format!("h:{port}");
            assert_eq!(
                Target::parse(&text),
                Err(BadPort {
                    text: text.clone(),
                    port: port.into()
                }),
            );
        }
    }

    #[test]
    fn errors_read_as_one_clear_line() {
        let e = Target::parse("localhost").unwrap_err().to_string();
        assert_eq!(
            e,
            "missing port in 'localhost' (expected HOST:PORT, e.g. localhost:12345)"
        );
        assert!(!e.contains('\n'));
        assert_eq!(
            Target::parse("12345").unwrap_err().to_string(),
            "missing host in '12345' (expected HOST:PORT, e.g. 127.0.0.1:12345 or localhost:12345)"
        );
    }

    #[test]
    fn resolves_literals_without_the_resolver() {
        assert_eq!(resolve("127.0.0.1:9"), Ok("127.0.0.1:9".parse().unwrap()));
        assert_eq!(resolve("[::1]:9"), Ok("[::1]:9".parse().unwrap()));
    }

    #[test]
    fn resolves_localhost_preferring_ipv4() {
        let addr = resolve("localhost:7").unwrap();
        assert_eq!(addr, "127.0.0.1:7".parse().unwrap());
    }

    #[test]
    fn unknown_host_is_a_clear_error() {
        // `.invalid` is reserved (RFC 2606) and never resolves.
        let err = resolve("no-such-host.invalid:12345").unwrap_err();
        assert!(
            matches!(&err, AddrError::UnknownHost { host, .. } if host == "no-such-host.invalid")
        );
        assert!(
            err.to_string()
                .starts_with("unknown host 'no-such-host.invalid': "),
            "{err}"
        );
    }

    #[test]
    fn prefers_ipv4_among_resolved_addresses() {
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(pick_preferred(&[v6, v4]), Some(v4));
        assert_eq!(pick_preferred(&[v6]), Some(v6));
        assert_eq!(pick_preferred(&[]), None);
    }

    #[test]
    fn canonical_unmaps_ipv4_mapped_addresses() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        assert_eq!(canonical(mapped).to_string(), "127.0.0.1:5000");
        let v6: SocketAddr = "[::1]:5000".parse().unwrap();
        assert_eq!(canonical(v6).to_string(), "[::1]:5000");
    }

    #[test]
    fn target_displays_with_brackets_for_ipv6() {
        assert_eq!(target("::1", 5).to_string(), "[::1]:5");
        assert_eq!(target("localhost", 5).to_string(), "localhost:5");
    }
}
