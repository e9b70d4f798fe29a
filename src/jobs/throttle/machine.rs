//! The throttle decision, pure: observations of the counted remote streams go in, an
//! [`Action`] comes out only when something must change.
//!
//! Hysteresis both ways, as the original: `streaming_threshold` consecutive observations with
//! a remote stream engage; `idle_threshold` consecutive observations without one release —
//! and only once `restore_delay_s` has passed since a stream was last seen, because
//! observations also come from Plex events (a burst of them during a pause/seek or a
//! next-episode gap must not flap the limit).
//!
//! In `budget` mode the limit follows the streams while throttled: capacity minus the sum of
//! their bitrates minus the safety margin, never below the floor, never below 1 KiB/s (`0`
//! means unlimited to qBittorrent). When the last stream has gone but the release is not due
//! yet, the limit stays as it is.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::streams::CountedStream;
use crate::clients::qbittorrent::RateLimit;
use crate::config::throttle::{Mode, ThrottleSettings};

/// A stream whose bitrate Plex does not report is assumed to use this much (a good 1080p
/// stream), so the budget errs on the side of the viewer.
pub const UNKNOWN_STREAM_KBPS: u64 = 20_000;

/// What qBittorrent should be set to while throttled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// Global limits (`limit` and `budget` modes); `download: None` leaves it untouched.
    Limits {
        upload: RateLimit,
        download: Option<RateLimit>,
    },
    /// The alternative speed mode on.
    AltSpeed,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Limits { upload, download } => {
                write!(f, "upload {upload}")?;
                if let Some(d) = download {
                    write!(f, ", download {d}")?;
                }
                Ok(())
            }
            Target::AltSpeed => f.write_str("alternative speed mode on"),
        }
    }
}

/// What the job must do now.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Throttle (or, in budget mode while throttled, move the limit) to the target.
    Apply { target: Target, reason: String },
    /// Give the bandwidth back.
    Release { reason: String },
}

/// Idle or throttling, for `status` and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    #[default]
    Idle,
    Streaming,
}

/// The numbers the decision needs, taken from the settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub mode: Mode,
    pub streaming_threshold: u32,
    pub idle_threshold: u32,
    pub restore_delay: Duration,
    pub streaming_upload: RateLimit,
    pub streaming_download: Option<RateLimit>,
    pub upload_capacity_kbps: u64,
    pub safety_margin_kbps: u64,
    pub floor: RateLimit,
}

impl Policy {
    pub fn from_settings(s: &ThrottleSettings) -> Policy {
        let mbit_to_kbps = |m: f64| (m.max(0.0) * 1000.0).round() as u64;
        Policy {
            mode: s.mode,
            streaming_threshold: s.streaming_threshold.max(1),
            idle_threshold: s.idle_threshold.max(1),
            restore_delay: Duration::from_secs(s.restore_delay_s),
            streaming_upload: RateLimit::from_kib(s.streaming_upload_kib_s.unwrap_or(1).max(1)),
            streaming_download: s
                .streaming_download_kib_s
                .map(|d| RateLimit::from_kib(d.max(1))),
            upload_capacity_kbps: s.upload_capacity_mbit_s.map_or(0, mbit_to_kbps),
            safety_margin_kbps: mbit_to_kbps(s.safety_margin_mbit_s),
            floor: RateLimit::from_kib(s.floor_kib_s.max(1)),
        }
    }

    /// The target for these streams.
    pub fn target(&self, streams: &[CountedStream]) -> Target {
        match self.mode {
            Mode::Limit => Target::Limits {
                upload: self.streaming_upload,
                download: self.streaming_download,
            },
            Mode::Budget => Target::Limits {
                upload: budget(
                    self.upload_capacity_kbps,
                    streams,
                    self.safety_margin_kbps,
                    self.floor,
                ),
                download: self.streaming_download,
            },
            Mode::AltSpeed => Target::AltSpeed,
        }
    }
}

/// Capacity minus the streams minus the margin, in whole KiB/s, never below `floor` nor
/// 1 KiB/s.
pub fn budget(
    capacity_kbps: u64,
    streams: &[CountedStream],
    margin_kbps: u64,
    floor: RateLimit,
) -> RateLimit {
    let used: u64 = streams
        .iter()
        .map(|s| s.kbps.unwrap_or(UNKNOWN_STREAM_KBPS))
        .fold(0u64, u64::saturating_add);
    let left_kbps = capacity_kbps
        .saturating_sub(used)
        .saturating_sub(margin_kbps);
    // kbit/s (1000 bit) → KiB/s (1024 byte), rounded down: never more than the line has.
    let kib = left_kbps.saturating_mul(1000) / 8 / 1024;
    RateLimit::from_kib(kib)
        .max(floor)
        .max(RateLimit::from_kib(1))
}

/// The hysteresis and the current target.
#[derive(Clone, Debug)]
pub struct Throttler {
    policy: Policy,
    phase: Phase,
    /// Consecutive observations contradicting the phase.
    streak: u32,
    last_stream_seen: Option<Instant>,
    applied: Option<Target>,
}

