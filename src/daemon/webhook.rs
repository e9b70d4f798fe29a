//! A Plex webhook body → its JSON payload (apis.md §1.8). Plex posts `multipart/form-data`
//! with the JSON in the part named `payload` (and a JPEG `thumb` part for some events); other
//! senders (a proxy, a test, CrossWatch users' scripts) post the JSON itself or a form with
//! `payload=`. Every body is hostile until parsed: one linear pass (memchr's `memmem`), a cap on
//! parts, and an error that names what is wrong.

use memchr::memmem;
use serde_json::Value;

/// More parts than this is not a Plex webhook.
const MAX_PARTS: usize = 64;

/// The payload of a webhook body, by its `Content-Type`.
pub fn payload_of(content_type: Option<&str>, body: &[u8]) -> Result<Value, String> {
    let ct = content_type.unwrap_or("").trim();
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = match mime.as_str() {
        "multipart/form-data" => {
            let boundary = boundary(ct).ok_or(
                "multipart/form-data without a boundary parameter in the Content-Type header",
            )?;
            multipart_field(body, boundary.as_bytes(), "payload")?
                .ok_or("multipart/form-data without a part named \"payload\"")?
        }
        "application/x-www-form-urlencoded" => form_field(body, "payload")?
            .ok_or("a form without a field named \"payload\"")?,
        "application/json" | "text/json" | "" => body.to_vec(),
        other => {
            return Err(format!(
                "Content-Type {other} is not a webhook body (multipart/form-data, application/json or a form)"
            ))
        }
    };
    let v: Value =
        serde_json::from_slice(&json).map_err(|e| format!("payload is not JSON: {e}"))?;
    if !v.is_object() {
        return Err("payload is JSON but not an object".into());
    }
    Ok(v)
}

/// The `boundary` parameter of a multipart Content-Type, quoted or not (RFC 2046: 1–70
/// characters).
fn boundary(ct: &str) -> Option<String> {
    ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        (!v.is_empty() && v.len() <= 70).then(|| v.to_string())
    })
}

/// The body of the part named `name`: `Ok(None)` when no part has that name.
fn multipart_field(body: &[u8], boundary: &[u8], name: &str) -> Result<Option<Vec<u8>>, String> {
    let mut delim = Vec::with_capacity(boundary.len() + 4);
    delim.extend_from_slice(b"\r\n--");
    delim.extend_from_slice(boundary);
    let finder = memmem::Finder::new(&delim);
    // The first delimiter may open the body without its CRLF (anything before it is preamble).
    let first = if body.starts_with(&delim[2..]) {
        0
    } else {
        finder
            .find(body)
            .map(|i| i + 2)
            .ok_or("multipart body without its boundary")?
    };
    let mut at = first + delim.len() - 2;
    for _ in 0..MAX_PARTS {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return Ok(None); // the closing delimiter
        }
        let rest = rest
            .strip_prefix(b"\r\n")
            .ok_or("multipart delimiter not followed by CRLF")?;
        let head_end =
            memmem::find(rest, b"\r\n\r\n").ok_or("multipart part without its header end")?;
        let (head, after) = (&rest[..head_end], &rest[head_end + 4..]);
        let end = finder
            .find(after)
            .ok_or("multipart body not terminated by its closing boundary")?;
        if part_name(head).as_deref() == Some(name) {
            return Ok(Some(after[..end].to_vec()));
        }
        at = (body.len() - after.len()) + end + delim.len();
    }
    Err(format!("multipart body with more than {MAX_PARTS} parts"))
}

/// `name` of a part's `Content-Disposition: form-data; name="…"`.
fn part_name(head: &[u8]) -> Option<String> {
    let head = String::from_utf8_lossy(head);
    head.split("\r\n").find_map(|line| {
        let (k, v) = line.split_once(':')?;
        if !k.trim().eq_ignore_ascii_case("content-disposition") {
            return None;
        }
        v.split(';').find_map(|p| {
            let (k, v) = p.split_once('=')?;
            (k.trim().eq_ignore_ascii_case("name")).then(|| v.trim().trim_matches('"').to_string())
        })
    })
}

/// The value of `name` in a URL-encoded form.
fn form_field(body: &[u8], name: &str) -> Result<Option<Vec<u8>>, String> {
    for pair in body.split(|b| *b == b'&') {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        if percent_decode(k)? == name.as_bytes() {
            return percent_decode(v).map(Some);
        }
    }
    Ok(None)
}

