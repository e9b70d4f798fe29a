//! The scrobble state machines, pure: filtered [`PlaybackEvent`]s and the passing of time go
//! in, the Trakt [`Call`]s to make come out. No clock, no I/O: time is the events' `at_ms` and
//! the `now_ms` given to [`Machines::tick`].
//!
//! **A play** is one viewing of one item by one user. Websocket events carry Plex's
//! `sessionKey` and Plex gives every playback its own, so a play is (user, item, session): the
//! same user and item under a new session key after a stop is a new play (a rewatch), and a
//! new item under the same session key is autoplay (the previous item's play gets its stop,
//! at its last progress, before the new start). Webhooks carry no session key: they join the
//! open play of (user, item) — the one of the same player when both name it — or open one; a
//! websocket event adopts an open play a webhook opened. Users match case-blind (the session
//! tracker and a webhook's `Account.title` may differ in case). `Call.play` is
//! `"{user}:{rating_key}:{at_ms of the play's first event}"`.
//!
//! The rules (the original's de-duplication; the numbers in [`Rules`] are settings):
//! - **start**: one until a pause or a stop — a `playing` event on a new or paused play
//!   starts it; again after a **seek**: the view offset jumped forward by more than the wall
//!   time elapsed since the previous report plus [`SEEK_SLACK_MS`], or back by more than
//!   [`SEEK_SLACK_MS`] (an offset that advances slower than the clock is buffering or a
//!   stall, never a seek). `buffering` is not a pause and starts nothing.
//! - **pause**: on `paused` while started. While already paused, another pause is the same
//!   pause repeated (Plex re-reports paused sessions): dropped when it comes within
//!   `pause_debounce_ms` of the last pause sent *or* at about the same progress
//!   (`pause_tolerance` points); a pause at another progress later (a seek while paused) is
//!   sent.
//! - **stop**: progress is view offset / duration, else the play's last known progress; a
//!   `watched_hint` (webhook `media.scrobble`: Plex says 90 % passed) makes it at least 90.
//!   Progress is clamped to 0–100. A stop at or above `watched_threshold` is **a play** and
//!   closes the play for good: every later stop, scrobble, pause or stale report of it is
//!   dropped — which is what makes the same viewing seen by websocket *and* webhook one play.
//!   A stop below the threshold is still sent (Trakt records it as a pause) and never counts.
//!   A stop of a play that never started is sent (after its start) only when it is a play;
//!   otherwise there is nothing to tell Trakt. A stop within `stop_debounce_ms` of the
//!   previous stop of a reopened play is dropped unless it crosses the threshold.
//! - **after a stop**: Plex ends a session with its `stopped`, so later events of that
//!   session are stale and dropped. Webhooks of (user, item) arriving within
//!   [`LATE_WINDOW_MS`] of a stop are late duplicates and dropped; later, a `media.play` opens
//!   a new play (a counted play only when the offset is unknown or near the start).
//! - **forced stop** ([`Machines::tick`]): never when the session listing failed (`None` is
//!   not "every session is gone"). A play with a session key gets its stop, at its last
//!   progress and marked `forced`, when Plex's listing lacks its session in two listings at
//!   least [`ABSENT_SPACING_MS`] apart, both taken [`ABSENT_GRACE_MS`] or more after its last
//!   event (a listing older than the session's first report does not count) — paused or
//!   not — or when it has been silent `forced_stop_after_ms`. A play only webhooks know
//!   (webhooks say nothing while playing) is allowed its item's whole duration
//!   ([`WEBHOOK_SILENCE_MS`] when unknown) plus `forced_stop_after_ms` of silence. After a
//!   forced stop the session may come back: a play not yet counted reopens (a start again on
//!   `playing`); a counted one reopens nothing unless the offset went back near the start
//!   ([`NEAR_START_PERCENT`]): a rewatch, a new play.
//! - **memory**: closed plays are forgotten [`CLOSED_KEEP_MS`] after their stop; at most
//!   [`MAX_PLAYS`] plays are kept: beyond, the oldest closed one goes, else the open play
//!   silent the longest (logged: it will get no stop). Lookups scan this bounded list.

use std::collections::HashSet;

use super::event::WATCHED_HINT_PERCENT;
use super::{Call, ItemFacts, PlayState, PlaybackEvent, Rules};
use crate::clients::trakt::ScrobbleAction;

