//! Enforcement after the fact: telling a refused viewer why, and catching protected
//! transcodes the shim did not handle.
//!
//! One engine serves three callers: the daemon's refusal worker (the shim refused a
//! transcode: terminate the viewer's session with the scenario's message), the reactive guard
//! (a protected video transcode the shim never reported: move the client or terminate), and
//! `downshiftarr tautulli` (the original script's trigger, with or without the daemon).
//!
//! Plex's session appears only after the transcoder starts, so finding it is retried
//! (`SESSION_LOOKUP_RETRIES` × `SESSION_LOOKUP_DELAY_S`). Terminating needs `Session.id`, not
//! the session key, and Plex Pass on the owner's account: a 401 is reported as exactly that.
//! When Plex's terminate fails and Tautulli is configured, Tautulli's `terminate_session` is
//! tried. What happens when a step fails follows the original `KILL_ON_*` toggles.

use std::time::Duration;

use downshiftarr_shim::config::ShimConfig;
use downshiftarr_shim::facts::SourceFacts;
use downshiftarr_shim::policy;
use downshiftarr_shim::protocol::MediaVersion;
use downshiftarr_shim::switch;
use serde::Serialize;

use crate::clients::tautulli::Tautulli;
use crate::config::EnforceConfig;
use crate::daemon::lifecycle::Shutdown;
use crate::plex::sessions::{self, Session, Tracker};
use crate::plex::{Plex, PlexError};

/// What enforcement did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    /// `terminated`, `switched_client`, `left_playing`, `skipped`, `failed`.
    pub action: &'static str,
    /// Why, as a static label (also the metrics label).
    pub reason: &'static str,
    /// Details for people: errors, the version switched to.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// `plex` or `tautulli`, for terminations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<&'static str>,
    /// Plex answered 401 to terminate: no Plex Pass on the server owner's account.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub plex_pass_missing: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl Outcome {
    pub fn new(action: &'static str, reason: &'static str, detail: impl Into<String>) -> Outcome {
        Outcome {
            action,
            reason,
            detail: detail.into(),
            via: None,
            plex_pass_missing: false,
            user: None,
        }
    }

    /// The decision this outcome stands for in the audit.
    pub fn decision(&self) -> &'static str {
        match self.action {
            "terminated" | "failed" => "refuse",
            "switched_client" => "switch",
            _ => "pass",
        }
    }

    /// Whether the session is settled by it, so no other enforcer acts on it: anything but a
    /// skip, and a shadow-mode "would" (one record of it is enough).
    pub fn settles(&self) -> bool {
        self.action != "skipped" || self.reason.starts_with("shadow mode")
    }

    /// The audit record of a guard or trigger decision: the shim's record shape with an
    /// `origin` (stored by the daemon, or appended to the decision log without it).
    /// `input` is the file when known, else the session's title.
    pub fn record(
        &self,
        origin: &str,
        session: &Session,
        input: Option<&str>,
        reason: &str,
    ) -> serde_json::Value {
        serde_json::json!({
            "origin": origin,
            "time": downshiftarr_shim::record::now_rfc3339(),
            "job": "video_transcode",
            "decision": self.decision(),
            "reason": reason,
            "session": session.transcode.clone().unwrap_or_else(|| session.session_key.clone()),
            "input": input.unwrap_or(&session.title),
            "viewer": session.viewer,
            "outcome": self.line(),
        })
    }

    /// How loud it is in a log (and whether `TAUTULLI_LOG_MIN_LEVEL` lets it reach the
    /// notifier): a missing Plex Pass is an error; a failure or a stopped stream a warning.
    pub fn level(&self) -> tracing::Level {
        match self.action {
            _ if self.plex_pass_missing => tracing::Level::ERROR,
            "failed" | "terminated" => tracing::Level::WARN,
            _ => tracing::Level::INFO,
        }
    }

    /// What health and metrics count of it.
    pub fn health(&self) -> crate::daemon::health::Enforced {
        crate::daemon::health::Enforced {
            action: self.action,
            reason: self.reason,
            via: self.via,
            plex_pass_missing: self.plex_pass_missing,
            line: self.line(),
        }
    }

    /// One line for logs, `decisions` and the Tautulli notifier.
    pub fn line(&self) -> String {
        let mut s = format!("{}: {}", self.action, self.reason);
        if let Some(v) = self.via {
            s.push_str(&format!(" (via {v})"));
        }
        if !self.detail.is_empty() {
            s.push_str(&format!(" — {}", self.detail));
        }
        s
    }
}

