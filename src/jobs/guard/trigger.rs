//! `downshiftarr tautulli`: a drop-in for the original Tautulli script.
//!
//! Tautulli's Script agent runs it with exactly the original argument string
//! (`--rating-key={rating_key} --machine-id={machine_id} --username="{username}" …`) and the
//! original `Downshiftarr.env` keys. The event is handed to the daemon, which knows the
//! library, the sessions and what the shim already handled; when the daemon is down the
//! command evaluates the event itself with the same engine ([`crate::jobs::guard::enforce`]), asking Plex
//! for the item. Existing users change one path in Tautulli.

use std::collections::HashMap;
use std::path::Path;

use downshiftarr_shim::facts::{DynamicRange, SourceFacts};
use downshiftarr_shim::policy;
use downshiftarr_shim::protocol::MediaVersion;
use serde::{Deserialize, Serialize};

use crate::daemon::logging;
use crate::jobs::guard::enforce::{self, Enforcer, Outcome, Want};
use crate::plex::sessions::Session;

/// One Tautulli trigger: the original script's arguments. Tautulli passes an empty string
/// for a value it does not have.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Trigger {
    pub rating_key: String,
    pub machine_id: String,
    pub username: String,
    pub session_id: String,
    pub session_key: String,
    pub user_id: String,
    pub video_decision: String,
    pub video_resolution: String,
    pub stream_video_resolution: String,
    pub video_dynamic_range: String,
    /// `TAUTULLI_LOG_MIN_LEVEL` of the command's environment, handed to the daemon with the
    /// trigger so the notifier hears the same outcomes whoever decides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_min_level: Option<String>,
}

/// `TAUTULLI_LOG_MIN_LEVEL` (default WARNING): the least level of an outcome that reaches the
/// Tautulli notifier. An unknown value says so and keeps the default.
pub fn notify_min_level(v: Option<&str>) -> tracing::level_filters::LevelFilter {
    match v {
        None => tracing::level_filters::LevelFilter::WARN,
        Some(v) => logging::parse_level(v).unwrap_or_else(|| {
            tracing::warn!("TAUTULLI_LOG_MIN_LEVEL={v:?}: expected DEBUG, INFO, WARNING or ERROR; using WARNING");
            tracing::level_filters::LevelFilter::WARN
        }),
    }
}

