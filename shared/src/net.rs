//! The client's address behind reverse proxies: [`TrustedProxies`] (the `TRUSTED_PROXIES`
//! setting, CIDRs) decides when `Forwarded` / `X-Forwarded-For` may be believed, so per-IP
//! limits key on the user's address rather than the load balancer's.
//!
//! The walk is the usual one (nginx's `real_ip_recursive`): start from the TCP peer; while the
//! current address is a trusted proxy, step to the address it reports (the right-most entry not
//! yet visited); the first untrusted address is the client. A peer that is not a trusted proxy
//! is the client whatever headers it sends, so nobody can pick their own address by sending a
//! header. `Forwarded` (RFC 7239) wins over `X-Forwarded-For` when both are present.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;

use crate::settings::list_or_csv;

/// Most forwarded hops looked at; a longer chain is cut at this many from the right.
const MAX_HOPS: usize = 32;

/// An address block, e.g. `10.0.0.0/8`, `::1/128`, or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` bits of `a` and `b` are equal.
fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let whole = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[whole] & mask == b[whole] & mask
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr = IpAddr::from_str(addr)
            .map_err(|_| format!("`{text}` is not an IP address or CIDR block"))?
            .to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0..={max}"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The proxies whose forwarding headers are believed (empty: none, the TCP peer is the client).
///
/// In settings: a YAML list or a comma-separated string (`TRUSTED_PROXIES=10.0.0.0/8,::1`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "ListOrCsv")]
pub struct TrustedProxies(Vec<Cidr>);

/// The raw form of the setting, for serde.
#[derive(Deserialize)]
struct ListOrCsv(#[serde(deserialize_with = "list_or_csv")] Vec<String>);

impl TryFrom<ListOrCsv> for TrustedProxies {
    type Error = String;

    fn try_from(raw: ListOrCsv) -> Result<Self, String> {
        Self::parse(&raw.0)
    }
}

impl TrustedProxies {
    /// Parse CIDR blocks or addresses; the error names the first bad entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| e.as_ref().trim().parse::<Cidr>())
            .collect::<Result<_, _>>()
            .map(Self)
            .map_err(|e| format!("trusted proxies: {e}"))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client's address: `peer` unless it is a trusted proxy, then walked back through the
    /// `forwarded` (RFC 7239) or, without one, the `x_forwarded_for` header values, each given
    /// in the order they appear in the request.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded: impl IntoIterator<Item = &'a str>,
        x_forwarded_for: impl IntoIterator<Item = &'a str>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let mut hops: Vec<&str> = forwarded
            .into_iter()
            .flat_map(|value| value.split(','))
            .filter_map(forwarded_for)
            .collect();
        if hops.is_empty() {
            hops = x_forwarded_for
                .into_iter()
                .flat_map(|value| value.split(','))
                .map(str::trim)
                .filter(|hop| !hop.is_empty())
                .collect();
        }
        let mut client = peer;
        for hop in hops.iter().rev().take(MAX_HOPS) {
            // An entry that is no address ("unknown", an obfuscated name): the last proxy that
            // reported one is as close to the client as can be known.
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// The browser origins allowed to call a service cross-origin (the `CORS_ALLOWED_ORIGINS`
/// setting): exact origins (`https://app.example.com`, `http://localhost:5173`) or an origin
/// with any port (`http://localhost:*`). Requests without an `Origin` header (node, mobile
/// apps, curl) and same-origin requests are never refused for their origin; the token is what
/// authenticates them.
///
/// In settings: a YAML list or a comma-separated string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "ListOrCsv")]
pub struct AllowedOrigins {
    /// Every origin (test servers only; never parsed from settings).
    any: bool,
    patterns: Vec<OriginPattern>,
}

/// `scheme://host[:port]`, lower-cased; `port: None` with `any_port` for `scheme://host:*`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OriginPattern {
    scheme: String,
    host: String,
    port: Option<u16>,
    any_port: bool,
}

/// What to do with a request, as far as its `Origin` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginCheck {
    /// No `Origin` header: not a cross-origin browser request.
    Absent,
    /// The page is served by this host: no CORS headers needed.
    SameOrigin,
    /// A cross-origin browser request from an allowed origin: answer with CORS headers.
    Allowed,
    /// A cross-origin browser request from an origin off the list: refuse.
    Refused,
}

impl TryFrom<ListOrCsv> for AllowedOrigins {
    type Error = String;

    fn try_from(raw: ListOrCsv) -> Result<Self, String> {
        Self::parse(&raw.0)
    }
}

impl AllowedOrigins {
    /// Parse exact origins or `scheme://host:*`; the error names the first bad entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let patterns = entries
            .iter()
            .map(|e| OriginPattern::parse(e.as_ref().trim().trim_end_matches('/')))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            any: false,
            patterns,
        })
    }

    /// Every origin (for protocol test servers).
    pub fn any() -> Self {
        Self {
            any: true,
            patterns: Vec::new(),
        }
    }

    /// `http://localhost:*` and `http://127.0.0.1:*`: a dev server on this machine.
    pub fn loopback() -> Self {
        Self::parse(&["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"])
            .unwrap_or_default()
    }

    /// No browser origin is allowed (only same-origin pages and non-browser clients).
    pub fn is_empty(&self) -> bool {
        !self.any && self.patterns.is_empty()
    }

    /// Say at start-up which browser origins `service` admits: one log line.
    pub fn announce(&self, service: &str) {
        if self.is_empty() {
            tracing::info!(
                "no browser origin may call {service} cross-origin (set CORS_ALLOWED_ORIGINS)"
            );
        } else {
            tracing::info!(origins = %self, "browser origins allowed to call {service} (CORS_ALLOWED_ORIGINS)");
        }
    }

    /// Whether `origin` (an `Origin` header value) is on the list.
    pub fn allows(&self, origin: &str) -> bool {
        self.any
            || OriginPattern::parse(origin)
                .is_ok_and(|o| !o.any_port && self.patterns.iter().any(|p| p.matches(&o)))
    }

    /// Decide on a request from its `Origin` and `Host` headers.
    pub fn check(&self, origin: Option<&str>, host: Option<&str>) -> OriginCheck {
        let Some(origin) = origin else {
            return OriginCheck::Absent;
        };
        let same_host = host.is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
        });
        if same_host {
            OriginCheck::SameOrigin
        } else if self.allows(origin) {
            OriginCheck::Allowed
        } else {
            OriginCheck::Refused
        }
    }
}

