//! Who the client is when the gateway stands behind another proxy. By default nobody is
//! trusted: the client is the socket's peer, and `X-Forwarded-*` headers from it are
//! ignored (and replaced before forwarding). When the peer is a configured trusted
//! proxy, the client is the right-most `X-Forwarded-For` entry that is not itself a
//! trusted proxy — never simply the first entry, which anyone can write.

use std::net::IpAddr;

use http::HeaderMap;

/// An address range: `10.0.0.0/8`, `2001:db8::/32`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                masked(u32::from(n).into(), self.prefix, 32) == masked(u32::from(i).into(), self.prefix, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                masked(u128::from(n), self.prefix, 128) == masked(u128::from(i), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn masked(bits: u128, prefix: u8, width: u32) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let keep = u32::from(prefix);
    bits >> (width - keep)
}

/// `::ffff:10.0.0.1` is `10.0.0.1`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn trusted(ip: IpAddr, proxies: &[Cidr]) -> bool {
    proxies.iter().any(|c| c.contains(ip))
}

/// The client's address (see the module comment).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, proxies: &[Cidr]) -> IpAddr {
    let peer = canonical(peer);
    if !trusted(peer, proxies) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Ok(ip) = entry.trim_matches(['[', ']']).parse::<IpAddr>() else {
            // A hop we cannot read: the last address we could trust to have said it.
            return client;
        };
        client = canonical(ip);
        if !trusted(client, proxies) {
            return client;
        }
    }
    client
}

/// The host the browser used, as a trusted proxy reports it in `X-Forwarded-Host`;
/// `None` when the peer is not trusted or sent none (then `Host` counts).
pub fn forwarded_host(peer: IpAddr, headers: &HeaderMap, proxies: &[Cidr]) -> Option<String> {
    if !trusted(canonical(peer), proxies) {
        return None;
    }
    let last = headers.get_all("x-forwarded-host").iter().next_back()?;
    let value = last.to_str().ok()?;
    Some(value.rsplit(',').next()?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h.insert("x-forwarded-host", "good.example".parse().unwrap());
        h
    }

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains("2001:db8::1".parse().unwrap())
        );
        assert!(
            Cidr::parse("192.168.1.5")
                .unwrap()
                .contains("192.168.1.5".parse().unwrap())
        );
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
    }

    #[test]
    fn untrusted_peers_are_the_client_and_their_headers_do_not_count() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        let h = xff("1.2.3.4");
        assert_eq!(client_ip(peer, &h, &[]), peer);
        assert_eq!(forwarded_host(peer, &h, &[]), None);
    }

    #[test]
    fn behind_a_trusted_proxy_the_right_most_untrusted_entry_is_the_client() {
        let proxies = [Cidr::parse("10.0.0.0/8").unwrap()];
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        // A client that wrote its own X-Forwarded-For gets no say: the proxy appended the
        // real address last.
        let h = xff("6.6.6.6, 198.51.100.7, 10.0.0.3");
        assert_eq!(client_ip(peer, &h, &proxies), "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(forwarded_host(peer, &h, &proxies).as_deref(), Some("good.example"));
        assert_eq!(client_ip(peer, &HeaderMap::new(), &proxies), peer);
        assert_eq!(
            client_ip(peer, &xff("garbage, 10.0.0.3"), &proxies),
            "10.0.0.3".parse::<IpAddr>().unwrap()
        );
    }
}
