//! The decision record: one JSON line per decision, sent to the daemon or appended to the
//! decision log, with Plex tokens redacted wherever they appear.
//!
//! Appends use `O_APPEND` and one `write(2)` per line, so concurrent transcoder starts never
//! interleave or lose records (the peer's read-modify-write telemetry lost up to 80% of its
//! events, peer-downshiftarr.md W4).

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::edit::Edit;
use crate::facts::SourceFacts;

/// One changed or inserted token run, for logs and `explain`.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Change {
    Replaced { at: usize, from: String, to: String },
    Inserted { after: usize, insert: Vec<String> },
    Removed { at: usize, from: String },
}

/// The version a switch chose, and how streams were mapped.
#[derive(Clone, Debug, Serialize)]
pub struct SwitchedTo {
    pub media_id: String,
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_range: Option<crate::facts::DynamicRange>,
    pub streams: Vec<crate::switch::StreamMap>,
}

impl SwitchedTo {
    pub fn of(s: &crate::switch::Switch, secret: Option<&str>) -> SwitchedTo {
        SwitchedTo {
            media_id: s.version.media_id.clone(),
            file: redact(&s.version.file, secret),
            height: s.version.height,
            dynamic_range: s.version.dynamic_range,
            streams: s.streams.clone(),
        }
    }
}

/// The record of one decision.
#[derive(Clone, Debug, Serialize)]
pub struct Record {
    pub time: String,
    pub pid: u32,
    pub session: Option<String>,
    pub job: &'static str,
    pub input: Option<String>,
    pub source: Option<SourceFacts>,
    pub decision: &'static str,
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadowed: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<&'static str>,
    /// Why a protected source was not switched, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_switch: Option<&'static str>,
    /// The version switched to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switched_to: Option<SwitchedTo>,
    /// Who is watching, when the daemon was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub viewer: Option<crate::viewer::Viewer>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub config_errors: Vec<String>,
    pub elapsed_us: u64,
}

/// Describes edits as readable changes, redacted.
pub fn changes(tokens: &[OsString], edits: &[Edit], secret: Option<&str>) -> Vec<Change> {
    edits
        .iter()
        .map(|e| match e {
            Edit::Replace { at, with } => Change::Replaced {
                at: *at,
                from: redact(&tokens[*at].to_string_lossy(), secret),
                to: redact(&with.to_string_lossy(), secret),
            },
            Edit::Remove { at } => Change::Removed {
                at: *at,
                from: redact(&tokens[*at].to_string_lossy(), secret),
            },
            Edit::Insert { after, tokens: t } => Change::Inserted {
                after: *after,
                insert: t
                    .iter()
                    .map(|x| redact(&x.to_string_lossy(), secret))
                    .collect(),
            },
        })
        .collect()
}

/// Replaces `X-Plex-Token=…` query values and any occurrence of the env token.
pub fn redact(s: &str, secret: Option<&str>) -> String {
    let mut out = String::with_capacity(s.len());
    const KEY: &str = "x-plex-token=";
    // Lowercased once: ASCII case mapping keeps every byte offset, so positions found in
    // `lower` index `s` (re-lowercasing the rest per match was quadratic in the matches).
    let lower = s.to_ascii_lowercase();
    let mut at = 0;
    while let Some(p) = lower[at..].find(KEY) {
        let value = at + p + KEY.len();
        out.push_str(&s[at..value]);
        out.push_str("<redacted>");
        let end = s[value..]
            .find(['&', ' ', '\'', '"'])
            .map_or(s.len(), |e| value + e);
        at = end;
    }
    out.push_str(&s[at..]);
    match secret {
        Some(t) if t.len() >= 8 => out.replace(t, "<redacted>"),
        _ => out,
    }
}

/// Lossy text of an input path, redacted.
pub fn input_text(bytes: &[u8], secret: Option<&str>) -> String {
    redact(&String::from_utf8_lossy(bytes), secret)
}

/// Appends one line to the decision log. Failures are ignored: logging never blocks a job.
pub fn append(path: &str, line: &[u8]) -> bool {
    if path.is_empty() {
        return false;
    }
    // Non-blocking open, regular files only: a FIFO as the log hung every job (issue 9 §2).
    match crate::open::append(std::path::Path::new(path)) {
        Ok(mut f) => {
            let mut buf = Vec::with_capacity(line.len() + 1);
            buf.extend_from_slice(line);
            buf.push(b'\n');
            f.write_all(&buf).is_ok()
        }
        Err(_) => false,
    }
}

/// RFC 3339 UTC time with milliseconds, without a date library.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// A time as RFC 3339 UTC with milliseconds (`2026-11-23T07:12:05.123Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        d.subsec_millis()
    )
}

/// True when `bytes` contains the secret (used to keep tokens out of stderr too).
pub fn contains_secret(bytes: &[u8], secret: Option<&str>) -> bool {
    secret.is_some_and(|s| !s.is_empty() && bytes.windows(s.len()).any(|w| w == s.as_bytes()))
}

/// The text of a token for display.
pub fn lossy(t: &std::ffi::OsStr) -> String {
    String::from_utf8_lossy(t.as_bytes()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_tokens() {
        let u = "http://127.0.0.1:32400/livetv/sessions/a/b/index.m3u8?offset=0&X-Plex-Token=abcdef123&x=1";
        assert_eq!(redact(u, None), "http://127.0.0.1:32400/livetv/sessions/a/b/index.m3u8?offset=0&X-Plex-Token=<redacted>&x=1");
        assert_eq!(
            redact("a local-1234567890 b", Some("local-1234567890")),
            "a <redacted> b"
        );
        assert_eq!(redact("x-plex-token=zz", None), "x-plex-token=<redacted>");
        // Every one of many tokens, whatever the case, and the text between them kept.
        let many = "?X-Plex-Token=a&y=1 x-plex-TOKEN=b\"".repeat(3);
        assert_eq!(
            redact(&many, None),
            "?X-Plex-Token=<redacted>&y=1 x-plex-TOKEN=<redacted>\"".repeat(3)
        );
    }

    #[test]
    fn time_format() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
