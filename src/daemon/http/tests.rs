use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn loopback_peers_need_no_key_others_need_the_bearer_token() {
    let lo = addr("127.0.0.1:5000");
    let lo6 = addr("[::1]:5000");
    let mapped = addr("[::ffff:127.0.0.1]:5000");
    let lan = addr("192.168.1.20:5000");
    for p in [&lo, &lo6, &mapped] {
        assert!(authorized(Some(p), None, ""), "{p}");
        assert!(authorized(Some(p), None, "k"), "{p}");
    }
    assert!(!authorized(Some(&lan), None, ""));
    assert!(!authorized(Some(&lan), Some("Bearer "), ""));
    assert!(!authorized(Some(&lan), None, "s3cret"));
    assert!(!authorized(Some(&lan), Some("Bearer wrong"), "s3cret"));
    assert!(!authorized(Some(&lan), Some("Basic s3cret"), "s3cret"));
    assert!(!authorized(Some(&lan), Some("Bearer s3cre"), "s3cret"));
    assert!(authorized(Some(&lan), Some("Bearer s3cret"), "s3cret"));
    assert!(authorized(Some(&lan), Some("bearer  s3cret "), "s3cret"));
    assert!(!authorized(None, Some("Bearer x"), ""));
    assert!(!is_loopback(Some(&addr("[::ffff:10.0.0.1]:1"))));
}

#[test]
fn constant_time_compare() {
    assert!(ct_eq(b"abc", b"abc"));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"abcd"));
    assert!(ct_eq(b"", b""));
}

#[test]
fn webhook_bodies_of_each_content_type() {
    let json = r#"{"event":"media.play","Metadata":{"ratingKey":"7"}}"#;
    let v = webhook_payload("application/json; charset=utf-8", json.as_bytes()).unwrap();
    assert_eq!(v["event"], "media.play");
    let form = format!(
        "other=1&payload={}",
        json.replace('%', "%25")
            .replace('"', "%22")
            .replace(' ', "+")
            .replace('{', "%7B")
    );
    let v = webhook_payload("application/x-www-form-urlencoded", form.as_bytes()).unwrap();
    assert_eq!(v["Metadata"]["ratingKey"], "7");
    let mp = format!("--XX\r\nContent-Disposition: form-data; name=\"payload\"\r\n\r\n{json}\r\n--XX\r\nContent-Disposition: form-data; name=\"thumb\"; filename=\"t.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n\u{1}\u{2}\r\n--XX--\r\n");
    let v = webhook_payload("multipart/form-data; boundary=\"XX\"", mp.as_bytes()).unwrap();
    assert_eq!(v["event"], "media.play");

    for (ct, body, want) in [
        ("application/json", "{", "invalid JSON"),
        ("application/json", "[1]", "JSON object"),
        ("text/plain", "{}", "unsupported Content-Type"),
        ("", "{}", "no Content-Type"),
        ("multipart/form-data", "", "boundary"),
        ("application/x-www-form-urlencoded", "a=1", "payload="),
        (
            "multipart/form-data; boundary=XX",
            "--XX\r\nContent-Disposition: form-data; name=\"thumb\"\r\n\r\nx\r\n--XX--",
            "without a payload part",
        ),
    ] {
        let e = webhook_payload(ct, body.as_bytes()).unwrap_err();
        assert!(e.contains(want), "{ct} {body:?}: {e}");
    }
}

#[test]
fn percent_decoding_keeps_bad_escapes() {
    assert_eq!(percent_decode(b"a+b%41%4"), b"a bA%4");
    assert_eq!(percent_decode(b"%zz%"), b"%zz%");
    assert_eq!(query_param("job=scrobble&n=5", "n").as_deref(), Some("5"));
    assert_eq!(query_param("job=a%20b", "job").as_deref(), Some("a b"));
    assert_eq!(query_param("n=5", "job"), None);
}

#[test]
fn bodies_are_capped() {
    let big = [b'x'; 100];
    assert_eq!(
        read_body(&mut &big[..], 99, Duration::from_secs(5))
            .unwrap_err()
            .0,
        413
    );
    assert_eq!(
        read_body(&mut &big[..], 100, Duration::from_secs(5))
            .unwrap()
            .len(),
        100
    );
}

#[test]
fn redacted_secrets_posted_back_keep_the_file_value() {
    let file = json!({"plex": {"token": "abc", "url": "u"}, "daemon": {"api_key": "k"}});
    let mut posted = json!({"plex": {"token": REDACTED, "url": "v"}, "daemon": {"api_key": "new"}, "tautulli": {"api_key": REDACTED}});
    restore_redacted(&mut posted, Some(&file));
    assert_eq!(
        posted,
        json!({"plex": {"token": "abc", "url": "v"}, "daemon": {"api_key": "new"}, "tautulli": {}})
    );
}

#[test]
fn atomic_write_keeps_the_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.json");
    std::fs::write(&p, "{}").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    write_atomically(&p, b"{\"a\":1}").unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":1}");
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
