//! Who is playing now, and downshiftarr's decision for each session.
//!
//! The session tracker's last listing is joined with the decision audit:
//! - the shim records the transcode session id (`…/transcode/session/<id>/…` of its argv),
//!   the reactive guard the session's transcode key (else its session key), a Tautulli
//!   trigger the session key: a session's decision is the newest record naming one of its
//!   keys, a video transcode's before any other job's (a thumbnail of the same session);
//! - a client the guard moved to another version plays in a new session no record names:
//!   the guard's newest `switch` of a file of the same item, for the same viewer, in the
//!   last [`GUARD_SWITCH_WINDOW_S`];
//! - a session with no record is `exempt` when its viewer is exempt, else `none` (direct
//!   play or direct stream: nothing to decide).
//!
//! The record maps to `pass`, `rewrite`, `switch`, `refuse` or `exempt` ([`view`]), with the
//! message a refused viewer was shown (the scenario's `KILL_MESSAGE_*`) and the version a
//! switch went to.

use downshiftarr_shim::config::ShimConfig;
use downshiftarr_shim::facts::DynamicRange;
use downshiftarr_shim::policy;
use downshiftarr_shim::protocol::{MediaVersion, StreamKind};
use serde_json::{json, Value};

use crate::plex::sessions::Session;
use crate::store::dashboard::AuditRow;
use crate::store::lookup::Lookup;
use crate::store::Store;

/// How far back a guard switch is looked for (the session it started is new).
pub const GUARD_SWITCH_WINDOW_S: u64 = 6 * 3600;

/// `2160p HEVC HDR10 · 58 Mbps`; `None` when nothing is known of the version.
pub fn describe_version(v: Option<&MediaVersion>, bitrate_kbps: Option<i64>) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    if let Some(v) = v {
        if let Some(h) = v.height {
            parts.push(height_class(h, v.width));
        }
        if let Some(c) = v
            .streams
            .iter()
            .find(|s| s.kind == StreamKind::Video)
            .and_then(|s| s.codec.as_deref())
        {
            parts.push(codec_name(c));
        }
        if let Some(dr) = v.dynamic_range {
            parts.push(range_name(dr, v.dv_profile));
        }
    }
    let rate = bitrate_kbps
        .filter(|b| *b > 0)
        .or_else(|| v.and_then(|v| v.bitrate_kbps).map(i64::from))
        .map(|b| {
            if b >= 1000 {
                format!("{} Mbps", (b as f64 / 1000.0).round())
            } else {
                format!("{b} kbps")
            }
        });
    let mut s = parts.join(" ");
    if let Some(r) = rate {
        if !s.is_empty() {
            s.push_str(" · ");
        }
        s.push_str(&r);
    }
    (!s.is_empty()).then_some(s)
}

/// `2160p`, `1080p`… by the class the switch uses (a 3840×1600 scope film is 4K).
fn height_class(h: u32, w: Option<u32>) -> String {
    let by_width = match w {
        Some(w) if w >= 3200 => 2160,
        Some(w) if w >= 2200 => 1440,
        Some(w) if w >= 1700 => 1080,
        Some(w) if w >= 1100 => 720,
        _ => 0,
    };
    format!("{}p", h.max(by_width))
}

fn codec_name(c: &str) -> String {
    match c.to_ascii_lowercase().as_str() {
        "hevc" | "h265" => "HEVC".into(),
        "h264" | "avc" => "H.264".into(),
        "av1" => "AV1".into(),
        "vp9" => "VP9".into(),
        "mpeg2video" => "MPEG-2".into(),
        other => other.to_ascii_uppercase(),
    }
}

fn range_name(dr: DynamicRange, dv_profile: Option<u8>) -> String {
    match dr {
        DynamicRange::Sdr => "SDR".into(),
        DynamicRange::Hdr10 => "HDR10".into(),
        DynamicRange::Hdr10plus => "HDR10+".into(),
        DynamicRange::Hlg => "HLG".into(),
        DynamicRange::DolbyVision => match dv_profile {
            Some(p) => format!("Dolby Vision {p}"),
            None => "Dolby Vision".into(),
        },
    }
}

/// `direct_play`, `direct_stream` or `transcode`, from the transcode session's video decision.
pub fn play_kind(video_decision: Option<&str>) -> &'static str {
    match video_decision {
        None => "direct_play",
        Some("transcode") => "transcode",
        Some(_) => "direct_stream",
    }
}

