//! A module upload's `multipart/form-data` body, whatever its bytes and
//! content type, splits into parts that lie within the body, or is refused
//! with a message.
#![no_main]

use cairn::http::multipart;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &[u8])| {
    let (content_type, body) = input;
    let Some(Ok(boundary)) = multipart::boundary(content_type) else {
        return;
    };
    let Ok(parts) = multipart::parse(body, &boundary) else {
        return;
    };
    let range = body.as_ptr_range();
    for part in parts {
        // Each part is a slice of the body itself, never a copy or past it.
        let inner = part.bytes.as_ptr_range();
        assert!(range.start <= inner.start && inner.end <= range.end);
        assert!(part.bytes.len() <= body.len());
    }
});
