//! Allow-lists of outgoing HTTP: which hosts a module's steps may call.
//!
//! An entry is a host name (any port) or `name:port`. The host process has
//! its own list (`cairn serve --allow-outbound`), empty by default; a module
//! deployed with `allowed_hosts` may name only hosts within it, and each
//! request is checked against both, so narrowing the host's list later
//! takes effect at once.

use std::fmt;

/// One entry: a host name, lower case, and an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    host: String,
    port: Option<u16>,
}

impl Entry {
    fn parse(text: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "{text:?} is not an allowed host; give a host name or address, optionally with a port: \"api.example.com\", \"127.0.0.1:8080\", \"[::1]:8080\""
            )
        };
        let text = text.trim().to_ascii_lowercase();
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
        Ok(Self { host, port })
    }

    /// Whether this entry allows `other` (an entry or a request's
    /// `host:port`).
    fn covers(&self, other: &Entry) -> bool {
        self.host == other.host && (self.port.is_none() || self.port == other.port)
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
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
    /// narrowed to the ports `bound` allows where it is wider.
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

    /// Whether a request to `authority` (`host:port`) is allowed; the
    /// refusal names what is.
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
        for bad in ["", "a b", "host:port", "host:99999", "http://x"] {
            let error = AllowList::parse(&[bad]).unwrap_err();
            assert!(error.contains("api.example.com"), "{bad}: {error}");
        }
    }
}
