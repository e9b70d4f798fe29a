//! The dashboard's static assets (issue 14): plain HTML, CSS and JS compiled into the binary
//! (no separate web server, no build step, no CDN), served at `/` and `/assets/<name>`.
//!
//! Each answer carries a strong `ETag` (SHA-256 of the bytes sent) and `Cache-Control:
//! private, no-cache`, so a browser revalidates on every load and gets a body-less 304 while
//! the daemon's build is unchanged. A client that accepts gzip gets a copy compressed once, on
//! first use. HTML answers carry a Content-Security-Policy that allows only this origin's
//! script and style: the page builds every element from text nodes, so nothing inline is
//! needed, and data from Plex (titles, user names) can never run as script.

use std::sync::OnceLock;

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};
use tiny_http::{Method, Response};

use crate::daemon::http::{not_allowed, text, with_header, Answer};

/// One file of the page.
pub struct Asset {
    /// The name under `/assets/` (`index.html` is also `/`).
    pub name: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every file the page loads.
pub const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("assets/index.html"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
    },
];

/// The sign-in form (served by the login handler, not under `/assets/`: it must load without
/// a session, so its style is inline).
pub const LOGIN_HTML: &str = include_str!("assets/login.html");

/// Only this origin's script and style; no inline script, no frames, forms post here.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
/// The sign-in form's own inline style, nothing else.
const LOGIN_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// An asset's two representations, prepared once.
struct Prepared {
    etag: String,
    gzip: Option<(Vec<u8>, String)>,
}

fn prepared() -> &'static [Prepared] {
    static P: OnceLock<Vec<Prepared>> = OnceLock::new();
    P.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| Prepared {
                etag: etag(a.body, ""),
                // Kept only when it saves bytes (and a compression error just means plain).
                gzip: gzip(a.body)
                    .filter(|z| z.len() < a.body.len())
                    .map(|z| (z, etag(a.body, "-gz"))),
            })
            .collect()
    })
}

fn etag(body: &[u8], suffix: &str) -> String {
    let d = Sha256::digest(body);
    let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}{suffix}\"")
}

/// gzip at the best level (done once per asset per process).
pub fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut z = GzEncoder::new(Vec::with_capacity(body.len() / 3), Compression::best());
    z.write_all(body).ok()?;
    z.finish().ok()
}

/// The asset a path names: `/` and `/index.html` are the page, `/assets/<name>` a file.
pub fn find(path: &str) -> Option<usize> {
    let name = match path {
        "/" | "/index.html" => "index.html",
        p => p.strip_prefix("/assets/")?,
    };
    ASSETS.iter().position(|a| a.name == name)
}

/// Whether a path is the dashboard's (an unknown `/assets/…` name included: it gets a 404
/// from [`answer`] after the same authorization as the page).
pub fn is_dashboard_path(path: &str) -> bool {
    matches!(path, "/" | "/index.html") || path.starts_with("/assets/")
}

/// Whether `Accept-Encoding` allows gzip (`gzip` or `*` without `q=0`).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(list) = accept_encoding else {
        return false;
    };
    let mut star = None;
    for item in list.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k.trim().eq_ignore_ascii_case("q")).then(|| v.trim().parse::<f32>().ok())?
            })
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => return q > 0.0,
            "*" => star = Some(q > 0.0),
            _ => {}
        }
    }
    star.unwrap_or(false)
}

/// Whether `If-None-Match` names `etag` (or is `*`); weak validators compare equal too.
fn not_modified(if_none_match: Option<&str>, etag: &str) -> bool {
    if_none_match.is_some_and(|list| {
        list.split(',')
            .map(|t| t.trim().trim_start_matches("W/"))
            .any(|t| t == "*" || t == etag)
    })
}

/// The headers every dashboard answer carries.
fn common(res: Answer, html: bool) -> Answer {
    let res = with_header(res, "X-Content-Type-Options", "nosniff");
    let res = with_header(res, "Referrer-Policy", "no-referrer");
    let res = with_header(res, "X-Frame-Options", "DENY");
    if html {
        with_header(res, "Content-Security-Policy", PAGE_CSP)
    } else {
        res
    }
}

/// The answer to a GET/HEAD of a dashboard path (already authorized): the asset, a 304, a
/// 404 for an unknown name, a 405 for another method.
pub fn answer(
    path: &str,
    method: &Method,
    accept_encoding: Option<&str>,
    if_none_match: Option<&str>,
) -> Answer {
    if *method != Method::Get && *method != Method::Head {
        return not_allowed("GET");
    }
    let Some(i) = find(path) else {
        return text(404, format!("no dashboard asset at {path}"));
    };
    let asset = &ASSETS[i];
    let prep = &prepared()[i];
    let (body, etag, gz) = match &prep.gzip {
        Some((z, tag)) if accepts_gzip(accept_encoding) => (z.as_slice(), tag.as_str(), true),
        _ => (asset.body, prep.etag.as_str(), false),
    };
    let html = asset.content_type.starts_with("text/html");
    let res = if not_modified(if_none_match, etag) {
        Response::from_data(Vec::new()).with_status_code(304)
    } else {
        let res = with_header(
            Response::from_data(body.to_vec()),
            "Content-Type",
            asset.content_type,
        );
        if gz {
            with_header(res, "Content-Encoding", "gzip")
        } else {
            res
        }
    };
    let res = with_header(res, "ETag", etag);
    let res = with_header(res, "Cache-Control", "private, no-cache");
    let res = with_header(res, "Vary", "Accept-Encoding");
    common(res, html)
}