/// The scenario a guard or trigger refusal showed its viewer, from its outcome line
/// (`terminated: no compliant version (via plex)`): the enforcer terminates with the
/// scenario's message (`jobs::guard::enforce`).
fn guard_scenario(outcome: &str) -> &'static str {
    let reason = outcome
        .split_once(": ")
        .map_or(outcome, |(_, r)| r)
        .split([' ', '('])
        .collect::<Vec<_>>()
        .join(" ");
    if reason.starts_with("no compliant version") {
        "no_fallback_media"
    } else if reason.starts_with("client not found") {
        "client_not_found"
    } else if reason.starts_with("switch failed") {
        "switch_fail"
    } else if reason.starts_with("unexpected error") {
        "unexpected_error"
    } else {
        "protected_transcode"
    }
}

/// What a switch went to: `1080p H.264 SDR (media 123)`.
fn switch_target(row: &AuditRow, rec: &Value, lookup: &Lookup) -> Option<String> {
    if let Some(to) = rec.get("switched_to") {
        let media = to.get("media_id").and_then(Value::as_str)?;
        let known = lookup.by_media(media).and_then(|e| {
            e.versions
                .iter()
                .find(|v| v.media_id == media)
                .map(|v| describe_version(Some(v), None))
        });
        let desc = known.flatten().or_else(|| {
            let h = to.get("height").and_then(Value::as_u64)?;
            let dr = to
                .get("dynamic_range")
                .and_then(|d| serde_json::from_value::<DynamicRange>(d.clone()).ok())
                .map(|d| range_name(d, None))
                .unwrap_or_default();
            Some(format!("{h}p {dr}").trim().to_string())
        });
        return Some(match desc {
            Some(d) => format!("{d} (media {media})"),
            None => format!("media {media}"),
        });
    }
    // The guard moved the client: its outcome says to what (`switched_client: … — detail`).
    row.outcome
        .as_deref()
        .and_then(|o| o.split_once(" — "))
        .map(|(_, d)| d.to_string())
}

/// The decision object of a session: `{kind, label, reason, message, switch_to, decision_id}`.
pub fn view(
    row: Option<&AuditRow>,
    exempt_viewer: bool,
    shim: &ShimConfig,
    lookup: &Lookup,
) -> Value {
    let Some(row) = row else {
        return if exempt_viewer {
            json!({"kind": "exempt", "label": "exempt", "reason": "viewer is exempt",
                   "message": null, "switch_to": null, "decision_id": null})
        } else {
            json!({"kind": "none", "label": "no decision", "reason": "nothing transcoded: nothing to decide",
                   "message": null, "switch_to": null, "decision_id": null})
        };
    };
    let rec: Value = serde_json::from_str(&row.record).unwrap_or(Value::Null);
    let decision = row.decision.as_deref().unwrap_or("");
    let reason = row.reason.clone().unwrap_or_default();
    let exempt_reason =
        reason == "viewer is exempt" || reason.starts_with("viewer unknown in time");
    let shadowed = rec.get("shadowed").and_then(Value::as_str);
    let (kind, label) = match decision {
        "pass" if exempt_reason => ("exempt", "exempt".to_string()),
        "pass" => match shadowed {
            Some(would) => ("pass", format!("passed (shadow mode: would {would})")),
            None => ("pass", "passed".to_string()),
        },
        "rewrite" => ("rewrite", "rewritten to SDR".to_string()),
        "switch" => ("switch", "switched".to_string()),
        "refuse" => ("refuse", "refused".to_string()),
        other => ("pass", other.to_string()),
    };
    let message = (kind == "refuse").then(|| {
        let scenario = match rec.get("scenario").and_then(Value::as_str) {
            Some(s) => s,
            None if row.origin == "shim" => "unexpected_error",
            None => guard_scenario(row.outcome.as_deref().unwrap_or("")),
        };
        shim.kill_message(scenario).to_string()
    });
    let switch_to = (kind == "switch")
        .then(|| switch_target(row, &rec, lookup))
        .flatten();
    json!({"kind": kind, "label": label, "reason": reason, "message": message,
           "switch_to": switch_to, "decision_id": row.id, "origin": row.origin,
           "outcome": row.outcome})
}

