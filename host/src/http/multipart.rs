//! Just enough `multipart/form-data` for module uploads: named parts with
//! their bytes. A module with routes is uploaded as two parts, `module` (the
//! component) and `routes` (the JSON manifest), e.g. with
//! `curl -F module=@app.wasm -F routes=@routes.json`.

use memchr::memmem;

/// One part of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    pub name: String,
    pub bytes: &'a [u8],
}

/// The boundary of a `multipart/form-data` content type; `None` for any
/// other type.
pub fn boundary(content_type: &str) -> Option<Result<String, String>> {
    let mut fields = content_type.split(';');
    let essence = fields.next()?.trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let boundary = fields.find_map(|field| {
        let (key, value) = field.trim().split_once('=')?;
        key.eq_ignore_ascii_case("boundary")
            .then(|| value.trim_matches('"').to_owned())
    });
    Some(match boundary {
        Some(b) if !b.is_empty() && b.len() <= 70 => Ok(b),
        _ => Err(
            "a multipart/form-data body needs a boundary of 1 to 70 characters in its Content-Type"
                .into(),
        ),
    })
}

/// Split `body` into its parts.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, String> {
    let malformed = |what: &str| format!("the multipart body is malformed: {what}");
    let opening = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    let finder = memmem::Finder::new(delimiter.as_bytes());
    // The first boundary may open the body, without a line break before it.
    let start = if body.starts_with(opening.as_bytes()) {
        opening.len()
    } else {
        finder
            .find(body)
            .map(|at| at + delimiter.len())
            .ok_or_else(|| malformed("no boundary found"))?
    };
    let mut parts = Vec::new();
    let mut rest = &body[start..];
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or_else(|| malformed("a boundary is not followed by a line break"))?;
        let headers_end = memmem::find(rest, b"\r\n\r\n")
            .ok_or_else(|| malformed("a part has no end of headers"))?;
        let headers = std::str::from_utf8(&rest[..headers_end])
            .map_err(|_| malformed("part headers are not UTF-8"))?;
        let content = &rest[headers_end + 4..];
        let end = finder
            .find(content)
            .ok_or_else(|| malformed("the last part is not closed by a boundary"))?;
        parts.push(Part {
            name: part_name(headers).ok_or_else(|| {
                malformed("a part has no Content-Disposition: form-data; name=\"...\"")
            })?,
            bytes: &content[..end],
        });
        rest = &content[end + delimiter.len()..];
    }
}

fn part_name(headers: &str) -> Option<String> {
    let disposition = headers.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-disposition")
            .then_some(value)
    })?;
    disposition.split(';').find_map(|field| {
        let (key, value) = field.trim().split_once('=')?;
        (key == "name").then(|| value.trim_matches('"').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_split_at_their_boundaries() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"module\"; filename=\"a.wasm\"\r\nContent-Type: application/wasm\r\n\r\n\0asm\r\n--\x01\r\n--XyZ\r\nContent-Disposition: form-data; name=\"routes\"\r\n\r\n{\"routes\": []}\r\n--XyZ--\r\n";
        let parts = parse(body, "XyZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "module");
        assert_eq!(parts[0].bytes, b"\0asm\r\n--\x01");
        assert_eq!(parts[1].name, "routes");
        assert_eq!(parts[1].bytes, b"{\"routes\": []}");
    }

    #[test]
    fn boundaries_come_from_the_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=\"ab c\"").unwrap(),
            Ok("ab c".into())
        );
        assert!(boundary("multipart/form-data").unwrap().is_err());
        assert_eq!(boundary("application/wasm"), None);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for body in [
            &b""[..],
            b"--B\r\nno headers end",
            b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunclosed",
            b"--B\r\nX: y\r\n\r\nbody\r\n--B--",
        ] {
            assert!(parse(body, "B").is_err(), "{body:?}");
        }
    }
}
