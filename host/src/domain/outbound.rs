//! Allow-lists of outgoing HTTP: which hosts a module's steps may call.
//!
//! An entry is a host name (any port), `name:port`, an address (`10.0.0.5`,
//! `[fd00::1]:8080`) or an address range (`10.0.0.0/8`, `fd00::/8`, any
//! port). The host process has its own list (`cairn serve
//! --allow-outbound`), empty by default; a module deployed with
//! `allowed_hosts` may name only hosts within it, and each request is
//! checked against both, so narrowing the host's list later takes effect at
//! once.
//!
//! A name is only half the check: the address it resolves to is checked
//! too, and the connection goes to that checked address, so an allowed
//! name whose DNS points at 127.0.0.1, 169.254.169.254 or a private network
//! does not reach it. Internal addresses (loopback, link-local, private,
//! unique-local, shared and unspecified) are reachable only where the list
//! names them as addresses or ranges — the operator's explicit choice.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What an entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// A host name or an address literal (IPv6 in brackets), lower case.
    Host(String),
    /// Every address whose first `prefix` bits are those of `base`.
    Range { base: IpAddr, prefix: u8 },
}

/// One entry: a host or range, and an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    target: Target,
    port: Option<u16>,
}

impl Entry {
    fn parse(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "{text:?} is not an allowed host; give a host name or address, optionally with a port, or an address range: \"api.example.com\", \"127.0.0.1:8080\", \"[::1]:8080\", \"10.0.0.0/8\""
            )
        };
        let text = text.trim().to_ascii_lowercase();
        if let Some((base, prefix)) = text.split_once('/') {
            let base: IpAddr = base.parse().map_err(|_| invalid())?;
            let bits = if base.is_ipv4() { 32 } else { 128 };
            let prefix = prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(invalid)?;
            return Ok(Self {
                target: Target::Range { base, prefix },
                port: None,
            });
        }
        let (host, port) = match text.rsplit_once(':') {
            // An IPv6 address without a port has colons but no brackets.
            Some((host, port)) if !host.contains(':') || host.ends_with(']') => (
                host.to_owned(),
                Some(port.parse::<u16>().map_err(|_| invalid())?),
            ),
            _ => (text.clone(), None),
        };
        let name_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
        if !name_ok {
            return Err(invalid());
        }
        // An unbracketed IPv6 address is written with brackets, as in a URL.
        let host = match host.parse::<Ipv6Addr>() {
            Ok(v6) => format!("[{v6}]"),
            Err(_) => host,
        };
        Ok(Self {
            target: Target::Host(host),
            port,
        })
    }

    /// The address this entry names, if it names exactly one.
    fn address(&self) -> Option<IpAddr> {
        match &self.target {
            Target::Host(host) => literal_address(host),
            Target::Range { .. } => None,
        }
    }

    fn port_covers(&self, port: Option<u16>) -> bool {
        self.port.is_none() || self.port == port
    }

    /// Whether this entry allows `other` (an entry or a request's
    /// `host:port`).
    fn covers(&self, other: &Entry) -> bool {
        if !self.port_covers(other.port) {
            return false;
        }
        match (&self.target, &other.target) {
            (Target::Host(mine), Target::Host(theirs)) => mine == theirs,
            (Target::Range { base, prefix }, Target::Host(_)) => other
                .address()
                .is_some_and(|address| in_range(address, *base, *prefix)),
            (
                Target::Range { base, prefix },
                Target::Range {
                    base: inner,
                    prefix: inner_prefix,
                },
            ) => inner_prefix >= prefix && in_range(*inner, *base, *prefix),
            (Target::Host(_), Target::Range { .. }) => false,
        }
    }

    /// Whether this entry names `address` (on `port`) as an address.
    fn names_address(&self, address: IpAddr, port: u16) -> bool {
        if !self.port_covers(Some(port)) {
            return false;
        }
        match &self.target {
            Target::Host(_) => self.address() == Some(address),
            Target::Range { base, prefix } => in_range(address, *base, *prefix),
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Host(host) => f.write_str(host)?,
            Target::Range { base, prefix } => write!(f, "{base}/{prefix}")?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// The address a host literal names (`10.0.0.1`, `[::1]`), if it is one.
fn literal_address(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

fn in_range(address: IpAddr, base: IpAddr, prefix: u8) -> bool {
    let (address, base, bits) = match (canonical(address), base) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(a.to_bits()), u128::from(b.to_bits()), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits(), 128),
        _ => return false,
    };
    let shift = bits - u32::from(prefix);
    shift >= bits || (address >> shift) == (base >> shift)
}

/// An IPv4 address carried in IPv6 (mapped or NAT64) as the IPv4 address
/// it reaches.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None if v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] => {
                let [.., a, b, c, d] = v6.octets();
                IpAddr::V4(Ipv4Addr::new(a, b, c, d))
            }
            None => address,
        },
        v4 => v4,
    }
}

