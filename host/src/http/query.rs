//! Query strings and path segments: the one parser every route's query goes
//! through, and percent-encoding both ways.

use super::error::ApiError;

/// A query string, decoded: `+` is a space, `%XX` a byte, and every key and
/// value valid UTF-8. Pairs keep their order; a repeated key is kept each
/// time.
#[derive(Debug, Clone, Default)]
pub(super) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub(super) fn parse(raw: &str) -> Result<Self, ApiError> {
        let pairs = raw
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let key = decode_component(key).ok_or_else(|| invalid(key))?;
                let value = decode_component(value).ok_or_else(|| invalid(&key))?;
                Ok((key, value))
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(Self { pairs })
    }

    /// The first value of `name`.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub(super) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn invalid(key: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_query",
        format!("query parameter {key:?} is not valid percent-encoded UTF-8"),
    )
}

/// A query key or value: `+` is a space (HTML forms), then percent-decoded.
fn decode_component(text: &str) -> Option<String> {
    percent_decode(&text.replace('+', " "))
}

pub(super) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encode a path segment (for `Location` headers).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Split a path into percent-decoded segments. Empty segments, `.` and `..`
/// are refused rather than normalised: no route has them.
pub(super) fn path_segments(path: &str) -> Result<Vec<String>, ApiError> {
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    trimmed
        .split('/')
        .map(|raw| {
            let segment = percent_decode(raw).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_path",
                    format!("path segment {raw:?} is not valid percent-encoded UTF-8"),
                )
            })?;
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(ApiError::not_found(
                    "not_found",
                    format!("no route for path {path:?}"),
                ));
            }
            Ok(segment)
        })
        .collect()
}

/// Query parameter `name`'s `value` as a whole number from `min` to `max`,
/// or the 400 that says so.
pub(super) fn bounded_number(name: &str, value: &str, min: u64, max: u64) -> Result<u64, ApiError> {
    value
        .parse()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("{name} must be a whole number from {min} to {max}, got {value:?}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_decoded_and_tricks_refused() {
        assert_eq!(
            path_segments("/v1/workflows/a%2Fb/events").unwrap(),
            ["v1", "workflows", "a/b", "events"]
        );
        assert!(path_segments("/v1/../modules").is_err());
        assert!(path_segments("/v1//modules").is_err());
        assert!(path_segments("/v1/%ff").is_err());
        assert!(path_segments("/v1/%4").is_err());
    }

    #[test]
    fn segments_round_trip_through_encoding() {
        let id = "order 42/ü?";
        let encoded = encode_segment(id);
        assert!(!encoded.contains('/'));
        assert_eq!(percent_decode(&encoded).unwrap(), id);
    }

    #[test]
    fn query_parameters_are_found_by_name_and_decoded() {
        let query = Query::parse("a=1&timeout_ms=250&q=a+b%21").unwrap();
        assert_eq!(query.get("timeout_ms"), Some("250"));
        assert_eq!(query.get("q"), Some("a b!"));
        assert_eq!(Query::parse("").unwrap().get("timeout_ms"), None);
        assert!(Query::parse("x=%ff").is_err());
    }
}
