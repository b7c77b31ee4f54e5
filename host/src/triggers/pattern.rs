//! Path patterns of HTTP triggers: `/orders/{id}/items`, a literal or a
//! `{parameter}` per segment.

use std::fmt;

/// Most segments a pattern may have.
const MAX_SEGMENTS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A parsed path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    segments: Vec<Segment>,
}

impl PathPattern {
    /// Parse `/a/{b}/c`: segments of letters, digits and `-._~`, or a
    /// parameter `{name}` with a name of `a-z`, `0-9` and `_`; no empty
    /// segments, and each parameter named once.
    pub fn parse(text: &str) -> Result<Self, String> {
        let accepted = "a path is / followed by segments of letters, digits and -._~ or {parameter} (a-z, 0-9, _), e.g. /orders/{id}";
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("path {text:?} must start with '/'; {accepted}"));
        };
        let mut segments = Vec::new();
        if !rest.is_empty() {
            for raw in rest.split('/') {
                let segment = if let Some(name) =
                    raw.strip_prefix('{').and_then(|r| r.strip_suffix('}'))
                {
                    let valid = !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                    if !valid {
                        return Err(format!(
                            "path {text:?}: parameter {raw:?} is invalid; {accepted}"
                        ));
                    }
                    if segments.contains(&Segment::Param(name.to_owned())) {
                        return Err(format!("path {text:?}: parameter {{{name}}} appears twice"));
                    }
                    Segment::Param(name.to_owned())
                } else {
                    let valid = !raw.is_empty()
                        && raw
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
                        && raw != "."
                        && raw != "..";
                    if !valid {
                        return Err(format!(
                            "path {text:?}: segment {raw:?} is invalid; {accepted}"
                        ));
                    }
                    Segment::Literal(raw.to_owned())
                };
                segments.push(segment);
            }
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(format!(
                "path {text:?} has {} segments; at most {MAX_SEGMENTS}",
                segments.len()
            ));
        }
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The names of its parameters, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The parameters bound by decoded path `segments`, if they fit.
    pub fn bind(&self, segments: &[&str]) -> Option<Vec<(String, String)>> {
        if segments.len() != self.segments.len() {
            return None;
        }
        let mut params = Vec::new();
        for (pattern, segment) in self.segments.iter().zip(segments) {
            match pattern {
                Segment::Literal(literal) if literal == segment => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => params.push((name.clone(), (*segment).to_owned())),
            }
        }
        Some(params)
    }

    /// Whether some path fits both patterns.
    pub fn overlaps(&self, other: &PathPattern) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|pair| match pair {
                    (Segment::Literal(a), Segment::Literal(b)) => a == b,
                    _ => true,
                })
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> PathPattern {
        PathPattern::parse(text).unwrap()
    }

    #[test]
    fn patterns_bind_their_parameters() {
        let p = pattern("/orders/{id}/items/{item}");
        assert_eq!(
            p.bind(&["orders", "42", "items", "a b"]),
            Some(vec![
                ("id".into(), "42".into()),
                ("item".into(), "a b".into())
            ])
        );
        assert_eq!(p.bind(&["orders", "42", "items"]), None);
        assert_eq!(p.bind(&["orders", "42", "other", "x"]), None);
        assert_eq!(pattern("/").bind(&[]), Some(vec![]));
    }

    #[test]
    fn malformed_patterns_are_refused_with_what_is_accepted() {
        for bad in [
            "orders", "/orders/", "//x", "/a/{}", "/a/{Id}", "/a/{id", "/a/..", "/a b", "/{x}/{x}",
        ] {
            let error = PathPattern::parse(bad).unwrap_err();
            assert!(error.contains(bad), "{error}");
        }
        assert!(PathPattern::parse(&"/a".repeat(17)).is_err());
    }

    #[test]
    fn overlap_is_any_path_matching_both() {
        assert!(pattern("/orders/{id}").overlaps(&pattern("/orders/new")));
        assert!(pattern("/{a}/x").overlaps(&pattern("/y/{b}")));
        assert!(!pattern("/orders/{id}").overlaps(&pattern("/orders/{id}/items")));
        assert!(!pattern("/orders/{id}").overlaps(&pattern("/carts/{id}")));
    }
}