/// Whether an outcome of a trigger goes to the Tautulli notifier: what was done or failed, at
/// or above the least level.
pub fn notifies(o: &Outcome, min_level: Option<&str>) -> bool {
    matches!(o.action, "terminated" | "switched_client" | "failed")
        && o.level() <= notify_min_level(min_level)
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

impl Trigger {
    /// Facts from the event alone (`video_resolution=4k`, `video_dynamic_range=HDR`), for when
    /// neither the index nor Plex can say more.
    pub fn hinted_facts(&self) -> SourceFacts {
        let mut f = SourceFacts::empty(downshiftarr_shim::facts::Origin::Given);
        let r = self.video_resolution.trim().to_ascii_lowercase();
        f.height = match r.trim_end_matches('p') {
            "4k" | "2160" | "uhd" => Some(2160),
            "1080" | "fhd" => Some(1080),
            "720" | "hd" => Some(720),
            "576" => Some(576),
            "480" | "sd" => Some(480),
            other => other.parse().ok(),
        };
        let dr = self.video_dynamic_range.to_ascii_uppercase();
        f.dynamic_range = match () {
            _ if dr.contains("DOLBY") || dr.contains("DOVI") || dr == "DV" => {
                Some(DynamicRange::DolbyVision)
            }
            _ if dr.contains("HLG") => Some(DynamicRange::Hlg),
            _ if dr.contains("HDR") => Some(DynamicRange::Hdr10),
            _ if dr.contains("SDR") => Some(DynamicRange::Sdr),
            _ => None,
        };
        f
    }

    /// The session as the event names it, for the audit and the enforcement memory.
    pub fn audit_session(&self) -> Session {
        Session {
            session_key: self.session_key.clone(),
            session_id: some(&self.session_id),
            title: format!("rating key {}", self.rating_key),
            viewer: policy::Viewer {
                user: some(&self.username),
                client_id: some(&self.machine_id),
                ..policy::Viewer::default()
            },
            ..Session::default()
        }
    }

    fn want(&self) -> Want {
        Want {
            session_key: some(&self.session_key),
            session_id: some(&self.session_id),
            rating_key: some(&self.rating_key),
            username: some(&self.username),
            machine_id: some(&self.machine_id),
            ..Want::default()
        }
    }
}

/// What the caller knows beyond Plex: the index (daemon) or nothing (standalone).
pub trait Knowledge {
    /// The facts of the version a session plays and all versions of its item.
    fn versions(&self, session: &Session) -> Option<(SourceFacts, Vec<MediaVersion>)>;
    /// The shim already decided about this transcode session (or, recently, this file).
    fn handled(&self, transcode: Option<&str>, file: Option<&str>) -> bool;
    /// The guard or an earlier trigger already acted on this session.
    fn enforced(&self, _session: &Session) -> bool {
        false
    }
    /// Remembers that the trigger acted on this session, so the guard leaves it alone.
    fn note_enforced(&self, _session: &Session) {}
}

/// Handles one trigger with the original script's flow; never panics (an internal error
/// follows `KILL_ON_UNEXPECTED_ERROR`).
pub fn handle(enf: &Enforcer<'_>, t: &Trigger, know: &dyn Knowledge, shadow: bool) -> Outcome {
    let (o, session) = handle_remembered(enf, t, know, shadow);
    if o.settles() {
        know.note_enforced(&session.unwrap_or_else(|| t.audit_session()));
    }
    o
}

/// The outcome, and the session it acted on when Plex listed it.
fn handle_remembered(
    enf: &Enforcer<'_>,
    t: &Trigger,
    know: &dyn Knowledge,
    shadow: bool,
) -> (Outcome, Option<Session>) {
    let found = std::cell::RefCell::new(None);
    let o = enf.guarded(
        some(&t.session_id).as_deref(),
        some(&t.session_key).as_deref(),
        !shadow,
        || handle_inner(enf, t, know, shadow, &found),
    );
    (o, found.into_inner())
}

fn handle_inner(
    enf: &Enforcer<'_>,
    t: &Trigger,
    know: &dyn Knowledge,
    shadow: bool,
    found: &std::cell::RefCell<Option<Session>>,
) -> Outcome {
    let skip = |reason| Outcome::new("skipped", reason, "");
    let by_name = policy::Viewer {
        user: some(&t.username),
        ..policy::Viewer::default()
    };
    if policy::is_exempt(&by_name, enf.shim) {
        return skip("viewer is exempt");
    }
    if !t.video_decision.trim().eq_ignore_ascii_case("transcode") {
        return skip("not a video transcode");
    }
    if some(&t.rating_key).is_some_and(|k| !k.chars().all(|c| c.is_ascii_digit())) {
        return skip("live tv");
    }
    let kill_by_ids = |scenario: &'static str, reason: &'static str| {
        enf.terminate(
            some(&t.session_id).as_deref(),
            some(&t.session_key).as_deref(),
            enf.shim.kill_message(scenario),
            reason,
        )
    };
    let hinted = t.hinted_facts();
    let session = match enf.find(&t.want()) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return if !enforce::protected(&hinted, enf.shim) {
                skip("session not found; the event does not show a protected source")
            } else if shadow {
                skip("shadow mode: would terminate (session not found)")
            } else if enf.cfg.kill_on_session_not_found {
                kill_by_ids("session_not_found", "session not found")
            } else {
                Outcome::new(
                    "left_playing",
                    "session not found",
                    "KILL_ON_SESSION_NOT_FOUND=0",
                )
            };
        }
        Err(e) => {
            return if !enforce::protected(&hinted, enf.shim) {
                skip("plex unreachable; the event does not show a protected source")
            } else if shadow {
                skip("shadow mode: would terminate (plex unreachable)")
            } else if enf.cfg.kill_on_plex_connect_fail {
                let mut o = kill_by_ids("plex_connect_fail", "plex unreachable");
                o.detail = format!("{e}; {}", o.detail);
                o
            } else {
                Outcome::new("left_playing", "plex unreachable", e.to_string())
            };
        }
    };
    *found.borrow_mut() = Some(session.clone());
    if session.live {
        return skip("live tv");
    }
    if policy::is_exempt(&session.viewer, enf.shim) {
        return skip("viewer is exempt");
    }
    if !session.video_transcode {
        return skip("no longer a video transcode");
    }
    let (facts, versions) = know
        .versions(&session)
        .unwrap_or_else(|| (hinted.clone(), Vec::new()));
    let file = versions
        .iter()
        .find(|v| Some(&v.media_id) == session.media_id.as_ref())
        .map(|v| v.file.as_str());
    if know.handled(session.transcode.as_deref(), file) {
        return skip("handled by the shim");
    }
    if know.enforced(&session) {
        return skip("already enforced");
    }
    if !enforce::protected(&facts, enf.shim) {
        return skip("source not protected");
    }
    if shadow {
        return skip("shadow mode: would enforce");
    }
    enf.act_on(&session, &versions)
}

/// `KEY=value` lines of a `Downshiftarr.env` file (`export`, quotes and comments allowed).
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = match (v.chars().next(), v.chars().last()) {
            (Some(q @ ('"' | '\'')), Some(e)) if q == e && v.len() >= 2 => &v[1..v.len() - 1],
            _ => v.split(" #").next().unwrap_or(v).trim(),
        };
        m.insert(k.trim().to_string(), v.to_string());
    }
    m
}

/// Keys a `Downshiftarr.env` may hold that only the drop-in reads (its log, its HTTP timeout,
/// where the config is), sorted. Every other key it reads is an environment name of the
/// settings table (`config::table`), or a `KILL_MESSAGE_*`: [`is_known_env_key`]. Kept beside
/// [`IGNORED_ENV_KEYS`] so `check-config --env-file` can name a key it does not know — a typo
/// there silently kept a default.
pub const DROP_IN_ENV_KEYS: &[&str] = &[
    "DOWNSHIFTARR_CONFIG",
    "HTTP_TIMEOUT_S",
    "LOG_BACKUP_COUNT",
    "LOG_FILE",
    "LOG_LEVEL",
    "LOG_MAX_BYTES",
    "LOG_TO_STDERR",
    "TAUTULLI_LOG_MIN_LEVEL",
    "VERBOSE",
];