impl fmt::Display for AllowedOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.any {
            return f.write_str("*");
        }
        let list: Vec<String> = self.patterns.iter().map(ToString::to_string).collect();
        f.write_str(&list.join(","))
    }
}

impl OriginPattern {
    fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "allowed origins: `{text}` is not an origin (scheme://host[:port], or :* for any port)"
            )
        };
        let (scheme, authority) = text.split_once("://").ok_or_else(bad)?;
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https") {
            return Err(bad());
        }
        let (host, port) = if authority.starts_with('[') {
            // An IPv6 literal: `[::1]` or `[::1]:port`.
            let end = authority.find(']').ok_or_else(bad)?;
            let rest = &authority[end + 1..];
            let port = match rest {
                "" => None,
                _ => Some(rest.strip_prefix(':').ok_or_else(bad)?),
            };
            (&authority[..=end], port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
        if !valid_host {
            return Err(bad());
        }
        let (port, any_port) = match port {
            None => (None, false),
            Some("*") => (None, true),
            Some(p) => (Some(p.parse::<u16>().map_err(|_| bad())?), false),
        };
        Ok(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            any_port,
        })
    }

    /// Whether the concrete origin `o` matches this pattern.
    fn matches(&self, o: &OriginPattern) -> bool {
        self.scheme == o.scheme && self.host == o.host && (self.any_port || self.port == o.port)
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match (self.port, self.any_port) {
            (_, true) => f.write_str(":*"),
            (Some(port), false) => write!(f, ":{port}"),
            (None, false) => Ok(()),
        }
    }
}

