//! A tiny CIDR matcher for `throttle.lan_cidrs` / `throttle.remote_cidrs` (IPv4 and IPv6),
//! so a VPN client that Plex calls local, or a LAN client a reverse proxy makes look remote,
//! is counted the way the owner says.
//!
//! An IPv4-mapped IPv6 address (`::ffff:10.0.0.5`, what a dual-stack socket reports) matches
//! IPv4 ranges.

use std::net::IpAddr;

/// `10.8.0.0/24`, `fd00::/8`, or a bare address (`/32`, `/128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr[/prefix]`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR range"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            },
        };
        Ok(Cidr { net, prefix })
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// True when `addr` is inside the range.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match addr {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
            v4 => v4,
        };
        match (self.net, addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => same_prefix(
                u128::from(u32::from(n)) << 96,
                u128::from(u32::from(a)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                same_prefix(u128::from(n), u128::from(a), self.prefix)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// The first `prefix` bits of two left-aligned 128-bit values agree.
fn same_prefix(a: u128, b: u128, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - u32::from(prefix));
    a & mask == b & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_ranges() {
        let c = Cidr::parse("10.8.0.0/24").unwrap();
        assert!(c.contains(ip("10.8.0.3")));
        assert!(c.contains(ip("10.8.0.255")));
        assert!(!c.contains(ip("10.8.1.0")));
        assert!(c.contains(ip("::ffff:10.8.0.3")), "v4-mapped v6 matches");
        assert!(!c.contains(ip("fd00::1")));
        let host = Cidr::parse("192.168.1.20").unwrap();
        assert_eq!(host.prefix_len(), 32);
        assert!(host.contains(ip("192.168.1.20")) && !host.contains(ip("192.168.1.21")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        // Host bits set in the network part are ignored, as `ip route` does.
        assert!(Cidr::parse("10.8.0.77/24")
            .unwrap()
            .contains(ip("10.8.0.1")));
    }

    #[test]
    fn ipv6_ranges() {
        let c = Cidr::parse("fd00::/8").unwrap();
        assert!(c.contains(ip("fd12:3456::1")));
        assert!(!c.contains(ip("fe80::1")));
        assert!(!c.contains(ip("10.0.0.1")));
        let c = Cidr::parse("2001:db8:1::/48").unwrap();
        assert!(c.contains(ip("2001:db8:1:ffff::1")));
        assert!(!c.contains(ip("2001:db8:2::1")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::1")));
        assert!(Cidr::parse("::1/128").unwrap().contains(ip("::1")));
    }

    #[test]
    fn malformed_ranges_say_why() {
        for bad in [
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "lan",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "",
        ] {
            let e = Cidr::parse(bad).unwrap_err();
            assert!(e.contains(bad.trim()) || bad.is_empty(), "{bad}: {e}");
        }
    }
}
