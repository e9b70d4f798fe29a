//! One generic notification webhook for the downloads job (issue 13, optional): a download
//! triggered, the weekly summary. The URL's shape picks the body:
//!
//! | kind | body | guessed when |
//! |---|---|---|
//! | `discord` | `{"content": "**title**\nbody"}` (≤ 2,000 characters, Discord's limit) | the path has `/api/webhooks/`, or the host is discord(app).com |
//! | `ntfy` | the text itself, title in the `Title` header | the host has `ntfy` in it |
//! | `apprise` | `{"title", "body", "type": "info"}` (Apprise API `/notify/<key>`) | the path has `/notify` |
//! | `json` | `{"title", "body", "event": "downloads", "source": "downshiftarr"}` | anything else |
//!
//! The URL is a secret (a Discord webhook's token is its path, an ntfy URL may carry `?auth=`):
//! messages show only `scheme://host:port`, and the URL, its path and its query are scrubbed
//! from every excerpt. Sent once (a notification is not worth a duplicate).

use serde_json::{json, Value};

use super::service::{Limits, ServiceClient, ServiceError, Spec};

/// Discord refuses a `content` longer than this.
const DISCORD_MAX: usize = 2000;

/// What kind of webhook `url` is: `kind` when given, else guessed from the URL. Err: a kind
/// that is not one of `discord`, `ntfy`, `apprise`, `json`.
pub fn kind_of(url: &str, kind: &str) -> Result<&'static str, String> {
    match kind.trim().to_ascii_lowercase().as_str() {
        "discord" => return Ok("discord"),
        "ntfy" => return Ok("ntfy"),
        "apprise" => return Ok("apprise"),
        "json" => return Ok("json"),
        "" => {}
        other => {
            return Err(format!(
                "downloads.notify.kind {other:?} is not one of discord, ntfy, apprise, json (or empty to guess from the URL)"
            ))
        }
    }
    let parsed = reqwest::Url::parse(url.trim()).ok();
    let host = parsed
        .as_ref()
        .and_then(|u| u.host_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let path = parsed.as_ref().map(|u| u.path()).unwrap_or("");
    Ok(
        if path.contains("/api/webhooks/")
            || host == "discord.com"
            || host.ends_with(".discord.com")
            || host == "discordapp.com"
            || host.ends_with(".discordapp.com")
        {
            "discord"
        } else if host.contains("ntfy") {
            "ntfy"
        } else if path.contains("/notify") {
            "apprise"
        } else {
            "json"
        },
    )
}

/// Posts `title` and `body` to the webhook at `http_url`; `kind` "" = guessed from the URL.
pub fn post(
    http_url: &str,
    kind: &str,
    title: &str,
    body: &str,
    timeout_ms: u64,
) -> Result<(), ServiceError> {
    let kind = kind_of(http_url, kind).map_err(|cause| ServiceError::Connect {
        service: "notification webhook",
        url: "downloads.notify.url".into(),
        cause,
    })?;
    let service = match kind {
        "discord" => "Discord",
        "ntfy" => "ntfy",
        "apprise" => "Apprise",
        _ => "notification webhook",
    };
    let url = http_url.trim();
    let mut secrets = vec![url.to_string()];
    if let Ok(u) = reqwest::Url::parse(url) {
        // The whole path and query, and each token in them on its own (an answer may echo
        // the webhook's token without the rest of the URL).
        let words = u
            .path()
            .split('/')
            .chain(u.query().unwrap_or("").split(['&', '=']))
            .filter(|w| w.len() >= 6 && !matches!(*w, "webhooks" | "notify"));
        secrets.extend(
            [Some(u.path()), u.query(), u.password()]
                .into_iter()
                .flatten()
                .filter(|s| s.len() > 1)
                .chain(words)
                .map(str::to_string),
        );
        // Longest first: a token inside the path is scrubbed as part of the path.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let svc = ServiceClient::new(
        Spec {
            name: service,
            forbidden_is_unauthorized: false,
            hide_path: true,
        },
        url,
        &[],
        &secrets,
        Limits {
            connect_ms: timeout_ms.min(3000),
            request_ms: timeout_ms,
            max_body: 1 << 20,
            retries: 0,
        },
    )?;
    match kind {
        "discord" => svc.post_hook(&discord_body(title, body), None, &[]),
        "ntfy" => {
            let t = header_text(title);
            svc.post_hook(&Value::Null, Some(body), &[("Title", &t)])
        }
        "apprise" => svc.post_hook(
            &json!({ "title": title, "body": body, "type": "info" }),
            None,
            &[],
        ),
        _ => svc.post_hook(
            &json!({ "title": title, "body": body, "event": "downloads", "source": "downshiftarr" }),
            None,
            &[],
        ),
    }
}

/// Discord's body: the title in bold over the text, cut to Discord's limit.
fn discord_body(title: &str, body: &str) -> Value {
    let mut content = if title.is_empty() {
        body.to_string()
    } else {
        format!("**{title}**\n{body}")
    };
    if content.chars().count() > DISCORD_MAX {
        content = content.chars().take(DISCORD_MAX - 1).collect();
        content.push('…');
    }
    json!({ "content": content })
}

/// A header value: printable ASCII as is, anything else as an RFC 2047 encoded word (ntfy
/// decodes `=?UTF-8?B?…?=` titles). Line breaks never reach a header.
fn header_text(s: &str) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        one_line
    } else {
        format!("=?UTF-8?B?{}?=", base64(one_line.as_bytes()))
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_guessed_from_the_url() {
        let g = |u: &str| kind_of(u, "").unwrap();
        assert_eq!(g("https://discord.com/api/webhooks/123/abc"), "discord");
        assert_eq!(g("https://canary.discordapp.com/x"), "discord");
        assert_eq!(g("http://127.0.0.1:9/api/webhooks/1/t"), "discord");
        assert_eq!(g("https://ntfy.sh/my-topic"), "ntfy");
        assert_eq!(g("http://ntfy.home.lan/films"), "ntfy");
        assert_eq!(g("http://apprise:8000/notify/apprise"), "apprise");
        assert_eq!(g("https://hooks.example.com/in"), "json");
        assert_eq!(kind_of("https://ntfy.sh/x", "JSON").unwrap(), "json");
        assert!(kind_of("https://x", "slack").unwrap_err().contains("slack"));
    }

    #[test]
    fn discord_bodies_fit_discords_limit() {
        let v = discord_body("Downloading", "The Matrix (1999)");
        assert_eq!(v["content"], "**Downloading**\nThe Matrix (1999)");
        let long = discord_body("t", &"x".repeat(5000));
        assert_eq!(
            long["content"].as_str().unwrap().chars().count(),
            DISCORD_MAX
        );
    }

    #[test]
    fn header_titles_are_one_ascii_line() {
        assert_eq!(
            header_text("Download: Heat\r\n(1995)"),
            "Download: Heat  (1995)"
        );
        assert_eq!(header_text("Amélie"), "=?UTF-8?B?QW3DqWxpZQ==?=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b""), "");
    }
}