/// The text people see when Plex refuses to terminate for want of Plex Pass.
pub const PLEX_PASS_401: &str =
    "Plex answered 401 to terminate: stopping a stream needs Plex Pass on the server owner's account";

/// Which session to find. Any field may be missing; the first that matches wins, in the
/// order of the fields.
#[derive(Clone, Debug, Default)]
pub struct Want {
    pub transcode: Option<String>,
    pub session_key: Option<String>,
    pub session_id: Option<String>,
    pub rating_key: Option<String>,
    pub username: Option<String>,
    pub machine_id: Option<String>,
    /// Media ids of the file a refused transcode read: the last resort when Plex never
    /// lists the transcode key (exactly one session playing one of them).
    pub media_ids: Vec<String>,
}

impl Want {
    fn find(&self, list: &[Session]) -> Option<Session> {
        let eq = |a: &Option<String>, b: &Option<String>| a.is_some() && a == b;
        let rules: [&dyn Fn(&Session) -> bool; 5] = [
            &|s| eq(&s.transcode, &self.transcode),
            &|s| self.session_key.as_deref() == Some(s.session_key.as_str()),
            &|s| eq(&s.session_id, &self.session_id),
            &|s| eq(&s.rating_key, &self.rating_key) && eq(&s.viewer.user, &self.username),
            &|s| eq(&s.rating_key, &self.rating_key) && eq(&s.viewer.client_id, &self.machine_id),
        ];
        for r in rules {
            if let Some(s) = list.iter().find(|s| r(s)) {
                return Some(s.clone());
            }
        }
        let by_media: Vec<&Session> = list
            .iter()
            .filter(|s| {
                s.media_id
                    .as_ref()
                    .is_some_and(|m| self.media_ids.contains(m))
            })
            .collect();
        match by_media.as_slice() {
            [one] => Some((*one).clone()),
            _ => None,
        }
    }
}

/// The engine. Borrowed pieces, so the daemon and the CLI build it their own way.
pub struct Enforcer<'a> {
    pub plex: Option<&'a Plex>,
    pub tautulli: Option<&'a Tautulli>,
    pub cfg: &'a EnforceConfig,
    pub shim: &'a ShimConfig,
    /// `(notifier id, subject)`: each enforcement is posted there.
    pub notifier: Option<(u32, String)>,
    pub tracker: Option<&'a Tracker>,
    pub shutdown: Option<&'a Shutdown>,
}

