//! Where database connections may go: one policy ([`ConnectionPolicy`]: hosts and SQLite
//! files), used by the API when a connection is registered or tested and by the Database
//! reconciler before every check (the name is resolved each time, so a name that later resolves
//! somewhere refused is caught at the next check).
//!
//! Hosts ([`HostPolicy`]) —
//! Refused: loopback, link-local, unspecified, multicast, broadcast and reserved addresses,
//! cloud metadata endpoints (v4 and v6), the NAT64 / 6to4 / Teredo / IPv4-compatible /
//! IPv4-mapped forms of every refused IPv4 address, and configured deny CIDRs — unless a
//! configured allow CIDR covers the address. Refused and unresolvable hosts get the same answer,
//! so the policy is no port-scanning oracle. The same ranges feed the DBHub pods'
//! NetworkPolicy egress rules ([`HostPolicy::egress_denied`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::crd::{DatabaseSpec, DatabaseType};

/// Where connections may go: hosts, and the directories SQLite files may be in.
#[derive(Debug, Clone, Default)]
pub struct ConnectionPolicy {
    /// Hosts network databases may resolve to.
    pub hosts: HostPolicy,
    /// Directories SQLite files may be in; none means SQLite is refused.
    pub sqlite_dirs: Vec<PathBuf>,
}

/// Why a connection may not be made. The messages name what to change and never tell whether
/// a refused host exists or a refused file is there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The host is refused or cannot be resolved.
    #[error("{REFUSED}")]
    Host,
    /// SQLite is not enabled.
    #[error(
        "SQLite databases are not enabled here: an administrator can allow directories for SQLite files with --sqlite-allowed-dirs"
    )]
    SqliteDisabled,
    /// The file is outside every allowed directory (or its directory does not exist).
    #[error("the SQLite file must be inside one of the directories allowed for SQLite files ({0})")]
    SqlitePath(String),
}

impl Refusal {
    /// A machine-readable reason for conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Host => "HostNotAllowed",
            Self::SqliteDisabled | Self::SqlitePath(_) => "PathNotAllowed",
        }
    }
}

impl ConnectionPolicy {
    /// Checks where `spec` would connect: its host, or its SQLite file.
    pub async fn check(&self, spec: &DatabaseSpec) -> Result<(), Refusal> {
        if spec.db_type == DatabaseType::Sqlite {
            return self
                .sqlite_file(spec.database.as_deref().unwrap_or_default())
                .map(|_| ());
        }
        let port = spec
            .port
            .or(spec.db_type.default_port())
            .unwrap_or_default() as u16;
        self.hosts
            .check(spec.host.as_deref().unwrap_or_default(), port)
            .await
            .map_err(|_| Refusal::Host)
    }