/// How far beyond the elapsed wall time the offset must jump to be a seek.
pub const SEEK_SLACK_MS: i64 = 30_000;
/// "Near the start", for a rewatch after a counted play.
pub const NEAR_START_PERCENT: f64 = 5.0;
/// "Near the start" when the item's duration is unknown.
pub const NEAR_START_MS: i64 = 120_000;
/// Webhooks of an item arriving this soon after its stop are late duplicates.
pub const LATE_WINDOW_MS: u64 = 60_000;
/// A closed play is remembered this long (to drop late duplicates and stale reports).
pub const CLOSED_KEEP_MS: u64 = 6 * 3_600_000;
/// Silence allowed to a webhook-only play whose item's duration is unknown.
pub const WEBHOOK_SILENCE_MS: u64 = 4 * 3_600_000;
/// At most this many plays are followed or remembered.
pub const MAX_PLAYS: usize = 2_048;
/// Two absences from Plex's listing count only this far apart.
pub const ABSENT_SPACING_MS: u64 = 1_000;
/// A listing counts as an absence only this long after the play's last event.
pub const ABSENT_GRACE_MS: u64 = 5_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Seen, nothing sent yet (or reopened after a forced stop).
    New,
    Started,
    Paused,
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Close {
    /// Plex said stopped (or autoplay moved on): the session is over.
    Stopped,
    /// We made the stop up: the session may come back.
    Forced,
}

#[derive(Clone, Debug)]
struct Play {
    id: String,
    user: String,
    rating_key: String,
    session_key: Option<String>,
    client_id: Option<String>,
    phase: Phase,
    /// A start was sent for this play (so a stop may follow).
    ever_started: bool,
    /// A stop at or above the threshold was sent: a play on Trakt.
    counted: bool,
    closed: Option<(u64, Close)>,
    last_event_ms: u64,
    /// The last view offset and when it was reported.
    offset: Option<(i64, u64)>,
    duration_ms: Option<i64>,
    progress: f64,
    /// Plex said 90 % passed (`media.scrobble`).
    hinted: bool,
    last_pause: Option<(u64, f64)>,
    last_stop: Option<(u64, f64)>,
    /// Consecutive listings without its session, and when the last one was counted.
    absent: u32,
    absent_at_ms: u64,
    item: Option<ItemFacts>,
}

impl Play {
    fn is_open(&self) -> bool {
        self.closed.is_none()
    }

    fn call(&self, action: ScrobbleAction, at_ms: u64, forced: bool) -> Call {
        Call {
            user: self.user.clone(),
            rating_key: self.rating_key.clone(),
            play: self.id.clone(),
            action,
            progress: self.progress,
            at_ms,
            forced,
            item: self.item.clone(),
        }
    }

    /// A forced-stopped play the session came back to, or a play that never sent anything:
    /// follow it again.
    fn reopen(&mut self) {
        self.closed = None;
        self.phase = if self.ever_started {
            Phase::Paused
        } else {
            Phase::New
        };
        self.absent = 0;
    }

    fn progress_at(&self, offset: i64, ev: &PlaybackEvent) -> Option<f64> {
        let duration = ev
            .item
            .as_ref()
            .and_then(|i| i.duration_ms)
            .or(self.duration_ms)
            .filter(|d| *d > 0)?;
        Some(percent(offset, duration))
    }

    fn near_start(&self, ev: &PlaybackEvent) -> bool {
        match ev.view_offset_ms {
            None => false,
            Some(o) => match self.progress_at(o, ev) {
                Some(p) => p <= NEAR_START_PERCENT,
                None => o <= NEAR_START_MS,
            },
        }
    }
}

fn percent(offset: i64, duration: i64) -> f64 {
    let p = offset as f64 * 100.0 / duration as f64;
    clamp((p * 100.0).round() / 100.0)
}

fn clamp(p: f64) -> f64 {
    if p.is_finite() {
        p.clamp(0.0, 100.0)
    } else {
        0.0
    }
}

