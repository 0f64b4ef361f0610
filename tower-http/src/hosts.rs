//! Which `Host` names a server answers, against DNS rebinding: a page on `evil.example` that
//! makes its name resolve to 127.0.0.1 reaches a Tower on this machine with `Host: evil.example`,
//! and the browser treats the answers as the page's own. A Tower listening on a loopback address
//! answers only loopback names (`localhost`, `127.0.0.1` and the rest of 127/8, `[::1]`) and the
//! names of `TOWER_ALLOWED_HOSTS`; on other addresses `TOWER_ALLOWED_HOSTS`, when set, is the
//! list of names it serves (a deployment behind a load balancer lists its public name). Others
//! get 421 Misdirected Request.

use std::net::IpAddr;

/// The names a server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hosts {
    loopback: bool,
    allowed: Vec<String>,
}

impl Hosts {
    /// The rule for a listener on `addr`, with the extra names `allowed`.
    pub(crate) fn new(addr: IpAddr, allowed: &[String]) -> Self {
        Self {
            loopback: addr.is_loopback(),
            allowed: allowed.iter().map(|h| normalize(h)).collect(),
        }
    }

    /// Whether a request with this `Host` header is answered.
    pub(crate) fn admits(&self, host: Option<&str>) -> bool {
        let Some(name) = host.map(name_of) else {
            // HTTP/1.1 requires the header; without one, only a server open to any name answers.
            return !self.loopback && self.allowed.is_empty();
        };
        if self.allowed.contains(&name) {
            return true;
        }
        if self.loopback {
            return is_loopback_name(&name);
        }
        self.allowed.is_empty()
    }
}

/// The name of a `Host` header: without its port, lowercase, without a trailing dot.
fn name_of(host: &str) -> String {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        rest.split_once(']').map_or(host, |(v6, _)| v6)
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        }
    };
    normalize(name)
}

fn normalize(name: &str) -> String {
    let name = name.trim().trim_start_matches('[').trim_end_matches(']');
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn is_loopback_name(name: &str) -> bool {
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_server_answers_loopback_names_and_the_allowed_ones() {
        let h = Hosts::new([127, 0, 0, 1].into(), &["tower.internal".to_owned()]);
        for ok in [
            "localhost",
            "localhost:3001",
            "127.0.0.1:3001",
            "127.0.0.2",
            "[::1]:3001",
            "[::1]",
            "LOCALHOST.",
            "tower.internal:80",
            "Tower.Internal",
        ] {
            assert!(h.admits(Some(ok)), "{ok}");
        }
        for no in [
            "evil.example",
            "evil.example:3001",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "10.0.0.1",
            "[::2]:1",
        ] {
            assert!(!h.admits(Some(no)), "{no}");
        }
        assert!(!h.admits(None), "no Host header");
    }

    #[test]
    fn other_servers_answer_any_name_unless_names_are_listed() {
        let open = Hosts::new([0, 0, 0, 0].into(), &[]);
        assert!(open.admits(Some("anything.example")) && open.admits(None));
        let listed = Hosts::new([0, 0, 0, 0].into(), &["flags.example.com".to_owned()]);
        assert!(listed.admits(Some("flags.example.com:443")));
        assert!(!listed.admits(Some("other.example")) && !listed.admits(None));
        assert!(!listed.admits(Some("localhost")), "listed names only, loopback included");
    }
}