    /// The canonical path of `path` when it lies inside an allowed directory (symlinks and
    /// `..` resolved; a file that does not exist yet is judged by its directory).
    pub fn sqlite_file(&self, path: &str) -> Result<PathBuf, Refusal> {
        if self.sqlite_dirs.is_empty() {
            return Err(Refusal::SqliteDisabled);
        }
        let listed = || {
            Refusal::SqlitePath(
                self.sqlite_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        };
        let p = Path::new(path);
        let canonical = match std::fs::canonicalize(p) {
            Ok(c) => c,
            Err(_) => {
                let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
                    return Err(listed());
                };
                std::fs::canonicalize(parent)
                    .map_err(|_| listed())?
                    .join(name)
            }
        };
        let inside = self.sqlite_dirs.iter().any(|d| {
            std::fs::canonicalize(d).is_ok_and(|d| canonical.starts_with(&d) && canonical != d)
        });
        if inside { Ok(canonical) } else { Err(listed()) }
    }
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s.trim().split_once('/').unwrap_or((s.trim(), ""));
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("{s:?} is not an IP network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix.parse().map_err(|_| format!("{s:?}: bad prefix"))?
        };
        if prefix > max {
            return Err(format!("{s:?}: prefix above {max}"));
        }
        Ok(Self { addr, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    /// Whether `ip` is inside (an IPv4 network also covers the IPv4-mapped form).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| -> (u128, u8) {
            match a {
                IpAddr::V4(v) => (u32::from(v) as u128, 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        let ((net, width), (x, w2)) = (bits(self.addr), bits(ip));
        if width != w2 {
            return false;
        }
        let shift = width - self.prefix;
        shift >= width || (net >> shift) == (x >> shift)
    }

    /// Whether this is an IPv4 network.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }
}

/// Parses a comma-separated CIDR list.
pub fn parse_list(s: &str) -> Result<Vec<Cidr>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect()
}

/// Cloud metadata endpoints outside the link-local range (AWS IMDS v6, Alibaba, Oracle, Azure).
const METADATA: &[&str] = &[
    "fd00:ec2::254/128",
    "100.100.100.200/32",
    "192.0.0.192/32",
    "168.63.129.16/32",
];

/// The policy.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
}

/// The one answer for refused and unresolvable hosts alike.
pub const REFUSED: &str = "host is not allowed or cannot be resolved from this service";

fn metadata() -> Vec<Cidr> {
    METADATA.iter().map(|c| c.parse().expect("valid")).collect()
}

/// The IPv4 address an IPv6 address carries, in the forms that reach IPv4 hosts: mapped
/// (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`),
/// 6to4 (`2002:AABB:CCDD::/48`) and Teredo (`2001:0::/32`, the client address inverted).
fn embedded_v4(a: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = a.segments();
    let low = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    if let Some(v4) = a.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && (s[2..6] == [0, 0, 0, 0] || s[2] == 1) {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(low(s[1], s[2]));
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return Some(low(!s[6], !s[7]));
    }
    None
}

fn special_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    a.is_loopback()
        || a.is_link_local()
        || a.is_unspecified()
        || a.is_multicast()
        || a.is_broadcast()
        || o[0] == 0
        || o[0] >= 240
}

fn special_v6(a: Ipv6Addr) -> bool {
    let first = a.segments()[0];
    a.is_loopback()
        || a.is_unspecified()
        || a.is_multicast()
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
}

impl HostPolicy {
    /// A policy with these allow and deny lists.
    pub fn new(allow: Vec<Cidr>, deny: Vec<Cidr>) -> Self {
        Self { allow, deny }
    }

