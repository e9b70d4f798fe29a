//! Carrying out a throttle decision on qBittorrent, and the record of it that the store keeps
//! so a restart, a `kill -9` or `downshiftarr throttle --restore` can give the bandwidth back.
//!
//! The record is written before the side effect: [`Applier::engage`] reads what is in force,
//! hands the [`ThrottleState`] to the caller's `persist`, and only when that succeeded changes
//! qBittorrent. A throttle never loosens anything: a limit the user already set tighter than
//! ours is left as it is (and not recorded as ours).

use serde::{Deserialize, Serialize};

use super::machine::Target;
use super::restore::{self, Changed, Plan, Write};
use crate::clients::qbittorrent::{QbitError, Qbittorrent, RateLimit, SpeedState};

/// What we changed in qBittorrent and what it was: the job's durable state (one JSON value).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleState {
    /// The record's layout version.
    pub version: u32,
    /// The qBittorrent this was done to (a changed URL must not restore onto another one).
    pub qbittorrent_url: String,
    /// What was in force before we changed anything.
    pub found: SpeedState,
    /// What we set (`None`s: left as found).
    pub set: Changed,
    /// The target the settings asked for.
    pub target: Target,
    /// Why (`2 remote streams: …`).
    pub reason: String,
    /// When we first throttled (Unix seconds).
    pub since_unix_s: u64,
}

impl ThrottleState {
    pub const VERSION: u32 = 1;

    /// The record as the store keeps it.
    pub fn to_json(&self) -> Result<String, String> {
        serde_json::to_string(self).map_err(|e| format!("throttle state not serializable: {e}"))
    }

    /// Reads a stored record; the error says what is wrong with it.
    pub fn from_json(text: &str) -> Result<ThrottleState, String> {
        let s: ThrottleState = serde_json::from_str(text)
            .map_err(|e| format!("stored throttle state is unreadable: {e}"))?;
        if s.version != Self::VERSION {
            return Err(format!(
                "stored throttle state has version {}, this build reads {}",
                s.version,
                Self::VERSION
            ));
        }
        Ok(s)
    }

    /// "upload 500 KiB/s, will restore unlimited" — for `status`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(u) = self.set.upload {
            parts.push(format!("upload {u} (found {})", self.found.upload));
        }
        if let Some(d) = self.set.download {
            parts.push(format!("download {d} (found {})", self.found.download));
        }
        if self.set.alt_mode == Some(true) {
            parts.push("alternative speed mode on (found off)".into());
        }
        if parts.is_empty() {
            return "nothing changed (qbittorrent was already at or below the target)".into();
        }
        parts.join(", ")
    }
}

/// Why carrying out an action failed.
#[derive(Debug)]
pub enum ApplyError {
    Qbittorrent(QbitError),
    /// The caller could not store the record: nothing was changed.
    Persist(String),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Qbittorrent(e) => e.fmt(f),
            ApplyError::Persist(e) => write!(
                f,
                "throttle state not stored, so qbittorrent was not changed: {e}"
            ),
        }
    }
}

impl std::error::Error for ApplyError {}

impl From<QbitError> for ApplyError {
    fn from(e: QbitError) -> Self {
        ApplyError::Qbittorrent(e)
    }
}

/// What to change to reach `target` from `found`, never loosening a setting.
pub fn plan_changes(found: &SpeedState, target: &Target) -> Changed {
    let tighten = |want: RateLimit, have: RateLimit| want.tighter_than(have).then_some(want);
    match *target {
        Target::Limits { upload, download } => Changed {
            upload: tighten(upload, found.upload),
            download: download.and_then(|d| tighten(d, found.download)),
            alt_mode: None,
        },
        Target::AltSpeed => Changed {
            alt_mode: (!found.alt_mode).then_some(true),
            ..Changed::default()
        },
    }
}

/// Moves a throttle in force to a new target (budget mode), keeping what was found. A setting
/// the new target no longer tightens goes back to what was found, still recorded as ours.
pub fn retarget(state: &ThrottleState, target: Target, reason: &str) -> ThrottleState {
    let fresh = plan_changes(&state.found, &target);
    let keep = |new: Option<RateLimit>, old: Option<RateLimit>, found: RateLimit| {
        new.or(old.map(|_| found))
    };
    ThrottleState {
        set: Changed {
            upload: keep(fresh.upload, state.set.upload, state.found.upload),
            download: keep(fresh.download, state.set.download, state.found.download),
            alt_mode: fresh.alt_mode.or(state.set.alt_mode),
        },
        target,
        reason: reason.to_string(),
        ..state.clone()
    }
}

/// Performs throttle actions with one client.
pub struct Applier<'a> {
    client: &'a mut Qbittorrent,
}

