//! Keeps user-supplied hosts away from the service's own network: a host is resolved and refused
//! when any address is loopback, link-local (169.254.169.254 included), unspecified, multicast
//! or in a configured deny CIDR — unless a configured allow CIDR covers it. Refused and
//! unresolvable hosts get the same answer, so the API is no port-scanning oracle.

use std::net::IpAddr;
use std::time::Duration;

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

impl Cidr {
    /// Whether `ip` is inside.
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
}

/// Parses a comma-separated CIDR list.
pub fn parse_list(s: &str) -> Result<Vec<Cidr>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::parse)
        .collect()
}

/// Refuses database hosts inside the service's own network, with configured exceptions.
#[derive(Debug, Clone, Default)]
pub struct HostGuard {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
}

/// The one answer for refused and unresolvable hosts alike.
pub const REFUSED: &str = "host is not allowed or cannot be resolved from this service";

impl HostGuard {
    /// A guard with these allow and deny lists.
    pub fn new(allow: Vec<Cidr>, deny: Vec<Cidr>) -> Self {
        Self { allow, deny }
    }

    /// Whether one address may be connected to.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.allow.iter().any(|c| c.contains(ip)) {
            return true;
        }
        let v4 = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let special = match v4 {
            IpAddr::V4(a) => {
                a.is_loopback()
                    || a.is_link_local()
                    || a.is_unspecified()
                    || a.is_multicast()
                    || a.is_broadcast()
            }
            IpAddr::V6(a) => {
                a.is_loopback()
                    || a.is_unspecified()
                    || a.is_multicast()
                    || (a.segments()[0] & 0xffc0) == 0xfe80
            }
        };
        !special && !self.deny.iter().any(|c| c.contains(v4))
    }

    /// Resolves `host` and checks every address; Err(REFUSED) otherwise.
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

    #[test]
    fn special_addresses_are_refused_unless_allowed() {
        let g = HostGuard::default();
        for bad in [
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!g.permits(ip(bad)), "{bad}");
        }
        assert!(g.permits(ip("10.0.0.5")) && g.permits(ip("2001:db8::1")));
        let g = HostGuard::new(
            parse_list("127.0.0.0/8").unwrap(),
            parse_list("10.0.0.0/8").unwrap(),
        );
        assert!(g.permits(ip("127.0.0.1")));
        assert!(!g.permits(ip("10.9.9.9")));
    }

    #[tokio::test]
    async fn unresolvable_and_refused_hosts_get_the_same_answer() {
        let g = HostGuard::default();
        assert_eq!(g.check("localhost", 5432).await, Err(REFUSED));
        assert_eq!(g.check("no-such-host.invalid", 5432).await, Err(REFUSED));
    }
}