/// Whether `address` is inside the host's own networks: loopback,
/// link-local (cloud metadata services live there), private, unique-local,
/// shared (carrier NAT), unspecified, broadcast or multicast.
pub fn is_internal_address(address: IpAddr) -> bool {
    match canonical(address) {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 0
                || in_range(IpAddr::V4(v4), IpAddr::V4(Ipv4Addr::new(100, 64, 0, 0)), 10)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
        }
    }
}

/// A list of allowed hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

impl AllowList {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let entries = entries
            .iter()
            .map(|e| Entry::parse(e.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// The entries of `self` that `bound` does not allow.
    pub fn outside(&self, bound: &AllowList) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| !bound.entries.iter().any(|b| b.covers(e)))
            .map(Entry::to_string)
            .collect()
    }

    /// The hosts both lists allow: each entry of `self` within `bound`,
    /// narrowed to what `bound` allows where it is wider.
    pub fn within(&self, bound: &AllowList) -> AllowList {
        let mut entries: Vec<Entry> = Vec::new();
        for entry in &self.entries {
            for limit in &bound.entries {
                let allowed = if limit.covers(entry) {
                    entry
                } else if entry.covers(limit) {
                    limit
                } else {
                    continue;
                };
                if !entries.contains(allowed) {
                    entries.push(allowed.clone());
                }
            }
        }
        AllowList { entries }
    }

    /// Whether a request to `authority` (`host:port`) is allowed by name;
    /// the refusal names what is. The address the name resolves to is
    /// checked apart, by [`AllowList::check_address`].
    pub fn check(&self, authority: &str) -> Result<(), String> {
        let target = Entry::parse(authority)?;
        if self.entries.iter().any(|e| e.covers(&target)) {
            return Ok(());
        }
        if self.entries.is_empty() {
            return Err(
                "the module allows no outgoing HTTP; deploy it with allowed_hosts (within the host's --allow-outbound)".into(),
            );
        }
        Err(format!(
            "{target} is not on the module's allow-list ({self})"
        ))
    }

    /// Whether a request to `host` may connect to `address`, one of the
    /// addresses it resolved to: a public address always, an internal one
    /// only where an entry names it as an address or range.
    pub fn check_address(&self, host: &str, address: SocketAddr) -> Result<(), String> {
        let ip = canonical(address.ip());
        if !is_internal_address(ip)
            || self
                .entries
                .iter()
                .any(|e| e.names_address(ip, address.port()))
        {
            return Ok(());
        }
        Err(format!(
            "{host} resolves to {ip}, an internal address; list the address or its range (\"{ip}\", \"10.0.0.0/8\") in allowed_hosts and --allow-outbound to reach it"
        ))
    }
}

