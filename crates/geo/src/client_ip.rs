//! The client's IP address behind reverse proxies (SECURITY.md INV-08).
//!
//! `X-Forwarded-For` is a list each proxy appends its peer's address to, so only its right
//! end is written by proxies we run; everything to the left of the first address that is not
//! one of ours was written by the client (or by proxies it chose) and is worthless. Hence:
//!
//! ```text
//!  peer not a trusted proxy ─────────────────────────────▶ Direct(peer)   (headers ignored)
//!  peer trusted: walk X-Forwarded-For from the right (all header values, in order, joined)
//!    entry is a trusted proxy ──▶ remember it as the last trusted hop, go left
//!    entry is another address ──▶ Forwarded(entry)   (a trusted proxy wrote it)
//!    entry is garbage ─────────▶ Unknown { via: last trusted hop }
//!    more than MAX_FORWARDED_HOPS entries walked ──▶ Unknown { via: last trusted hop }
//!    no entry at all ──────────▶ Unknown { via: peer }
//!    every entry trusted ──────▶ Forwarded(leftmost)  (a trusted proxy wrote it too)
//! ```
//!
//! The result is therefore always either the socket peer or an address that a trusted proxy
//! wrote; an address the client chose is believed only if a trusted proxy vouched for it,
//! which is what "trusted" means (so list only your proxies, never client networks).
//! Garbage is never believed, and never skipped either: an address left of it could have
//! been written by anyone. [`ClientIp::Unknown`] still gives an address for rate limiting
//! (the last trusted hop), but [`ClientIp::known`] is `None`, which the risk assessment treats
//! as "no IP": high risk.
//!
//! What an entry may look like: an IPv4 or IPv6 address, optionally with a port
//! (`203.0.113.7:51234`, `[2001:db8::1]:443`, as some load balancers write them) or an IPv6
//! address in brackets (`[2001:db8::1]`), with spaces or tabs around it. Everything else is
//! garbage: empty entries, `unknown`, obfuscated forms (`0x7f.1`, leading zeros), zone ids,
//! quoted RFC 7239 syntax, and addresses that cannot be a client (unspecified, multicast,
//! broadcast). IPv4-mapped IPv6 addresses (dual-stack sockets) are treated as IPv4 throughout.

use crate::db::iso_country;
use crate::GeoError;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest chain of trusted hops walked; real deployments have one to three.
pub const MAX_FORWARDED_HOPS: usize = 32;

/// The reverse proxies whose `X-Forwarded-For` (and country header) we believe. Empty (the
/// default): nobody's, the socket peer is the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

fn proxy_error(entry: &str, message: impl Into<String>) -> GeoError {
    GeoError::TrustedProxy {
        entry: entry.to_string(),
        message: message.into(),
    }
}

impl TrustedProxies {
    /// Parses addresses (`10.0.0.7`, a single host) and CIDRs (`10.0.0.0/8`, `fd00::/8`).
    ///
    /// Refused, because each is a likely mistake that would make spoofing possible: host bits
    /// set (`10.0.0.7/8`: did you mean `10.0.0.0/8`?), IPv4-mapped IPv6 ranges (write the IPv4
    /// form), and ranges wider than `/8` (IPv4) or `/7` (IPv6; `fc00::/7` is all of unique
    /// local), which would let most of the Internet choose its own address.
    pub fn parse<I, S>(entries: I) -> Result<Self, GeoError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets = Vec::new();
        for entry in entries {
            let raw = entry.as_ref();
            let s = raw.trim();
            let net = if s.contains('/') {
                let net: IpNet = s
                    .parse()
                    .map_err(|_| proxy_error(raw, "not an IP address or CIDR"))?;
                if net.trunc() != net {
                    return Err(proxy_error(
                        raw,
                        format!("host bits are set; did you mean {}?", net.trunc()),
                    ));
                }
                net
            } else {
                let ip: IpAddr = s
                    .parse()
                    .map_err(|_| proxy_error(raw, "not an IP address or CIDR"))?;
                IpNet::from(ip)
            };
            if let IpNet::V6(v6) = net {
                if v6.network().to_ipv4_mapped().is_some() && v6.prefix_len() >= 96 {
                    return Err(proxy_error(raw, "an IPv4-mapped range: write it as IPv4"));
                }
            }
            let min = match net {
                IpNet::V4(_) => 8,
                IpNet::V6(_) => 7,
            };
            if net.prefix_len() < min {
                return Err(proxy_error(
                    raw,
                    format!("wider than /{min}: this would trust a large part of the Internet"),
                ));
            }
            nets.push(net);
        }
        Ok(Self { nets })
    }

    /// Whether `ip` (IPv4-mapped IPv6 read as IPv4) is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }
}