/// The `for=` parameter of one `Forwarded` element (`for=192.0.2.1;proto=https`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// An address of a forwarding header, with or without a port: `192.0.2.1`, `192.0.2.1:443`,
/// `[2001:db8::1]`, `[2001:db8::1]:443`, `2001:db8::1`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let host = match hop.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.0,
        None => hop.rsplit_once(':')?.0,
    };
    host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(entries).expect("test proxies")
    }

    #[test]
    fn cidrs_match_by_prefix_and_family() {
        let net: Cidr = "10.1.0.0/16".parse().expect("cidr");
        assert!(net.contains(ip("10.1.255.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(!net.contains(ip("::1")));
        let odd: Cidr = "192.168.0.0/23".parse().expect("cidr");
        assert!(odd.contains(ip("192.168.1.9")));
        assert!(!odd.contains(ip("192.168.2.9")));
        let one: Cidr = "::1".parse().expect("address");
        assert!(one.contains(ip("::1")));
        assert!(
            "127.0.0.1"
                .parse::<Cidr>()
                .expect("address")
                .contains(ip("::ffff:127.0.0.1")),
            "an IPv4-mapped IPv6 peer is its IPv4 address"
        );
        assert!("0.0.0.0/0"
            .parse::<Cidr>()
            .expect("all")
            .contains(ip("8.8.8.8")));
    }

    #[test]
    fn bad_entries_are_refused_with_their_text() {
        let error = TrustedProxies::parse(&["10.0.0.0/8", "10.0.0.0/33"]).expect_err("prefix");
        assert!(error.contains("10.0.0.0/33"), "{error}");
        assert!(TrustedProxies::parse(&["lb.internal"]).is_err());
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let client = trusted.client_ip(ip("203.0.113.9"), None, Some("1.2.3.4"));
        assert_eq!(client, ip("203.0.113.9"));
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("10.0.0.2"), None, Some("1.2.3.4")),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = proxies(&["10.0.0.0/8"]);
        // A client can prepend anything; only what trusted proxies appended counts.
        let xff = "6.6.6.6, 198.51.100.7, 10.0.0.5";
        assert_eq!(
            trusted.client_ip(ip("10.0.0.2"), None, Some(xff)),
            ip("198.51.100.7")
        );
        // Several header lines read as one list, in order.
        assert_eq!(
            trusted.client_ip(ip("10.0.0.2"), None, ["6.6.6.6", "198.51.100.8"]),
            ip("198.51.100.8")
        );
        // Every hop trusted: the left-most is the best known.
        assert_eq!(
            trusted.client_ip(ip("10.0.0.2"), None, Some("10.9.9.9, 10.0.0.5")),
            ip("10.9.9.9")
        );
        // Nothing forwarded: the proxy itself.
        assert_eq!(
            trusted.client_ip(ip("10.0.0.2"), None, None),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn forwarded_wins_and_its_forms_are_read() {
        let trusted = proxies(&["10.0.0.0/8", "2001:db8:ff::/48"]);
        let forwarded = r#"for=6.6.6.6, for="[2001:db8::17]:4711";proto=https, For=10.0.0.9"#;
        assert_eq!(
            trusted.client_ip(ip("10.0.0.2"), Some(forwarded), Some("7.7.7.7")),
            ip("2001:db8::17")
        );
        assert_eq!(
            trusted.client_ip(ip("10.0.0.2"), Some("for=192.0.2.60:8080"), None),
            ip("192.0.2.60")
        );
        // "unknown" stops the walk at the proxy that wrote it.
        assert_eq!(
            trusted.client_ip(ip("10.0.0.2"), Some("for=unknown, for=10.0.0.3"), None),
            ip("10.0.0.3")
        );
    }

    #[test]
    fn origins_match_exactly_or_on_any_port() {
        let allowed =
            AllowedOrigins::parse(&["https://App.example.com/", "http://localhost:*"]).expect("ok");
        assert!(allowed.allows("https://app.example.com"));
        assert!(!allowed.allows("http://app.example.com"), "scheme");
        assert!(!allowed.allows("https://app.example.com:8443"), "port");
        assert!(!allowed.allows("https://evil.example.com"));
        assert!(allowed.allows("http://localhost:5173"));
        assert!(allowed.allows("http://localhost"));
        assert!(!allowed.allows("http://localhost.evil.example:5173"));
        assert!(!allowed.allows("null"));
        let loopback = AllowedOrigins::loopback();
        assert!(loopback.allows("http://127.0.0.1:8089"));
        assert!(loopback.allows("http://[::1]:3000"));
        assert!(!loopback.allows("http://192.168.1.2:3000"));
        assert_eq!(
            loopback.to_string(),
            "http://localhost:*,http://127.0.0.1:*,http://[::1]:*"
        );
    }

    #[test]
    fn requests_are_judged_by_origin_and_host() {
        let allowed = AllowedOrigins::parse(&["http://localhost:5173"]).expect("ok");
        assert_eq!(allowed.check(None, Some("api:3000")), OriginCheck::Absent);
        assert_eq!(
            allowed.check(Some("http://127.0.0.1:3000"), Some("127.0.0.1:3000")),
            OriginCheck::SameOrigin
        );
        assert_eq!(
            allowed.check(Some("http://localhost:5173"), Some("127.0.0.1:3000")),
            OriginCheck::Allowed
        );
        assert_eq!(
            allowed.check(Some("https://evil.example"), Some("127.0.0.1:3000")),
            OriginCheck::Refused
        );
        let none = AllowedOrigins::default();
        assert!(none.is_empty());
        assert_eq!(
            none.check(Some("http://localhost:5173"), None),
            OriginCheck::Refused
        );
        assert!(AllowedOrigins::any().allows("https://anything.example"));
    }

    #[test]
    fn bad_origins_are_refused_with_their_text() {
        for bad in [
            "*",
            "localhost:5173",
            "ftp://x.example",
            "https://",
            "https://a b",
            "https://x.example:99999",
        ] {
            let error = AllowedOrigins::parse(&[bad]).expect_err(bad);
            assert!(error.contains(bad.trim_end_matches('/')), "{error}");
        }
        let from_csv: AllowedOrigins =
            serde_json::from_str(r#""http://localhost:*, https://app.example""#).expect("csv");
        assert!(from_csv.allows("https://app.example"));
    }

    #[test]
    fn settings_take_a_list_or_a_comma_separated_string() {
        let from_list: TrustedProxies =
            serde_json::from_str(r#"["10.0.0.0/8", "::1"]"#).expect("list");
        let from_csv: TrustedProxies =
            serde_json::from_str(r#"" 10.0.0.0/8 , ::1 ""#).expect("csv");
        assert_eq!(from_list, from_csv);
        assert!(serde_json::from_str::<TrustedProxies>(r#""10.0.0.0/99""#).is_err());
    }
}
