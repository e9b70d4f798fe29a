//! Giving the bandwidth back, as pure decisions over three readings: what we found before
//! throttling, what we set, and what qBittorrent says now.
//!
//! For each setting we changed:
//! - now == what we set: still ours — restore it (on release) / nothing to do (while throttled);
//! - now == what we found: qBittorrent went back to its configuration (it restarted) —
//!   nothing to restore / re-apply ours while throttled;
//! - anything else: the user changed it by hand — their choice stands; we log it and forget
//!   our state instead of overwriting it.
//!
//! The limits qBittorrent reports are those of the mode in force, so in `limit`/`budget`
//! mode a different alternative-mode reading means the user switched modes: their choice too.

use serde::{Deserialize, Serialize};

use crate::clients::qbittorrent::{RateLimit, SpeedState};

/// What we changed; `None`: left as found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    pub upload: Option<RateLimit>,
    pub download: Option<RateLimit>,
    /// `Some(true)`: we turned the alternative mode on.
    pub alt_mode: Option<bool>,
}

impl Changed {
    pub fn is_empty(&self) -> bool {
        self.upload.is_none() && self.download.is_none() && self.alt_mode.is_none()
    }
}

/// One setting to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    Upload(RateLimit),
    Download(RateLimit),
    AltMode(bool),
}

impl std::fmt::Display for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Write::Upload(l) => write!(f, "upload limit {l}"),
            Write::Download(l) => write!(f, "download limit {l}"),
            Write::AltMode(on) => write!(
                f,
                "alternative speed mode {}",
                if *on { "on" } else { "off" }
            ),
        }
    }
}

/// The verdict on a reading.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// What to write, in this order.
    pub writes: Vec<Write>,
    /// The user changed something by hand: these sentences say what; we stop managing it and,
    /// on release, leave everything as it is.
    pub user_changed: Vec<String>,
}

/// While throttled: is our setting still in force? Re-apply what qBittorrent reset; if the
/// user changed anything, `user_changed` says what and `writes` is empty.
pub fn check(found: &SpeedState, set: &Changed, now: &SpeedState) -> Plan {
    let user_changed = user_changes(found, set, now);
    if !user_changed.is_empty() {
        return Plan {
            writes: Vec::new(),
            user_changed,
        };
    }
    let mut writes = Vec::new();
    // The mode first: the limits below are read and written in the mode in force.
    if let Some(on) = set.alt_mode {
        if now.alt_mode != on {
            writes.push(Write::AltMode(on));
        }
    }
    if let Some(up) = set.upload {
        if now.upload != up {
            writes.push(Write::Upload(up));
        }
    }
    if let Some(down) = set.download {
        if now.download != down {
            writes.push(Write::Download(down));
        }
    }
    Plan {
        writes,
        user_changed,
    }
}

/// On release: what to put back. `idle_upload` (the original tool's `idle_upload_kbps`)
/// replaces the upload limit we found. If the user changed anything, nothing is written.
pub fn release(
    found: &SpeedState,
    set: &Changed,
    now: &SpeedState,
    idle_upload: Option<RateLimit>,
) -> Plan {
    let user_changed = user_changes(found, set, now);
    if !user_changed.is_empty() {
        return Plan {
            writes: Vec::new(),
            user_changed,
        };
    }
    let mut writes = Vec::new();
    if set.upload.is_some() {
        let back = idle_upload.unwrap_or(found.upload);
        if now.upload != back {
            writes.push(Write::Upload(back));
        }
    }
    if set.download.is_some() && now.download != found.download {
        writes.push(Write::Download(found.download));
    }
    // The mode last: limits restored above belong to the mode they were found in.
    if set.alt_mode.is_some() && now.alt_mode != found.alt_mode {
        writes.push(Write::AltMode(found.alt_mode));
    }
    Plan {
        writes,
        user_changed,
    }
}