fn percent_decode(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("a form with a bad percent escape at byte {i}"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &str = r#"{"event":"media.play","Account":{"title":"elan"}}"#;

    fn multipart(boundary: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = Vec::new();
        for (name, data) in parts {
            b.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n")
                    .as_bytes(),
            );
            if *name == "thumb" {
                b.extend_from_slice(b"Content-Type: image/jpeg\r\n");
            }
            b.extend_from_slice(b"\r\n");
            b.extend_from_slice(data);
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        b
    }

    #[test]
    fn plex_multipart_with_a_thumb_before_or_after_the_payload() {
        let jpeg: &[u8] = b"\xff\xd8\xff\xe0\r\n--not-the-boundary\r\n\x00\xff";
        for parts in [
            vec![("payload", PAYLOAD.as_bytes()), ("thumb", jpeg)],
            vec![("thumb", jpeg), ("payload", PAYLOAD.as_bytes())],
        ] {
            let body = multipart("------------------------ab12", &parts);
            let v = payload_of(
                Some("multipart/form-data; boundary=------------------------ab12"),
                &body,
            )
            .unwrap();
            assert_eq!(v["event"], "media.play");
        }
        let body = multipart("q b", &[("payload", PAYLOAD.as_bytes())]);
        assert!(payload_of(
            Some("Multipart/Form-Data; charset=utf-8; boundary=\"q b\""),
            &body
        )
        .is_ok());
        let mut with_preamble = b"ignored preamble\r\n".to_vec();
        with_preamble.extend(multipart("x", &[("payload", PAYLOAD.as_bytes())]));
        assert!(payload_of(Some("multipart/form-data; boundary=x"), &with_preamble).is_ok());
    }

    #[test]
    fn json_and_form_bodies() {
        assert_eq!(
            payload_of(Some("application/json"), PAYLOAD.as_bytes()).unwrap()["Account"]["title"],
            "elan"
        );
        assert!(payload_of(None, PAYLOAD.as_bytes()).is_ok());
        let form = format!(
            "a=1&payload={}",
            PAYLOAD.replace('"', "%22").replace(' ', "+")
        );
        assert_eq!(
            payload_of(Some("application/x-www-form-urlencoded"), form.as_bytes()).unwrap()
                ["event"],
            "media.play"
        );
    }

    #[test]
    fn hostile_bodies_are_refused_with_the_reason() {
        let e = |ct: &str, body: &[u8]| payload_of(Some(ct), body).unwrap_err();
        assert!(e("multipart/form-data", b"x").contains("boundary"));
        assert!(e("multipart/form-data; boundary=", b"x").contains("boundary"));
        assert!(e("multipart/form-data; boundary=b", b"no delimiter at all")
            .contains("without its boundary"));
        assert!(e(
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data; name=\"payload\"\r\n\r\n{}"
        )
        .contains("not terminated"));
        assert!(
            e("multipart/form-data; boundary=b", b"--b\r\nno header end").contains("header end")
        );
        assert!(e("multipart/form-data; boundary=b", b"--bX").contains("CRLF"));
        assert!(e(
            "multipart/form-data; boundary=b",
            &multipart("b", &[("thumb", b"x")])
        )
        .contains("\"payload\""));
        let many: Vec<(&str, &[u8])> = (0..100_000).map(|_| ("p", &b""[..])).collect();
        assert!(e("multipart/form-data; boundary=b", &multipart("b", &many))
            .contains("more than 64 parts"));
        assert!(e("application/json", b"[1,2]").contains("not an object"));
        assert!(e("application/json", b"{").contains("not JSON"));
        assert!(e("application/x-www-form-urlencoded", b"payload=%zz").contains("percent escape"));
        assert!(e("application/x-www-form-urlencoded", b"a=b").contains("\"payload\""));
        assert!(e("image/jpeg", b"x").contains("image/jpeg"));
        // The boundary inside the data, without the leading CRLF, is data.
        let body = multipart("b", &[("payload", br#"{"x":"--b"}"#)]);
        assert_eq!(
            payload_of(Some("multipart/form-data; boundary=b"), &body).unwrap()["x"],
            "--b"
        );
    }

    #[test]
    fn random_bodies_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet = b"-b\r\n\"=;:payloadContent-Disposition{}%+&";
        for _ in 0..20_000 {
            let len = (x % 200) as usize;
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            for ct in [
                "multipart/form-data; boundary=b",
                "application/x-www-form-urlencoded",
                "application/json",
            ] {
                let _ = payload_of(Some(ct), &body);
            }
        }
    }
}