impl Throttler {
    pub fn new(policy: Policy) -> Throttler {
        Throttler {
            policy,
            phase: Phase::Idle,
            streak: 0,
            last_stream_seen: None,
            applied: None,
        }
    }

    /// A throttle left in force by a previous run (found in the store): start as streaming,
    /// so the streams now playing keep it and their absence releases it through the
    /// hysteresis.
    pub fn resume(policy: Policy, applied: Target, now: Instant) -> Throttler {
        Throttler {
            phase: Phase::Streaming,
            last_stream_seen: Some(now),
            applied: Some(applied),
            ..Throttler::new(policy)
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// What is in force, as far as this machine knows.
    pub fn applied(&self) -> Option<Target> {
        self.applied
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// One observation of the counted streams at `now`. Only a successful read of Plex's
    /// sessions is an observation: a failed one must not be passed as "no streams".
    pub fn observe(&mut self, now: Instant, streams: &[CountedStream]) -> Option<Action> {
        let streaming = !streams.is_empty();
        if streaming {
            self.last_stream_seen = Some(now);
        }
        match (self.phase, streaming) {
            (Phase::Idle, false) | (Phase::Streaming, true) => self.streak = 0,
            (Phase::Idle, true) | (Phase::Streaming, false) => {
                self.streak = self.streak.saturating_add(1)
            }
        }
        match self.phase {
            Phase::Idle if streaming && self.streak >= self.policy.streaming_threshold => {
                self.phase = Phase::Streaming;
                self.streak = 0;
                let target = self.policy.target(streams);
                self.applied = Some(target);
                Some(Action::Apply {
                    target,
                    reason: describe(streams),
                })
            }
            Phase::Streaming if streaming => {
                let target = self.policy.target(streams);
                if self.applied == Some(target) {
                    return None;
                }
                self.applied = Some(target);
                Some(Action::Apply {
                    target,
                    reason: describe(streams),
                })
            }
            Phase::Streaming => {
                let quiet_for = self
                    .last_stream_seen
                    .map_or(Duration::MAX, |t| now.saturating_duration_since(t));
                if self.streak < self.policy.idle_threshold || quiet_for < self.policy.restore_delay
                {
                    return None;
                }
                self.phase = Phase::Idle;
                self.streak = 0;
                self.applied = None;
                Some(Action::Release {
                    reason: format!(
                        "no remote stream for {} observations and {}s",
                        self.policy.idle_threshold,
                        quiet_for.as_secs()
                    ),
                })
            }
            Phase::Idle => None,
        }
    }
}

/// `2 remote streams: alice on Roku (wan), bob on iPhone (10.8.0.3 in remote_cidrs)`.
pub fn describe(streams: &[CountedStream]) -> String {
    let list: Vec<&str> = streams.iter().map(|s| s.reason.as_str()).collect();
    match streams.len() {
        0 => "no remote stream".into(),
        1 => format!("1 remote stream: {}", list.join(", ")),
        n => format!("{n} remote streams: {}", list.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(name: &str, kbps: Option<u64>) -> CountedStream {
        CountedStream {
            reason: format!("{name} on Roku (wan)"),
            kbps,
        }
    }

    fn policy(mode: Mode, restore_delay_s: u64) -> Policy {
        Policy::from_settings(&ThrottleSettings {
            qbittorrent_url: "http://127.0.0.1:8080".into(),
            mode,
            restore_delay_s,
            streaming_upload_kib_s: Some(500),
            upload_capacity_mbit_s: Some(40.0),
            safety_margin_mbit_s: 4.0,
            floor_kib_s: 100,
            ..ThrottleSettings::default()
        })
    }

    /// Runs observations one second apart; the actions' kinds, `.` for none.
    fn run(t: &mut Throttler, start: Instant, counts: &[usize]) -> String {
        counts
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let streams: Vec<_> = (0..n)
                    .map(|k| stream(&format!("u{k}"), Some(8000)))
                    .collect();
                match t.observe(start + Duration::from_secs(i as u64), &streams) {
                    None => '.',
                    Some(Action::Apply { .. }) => 'A',
                    Some(Action::Release { .. }) => 'R',
                }
            })
            .collect()
    }

    #[test]
    fn engages_after_the_streaming_threshold_and_releases_after_the_idle_threshold() {
        let mut t = Throttler::new(policy(Mode::Limit, 0));
        let now = Instant::now();
        assert_eq!(run(&mut t, now, &[1, 1, 1, 0, 0, 0, 0]), ".A...R.");
        assert_eq!(t.phase(), Phase::Idle);
    }

    #[test]
    fn a_pause_resume_burst_does_not_flap() {
        let mut t = Throttler::new(policy(Mode::Limit, 0));
        let now = Instant::now();
        // One observation with, one without: the streak resets every time.
        assert_eq!(run(&mut t, now, &[1, 0, 1, 0, 1, 0, 1, 1]), ".......A");
        assert_eq!(
            run(
                &mut t,
                now + Duration::from_secs(8),
                &[0, 1, 0, 0, 1, 0, 0, 1]
            ),
            "........"
        );
        assert_eq!(t.phase(), Phase::Streaming);
    }

    #[test]
    fn a_next_episode_gap_shorter_than_the_restore_delay_does_not_release() {
        let mut t = Throttler::new(policy(Mode::Limit, 30));
        let now = Instant::now();
        assert_eq!(run(&mut t, now, &[1, 1]), ".A");
        // Ten idle observations in 10 s (events), then the next episode starts.
        assert_eq!(
            run(&mut t, now + Duration::from_secs(2), &[0; 10]),
            ".........."
        );
        assert_eq!(run(&mut t, now + Duration::from_secs(12), &[1, 1]), "..");
        // A real end: released once 30 s have passed since the last stream and 3 observations.
        let end = now + Duration::from_secs(13);
        assert_eq!(t.observe(end + Duration::from_secs(29), &[]), None);
        assert_eq!(t.observe(end + Duration::from_secs(30), &[]), None);
        assert!(matches!(
            t.observe(end + Duration::from_secs(31), &[]),
            Some(Action::Release { .. })
        ));
    }

    #[test]
    fn actions_carry_the_target_and_the_reason() {
        let mut t = Throttler::new(policy(Mode::Limit, 0));
        let now = Instant::now();
        let s = [stream("alice", None), stream("bob", Some(1))];
        assert_eq!(t.observe(now, &s), None);
        assert_eq!(
            t.observe(now, &s),
            Some(Action::Apply {
                target: Target::Limits {
                    upload: RateLimit::from_kib(500),
                    download: None
                },
                reason: "2 remote streams: alice on Roku (wan), bob on Roku (wan)".into(),
            })
        );
        // Limit mode: the target does not depend on the streams, so nothing more to do.
        assert_eq!(t.observe(now, &s[..1]), None);
        let mut t = Throttler::new(policy(Mode::AltSpeed, 0));
        t.observe(now, &s);
        assert!(matches!(
            t.observe(now, &s),
            Some(Action::Apply {
                target: Target::AltSpeed,
                ..
            })
        ));
    }

    #[test]
    fn budget_follows_the_streams_and_holds_when_they_stop() {
        let mut t = Throttler::new(policy(Mode::Budget, 0));
        let now = Instant::now();
        let one = [stream("a", Some(8000))];
        let two = [stream("a", Some(8000)), stream("b", Some(10000))];
        t.observe(now, &one);
        let upload = |a: Option<Action>| match a {
            Some(Action::Apply {
                target: Target::Limits { upload, .. },
                ..
            }) => Some(upload),
            _ => None,
        };
        // 40 - 8 - 4 = 28 Mbit/s = 28,000,000 / 8 / 1024 = 3417 KiB/s.
        assert_eq!(
            upload(t.observe(now, &one)),
            Some(RateLimit::from_kib(3417))
        );
        // 40 - 18 - 4 = 18 Mbit/s → 2197 KiB/s.
        assert_eq!(
            upload(t.observe(now, &two)),
            Some(RateLimit::from_kib(2197))
        );
        assert_eq!(
            t.observe(now, &two),
            None,
            "same streams, same limit: no call"
        );
        assert_eq!(
            t.observe(now, &[]),
            None,
            "gone but not released: the limit holds"
        );
        assert_eq!(
            upload(t.observe(now, &one)),
            Some(RateLimit::from_kib(3417))
        );
    }

    #[test]
    fn budget_never_reaches_zero_and_respects_the_floor() {
        let floor = RateLimit::from_kib(100);
        let heavy = [stream("a", Some(50_000))];
        assert_eq!(budget(40_000, &heavy, 4_000, floor), floor);
        assert_eq!(
            budget(40_000, &heavy, 4_000, RateLimit(0)),
            RateLimit::from_kib(1)
        );
        assert_eq!(budget(0, &[], 0, RateLimit(0)), RateLimit::from_kib(1));
        // Unknown bitrates count as UNKNOWN_STREAM_KBPS.
        assert_eq!(
            budget(40_000, &[stream("a", None)], 0, floor),
            RateLimit::from_kib(20_000 * 1000 / 8 / 1024)
        );
        let many: Vec<_> = (0..10_000).map(|_| stream("x", Some(u64::MAX))).collect();
        assert_eq!(budget(u64::MAX, &many, u64::MAX, floor), floor);
    }

    #[test]
    fn a_resumed_throttle_releases_through_the_hysteresis() {
        let now = Instant::now();
        let target = Target::Limits {
            upload: RateLimit::from_kib(500),
            download: None,
        };
        let mut t = Throttler::resume(policy(Mode::Limit, 0), target, now);
        assert_eq!(t.phase(), Phase::Streaming);
        assert_eq!(t.observe(now, &[stream("a", None)]), None);
        assert_eq!(run(&mut t, now, &[0, 0, 0]), "..R");
    }
}