    /// Whether one address may be connected to.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.allow.iter().any(|c| c.contains(ip)) {
            return true;
        }
        let refused = |ip: IpAddr| {
            let special = match ip {
                IpAddr::V4(a) => special_v4(a),
                IpAddr::V6(a) => special_v6(a),
            };
            special || metadata().iter().chain(&self.deny).any(|c| c.contains(ip))
        };
        if refused(ip) {
            return false;
        }
        match ip {
            IpAddr::V6(v6) => match embedded_v4(v6) {
                Some(v4) => self.permits(IpAddr::V4(v4)),
                None => true,
            },
            IpAddr::V4(_) => true,
        }
    }

    /// Resolves `host` and checks every address; Err([`REFUSED`]) otherwise.
    pub async fn check(&self, host: &str, port: u16) -> Result<(), &'static str> {
        let lookup = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::lookup_host((host, port)),
        )
        .await;
        let addrs: Vec<IpAddr> = match lookup {
            Ok(Ok(a)) => a.map(|s| s.ip()).collect(),
            _ => return Err(REFUSED),
        };
        if addrs.is_empty() || !addrs.iter().all(|ip| self.permits(*ip)) {
            return Err(REFUSED);
        }
        Ok(())
    }

    /// The ranges DBHub pods must not reach (NetworkPolicy egress `except` lists), IPv4 and
    /// IPv6: link-local (cloud metadata) and the other metadata endpoints, plus the deny list.
    pub fn egress_denied(&self) -> (Vec<String>, Vec<String>) {
        let mut all = vec![
            "169.254.0.0/16".parse().expect("valid"),
            "fe80::/10".parse().expect("valid"),
        ];
        all.extend(metadata());
        all.extend(self.deny.iter().copied());
        let (v4, v6): (Vec<Cidr>, Vec<Cidr>) = all.into_iter().partition(Cidr::is_ipv4);
        (
            v4.iter().map(ToString::to_string).collect(),
            v6.iter().map(ToString::to_string).collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.1.200.3")) && !c.contains(ip("10.2.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
    }

    /// Every address the attacker tried, and the other forms of 169.254.169.254.
    const REFUSED_ADDRESSES: &[&str] = &[
        "127.0.0.1",
        "169.254.169.254",
        "0.0.0.0",
        "255.255.255.255",
        "240.0.0.1",
        "224.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "ff02::1",
        "fd00:ec2::254",
        "100.100.100.200",
        "192.0.0.192",
        "168.63.129.16",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::a9fe:a9fe",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a9fe:a9fe",
        "2002:a9fe:a9fe::",
        "2002:7f00:1::",
        "2001:0:4136:e378:8000:63bf:5601:5601",
    ];

    #[test]
    fn special_addresses_in_every_form_are_refused_unless_allowed() {
        let p = HostPolicy::default();
        for bad in REFUSED_ADDRESSES {
            assert!(!p.permits(ip(bad)), "{bad}");
        }
        assert!(p.permits(ip("10.0.0.5")) && p.permits(ip("2001:db8::1")));
        assert!(
            p.permits(ip("64:ff9b::0a00:0005")),
            "NAT64 of a private address is fine"
        );
        let p = HostPolicy::new(
            parse_list("127.0.0.0/8").unwrap(),
            parse_list("10.0.0.0/8").unwrap(),
        );
        assert!(p.permits(ip("127.0.0.1")));
        assert!(!p.permits(ip("10.9.9.9")));
        assert!(
            !p.permits(ip("2002:0a09:0909::")),
            "6to4 of a denied address"
        );
    }

    #[test]
    fn egress_except_lists_cover_metadata_and_the_deny_list() {
        let p = HostPolicy::new(vec![], parse_list("10.0.0.0/8, fd00:1::/32").unwrap());
        let (v4, v6) = p.egress_denied();
        assert!(
            v4.contains(&"169.254.0.0/16".to_string()) && v4.contains(&"10.0.0.0/8".to_string())
        );
        assert!(
            v6.contains(&"fd00:ec2::254/128".to_string())
                && v6.contains(&"fd00:1::/32".to_string())
        );
    }

    #[test]
    fn sqlite_files_only_inside_allowed_directories_whatever_exists() {
        let dir = std::env::temp_dir().join(format!("sqlite-policy-{}", std::process::id()));
        let inside = dir.join("allowed");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::write(inside.join("a.db"), b"").unwrap();
        let escape = inside.join("link");
        let _ = std::os::unix::fs::symlink("/etc", &escape);
        let off = ConnectionPolicy::default();
        assert_eq!(off.sqlite_file("/etc/passwd"), Err(Refusal::SqliteDisabled));
        let on = ConnectionPolicy {
            sqlite_dirs: vec![inside.clone()],
            ..Default::default()
        };
        assert!(
            on.sqlite_file(inside.join("a.db").to_str().unwrap())
                .is_ok()
        );
        assert!(
            on.sqlite_file(inside.join("new.db").to_str().unwrap())
                .is_ok()
        );
        let outside = [
            "/etc/passwd".to_string(),
            "/etc/no-such-file".to_string(),
            format!("{}/../../etc/passwd", inside.display()),
            format!("{}/passwd", escape.display()),
            format!("{}/missing-dir/x.db", inside.display()),
            inside.display().to_string(),
        ];
        let answers: Vec<_> = outside
            .iter()
            .map(|p| on.sqlite_file(p).unwrap_err())
            .collect();
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "one answer for all: {answers:?}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn unresolvable_and_refused_hosts_get_the_same_answer() {
        let p = HostPolicy::default();
        assert_eq!(p.check("localhost", 5432).await, Err(REFUSED));
        assert_eq!(p.check("no-such-host.invalid", 5432).await, Err(REFUSED));
    }
}