impl Enforcer<'_> {
    /// Sleeps, unless the daemon is stopping (then false).
    fn sleep(&self, secs: f64) -> bool {
        let d = Duration::from_secs_f64(secs.max(0.0));
        match self.shutdown {
            Some(s) => !s.wait(d),
            None => {
                std::thread::sleep(d);
                true
            }
        }
    }

    /// Finds the session, asking Plex up to `1 + session_lookup_retries` times.
    pub fn find(&self, want: &Want) -> Result<Option<Session>, PlexError> {
        let plex = self
            .plex
            .ok_or_else(|| PlexError::other("Plex", "no Plex configured"))?;
        let mut last_error = None;
        for attempt in 0..=self.cfg.session_lookup_retries {
            // A failed request is retried like a session not listed yet; only the last
            // attempt's error is the answer.
            // One bounded request per attempt: the attempts are the retries.
            // Each attempt at most 3 s, less when the owner's HTTP timeout (`plex.read_timeout_ms`,
            // the drop-in's `HTTP_TIMEOUT_S`) is shorter.
            match plex.sessions(Some(plex.read_timeout().min(Duration::from_secs(3)))) {
                Ok(raw) => {
                    last_error = None;
                    let list = sessions::parse_sessions(&raw);
                    if let Some(t) = self.tracker {
                        t.replace(list.clone());
                    }
                    if let Some(s) = want.find(&list) {
                        return Ok(Some(s));
                    }
                }
                Err(e) => last_error = Some(e),
            }
            if attempt < self.cfg.session_lookup_retries
                && !self.sleep(self.cfg.session_lookup_delay_s)
            {
                break;
            }
        }
        match last_error {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// Terminates a session with `message`: Plex first, then Tautulli.
    pub fn terminate(
        &self,
        session_id: Option<&str>,
        session_key: Option<&str>,
        message: &str,
        reason: &'static str,
    ) -> Outcome {
        let mut errors: Vec<String> = Vec::new();
        let mut pass_missing = false;
        match (self.plex, session_id) {
            (Some(p), Some(id)) => match p.terminate(id, message) {
                Ok(()) => {
                    let mut o = Outcome::new("terminated", reason, "");
                    o.via = Some("plex");
                    return o;
                }
                Err(e) if e.is_unauthorized() => {
                    pass_missing = true;
                    errors.push(PLEX_PASS_401.into());
                }
                Err(e) => errors.push(e.to_string()),
            },
            (None, _) => errors.push("no Plex configured".into()),
            (Some(_), None) => errors
                .push("the session has no Session.id (music sessions cannot be stopped)".into()),
        }
        if let Some(t) = self.tautulli {
            match t.terminate(session_id, session_key, message) {
                Ok(()) => {
                    let mut o = Outcome::new("terminated", reason, errors.join("; "));
                    o.via = Some("tautulli");
                    o.plex_pass_missing = pass_missing;
                    return o;
                }
                Err(e) => errors.push(e),
            }
        }
        let mut o = Outcome::new("failed", reason, errors.join("; "));
        o.plex_pass_missing = pass_missing;
        o
    }

    /// Runs `act`; a panic in our own code follows `KILL_ON_UNEXPECTED_ERROR` (terminate the
    /// session by these ids, or leave it playing) instead of taking the caller down.
    pub fn guarded(
        &self,
        session_id: Option<&str>,
        session_key: Option<&str>,
        may_kill: bool,
        act: impl FnOnce() -> Outcome,
    ) -> Outcome {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(act)) {
            Ok(o) => o,
            Err(_) if self.cfg.kill_on_unexpected_error && may_kill => self.terminate(
                session_id,
                session_key,
                self.shim.kill_message("unexpected_error"),
                "unexpected error",
            ),
            Err(_) => Outcome::new(
                "left_playing",
                "unexpected error",
                "KILL_ON_UNEXPECTED_ERROR=0",
            ),
        }
    }

    /// A protected video transcode nobody handled (reactive guard, Tautulli trigger): move
    /// the client to a compliant version when asked to, otherwise terminate — each failure
    /// following its `KILL_ON_*` toggle.
    pub fn act_on(&self, session: &Session, versions: &[MediaVersion]) -> Outcome {
        let mut out = self.act(session, versions);
        out.user = session.viewer.user.clone();
        out
    }

    fn act(&self, session: &Session, versions: &[MediaVersion]) -> Outcome {
        let kill = |scenario: &'static str, reason: &'static str| {
            self.terminate(
                session.session_id.as_deref(),
                Some(&session.session_key),
                self.shim.kill_message(scenario),
                reason,
            )
        };
        let current = versions
            .iter()
            .find(|v| Some(&v.media_id) == session.media_id.as_ref());
        let best = current.and_then(|c| {
            switch::ranked_versions(versions, c, self.shim)
                .first()
                .copied()
        });
        let Some(best) = best else {
            return if self.cfg.kill_on_no_fallback_media {
                kill("no_fallback_media", "no compliant version")
            } else {
                Outcome::new(
                    "left_playing",
                    "no compliant version",
                    "KILL_ON_NO_FALLBACK_MEDIA=0",
                )
            };
        };
        if !self.cfg.switch_client {
            return kill("protected_transcode", "protected transcode");
        }
        let Some(client) = session.viewer.client_id.as_deref() else {
            return if self.cfg.kill_on_client_not_found {
                kill("client_not_found", "client not found")
            } else {
                Outcome::new(
                    "left_playing",
                    "client not found",
                    "KILL_ON_CLIENT_NOT_FOUND=0",
                )
            };
        };
        match self.switch_client(session, client, best) {
            Ok(detail) => Outcome::new("switched_client", "moved to a compliant version", detail),
            Err((true, e)) if !self.cfg.kill_on_client_not_found => {
                Outcome::new("left_playing", "client not found", e)
            }
            Err((true, _)) => kill("client_not_found", "client not found"),
            Err((false, e)) if !self.cfg.kill_on_switch_fail => {
                Outcome::new("left_playing", "switch failed", e)
            }
            Err((false, _)) => kill("switch_fail", "switch failed"),
        }
    }

    /// `playMedia` of `to` at the current offset, then seeks. `Err((client_missing, why))`.
    fn switch_client(
        &self,
        session: &Session,
        client: &str,
        to: &MediaVersion,
    ) -> Result<String, (bool, String)> {
        let plex = self.plex.ok_or((false, "no Plex configured".to_string()))?;
        let rk = session
            .rating_key
            .as_deref()
            .ok_or((false, "the session names no item".to_string()))?;
        // playMedia counts versions in Plex's own order, which only the item itself shows.
        let item = plex
            .metadata(&[rk.to_string()])
            .map_err(|e| (false, e.to_string()))?;
        let media_index = item
            .first()
            .and_then(|i| i.get("Media"))
            .and_then(|m| m.as_array())
            .and_then(|m| {
                m.iter().position(|x| {
                    crate::plex::json::s(x, "id").as_deref() == Some(to.media_id.as_str())
                })
            })
            .ok_or((false, "the version is no longer in Plex".to_string()))?;
        let server = plex
            .identity()
            .ok()
            .and_then(|i| crate::plex::json::s(&i, "machineIdentifier"))
            .unwrap_or_default();
        let offset = session.view_offset_ms.unwrap_or(0).max(0);
        let r = plex.client_command(
            client,
            "/player/playback/playMedia",
            &[
                ("key", format!("/library/metadata/{rk}")),
                ("offset", offset.to_string()),
                ("machineIdentifier", server),
                ("mediaIndex", media_index.to_string()),
                ("partIndex", "0".into()),
                ("type", "video".into()),
                ("commandID", "1".into()),
            ],
        );
        match r {
            Ok(()) => {}
            Err(e) if e.status() == Some(404) => {
                return Err((true, "Plex does not reach the client (404)".into()))
            }
            Err(e) => return Err((false, e.to_string())),
        }
        let mut seeked = false;
        if self.sleep(self.cfg.seek_delay_s) {
            for attempt in 0..self.cfg.seek_retries.max(1) {
                let r = plex.client_command(
                    client,
                    "/player/playback/seekTo",
                    &[
                        ("offset", offset.to_string()),
                        ("type", "video".into()),
                        ("commandID", (attempt + 2).to_string()),
                    ],
                );
                if r.is_ok() {
                    seeked = true;
                    break;
                }
                if !self.sleep(self.cfg.seek_retry_delay_s) {
                    break;
                }
            }
        }
        Ok(format!(
            "media {} ({}p){}",
            to.media_id,
            to.height.unwrap_or(0),
            if seeked {
                ""
            } else {
                "; the seek was not confirmed"
            }
        ))
    }

    /// Posts an outcome to the Tautulli notifier, when one is configured. Best effort.
    pub fn notify(&self, title: &str, outcome: &Outcome) {
        if let (Some(t), Some((id, subject))) = (self.tautulli, &self.notifier) {
            let who = outcome.user.as_deref().unwrap_or("someone");
            let body = format!("{title} ({who}): {}", outcome.line());
            if let Err(e) = t.notify(*id, subject, &body) {
                tracing::warn!("tautulli notifier: {e}");
            }
        }
    }
}