impl fmt::Display for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self.entries.iter().map(Entry::to_string).collect();
        f.write_str(&entries.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_allows_every_port_and_a_port_only_itself() {
        let list = AllowList::parse(&["api.example.com", "127.0.0.1:8080", "[::1]:9000"]).unwrap();
        assert!(list.check("api.example.com:443").is_ok());
        assert!(list.check("API.example.com:80").is_ok());
        assert!(list.check("127.0.0.1:8080").is_ok());
        assert!(list.check("[::1]:9000").is_ok());
        let refused = list.check("127.0.0.1:8081").unwrap_err();
        assert!(
            refused.contains("127.0.0.1:8081 is not on the module's allow-list"),
            "{refused}"
        );
        assert!(list.check("evil.example.com:443").is_err());
        assert!(list.check("example.com:443").is_err());
        let none = AllowList::default().check("a:1").unwrap_err();
        assert!(none.contains("allows no outgoing HTTP"), "{none}");
    }

    #[test]
    fn a_module_list_is_bounded_by_the_hosts() {
        let host = AllowList::parse(&["localhost", "api.example.com:443"]).unwrap();
        let module = AllowList::parse(&["localhost:8080", "api.example.com", "other.org"]).unwrap();
        assert_eq!(module.outside(&host), ["api.example.com", "other.org"]);
        assert_eq!(
            module.within(&host).to_string(),
            "localhost:8080, api.example.com:443"
        );
    }

    #[test]
    fn malformed_entries_are_refused_with_examples() {
        for bad in [
            "",
            "a b",
            "host:port",
            "host:99999",
            "http://x",
            "10.0.0.0/33",
            "name/8",
        ] {
            let error = AllowList::parse(&[bad]).unwrap_err();
            assert!(error.contains("api.example.com"), "{bad}: {error}");
        }
    }

    #[test]
    fn ranges_cover_addresses_and_narrower_ranges() {
        let host = AllowList::parse(&["10.0.0.0/8", "fd00::/8"]).unwrap();
        assert!(host.check("10.1.2.3:80").is_ok());
        assert!(host.check("[fd12::1]:443").is_ok());
        assert!(host.check("11.0.0.1:80").is_err());
        assert!(host.check("ten.example:80").is_err());
        let module = AllowList::parse(&["10.1.0.0/16", "10.2.3.4:8080", "192.168.0.0/16"]).unwrap();
        assert_eq!(module.outside(&host), ["192.168.0.0/16"]);
        assert_eq!(
            module.within(&host).to_string(),
            "10.1.0.0/16, 10.2.3.4:8080"
        );
    }

    #[test]
    fn internal_addresses_need_an_explicit_entry() {
        let address = |text: &str| text.parse::<SocketAddr>().unwrap();
        let by_name = AllowList::parse(&["localhost", "api.example.com"]).unwrap();
        for internal in [
            "127.0.0.1:80",
            "169.254.169.254:80",
            "10.0.0.1:80",
            "172.16.5.4:80",
            "192.168.1.1:80",
            "100.64.0.1:80",
            "0.0.0.0:80",
            "[::1]:80",
            "[fe80::1]:80",
            "[fd00::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[64:ff9b::a9fe:a9fe]:80",
        ] {
            let refused = by_name
                .check_address("localhost", address(internal))
                .unwrap_err();
            assert!(
                refused.contains("an internal address"),
                "{internal}: {refused}"
            );
        }
        assert!(
            by_name
                .check_address("api.example.com", address("93.184.215.14:443"))
                .is_ok()
        );
        assert!(
            by_name
                .check_address("api.example.com", address("[2606:2800::1]:443"))
                .is_ok()
        );

        let explicit =
            AllowList::parse(&["localhost", "127.0.0.1:8080", "10.0.0.0/8", "::1"]).unwrap();
        assert!(
            explicit
                .check_address("localhost", address("127.0.0.1:8080"))
                .is_ok()
        );
        assert!(
            explicit
                .check_address("localhost", address("127.0.0.1:8081"))
                .is_err()
        );
        assert!(
            explicit
                .check_address("db", address("10.9.8.7:5432"))
                .is_ok()
        );
        assert!(
            explicit
                .check_address("localhost", address("[::1]:80"))
                .is_ok()
        );
        assert!(
            explicit
                .check_address("x", address("[::ffff:10.0.0.1]:80"))
                .is_ok()
        );
    }
}
