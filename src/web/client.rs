//! The client address of a request, as the sign-in limits count it: the
//! TCP peer, or — when the peer is one of `http.trusted_proxies` — the
//! address that proxy names in `http.client_ip_header`. A header from
//! anyone else is ignored, so a client cannot pick the address it is
//! counted under.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName};

/// An IP address block: an address and how many leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    bits: u8,
}

impl Net {
    /// True when `ip` lies in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4 address mapped into IPv6 (`::ffff:10.0.0.1`) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Parses `10.0.0.1`, `10.0.0.0/8`, `::1` or `fd00::/8`.
pub fn parse_net(s: &str) -> Option<Net> {
    let s = s.trim();
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let addr = canonical(addr.parse::<IpAddr>().ok()?);
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max)?,
        None => max,
    };
    Some(Net { addr, bits })
}

/// How the client address is found.
#[derive(Debug, Clone)]
pub struct ClientIp {
    trusted: Vec<Net>,
    header: Option<HeaderName>,
}

impl ClientIp {
    /// From `http.trusted_proxies` and `http.client_ip_header` (entries
    /// that do not parse are left out; `check-config` names them).
    pub fn new(trusted_proxies: &[String], header: &str) -> ClientIp {
        ClientIp {
            trusted: trusted_proxies
                .iter()
                .filter_map(|p| parse_net(p))
                .collect(),
            header: HeaderName::from_bytes(header.as_bytes()).ok(),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(ip))
    }

    /// The client of a request from `peer` with these headers. Behind a
    /// trusted proxy: the header's addresses are read from the right (the
    /// nearest hop) past every trusted proxy; the first other one is the
    /// client. A header that does not parse leaves the peer.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        let Some(name) = &self.header else {
            return peer;
        };
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut hops: Vec<IpAddr> = Vec::new();
        for value in headers.get_all(name) {
            let Ok(v) = value.to_str() else {
                return peer;
            };
            for part in v.split(',') {
                match part.trim().parse::<IpAddr>() {
                    Ok(ip) => hops.push(canonical(ip)),
                    Err(_) => return peer,
                }
            }
        }
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            client = hop;
            if !self.is_trusted(hop) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn blocks_parse_and_contain() {
        let n = parse_net("10.0.0.0/8").unwrap();
        assert!(n.contains(ip("10.9.8.7")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(n.contains(ip("::ffff:10.1.2.3")));
        assert!(parse_net("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(!parse_net("127.0.0.1").unwrap().contains(ip("127.0.0.2")));
        assert!(parse_net("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(parse_net("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        for bad in ["", "10.0.0.0/33", "localhost", "10.0.0.1/x", "::/129"] {
            assert_eq!(parse_net(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_header_is_believed_only_from_a_trusted_proxy() {
        let c = ClientIp::new(
            &["127.0.0.1".into(), "10.0.0.0/8".into()],
            "X-Forwarded-For",
        );
        // From the proxy: the client it names.
        assert_eq!(
            c.resolve(ip("127.0.0.1"), &xff(&["203.0.113.7"])),
            ip("203.0.113.7")
        );
        // A client cannot choose its address: whatever it puts first, the
        // nearest untrusted hop counts.
        assert_eq!(
            c.resolve(ip("127.0.0.1"), &xff(&["1.2.3.4, 203.0.113.7, 10.1.1.1"])),
            ip("203.0.113.7")
        );
        assert_eq!(
            c.resolve(ip("127.0.0.1"), &xff(&["1.2.3.4", "203.0.113.7"])),
            ip("203.0.113.7")
        );
        // From anyone else the header is ignored.
        assert_eq!(
            c.resolve(ip("198.51.100.2"), &xff(&["203.0.113.7"])),
            ip("198.51.100.2")
        );
        // No header, or garbage: the peer.
        assert_eq!(c.resolve(ip("127.0.0.1"), &xff(&[])), ip("127.0.0.1"));
        assert_eq!(
            c.resolve(ip("127.0.0.1"), &xff(&["<script>"])),
            ip("127.0.0.1")
        );
        // Without trusted proxies nobody's header counts.
        let none = ClientIp::new(&[], "X-Forwarded-For");
        assert_eq!(
            none.resolve(ip("127.0.0.1"), &xff(&["203.0.113.7"])),
            ip("127.0.0.1")
        );
    }
}