/// Whether downshiftarr reads `key` from a settings file or the environment.
pub fn is_known_env_key(key: &str) -> bool {
    DROP_IN_ENV_KEYS.binary_search(&key).is_ok()
        || key.starts_with("KILL_MESSAGE_")
        || crate::config::table::all().any(|r| r.env == Some(key))
}

/// Keys of the original script that downshiftarr knows but does not use (its telemetry,
/// its adaptive learning, policy knobs this design replaces): named as ignored, not unknown.
pub const IGNORED_ENV_KEYS: &[&str] = &[
    "ADAPTIVE_CONFIDENCE_MIN",
    "ADAPTIVE_LEARNING_ENABLED",
    "ADAPTIVE_LEARNING_FILE",
    "ADAPTIVE_MAX_P95_MS",
    "ADAPTIVE_MIN_SAMPLES",
    "ADAPTIVE_RECENT_OUTCOME_LIMIT",
    "ENFORCEMENT_MODE",
    "FOUR_K_TRANSCODE_ALLOWED",
    "HARD_PROTECT_1080_HDR",
    "HARD_PROTECT_1080_REMUX",
    "PLEX_USER_TOKEN",
    "PROTECTED_SOURCE_MIN_HEIGHT",
    "TELEMETRY_ENABLED",
    "TELEMETRY_FILE",
];

/// `check-config --env-file`: names every key of the file downshiftarr does not know (an
/// error) or does not use (a note). True when every key is known.
pub fn check_env_file(path: &Path) -> bool {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "env file {}: unable to read: {e} (pass the Downshiftarr.env Tautulli uses)",
                path.display()
            );
            return false;
        }
    };
    let mut keys: Vec<String> = parse_env_file(&text).into_keys().collect();
    keys.sort();
    let mut ok = true;
    for k in &keys {
        if is_known_env_key(k) {
            continue;
        }
        if IGNORED_ENV_KEYS.binary_search(&k.as_str()).is_ok() {
            eprintln!(
                "env file {}: {k} is a key of the original script that downshiftarr ignores",
                path.display()
            );
        } else {
            eprintln!(
                "env file {}: unknown key {k} (a typo? it changes nothing; see the README's drop-in keys)",
                path.display()
            );
            ok = false;
        }
    }
    if ok {
        eprintln!("env file {}: ok ({} keys)", path.display(), keys.len());
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_key_tables_are_sorted_and_apart() {
        for t in [DROP_IN_ENV_KEYS, IGNORED_ENV_KEYS] {
            assert!(t.windows(2).all(|w| w[0] < w[1]), "{t:?}");
        }
        assert!(DROP_IN_ENV_KEYS
            .iter()
            .all(|k| !IGNORED_ENV_KEYS.contains(k)));
        let table: Vec<&str> = crate::config::table::all().filter_map(|r| r.env).collect();
        for k in DROP_IN_ENV_KEYS.iter().chain(IGNORED_ENV_KEYS) {
            assert!(!table.contains(k), "{k} is in the settings table");
        }
        // Every name the original script's settings used and downshiftarr reads.
        for k in [
            "PLEX_URL",
            "PLEX_TOKEN",
            "TAUTULLI_APIKEY",
            "SHADOW_MODE",
            "KILL_ON_SWITCH_FAIL",
            "KILL_MESSAGE_SWITCH_FAIL",
            "SEEK_RETRY_DELAY_S",
            "HTTP_TIMEOUT_S",
            "DOWNSHIFTARR_REAL_TRANSCODER",
        ] {
            assert!(is_known_env_key(k), "{k}");
        }
        assert!(!is_known_env_key("SESION_LOOKUP_RETRIES"));
    }

    #[test]
    fn env_file_shapes() {
        let m = parse_env_file(
            "# comment\nexport PLEX_URL=http://x:32400\nEXEMPT_USERS=\"alice, bob\"\nKILL_ON_SWITCH_FAIL=0 # off\n\nbroken line\n",
        );
        assert_eq!(m["PLEX_URL"], "http://x:32400");
        assert_eq!(m["EXEMPT_USERS"], "alice, bob");
        assert_eq!(m["KILL_ON_SWITCH_FAIL"], "0");
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn hints_from_the_event() {
        let t = Trigger {
            video_resolution: "4k".into(),
            video_dynamic_range: "HDR".into(),
            ..Trigger::default()
        };
        let f = t.hinted_facts();
        assert_eq!(f.height, Some(2160));
        assert_eq!(f.dynamic_range, Some(DynamicRange::Hdr10));
        let sdr = Trigger {
            video_resolution: "1080".into(),
            video_dynamic_range: "SDR".into(),
            ..Trigger::default()
        };
        assert!(!enforce::protected(
            &sdr.hinted_facts(),
            &downshiftarr_shim::config::ShimConfig::default()
        ));
    }
}
