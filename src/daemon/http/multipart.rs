//! A small `multipart/form-data` reader (RFC 7578 / RFC 2046 §5.1), enough for Plex's webhook:
//! a `payload` part (JSON text) and a `thumb` part (a JPEG, ignored). Linear in the body: each
//! delimiter is found once with a forward substring search (memchr's memmem); the number of
//! parts is capped; every problem is an error naming it.

/// The most parts a body may have.
pub const MAX_PARTS: usize = 64;

/// One part: its `name` (from `Content-Disposition`) and its bytes.
#[derive(Debug, PartialEq)]
pub struct Part<'a> {
    pub name: String,
    pub data: &'a [u8],
}

/// The boundary of a `Content-Type: multipart/form-data; boundary=…` value, quoted or not.
pub fn boundary(content_type: &str) -> Result<String, String> {
    let mut params = content_type.split(';');
    let mime = params.next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return Err(format!("not multipart/form-data: {mime:?}"));
    }
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case("boundary") {
            continue;
        }
        let v = v.trim();
        let v = match v.strip_prefix('"') {
            Some(rest) => rest
                .strip_suffix('"')
                .ok_or("multipart boundary: unterminated quote")?,
            None => v,
        };
        if v.is_empty() || v.len() > 70 {
            return Err(format!(
                "multipart boundary: must be 1 to 70 characters, got {}",
                v.len()
            ));
        }
        return Ok(v.to_string());
    }
    Err("multipart/form-data without a boundary parameter".into())
}

/// The first index of `needle` in `hay` at or after `from` (memchr's two-way search: linear).
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    memchr::memmem::find(hay.get(from..)?, needle).map(|i| i + from)
}

/// The parts of `body` delimited by `boundary`.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, String> {
    let first = format!("--{boundary}");
    let delim = format!("\r\n--{boundary}");
    // The preamble (ignored) ends at the first delimiter, at the start or after a CRLF.
    let mut pos = if body.starts_with(first.as_bytes()) {
        first.len()
    } else {
        find(body, delim.as_bytes(), 0).ok_or("multipart body: no boundary delimiter")?
            + delim.len()
    };
    let mut parts = Vec::new();
    loop {
        // After a delimiter: `--` closes the body; else optional whitespace and CRLF.
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        while pos < body.len() && (body[pos] == b' ' || body[pos] == b'\t') {
            pos += 1;
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err(format!(
                "multipart body: no CRLF after the boundary at byte {pos}"
            ));
        }
        pos += 2;
        if parts.len() == MAX_PARTS {
            return Err(format!("multipart body: more than {MAX_PARTS} parts"));
        }
        let n = parts.len() + 1;
        // Headers end at an empty line (at once for a part without headers). At most
        // MAX_PARTS scans: linear in the body.
        let (headers, data_start) = if body[pos..].starts_with(b"\r\n") {
            ("", pos + 2)
        } else {
            let end = find(body, b"\r\n\r\n", pos)
                .ok_or_else(|| format!("multipart part {n}: headers not terminated"))?;
            let h = std::str::from_utf8(&body[pos..end])
                .map_err(|_| format!("multipart part {n}: headers not UTF-8"))?;
            (h, end + 4)
        };
        let name = part_name(headers)
            .ok_or_else(|| format!("multipart part {n}: no Content-Disposition name"))?;
        let data_end = find(body, delim.as_bytes(), data_start).ok_or_else(|| {
            format!("multipart part {name:?}: unterminated (no closing boundary)")
        })?;
        parts.push(Part {
            name,
            data: &body[data_start..data_end],
        });
        pos = data_end + delim.len();
    }
}

/// The `name` parameter of a part's `Content-Disposition: form-data; name="…"` header.
fn part_name(headers: &str) -> Option<String> {
    for line in headers.split("\r\n") {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        for p in v.split(';').skip(1) {
            let Some((pk, pv)) = p.split_once('=') else {
                continue;
            };
            if pk.trim().eq_ignore_ascii_case("name") {
                let pv = pv.trim();
                let pv = pv
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .unwrap_or(pv);
                return Some(pv.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(b: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, data) in parts {
            out.extend_from_slice(format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{b}--\r\n").as_bytes());
        out
    }

    #[test]
    fn boundary_quoted_or_not() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc").unwrap(),
            "abc"
        );
        assert_eq!(
            boundary("Multipart/Form-Data;boundary=\"a b:c\"").unwrap(),
            "a b:c"
        );
        assert!(boundary("multipart/form-data")
            .unwrap_err()
            .contains("boundary"));
        assert!(boundary("multipart/form-data; boundary=\"abc").is_err());
        assert!(boundary("multipart/form-data; boundary=").is_err());
        assert!(boundary("application/json").is_err());
        assert!(boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))).is_err());
    }

    #[test]
    fn plex_payload_and_thumb() {
        let jpeg: &[u8] = b"\xff\xd8\xff\xe0\r\n--not-the-boundary\r\n\x00\x01";
        let b = body(
            "----PlexBoundary",
            &[("payload", br#"{"event":"media.play"}"#), ("thumb", jpeg)],
        );
        let parts = parse(&b, "----PlexBoundary").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "payload");
        assert_eq!(parts[0].data, br#"{"event":"media.play"}"#);
        assert_eq!(parts[1].name, "thumb");
        assert_eq!(parts[1].data, jpeg);
    }

    #[test]
    fn preamble_empty_part_and_boundary_inside_data() {
        let mut b = b"preamble text\r\n".to_vec();
        b.extend(body(
            "xyz",
            &[("payload", b"a--xyzb\r\n-xyz"), ("empty", b"")],
        ));
        let parts = parse(&b, "xyz").unwrap();
        assert_eq!(parts[0].data, b"a--xyzb\r\n-xyz");
        assert_eq!(parts[1].data, b"");
    }

    #[test]
    fn hostile_bodies_are_errors_naming_the_problem() {
        assert!(parse(b"no delimiter at all", "b")
            .unwrap_err()
            .contains("no boundary"));
        let e = parse(
            b"--b\r\nContent-Disposition: form-data; name=\"payload\"\r\n\r\n{\"a\":1}",
            "b",
        )
        .unwrap_err();
        assert!(e.contains("unterminated"), "{e}");
        let e = parse(b"--b\r\nContent-Disposition: form-data; name=\"p\"", "b").unwrap_err();
        assert!(e.contains("headers not terminated"), "{e}");
        let e = parse(b"--bXX\r\n", "b").unwrap_err();
        assert!(e.contains("no CRLF"), "{e}");
        let e = parse(b"--b\r\nX: y\r\n\r\ndata\r\n--b--", "b").unwrap_err();
        assert!(e.contains("no Content-Disposition"), "{e}");
        assert!(parse(b"--b", "b").is_err());
        assert!(parse(b"--b\r\n", "b").is_err());
        assert!(parse(b"", "b").is_err());
    }

    #[test]
    fn a_hundred_thousand_tiny_parts_are_refused_quickly() {
        let mut b = Vec::new();
        for _ in 0..100_000 {
            b.extend_from_slice(b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n\r\n");
        }
        b.extend_from_slice(b"--b--");
        let t = std::time::Instant::now();
        let e = parse(&b, "b").unwrap_err();
        assert!(e.contains("more than 64 parts"), "{e}");
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        // A megabyte of the boundary's first byte without a delimiter: no quadratic scan.
        let mut b = b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n".to_vec();
        b.extend(std::iter::repeat_n(b'\r', 1 << 20));
        assert!(parse(&b, "b").unwrap_err().contains("unterminated"));
    }
}
