//! Where webhooks may go. On a trip Tower POSTs to every URL of the flag's webhook list, so a
//! list pointing at `127.0.0.1`, `169.254.169.254` (a cloud's metadata service) or `10.0.0.0/8`
//! would make Tower a way into the network it runs in. Only public addresses are allowed,
//! besides what the operator lists (`TOWER_WEBHOOK_ALLOW`: CIDRs, addresses or host names, for
//! an internal Slack proxy or tests). The rule is checked when a list is saved (the HTTP layer
//! resolves the names) and again for every connection (the webhook client's resolver), so a
//! name that resolves elsewhere later cannot get around it.
//!
//! Pure: classification and matching, no resolution.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The destinations allowed besides public addresses.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Destinations {
    nets: Vec<(IpAddr, u8)>,
    hosts: Vec<String>,
    any: bool,
}

impl fmt::Debug for Destinations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.any {
            return f.write_str("Destinations(any)");
        }
        let nets = self.nets.iter().map(|(ip, len)| format!("{ip}/{len}"));
        f.debug_list().entries(nets.chain(self.hosts.iter().cloned())).finish()
    }
}

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} is {kind}; webhooks go to public addresses only (list it in TOWER_WEBHOOK_ALLOW to allow it)"
)]
pub struct Refused {
    /// The host or address.
    pub what: String,
    /// Loopback, private, link-local and so on.
    pub kind: &'static str,
}

impl Destinations {
    /// Public addresses only.
    pub fn public() -> Self {
        Self::default()
    }

    /// Everything (for a client that talks to Tower itself, such as the events sink).
    pub fn any() -> Self {
        Self { any: true, ..Self::default() }
    }

    /// Public addresses and the comma-separated entries of `list`: CIDRs (`10.1.0.0/16`,
    /// `fd00::/8`), addresses (`127.0.0.1`) or host names (`hooks.internal`).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut d = Self::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if let Some((ip, len)) = entry.split_once('/') {
                let ip: IpAddr = ip.parse().map_err(|_| format!("`{entry}` is not a CIDR"))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                let len: u8 = len
                    .parse()
                    .ok()
                    .filter(|l| *l <= max)
                    .ok_or_else(|| format!("`{entry}`: the prefix length is 0 to {max}"))?;
                d.nets.push((ip, len));
            } else if let Ok(ip) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
                d.nets.push((ip, if ip.is_ipv4() { 32 } else { 128 }));
            } else if entry.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
                d.hosts.push(entry.trim_end_matches('.').to_ascii_lowercase());
            } else {
                return Err(format!("`{entry}` is not a CIDR, an address or a host name"));
            }
        }
        Ok(d)
    }

    /// Whether a host name is listed (its addresses are then not checked).
    pub fn host_listed(&self, host: &str) -> bool {
        self.any || {
            let host = host.trim_end_matches('.').to_ascii_lowercase();
            self.hosts.contains(&host)
        }
    }

    /// Whether an address may be connected to: public, or listed.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.any || self.nets.iter().any(|(net, len)| contains(*net, *len, ip)) {
            return Ok(());
        }
        match special(ip) {
            None => Ok(()),
            Some(kind) => Err(Refused { what: ip.to_string(), kind }),
        }
    }
}

fn contains(net: IpAddr, len: u8, ip: IpAddr) -> bool {
    match (net, canonical(ip)) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What kind of non-public address `ip` is, if it is one.
fn special(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_private() {
        "a private address"
    } else if ip.is_link_local() {
        "a link-local address (cloud metadata services live there)"
    } else if ip.is_unspecified() || a == 0 {
        "an unspecified address"
    } else if a == 100 && (64..128).contains(&b) {
        "a shared (carrier-grade NAT) address"
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        "a multicast or reserved address"
    } else if ip.is_documentation() || (a == 198 && (b == 18 || b == 19)) || (a == 192 && b == 0) {
        "a reserved address"
    } else {
        return None;
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(if ip.is_loopback() {
        "a loopback address"
    } else if ip.is_unspecified() {
        "an unspecified address"
    } else if first & 0xfe00 == 0xfc00 {
        "a unique-local address"
    } else if first & 0xffc0 == 0xfe80 {
        "a link-local address"
    } else if ip.is_multicast() {
        "a multicast address"
    } else if first == 0x2001 && ip.segments()[1] == 0xdb8 {
        "a reserved address"
    } else if ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // NAT64: the IPv4 address it stands for decides.
        let [.., c, d] = ip.segments();
        let v4 = Ipv4Addr::from((u32::from(c) << 16) | u32::from(d));
        return special_v4(v4);
    } else {
        return None;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_public_addresses_by_default() {
        let d = Destinations::public();
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(d.check(ip(bad)).is_err(), "{bad}");
        }
        for good in ["1.1.1.1", "93.184.216.34", "2606:4700::1111", "64:ff9b::101:101"] {
            assert!(d.check(ip(good)).is_ok(), "{good}");
        }
        let e = d.check(ip("169.254.169.254")).unwrap_err().to_string();
        assert!(e.contains("TOWER_WEBHOOK_ALLOW") && e.contains("link-local"), "{e}");
    }

    #[test]
    fn listed_nets_addresses_and_hosts_are_allowed() {
        let d = Destinations::parse("127.0.0.1, 10.20.0.0/16, fd00::/8, Hooks.Internal.").unwrap();
        assert!(d.check(ip("127.0.0.1")).is_ok() && d.check(ip("127.0.0.2")).is_err());
        assert!(d.check(ip("::ffff:127.0.0.1")).is_ok(), "mapped v4 matches v4 entries");
        assert!(d.check(ip("10.20.9.9")).is_ok() && d.check(ip("10.21.0.1")).is_err());
        assert!(d.check(ip("fd12::1")).is_ok());
        assert!(d.host_listed("hooks.internal") && !d.host_listed("other.internal"));
        for bad in ["10.0.0.0/33", "not a host", "x/8"] {
            assert!(Destinations::parse(bad).is_err(), "{bad}");
        }
        assert!(Destinations::any().check(ip("127.0.0.1")).is_ok());
        assert!(format!("{d:?}").contains("10.20.0.0/16"));
    }
}