fn compatible(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Every play being followed (and the recently closed ones), with the rules.
pub struct Machines {
    rules: Rules,
    plays: Vec<Play>,
    suppressed: u64,
    collisions: u64,
}

impl Machines {
    pub fn new(rules: Rules) -> Machines {
        Machines {
            rules,
            plays: Vec::new(),
            suppressed: 0,
            collisions: 0,
        }
    }

    /// New rules (a configuration reload); the plays are kept.
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
    }

    /// One event that passed the filters, its viewer resolved: the calls to make, in order.
    pub fn on_event(&mut self, user: &str, ev: &PlaybackEvent) -> Vec<Call> {
        let mut out = Vec::new();
        let user = user.trim();
        if user.is_empty() {
            return out; // the filters never let an unknown viewer through; belt and braces
        }
        let found = match &ev.session_key {
            Some(sk) => self.locate_session(user, sk, ev, &mut out),
            None => self.locate_webhook(user, ev, &mut out),
        };
        if let Some(i) = found {
            self.apply(i, ev, &mut out);
            self.bound(i);
        }
        out
    }

    /// Time passes: forced stops (see the module's rules) and forgetting. `listed`: the
    /// session keys Plex lists now, `None` when the listing failed.
    pub fn tick(&mut self, now_ms: u64, listed: Option<&HashSet<String>>) -> Vec<Call> {
        self.plays.retain(|p| match p.closed {
            Some((at, _)) => now_ms.saturating_sub(at) < CLOSED_KEEP_MS,
            None => true,
        });
        let mut out = Vec::new();
        let Some(listed) = listed else {
            return out;
        };
        let forced_after = self.rules.forced_stop_after_ms;
        for i in 0..self.plays.len() {
            let p = &mut self.plays[i];
            if !p.is_open() {
                continue;
            }
            let silent = now_ms.saturating_sub(p.last_event_ms);
            let due = match &p.session_key {
                Some(sk) if listed.contains(sk) => {
                    p.absent = 0;
                    silent >= forced_after
                }
                Some(_) => {
                    if silent >= ABSENT_GRACE_MS
                        && (p.absent == 0
                            || now_ms >= p.absent_at_ms.saturating_add(ABSENT_SPACING_MS))
                    {
                        p.absent += 1;
                        p.absent_at_ms = now_ms;
                    }
                    p.absent >= 2 || silent >= forced_after
                }
                None => {
                    let allowed = p
                        .duration_ms
                        .and_then(|d| u64::try_from(d).ok())
                        .unwrap_or(WEBHOOK_SILENCE_MS);
                    silent >= forced_after.saturating_add(allowed)
                }
            };
            if due {
                self.stop(i, now_ms, true, &mut out);
            }
        }
        out
    }

    /// Plays being followed (not closed).
    pub fn active(&self) -> usize {
        self.plays.iter().filter(|p| p.is_open()).count()
    }

    /// Duplicates and stale events dropped so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// The play a websocket event belongs to (`None`: dropped).
    fn locate_session(
        &mut self,
        user: &str,
        sk: &str,
        ev: &PlaybackEvent,
        out: &mut Vec<Call>,
    ) -> Option<usize> {
        let same = self.latest(|p| {
            p.session_key.as_deref() == Some(sk)
                && p.user.eq_ignore_ascii_case(user)
                && p.rating_key == ev.rating_key
        });
        if let Some(i) = same {
            let p = &mut self.plays[i];
            match p.closed {
                None => return Some(i),
                Some(_) if !p.ever_started => {
                    p.reopen();
                    return Some(i);
                }
                Some((_, Close::Forced)) if !p.counted => {
                    p.reopen();
                    return Some(i);
                }
                Some((_, Close::Forced))
                    if p.near_start(ev)
                        && matches!(ev.state, PlayState::Playing | PlayState::Buffering) => {}
                Some(_) => {
                    self.suppressed += 1;
                    return None;
                }
            }
        }
        // Autoplay: another item (or viewer) on this session ends the previous play.
        for i in 0..self.plays.len() {
            if self.plays[i].is_open() && self.plays[i].session_key.as_deref() == Some(sk) {
                self.stop(i, ev.at_ms, false, out);
            }
        }
        let webhook_play = self.latest(|p| {
            p.session_key.is_none()
                && p.user.eq_ignore_ascii_case(user)
                && p.rating_key == ev.rating_key
                && compatible(&p.client_id, &ev.client_id)
        });
        if let Some(i) = webhook_play {
            let p = &mut self.plays[i];
            if p.is_open() {
                p.session_key = Some(sk.to_string());
                return Some(i);
            }
            if p.counted && self.late(i, ev.at_ms) {
                self.suppressed += 1;
                return None;
            }
        }
        Some(self.open(user, ev))
    }

    /// The play a webhook event belongs to (`None`: dropped).
    fn locate_webhook(
        &mut self,
        user: &str,
        ev: &PlaybackEvent,
        out: &mut Vec<Call>,
    ) -> Option<usize> {
        let matches = |p: &Play| {
            p.user.eq_ignore_ascii_case(user)
                && p.rating_key == ev.rating_key
                && compatible(&p.client_id, &ev.client_id)
        };
        if let Some(i) = self.latest(|p| p.is_open() && matches(p)) {
            return Some(i);
        }
        if let Some(i) = self.latest(matches) {
            let late = self.late(i, ev.at_ms);
            let p = &mut self.plays[i];
            let forced = matches!(p.closed, Some((_, Close::Forced)));
            if !p.ever_started || (forced && !p.counted) {
                p.reopen();
                return Some(i);
            }
            let rewatch = if p.counted {
                ev.state == PlayState::Playing
                    && !ev.watched_hint
                    && !late
                    && (ev.view_offset_ms.is_none() || p.near_start(ev))
            } else {
                !late
            };
            if !rewatch {
                self.suppressed += 1;
                return None;
            }
        }
        // Autoplay seen by webhooks only: the same player starting another item.
        if ev.state == PlayState::Playing && ev.client_id.is_some() {
            for i in 0..self.plays.len() {
                let p = &self.plays[i];
                if p.is_open()
                    && p.session_key.is_none()
                    && p.user.eq_ignore_ascii_case(user)
                    && p.client_id == ev.client_id
                    && p.rating_key != ev.rating_key
                {
                    self.stop(i, ev.at_ms, false, out);
                }
            }
        }
        Some(self.open(user, ev))
    }

    /// The play `i` closed within [`LATE_WINDOW_MS`] of `at_ms`.
    fn late(&self, i: usize, at_ms: u64) -> bool {
        match self.plays[i].closed {
            Some((closed, _)) => at_ms.saturating_sub(closed) < LATE_WINDOW_MS,
            None => false,
        }
    }

    /// The most recently active play matching `f`.
    fn latest(&self, f: impl Fn(&Play) -> bool) -> Option<usize> {
        self.plays
            .iter()
            .enumerate()
            .filter(|(_, p)| f(p))
            .max_by_key(|(_, p)| p.last_event_ms)
            .map(|(i, _)| i)
    }

    fn open(&mut self, user: &str, ev: &PlaybackEvent) -> usize {
        let mut id = format!("{user}:{}:{}", ev.rating_key, ev.at_ms);
        if self.plays.iter().any(|p| p.id == id) {
            // Two plays of one item by one user in the same millisecond (two players): a
            // suffix no other play has, found in one pass.
            self.collisions += 1;
            id = format!("{id}.{}", self.collisions);
        }
        self.plays.push(Play {
            id,
            user: user.to_string(),
            rating_key: ev.rating_key.clone(),
            session_key: ev.session_key.clone(),
            client_id: ev.client_id.clone(),
            phase: Phase::New,
            ever_started: false,
            counted: false,
            closed: None,
            last_event_ms: ev.at_ms,
            offset: None,
            duration_ms: None,
            progress: 0.0,
            hinted: false,
            last_pause: None,
            last_stop: None,
            absent: 0,
            absent_at_ms: 0,
            item: None,
        });
        self.plays.len() - 1
    }

    /// The event applied to play `i`.
    fn apply(&mut self, i: usize, ev: &PlaybackEvent, out: &mut Vec<Call>) {
        let rules = self.rules.clone();
        let p = &mut self.plays[i];
        p.last_event_ms = p.last_event_ms.max(ev.at_ms);
        p.absent = 0;
        if let Some(item) = &ev.item {
            if item.duration_ms.is_some_and(|d| d > 0) {
                p.duration_ms = item.duration_ms;
            }
            p.item = Some(item.clone());
        }
        if p.client_id.is_none() {
            p.client_id.clone_from(&ev.client_id);
        }
        let seek = match (p.phase, ev.state, p.offset, ev.view_offset_ms) {
            (Phase::Started, PlayState::Playing, Some((o0, t0)), Some(o1)) => {
                let elapsed = i64::try_from(ev.at_ms.saturating_sub(t0)).unwrap_or(i64::MAX);
                o1 > o0.saturating_add(elapsed).saturating_add(SEEK_SLACK_MS)
                    || o1 < o0.saturating_sub(SEEK_SLACK_MS)
            }
            _ => false,
        };
        if let Some(o) = ev.view_offset_ms {
            p.offset = Some((o, ev.at_ms));
            if let Some(pr) = p.progress_at(o, ev) {
                p.progress = pr;
            }
        }
        p.hinted |= ev.watched_hint;
        if p.hinted {
            p.progress = p.progress.max(WATCHED_HINT_PERCENT);
        }
        p.progress = clamp(p.progress);
        match ev.state {
            PlayState::Playing => {
                if matches!(p.phase, Phase::New | Phase::Paused) || seek {
                    p.phase = Phase::Started;
                    p.ever_started = true;
                    out.push(p.call(ScrobbleAction::Start, ev.at_ms, false));
                }
            }
            PlayState::Buffering => {}
            PlayState::Paused => match p.phase {
                Phase::Started => {
                    p.phase = Phase::Paused;
                    p.last_pause = Some((ev.at_ms, p.progress));
                    out.push(p.call(ScrobbleAction::Pause, ev.at_ms, false));
                }
                Phase::Paused => match p.last_pause {
                    Some((t, pr))
                        if ev.at_ms.saturating_sub(t) < rules.pause_debounce_ms
                            || (p.progress - pr).abs() <= rules.pause_tolerance =>
                    {
                        self.suppressed += 1;
                    }
                    Some(_) => {
                        p.last_pause = Some((ev.at_ms, p.progress));
                        out.push(p.call(ScrobbleAction::Pause, ev.at_ms, false));
                    }
                    None => {}
                },
                Phase::New => p.phase = Phase::Paused,
                Phase::Closed => {}
            },
            PlayState::Stopped => self.stop(i, ev.at_ms, false, out),
        }
    }

    /// Play `i` stops at its last progress (a stop from Plex, autoplay or a forced one).
    fn stop(&mut self, i: usize, at_ms: u64, forced: bool, out: &mut Vec<Call>) {
        let threshold = self.rules.watched_threshold;
        let debounce = self.rules.stop_debounce_ms;
        let p = &mut self.plays[i];
        if p.counted {
            self.suppressed += 1;
            return;
        }
        let close = if forced {
            Close::Forced
        } else {
            Close::Stopped
        };
        let pr = p.progress;
        let is_play = pr >= threshold;
        if let Some((t, prev)) = p.last_stop {
            if at_ms.saturating_sub(t) < debounce && !(is_play && prev < threshold) {
                self.suppressed += 1;
                p.phase = Phase::Closed;
                p.closed = Some((at_ms, close));
                return;
            }
        }
        if !p.ever_started && is_play {
            p.ever_started = true;
            out.push(p.call(ScrobbleAction::Start, at_ms, forced));
        }
        if p.ever_started {
            out.push(p.call(ScrobbleAction::Stop, at_ms, forced));
            p.last_stop = Some((at_ms, pr));
            p.counted = is_play;
        }
        p.phase = Phase::Closed;
        p.closed = Some((at_ms, close));
    }

    /// Keeps at most [`MAX_PLAYS`]; never forgets `keep` (the play just handled).
    fn bound(&mut self, mut keep: usize) {
        while self.plays.len() > MAX_PLAYS {
            let victim = self
                .plays
                .iter()
                .enumerate()
                .filter(|(i, p)| *i != keep && !p.is_open())
                .min_by_key(|(_, p)| p.closed.map_or(0, |(at, _)| at))
                .map(|(i, _)| i)
                .or_else(|| {
                    let i = self
                        .plays
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != keep)
                        .min_by_key(|(_, p)| p.last_event_ms)
                        .map(|(i, _)| i)?;
                    tracing::warn!(
                        play = %self.plays[i].id,
                        "scrobble: more than {MAX_PLAYS} plays at once; forgetting the one silent the longest (it gets no stop)"
                    );
                    Some(i)
                });
            match victim {
                Some(i) => {
                    self.plays.remove(i);
                    if i < keep {
                        keep -= 1;
                    }
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