/// The decision about `s`, as stored (see the module's doc).
pub fn stored(db: &Store, s: &Session, lookup: &Lookup, now_s: u64) -> Option<AuditRow> {
    let mut keys: Vec<&str> = Vec::new();
    if let Some(t) = s.transcode.as_deref() {
        keys.push(t);
    }
    keys.push(&s.session_key);
    match db.audit_for_session(&keys) {
        Ok(Some(r)) => return Some(r),
        Ok(None) => {}
        Err(e) => {
            tracing::debug!("dashboard: decision of session {}: {e:#}", s.session_key);
            return None;
        }
    }
    let entry = lookup.by_media(s.media_id.as_deref()?)?;
    let files: Vec<&str> = entry.versions.iter().map(|v| v.file.as_str()).collect();
    let since = downshiftarr_shim::record::rfc3339(
        std::time::UNIX_EPOCH
            + std::time::Duration::from_secs(now_s.saturating_sub(GUARD_SWITCH_WINDOW_S)),
    );
    db.audit_guard_switch(&files, s.viewer.user.as_deref(), &since)
        .ok()
        .flatten()
}

/// One `now_playing` entry.
pub fn entry(s: &Session, row: Option<&AuditRow>, shim: &ShimConfig, lookup: &Lookup) -> Value {
    let version = s.media_id.as_deref().and_then(|m| {
        let e = lookup.by_media(m)?;
        let v = e.versions.iter().find(|v| v.media_id == m).cloned();
        Some(v)
    });
    let client = match (&s.viewer.device, &s.viewer.client) {
        (Some(d), Some(c)) if d != c => Some(format!("{d} ({c})")),
        (Some(d), _) => Some(d.clone()),
        (None, c) => c.clone(),
    };
    let progress = match (s.view_offset_ms, s.duration_ms) {
        (Some(o), Some(d)) if d > 0 => Some(((o as f64 / d as f64) * 1000.0).round() / 10.0),
        _ => None,
    };
    json!({
        "session_key": s.session_key,
        "user": s.viewer.user,
        "client": client,
        "title": s.title,
        "kind": s.kind,
        "version": describe_version(version.flatten().as_ref(), s.bitrate_kbps),
        "play": play_kind(s.video_decision.as_deref()),
        "location": s.location,
        "address": s.address,
        "state": s.state,
        "progress_pct": progress,
        "decision": view(row, policy::is_exempt(&s.viewer, shim), shim, lookup),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use downshiftarr_shim::protocol::StreamInfo;
    use downshiftarr_shim::viewer::Viewer;

    fn row(decision: &str, origin: &str, reason: &str, record: Value) -> AuditRow {
        AuditRow {
            id: 42,
            origin: origin.into(),
            decision: Some(decision.into()),
            reason: Some(reason.into()),
            record: record.to_string(),
            ..AuditRow::default()
        }
    }

    fn shim_cfg() -> ShimConfig {
        let mut c = ShimConfig::default();
        c.kill_messages.insert(
            "no_fallback_media".into(),
            "No 1080p copy of this film.".into(),
        );
        c.exempt_users = vec!["carol".into()];
        c
    }

    #[test]
    fn each_record_maps_to_its_kind_label_message_and_target() {
        let cfg = shim_cfg();
        let l = Lookup::default();
        let refused = row(
            "refuse",
            "shim",
            "no compliant version; KILL_ON_NO_FALLBACK_MEDIA=1",
            json!({"scenario": "no_fallback_media"}),
        );
        let v = view(Some(&refused), false, &cfg, &l);
        assert_eq!(v["kind"], "refuse");
        assert_eq!(v["label"], "refused");
        assert_eq!(v["message"], "No 1080p copy of this film.");
        assert_eq!(v["decision_id"], 42);
        assert_eq!(v["switch_to"], Value::Null);

        let switched = row(
            "switch",
            "shim",
            "protected source switched to a compliant version",
            json!({"switched_to": {"media_id": "123", "file": "/m/x.mkv", "height": 1080, "dynamic_range": "sdr", "streams": []}}),
        );
        let v = view(Some(&switched), false, &cfg, &l);
        assert_eq!(v["kind"], "switch");
        assert_eq!(v["switch_to"], "1080p SDR (media 123)");
        assert_eq!(v["message"], Value::Null);

        let mut guard = row(
            "switch",
            "guard",
            "protected transcode the shim did not handle",
            json!({}),
        );
        guard.outcome =
            Some("switched_client: moved to a compliant version — 1080p sdr (media 9)".into());
        assert_eq!(
            view(Some(&guard), false, &cfg, &l)["switch_to"],
            "1080p sdr (media 9)"
        );

        let mut gref = row(
            "refuse",
            "guard",
            "protected transcode the shim did not handle",
            json!({}),
        );
        gref.outcome = Some("terminated: no compliant version (via plex)".into());
        assert_eq!(
            view(Some(&gref), false, &cfg, &l)["message"],
            "No 1080p copy of this film."
        );

        let exempt = row("pass", "shim", "viewer is exempt", json!({}));
        assert_eq!(view(Some(&exempt), false, &cfg, &l)["kind"], "exempt");
        let unknown = row(
            "pass",
            "shim",
            "viewer unknown in time; EXEMPT_WHEN_VIEWER_UNKNOWN=1",
            json!({}),
        );
        assert_eq!(view(Some(&unknown), false, &cfg, &l)["kind"], "exempt");

        let rewrite = row(
            "rewrite",
            "shim",
            "protected source rewritten to 1080p sdr",
            json!({}),
        );
        let v = view(Some(&rewrite), false, &cfg, &l);
        assert_eq!(
            (v["kind"].as_str(), v["reason"].as_str()),
            (
                Some("rewrite"),
                Some("protected source rewritten to 1080p sdr")
            )
        );

        let shadow = row("pass", "shim", "shadow mode", json!({"shadowed": "refuse"}));
        let v = view(Some(&shadow), false, &cfg, &l);
        assert_eq!(v["kind"], "pass");
        assert_eq!(v["label"], "passed (shadow mode: would refuse)");

        assert_eq!(view(None, true, &cfg, &l)["kind"], "exempt");
        assert_eq!(view(None, false, &cfg, &l)["kind"], "none");
    }

    #[test]
    fn guard_outcomes_name_their_scenario() {
        assert_eq!(
            guard_scenario("terminated: no compliant version (via plex)"),
            "no_fallback_media"
        );
        assert_eq!(
            guard_scenario("terminated: client not found (via plex)"),
            "client_not_found"
        );
        assert_eq!(
            guard_scenario("terminated: switch failed (via tautulli) — x"),
            "switch_fail"
        );
        assert_eq!(
            guard_scenario("terminated: protected transcode (via plex)"),
            "protected_transcode"
        );
        assert_eq!(guard_scenario(""), "protected_transcode");
    }

    #[test]
    fn versions_and_play_kinds_read_as_people_say_them() {
        let v = MediaVersion {
            media_id: "1".into(),
            width: Some(3840),
            height: Some(1600),
            dynamic_range: Some(DynamicRange::Hdr10),
            dv_profile: None,
            bit_depth: Some(10),
            dv_base_layer_compatible: None,
            bitrate_kbps: Some(40_000),
            container: None,
            edition: None,
            file: "/m/x.mkv".into(),
            streams: vec![StreamInfo {
                index: 0,
                kind: StreamKind::Video,
                codec: Some("hevc".into()),
                language: None,
                channels: None,
                default: true,
                forced: false,
            }],
        };
        assert_eq!(
            describe_version(Some(&v), Some(58_123)).as_deref(),
            Some("2160p HEVC HDR10 · 58 Mbps")
        );
        assert_eq!(
            describe_version(Some(&v), None).as_deref(),
            Some("2160p HEVC HDR10 · 40 Mbps")
        );
        assert_eq!(
            describe_version(None, Some(800)).as_deref(),
            Some("800 kbps")
        );
        assert_eq!(describe_version(None, None), None);
        assert_eq!(play_kind(None), "direct_play");
        assert_eq!(play_kind(Some("copy")), "direct_stream");
        assert_eq!(play_kind(Some("transcode")), "transcode");
    }

    #[test]
    fn a_session_entry_carries_what_the_page_shows() {
        let s = Session {
            session_key: "7".into(),
            title: "Dune".into(),
            viewer: Viewer {
                user: Some("carol".into()),
                client: Some("Roku".into()),
                device: Some("Roku Ultra".into()),
                ..Viewer::default()
            },
            view_offset_ms: Some(415),
            duration_ms: Some(1000),
            state: "paused".into(),
            location: Some("wan".into()),
            address: Some("203.0.113.9".into()),
            ..Session::default()
        };
        let e = entry(&s, None, &shim_cfg(), &Lookup::default());
        assert_eq!(e["client"], "Roku Ultra (Roku)");
        assert_eq!(e["progress_pct"], 41.5);
        assert_eq!(e["play"], "direct_play");
        assert_eq!(e["state"], "paused");
        assert_eq!(e["decision"]["kind"], "exempt", "carol is exempt");
    }
}