/// Settings that are neither ours nor the original, in words.
fn user_changes(found: &SpeedState, set: &Changed, now: &SpeedState) -> Vec<String> {
    let mut out = Vec::new();
    let mode = |on: bool| if on { "on" } else { "off" };
    match set.alt_mode {
        Some(ours) if now.alt_mode != ours && now.alt_mode != found.alt_mode => {
            // Only two values: unreachable unless `found == ours`, kept for completeness.
            out.push(format!("alternative speed mode is {}", mode(now.alt_mode)));
        }
        None if (set.upload.is_some() || set.download.is_some())
            && now.alt_mode != found.alt_mode =>
        {
            out.push(format!(
                "alternative speed mode was switched {} by hand (it was {} when we throttled)",
                mode(now.alt_mode),
                mode(found.alt_mode)
            ));
            return out;
        }
        _ => {}
    }
    for (what, ours, was, is) in [
        ("upload", set.upload, found.upload, now.upload),
        ("download", set.download, found.download, now.download),
    ] {
        if let Some(ours) = ours {
            if is != ours && is != was {
                out.push(format!(
                    "{what} limit changed by hand to {is} (we set {ours}, found {was})"
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kib(k: u64) -> RateLimit {
        RateLimit::from_kib(k)
    }

    fn state(up: u64, down: u64, alt: bool) -> SpeedState {
        SpeedState {
            upload: kib(up),
            download: kib(down),
            alt_mode: alt,
        }
    }

    const LIMITS: Changed = Changed {
        upload: Some(RateLimit(500 * 1024)),
        download: Some(RateLimit(2000 * 1024)),
        alt_mode: None,
    };

    #[test]
    fn release_restores_what_is_still_ours() {
        let found = state(0, 10_000, false);
        let plan = release(&found, &LIMITS, &state(500, 2000, false), None);
        assert_eq!(
            plan.writes,
            [Write::Upload(kib(0)), Write::Download(kib(10_000))]
        );
        assert!(plan.user_changed.is_empty());
        // The original's idle value replaces what was found.
        let plan = release(&found, &LIMITS, &state(500, 2000, false), Some(kib(800)));
        assert_eq!(
            plan.writes,
            [Write::Upload(kib(800)), Write::Download(kib(10_000))]
        );
    }

    #[test]
    fn release_after_a_qbittorrent_restart_writes_nothing() {
        let found = state(0, 10_000, false);
        assert_eq!(release(&found, &LIMITS, &found, None), Plan::default());
        // …unless the original's idle value differs from what qBittorrent came back with.
        assert_eq!(
            release(&found, &LIMITS, &found, Some(kib(800))).writes,
            [Write::Upload(kib(800))]
        );
    }

    #[test]
    fn a_limit_changed_by_hand_is_left_alone() {
        let found = state(0, 10_000, false);
        let now = state(123, 2000, false);
        for plan in [
            release(&found, &LIMITS, &now, None),
            check(&found, &LIMITS, &now),
        ] {
            assert!(plan.writes.is_empty(), "{plan:?}");
            assert_eq!(
                plan.user_changed,
                ["upload limit changed by hand to 123 KiB/s (we set 500 KiB/s, found unlimited)"]
            );
        }
    }

    #[test]
    fn switching_the_alternative_mode_by_hand_is_the_users_choice() {
        let found = state(0, 0, false);
        let set = Changed {
            upload: Some(kib(500)),
            ..Changed::default()
        };
        // With alt mode on, uploadLimit reports the alternative limit.
        let plan = release(&found, &set, &state(10, 0, true), None);
        assert!(plan.writes.is_empty());
        assert!(
            plan.user_changed[0].contains("switched on by hand"),
            "{plan:?}"
        );
    }

    #[test]
    fn check_reapplies_what_qbittorrent_reset() {
        let found = state(0, 10_000, false);
        assert_eq!(
            check(&found, &LIMITS, &state(500, 2000, false)),
            Plan::default()
        );
        assert_eq!(
            check(&found, &LIMITS, &found).writes,
            [Write::Upload(kib(500)), Write::Download(kib(2000))]
        );
        assert_eq!(
            check(&found, &LIMITS, &state(500, 10_000, false)).writes,
            [Write::Download(kib(2000))]
        );
    }

    #[test]
    fn alt_speed_mode_is_restored_alone() {
        let found = state(300, 0, false);
        let set = Changed {
            alt_mode: Some(true),
            ..Changed::default()
        };
        // The limits read differently in alt mode: not our business in alt_speed mode.
        assert_eq!(
            release(&found, &set, &state(10, 5, true), None).writes,
            [Write::AltMode(false)]
        );
        assert_eq!(release(&found, &set, &found, None), Plan::default());
        assert_eq!(check(&found, &set, &found).writes, [Write::AltMode(true)]);
        assert_eq!(check(&found, &set, &state(10, 5, true)), Plan::default());
    }

    #[test]
    fn nothing_changed_means_nothing_to_do() {
        let found = state(100, 0, true);
        let none = Changed::default();
        assert!(none.is_empty());
        assert_eq!(
            release(&found, &none, &state(1, 2, false), None),
            Plan::default()
        );
        assert_eq!(check(&found, &none, &state(1, 2, false)), Plan::default());
    }
}