/// `&`, `<`, `>`, `"` and `'` as HTML entities.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The sign-in form with `code` (401 for "who are you?"), and `message` (escaped) above the
/// field when there is one (e.g. "wrong key").
pub fn login_page(code: u16, message: Option<&str>) -> Answer {
    let html = match message {
        Some(m) => LOGIN_HTML.replacen(
            "<!--message-->",
            &format!("<p class=\"error\" role=\"alert\">{}</p>", escape_html(m)),
            1,
        ),
        None => LOGIN_HTML.to_string(),
    };
    let res = with_header(
        Response::from_data(html.into_bytes()).with_status_code(code),
        "Content-Type",
        "text/html; charset=utf-8",
    );
    let res = with_header(res, "Cache-Control", "no-store");
    let res = common(res, false);
    with_header(res, "Content-Security-Policy", LOGIN_CSP)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(res: &Answer, name: &str) -> Option<String> {
        res.headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str().to_string())
    }

    fn body(res: Answer) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut res.into_reader(), &mut out).unwrap();
        out
    }

    #[test]
    fn paths_name_the_page_and_its_files() {
        assert_eq!(find("/").map(|i| ASSETS[i].name), Some("index.html"));
        assert_eq!(
            find("/assets/app.js").map(|i| ASSETS[i].name),
            Some("app.js")
        );
        assert_eq!(
            find("/assets/app.css").map(|i| ASSETS[i].name),
            Some("app.css")
        );
        assert_eq!(find("/assets/../config.json"), None);
        assert_eq!(find("/assets/"), None);
        assert_eq!(find("/api/dashboard/summary"), None);
        assert!(is_dashboard_path("/assets/nope.js"));
        assert!(!is_dashboard_path("/api/x"));
    }

    #[test]
    fn gzip_is_chosen_from_accept_encoding() {
        assert!(accepts_gzip(Some("gzip, deflate, br")));
        assert!(accepts_gzip(Some("br;q=1.0, gzip;q=0.8")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("br, *;q=0")));
        assert!(!accepts_gzip(Some("identity")));
        assert!(!accepts_gzip(None));
        assert!(
            accepts_gzip(Some(";;,=,q=,gzip;q=abc")),
            "an unparsable q is 1"
        );
    }

    #[test]
    fn compressed_answer_unzips_to_the_asset_and_has_its_own_etag() {
        let plain = answer("/assets/app.js", &Method::Get, None, None);
        let zipped = answer("/assets/app.js", &Method::Get, Some("gzip"), None);
        assert_eq!(plain.status_code().0, 200);
        assert_eq!(header(&zipped, "Content-Encoding").as_deref(), Some("gzip"));
        assert_eq!(header(&plain, "Content-Encoding"), None);
        assert_ne!(header(&plain, "ETag"), header(&zipped, "ETag"));
        assert_eq!(header(&zipped, "Vary").as_deref(), Some("Accept-Encoding"));
        let z = body(zipped);
        let mut un = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&z[..]), &mut un).unwrap();
        assert_eq!(un, body(plain));
        assert_eq!(un, ASSETS[find("/assets/app.js").unwrap()].body);
    }

    #[test]
    fn a_known_etag_gets_a_304_without_body() {
        let first = answer("/", &Method::Get, Some("gzip"), None);
        let tag = header(&first, "ETag").unwrap();
        assert!(header(&first, "Content-Security-Policy")
            .unwrap()
            .contains("script-src 'self'"));
        let again = answer(
            "/",
            &Method::Get,
            Some("gzip"),
            Some(&format!("\"x\", {tag}")),
        );
        assert_eq!(again.status_code().0, 304);
        assert_eq!(header(&again, "ETag"), Some(tag.clone()));
        assert!(body(again).is_empty());
        // The other representation's tag does not match this one.
        let plain = answer("/", &Method::Get, None, Some(&tag));
        assert_eq!(plain.status_code().0, 200);
    }

    #[test]
    fn other_methods_and_unknown_names_are_refused() {
        assert_eq!(answer("/", &Method::Post, None, None).status_code().0, 405);
        assert_eq!(
            answer("/assets/secret", &Method::Get, None, None)
                .status_code()
                .0,
            404
        );
    }

    #[test]
    fn the_login_page_escapes_its_message() {
        let res = login_page(401, Some("<script>alert(1)</script> & \"x\""));
        assert_eq!(res.status_code().0, 401);
        let html = String::from_utf8(body(res)).unwrap();
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("name=\"api_key\""));
    }

    /// The whole first load (page, style, script) fits the issue's 100 KB budget compressed,
    /// with room to spare uncompressed.
    #[test]
    fn first_load_is_small() {
        let zipped: usize = ASSETS.iter().map(|a| gzip(a.body).unwrap().len()).sum();
        let plain: usize = ASSETS.iter().map(|a| a.body.len()).sum();
        assert!(zipped < 30_000, "{zipped} bytes gzipped");
        assert!(plain < 100_000, "{plain} bytes");
    }

    /// The page's script never parses data as HTML.
    #[test]
    fn the_script_builds_text_nodes_only() {
        let js = std::str::from_utf8(ASSETS[find("/assets/app.js").unwrap()].body).unwrap();
        for bad in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!js.contains(bad), "app.js uses {bad}");
        }
    }
}