/// The outcome of [`resolve_client_ip`]; see the module's diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIp {
    /// The socket peer, which is not a trusted proxy.
    Direct(IpAddr),
    /// An address a trusted proxy wrote into `X-Forwarded-For`.
    Forwarded(IpAddr),
    /// The peer is a trusted proxy but the header named no believable client; `via` is the
    /// last trusted hop seen.
    Unknown { via: IpAddr },
}

impl ClientIp {
    /// An address to key rate limits and logs by: for `Unknown`, the last trusted hop (never
    /// an address the client chose).
    pub fn addr(&self) -> IpAddr {
        match *self {
            ClientIp::Direct(ip) | ClientIp::Forwarded(ip) => ip,
            ClientIp::Unknown { via } => via,
        }
    }

    /// The client's address for the risk assessment: `None` when unknown (INV-08: high risk).
    pub fn known(&self) -> Option<IpAddr> {
        match *self {
            ClientIp::Direct(ip) | ClientIp::Forwarded(ip) => Some(ip),
            ClientIp::Unknown { .. } => None,
        }
    }
}

/// Resolves the client address from the socket `peer` and every `X-Forwarded-For` header
/// value in the order received; see the module's diagram.
pub fn resolve_client_ip(
    peer: IpAddr,
    x_forwarded_for: &[&str],
    trusted: &TrustedProxies,
) -> ClientIp {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        return ClientIp::Direct(peer);
    }
    // Several header values are one list joined by commas (RFC 9110 §5.3): the last value's
    // last entry is the nearest hop.
    let hops = x_forwarded_for
        .iter()
        .rev()
        .flat_map(|value| value.rsplit(','));
    let mut last_trusted = peer;
    let mut walked = 0usize;
    for entry in hops {
        walked += 1;
        if walked > MAX_FORWARDED_HOPS {
            return ClientIp::Unknown { via: last_trusted };
        }
        let Some(ip) = parse_hop(entry) else {
            return ClientIp::Unknown { via: last_trusted };
        };
        if !trusted.contains(ip) {
            return ClientIp::Forwarded(ip);
        }
        last_trusted = ip;
    }
    if walked == 0 {
        ClientIp::Unknown { via: peer }
    } else {
        ClientIp::Forwarded(last_trusted)
    }
}

/// [`resolve_client_ip`] reduced to one address (see [`ClientIp::addr`]). Prefer
/// `resolve_client_ip(..).known()` for the risk assessment, so that an unknown client counts
/// as high risk rather than as the proxy's own address.
pub fn client_ip(peer: IpAddr, x_forwarded_for: &[&str], trusted: &TrustedProxies) -> IpAddr {
    resolve_client_ip(peer, x_forwarded_for, trusted).addr()
}

/// One `X-Forwarded-For` entry; `None` for garbage (see the module's doc).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let s = entry.trim_matches([' ', '\t']);
    // The longest legitimate form, `[ffff:…:255.255.255.255]:65535`, is 53 bytes.
    if s.is_empty() || s.len() > 64 || s.contains('%') {
        return None;
    }
    let ip = if let Ok(ip) = s.parse::<IpAddr>() {
        ip
    } else if let Ok(sa) = s.parse::<SocketAddr>() {
        sa.ip()
    } else {
        let inner = s.strip_prefix('[')?.strip_suffix(']')?;
        IpAddr::V6(inner.parse::<Ipv6Addr>().ok()?)
    };
    let ip = ip.to_canonical();
    let impossible =
        ip.is_unspecified() || ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST);
    (!impossible).then_some(ip)
}