impl<'a> Applier<'a> {
    pub fn new(client: &'a mut Qbittorrent) -> Applier<'a> {
        Applier { client }
    }

    /// Reads what is in force and plans the change; qBittorrent is not changed.
    pub fn prepare(
        &mut self,
        target: Target,
        reason: &str,
        now_unix_s: u64,
    ) -> Result<ThrottleState, QbitError> {
        let found = self.client.speed_state()?;
        Ok(ThrottleState {
            version: ThrottleState::VERSION,
            qbittorrent_url: self.client.url().to_string(),
            set: plan_changes(&found, &target),
            found,
            target,
            reason: reason.to_string(),
            since_unix_s: now_unix_s,
        })
    }

    /// Writes `state.set` (the mode first, then the limits).
    pub fn apply(&mut self, state: &ThrottleState) -> Result<(), QbitError> {
        if let Some(on) = state.set.alt_mode {
            self.write(Write::AltMode(on))?;
        }
        if let Some(up) = state.set.upload {
            self.write(Write::Upload(up))?;
        }
        if let Some(down) = state.set.download {
            self.write(Write::Download(down))?;
        }
        Ok(())
    }

    /// Prepare, `persist` the record, then apply it. Nothing is changed if `persist` fails.
    pub fn engage(
        &mut self,
        target: Target,
        reason: &str,
        now_unix_s: u64,
        persist: impl FnOnce(&ThrottleState) -> Result<(), String>,
    ) -> Result<ThrottleState, ApplyError> {
        let state = self.prepare(target, reason, now_unix_s)?;
        persist(&state).map_err(ApplyError::Persist)?;
        self.apply(&state)?;
        Ok(state)
    }

    /// While throttled: re-applies what qBittorrent reset (it restarted). When the user changed
    /// something by hand, nothing is written and the plan's `user_changed` says what: the
    /// caller forgets its state.
    pub fn verify(&mut self, state: &ThrottleState) -> Result<Plan, QbitError> {
        let now = self.client.speed_state()?;
        let plan = restore::check(&state.found, &state.set, &now);
        self.perform(&plan)?;
        Ok(plan)
    }

    /// Gives the bandwidth back (`idle_upload` replaces the upload limit found, for the
    /// original tool's config). After `Ok` the caller forgets its state, whatever the plan
    /// says: restored, already back, or the user's own choice left in place.
    pub fn release(
        &mut self,
        state: &ThrottleState,
        idle_upload: Option<RateLimit>,
    ) -> Result<Plan, QbitError> {
        let now = self.client.speed_state()?;
        let plan = restore::release(&state.found, &state.set, &now, idle_upload);
        self.perform(&plan)?;
        Ok(plan)
    }

    fn perform(&mut self, plan: &Plan) -> Result<(), QbitError> {
        plan.writes.iter().try_for_each(|w| self.write(*w))
    }

    fn write(&mut self, w: Write) -> Result<(), QbitError> {
        match w {
            Write::Upload(l) => self.client.set_upload_limit(l),
            Write::Download(l) => self.client.set_download_limit(l),
            Write::AltMode(on) => self.client.set_alt_speed_mode(on),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kib(k: u64) -> RateLimit {
        RateLimit::from_kib(k)
    }

    fn found(up: u64, down: u64, alt: bool) -> SpeedState {
        SpeedState {
            upload: kib(up),
            download: kib(down),
            alt_mode: alt,
        }
    }

    #[test]
    fn a_throttle_never_loosens_a_setting() {
        let t = Target::Limits {
            upload: kib(500),
            download: Some(kib(1000)),
        };
        let c = plan_changes(&found(0, 0, false), &t);
        assert_eq!((c.upload, c.download), (Some(kib(500)), Some(kib(1000))));
        let c = plan_changes(&found(200, 5000, false), &t);
        assert_eq!((c.upload, c.download), (None, Some(kib(1000))));
        let c = plan_changes(
            &found(500, 0, false),
            &Target::Limits {
                upload: kib(500),
                download: None,
            },
        );
        assert!(
            c.is_empty(),
            "equal is not tighter: nothing recorded as ours"
        );
        assert_eq!(
            plan_changes(&found(0, 0, true), &Target::AltSpeed),
            Changed::default()
        );
        assert_eq!(
            plan_changes(&found(0, 0, false), &Target::AltSpeed).alt_mode,
            Some(true)
        );
    }

    #[test]
    fn retarget_keeps_what_was_found_and_stays_restorable() {
        let state = ThrottleState {
            version: 1,
            qbittorrent_url: "http://q".into(),
            found: found(3000, 0, false),
            set: Changed {
                upload: Some(kib(1000)),
                ..Changed::default()
            },
            target: Target::Limits {
                upload: kib(1000),
                download: None,
            },
            reason: "1 remote stream".into(),
            since_unix_s: 7,
        };
        let moved = retarget(
            &state,
            Target::Limits {
                upload: kib(2000),
                download: None,
            },
            "2",
        );
        assert_eq!(moved.set.upload, Some(kib(2000)));
        assert_eq!((moved.found, moved.since_unix_s), (state.found, 7));
        // Looser than found: back to found, still ours to restore.
        let loose = retarget(
            &state,
            Target::Limits {
                upload: kib(5000),
                download: None,
            },
            "3",
        );
        assert_eq!(loose.set.upload, Some(kib(3000)));
    }

    #[test]
    fn the_state_round_trips_through_json_and_rejects_others() {
        let state = ThrottleState {
            version: ThrottleState::VERSION,
            qbittorrent_url: "http://127.0.0.1:8080".into(),
            found: found(0, 100, false),
            set: Changed {
                upload: Some(kib(500)),
                download: None,
                alt_mode: None,
            },
            target: Target::Limits {
                upload: kib(500),
                download: None,
            },
            reason: "1 remote stream: alice on Roku (wan)".into(),
            since_unix_s: 1_700_000_000,
        };
        let json = state.to_json().unwrap();
        assert_eq!(ThrottleState::from_json(&json).unwrap(), state);
        assert!(json.contains("\"upload\":512000"), "{json}");
        let alt = ThrottleState {
            target: Target::AltSpeed,
            set: Changed {
                alt_mode: Some(true),
                ..Changed::default()
            },
            ..state.clone()
        };
        assert_eq!(
            ThrottleState::from_json(&alt.to_json().unwrap()).unwrap(),
            alt
        );
        assert!(ThrottleState::from_json("{}")
            .unwrap_err()
            .contains("unreadable"));
        let v2 = json.replace("\"version\":1", "\"version\":2");
        assert!(ThrottleState::from_json(&v2)
            .unwrap_err()
            .contains("version 2"));
        assert_eq!(state.describe(), "upload 500 KiB/s (found unlimited)");
    }
}