/// Whether the source facts are protected under the shim's policy.
pub fn protected(facts: &SourceFacts, shim: &ShimConfig) -> bool {
    policy::protected(facts, shim) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EnforceConfig;
    use downshiftarr_shim::config::ShimConfig;
    use std::net::TcpListener;
    use std::time::Instant;

    /// A Plex that accepts connections and never answers.
    fn silent_plex() -> (String, std::thread::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let mut held = Vec::new();
            l.set_nonblocking(true).unwrap();
            let until = Instant::now() + Duration::from_secs(20);
            while Instant::now() < until && held.len() < 8 {
                match l.accept() {
                    Ok((c, _)) => held.push(c),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            std::thread::sleep(Duration::from_secs(2));
        });
        (url, h)
    }

    fn time_find(read_timeout: Duration, retries: u32) -> Duration {
        let (url, _server) = silent_plex();
        let plex = Plex::new(&url, "t", Duration::from_secs(1), read_timeout).unwrap();
        let cfg = EnforceConfig {
            session_lookup_retries: retries,
            session_lookup_delay_s: 0.0,
            ..EnforceConfig::default()
        };
        let shim = ShimConfig::default();
        let enf = Enforcer {
            plex: Some(&plex),
            tautulli: None,
            cfg: &cfg,
            shim: &shim,
            notifier: None,
            tracker: None,
            shutdown: None,
        };
        let t = Instant::now();
        let r = enf.find(&Want {
            session_key: Some("1".into()),
            ..Want::default()
        });
        assert!(r.is_err(), "a silent Plex is an error, not 'no session'");
        t.elapsed()
    }

    /// Each lookup attempt is bounded by 3 s, or by the owner's HTTP timeout when shorter:
    /// a silent Plex with a 15 s read timeout costs 3 s per attempt, not 15.
    #[test]
    fn a_lookup_attempt_is_bounded_by_3_s_or_the_shorter_http_timeout() {
        let long = time_find(Duration::from_secs(15), 0);
        assert!(
            long >= Duration::from_millis(2500) && long < Duration::from_secs(6),
            "{long:?}"
        );
        let short = time_find(Duration::from_millis(500), 1);
        assert!(
            short < Duration::from_millis(2500),
            "two attempts of 0.5 s: {short:?}"
        );
    }
}