/// A country header set by a trusted proxy (e.g. `CF-IPCountry`): believed only when the
/// socket peer is a trusted proxy (which must overwrite any such header from the client), and
/// only as two ASCII letters, upper-cased. `XX` and `ZZ`, which proxies send for "unknown",
/// read as unknown; so does anything else (`T1` for Tor, empty, long strings).
pub fn country_from_header(peer_trusted: bool, value: Option<&str>) -> Option<String> {
    if !peer_trusted {
        return None;
    }
    let code = iso_country(value?.trim_matches([' ', '\t']))?;
    (code != "XX" && code != "ZZ").then_some(code)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Our load balancer 10.0.0.0/24 and a second tier 192.168.1.0/24, plus fd00::/8.
    fn trusted() -> TrustedProxies {
        TrustedProxies::parse(["10.0.0.0/24", "192.168.1.0/24", "fd00::/8", "172.16.0.9"]).unwrap()
    }

    #[test]
    fn forwarded_for_table() {
        let t = trusted();
        let lb = ip("10.0.0.2");
        let client = ip("203.0.113.7");
        let long_untrusted: String = (0..1000)
            .map(|i| format!("198.51.100.{}", i % 250 + 1))
            .collect::<Vec<_>>()
            .join(", ");
        let long_trusted: String = (0..1000)
            .map(|i| format!("10.0.0.{}", i % 250 + 1))
            .collect::<Vec<_>>()
            .join(",");
        let long_then_client = format!("{long_untrusted}, 203.0.113.7");
        use ClientIp::*;
        // (name, peer, header values, expected)
        #[rustfmt::skip]
        let rows: Vec<(&str, IpAddr, Vec<&str>, ClientIp)> = vec![
            // The peer is not ours: every header is the client's invention.
            ("untrusted peer, no header", client, vec![], Direct(client)),
            ("untrusted peer, spoofed header", client, vec!["10.0.0.1"], Direct(client)),
            ("untrusted peer, garbage header", client, vec!["unknown"], Direct(client)),
            ("untrusted peer that claims a trusted address", ip("198.51.100.1"), vec!["10.0.0.3"], Direct(ip("198.51.100.1"))),
            // Through our load balancer.
            ("one proxy", lb, vec!["203.0.113.7"], Forwarded(client)),
            ("spoofed leftmost entry is never believed", lb, vec!["1.2.3.4, 203.0.113.7"], Forwarded(client)),
            ("spoofed trusted-looking leftmost entry", lb, vec!["10.0.0.9, 203.0.113.7"], Forwarded(client)),
            ("spoofed garbage leftmost entry", lb, vec!["unknown, <script>, 203.0.113.7"], Forwarded(client)),
            ("two trusted tiers", lb, vec!["6.6.6.6, 203.0.113.7, 192.168.1.5"], Forwarded(client)),
            ("spaces and tabs", lb, vec![" 6.6.6.6 ,\t203.0.113.7\t,  192.168.1.5 "], Forwarded(client)),
            ("several header values are one list", lb, vec!["6.6.6.6", "203.0.113.7, 192.168.1.5"], Forwarded(client)),
            ("several header values: the client's own first value ignored", lb, vec!["9.9.9.9, 8.8.8.8", "203.0.113.7"], Forwarded(client)),
            ("IPv6 client", lb, vec!["2001:db8::7"], Forwarded(ip("2001:db8::7"))),
            ("IPv6 in brackets", lb, vec!["[2001:db8::7]"], Forwarded(ip("2001:db8::7"))),
            ("IPv6 in brackets with a port", lb, vec!["[2001:db8::7]:443"], Forwarded(ip("2001:db8::7"))),
            ("IPv4 with a port", lb, vec!["203.0.113.7:51234"], Forwarded(client)),
            ("IPv6 trusted proxy", ip("fd00::1"), vec!["203.0.113.7, fd00::2"], Forwarded(client)),
            ("IPv4-mapped peer is the IPv4 proxy", ip("::ffff:10.0.0.2"), vec!["203.0.113.7"], Forwarded(client)),
            ("IPv4-mapped entry is IPv4", lb, vec!["::ffff:203.0.113.7"], Forwarded(client)),
            ("IPv4-mapped trusted hop is skipped", lb, vec!["203.0.113.7, ::ffff:10.0.0.4"], Forwarded(client)),
            ("a single trusted host", ip("172.16.0.9"), vec!["203.0.113.7"], Forwarded(client)),
            ("the neighbour of a trusted host is not trusted", ip("172.16.0.10"), vec!["203.0.113.7"], Direct(ip("172.16.0.10"))),
            ("every hop trusted: the leftmost, which a trusted proxy wrote", lb, vec!["10.0.0.5, 192.168.1.7"], Forwarded(ip("10.0.0.5"))),
            // Trusted peer, but no believable client.
            ("trusted peer, no header", lb, vec![], Unknown { via: lb }),
            ("trusted peer, empty header", lb, vec![""], Unknown { via: lb }),
            ("trusted peer, blank header", lb, vec!["   "], Unknown { via: lb }),
            ("garbage where our proxy wrote", lb, vec!["unknown"], Unknown { via: lb }),
            ("garbage stops the walk, the address left of it is not believed", lb, vec!["203.0.113.7, unknown"], Unknown { via: lb }),
            ("garbage after a trusted hop: that hop", lb, vec!["203.0.113.7, garbage, 192.168.1.5"], Unknown { via: ip("192.168.1.5") }),
            ("empty entry (double comma)", lb, vec!["203.0.113.7,,192.168.1.5"], Unknown { via: ip("192.168.1.5") }),
            ("trailing comma", lb, vec!["203.0.113.7,"], Unknown { via: lb }),
            ("empty last header value", lb, vec!["203.0.113.7", ""], Unknown { via: lb }),
            ("IPv4 in brackets", lb, vec!["[203.0.113.7]"], Unknown { via: lb }),
            ("hostname", lb, vec!["example.com"], Unknown { via: lb }),
            ("hostname with port", lb, vec!["example.com:80"], Unknown { via: lb }),
            ("zone id", lb, vec!["fe80::1%eth0"], Unknown { via: lb }),
            ("zone id in brackets with port", lb, vec!["[fe80::1%2]:80"], Unknown { via: lb }),
            ("RFC 7239 syntax is not X-Forwarded-For", lb, vec!["for=203.0.113.7"], Unknown { via: lb }),
            ("quoted", lb, vec!["\"203.0.113.7\""], Unknown { via: lb }),
            ("leading zeros (octal in some parsers)", lb, vec!["010.0.0.1"], Unknown { via: lb }),
            ("hex form", lb, vec!["0x7f.0.0.1"], Unknown { via: lb }),
            ("short form", lb, vec!["127.1"], Unknown { via: lb }),
            ("unspecified", lb, vec!["0.0.0.0"], Unknown { via: lb }),
            ("unspecified IPv6", lb, vec!["::"], Unknown { via: lb }),
            ("broadcast", lb, vec!["255.255.255.255"], Unknown { via: lb }),
            ("multicast", lb, vec!["224.0.0.1"], Unknown { via: lb }),
            ("bad port", lb, vec!["203.0.113.7:99999"], Unknown { via: lb }),
            ("unclosed bracket", lb, vec!["[2001:db8::7"], Unknown { via: lb }),
            ("control characters", lb, vec!["203.0.113.7\r\n"], Unknown { via: lb }),
            ("non-ASCII digits", lb, vec!["２０３.0.113.7"], Unknown { via: lb }),
            // 1000 entries: the walk stops at the first untrusted one from the right …
            ("1000 spoofed entries then the client", lb, vec![long_then_client.as_str()], Forwarded(client)),
            ("1000 spoofed entries", lb, vec![long_untrusted.as_str()], Forwarded(ip("198.51.100.250"))),
            // … and gives up after MAX_FORWARDED_HOPS trusted ones.
            ("1000 trusted entries", lb, vec![long_trusted.as_str()], Unknown { via: ip("10.0.0.219") }),
        ];
        for (name, peer, headers, expected) in rows {
            let got = resolve_client_ip(peer, &headers, &t);
            assert_eq!(got, expected, "{name}");
            assert_eq!(client_ip(peer, &headers, &t), expected.addr(), "{name}");
        }
    }

    #[test]
    fn unknown_is_not_an_address_for_risk() {
        let via = ip("10.0.0.2");
        assert_eq!(ClientIp::Unknown { via }.known(), None);
        assert_eq!(ClientIp::Unknown { via }.addr(), via);
        let c = ip("203.0.113.7");
        assert_eq!(ClientIp::Direct(c).known(), Some(c));
        assert_eq!(ClientIp::Forwarded(c).known(), Some(c));
    }

    #[test]
    fn no_trusted_proxies_means_the_peer() {
        let none = TrustedProxies::default();
        assert!(none.is_empty());
        let lb = ip("10.0.0.2");
        assert_eq!(
            resolve_client_ip(lb, &["203.0.113.7"], &none),
            ClientIp::Direct(lb)
        );
        // An IPv4-mapped peer is reported as IPv4.
        assert_eq!(
            client_ip(ip("::ffff:203.0.113.7"), &[], &none),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn trusted_proxy_parsing() {
        let ok = TrustedProxies::parse([
            " 10.0.0.0/8 ",
            "192.168.0.0/16",
            "fc00::/7",
            "2001:db8::1",
            "127.0.0.1",
        ])
        .unwrap();
        assert_eq!(ok.nets().len(), 5);
        assert!(ok.contains(ip("10.200.0.1")));
        assert!(ok.contains(ip("::ffff:10.200.0.1")));
        assert!(ok.contains(ip("fd12::1")));
        assert!(ok.contains(ip("2001:db8::1")));
        assert!(!ok.contains(ip("2001:db8::2")));
        assert!(!ok.contains(ip("11.0.0.1")));
        assert!(TrustedProxies::parse(Vec::<String>::new())
            .unwrap()
            .is_empty());
        let bad = [
            ("10.0.0.7/8", "did you mean 10.0.0.0/8?"),
            ("0.0.0.0/0", "wider than /8"),
            ("128.0.0.0/1", "wider than /8"),
            ("::/0", "wider than /7"),
            ("2000::/3", "wider than /7"),
            ("::ffff:10.0.0.0/104", "IPv4-mapped"),
            ("10.0.0.0/33", "not an IP address or CIDR"),
            ("10.0.0.0/", "not an IP address or CIDR"),
            ("example.com", "not an IP address or CIDR"),
            ("", "not an IP address or CIDR"),
            ("10.0.0.1:80", "not an IP address or CIDR"),
        ];
        for (entry, message) in bad {
            let e = TrustedProxies::parse([entry]).unwrap_err().to_string();
            assert!(
                e.contains(message) && e.contains(&format!("{entry:?}")),
                "{entry}: {e}"
            );
        }
    }

    #[test]
    fn country_header() {
        let cases = [
            (true, Some("GB"), Some("GB")),
            (true, Some("gb"), Some("GB")),
            (true, Some(" de "), Some("DE")),
            (false, Some("GB"), None),
            (true, None, None),
            (true, Some(""), None),
            (true, Some("G"), None),
            (true, Some("GBR"), None),
            (true, Some("T1"), None),
            (true, Some("XX"), None),
            (true, Some("zz"), None),
            (true, Some("G\u{0301}B"), None),
            (true, Some("ΓΒ"), None),
            (true, Some("G-"), None),
        ];
        for (trusted_peer, value, expected) in cases {
            assert_eq!(
                country_from_header(trusted_peer, value).as_deref(),
                expected,
                "{value:?}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the headers: no panic; an untrusted peer is the answer; otherwise the
        /// answer is the peer or an address that appears in the headers at or right of the
        /// first untrusted entry from the right.
        #[test]
        fn never_believes_what_no_trusted_proxy_wrote(
            values in proptest::collection::vec(
                proptest::collection::vec(
                    prop_oneof![
                        Just("10.0.0.1".to_string()),
                        Just("192.168.1.9".to_string()),
                        Just("203.0.113.7".to_string()),
                        Just("[2001:db8::1]:80".to_string()),
                        Just("unknown".to_string()),
                        Just(String::new()),
                        "[ -~]{0,12}",
                    ],
                    0..6,
                ).prop_map(|entries| entries.join(",")),
                0..4,
            ),
            peer_trusted in any::<bool>(),
        ) {
            let t = trusted();
            let peer = if peer_trusted { ip("10.0.0.2") } else { ip("198.51.100.1") };
            let headers: Vec<&str> = values.iter().map(String::as_str).collect();
            let got = resolve_client_ip(peer, &headers, &t);
            if !peer_trusted {
                prop_assert_eq!(got, ClientIp::Direct(peer));
            } else {
                // The entries a trusted proxy wrote: from the right, up to and including the
                // first one that is not a trusted address.
                let mut vouched = vec![peer];
                for e in headers.iter().rev().flat_map(|v| v.rsplit(',')) {
                    match parse_hop(e) {
                        Some(a) => {
                            vouched.push(a);
                            if !t.contains(a) {
                                break;
                            }
                        }
                        None => break,
                    }
                }
                prop_assert!(vouched.contains(&got.addr()), "{:?} not in {:?}", got, vouched);
            }
        }
    }
}
