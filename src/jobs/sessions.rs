//! Who is playing now: polls `/status/sessions` soon after each playback or transcode
//! notification (debounced 300 ms, at most one poll per 900 ms), again 250 ms after a
//! consumer asks for a confirmation (the throttle's first sight of a remote stream), and as a
//! backstop for a dropped websocket every `enforce.guard_interval_s` (or
//! `throttle.poll_interval_s` when the throttle is on and polls more often). Each listing
//! (read with the context's interactive client: at most 8 s) is published as a snapshot for
//! every job (`ctx.sessions`). Notifications also update the tracker between polls, so the
//! shim's viewer question is answered from memory. A failed poll publishes nothing: "Plex did
//! not answer" is never "nobody is playing". The loop sleeps until its next deadline: while
//! nothing plays it wakes only for the backstop and, every 500 ms, to see a shutdown (and a
//! confirmation request, looked for 250 ms after each poll).

use std::time::{Duration, Instant};

use anyhow::Result;

use super::Job;
use crate::daemon::ctx::Ctx;
use crate::daemon::lifecycle::Shutdown;
use crate::plex::events::Event;
use crate::plex::sessions::parse_sessions;

/// How soon after a notification the listing is read (Plex lists a new transcode a moment
/// after announcing it).
const DEBOUNCE: Duration = Duration::from_millis(300);
/// The least time between two polls.
const SPACING: Duration = Duration::from_millis(900);
/// A confirmation asked by a consumer: this soon after the listing it confirms.
const CONFIRM: Duration = Duration::from_millis(250);
/// The longest sleep (how soon a shutdown is seen).
const TICK: Duration = Duration::from_millis(500);

/// The backstop between two polls when no notification asks for one.
fn backstop(cfg: &crate::config::Config) -> Duration {
    let guard = cfg.enforce.guard_interval_s.max(1);
    let s = if cfg.throttle.enabled() {
        guard.min(cfg.throttle.poll_interval_s.max(1))
    } else {
        guard
    };
    Duration::from_secs(s)
}

/// A notification worth a fresh listing: a transcode starting, or a playback the listing does
/// not show as it is now (a new session, a state change). `known` is the state the tracker
/// holds for the notification's session. Plex repeats `playing` every few seconds per
/// session; those repeats cost no poll.
fn interesting(e: &Event, known: Option<&str>) -> bool {
    match e {
        Event::TranscodeSession { phase, .. } => phase != "end",
        Event::Playing {
            transcode_session,
            state,
            ..
        } => transcode_session.is_some() || known != Some(state.as_str()),
        _ => false,
    }
}

/// When the loop must look again: the next poll's own time (and the spacing after the last
/// poll), a debounced notification, a confirmation asked for; at most a tick away. A
/// notification wakes it earlier. A consumer asks for a confirmation while it handles the
/// listing just published (the throttle, at once), and nothing wakes this loop for that: so it
/// looks for the request when the confirmation could be due, `CONFIRM` after the poll, not up
/// to a whole tick later (that tick was 250 ms of the throttle's ≤ 1 s reaction budget).
fn wake_at(
    now: Instant,
    next_poll: Instant,
    last_poll: Option<Instant>,
    dirty: Option<Instant>,
    confirm: Option<Instant>,
) -> Instant {
    let spaced = |spacing: Duration| last_poll.map_or(now, |l| l + spacing);
    let mut until = (now + TICK).min(next_poll.max(spaced(SPACING)));
    if let Some(d) = dirty {
        until = until.min((d + DEBOUNCE).max(spaced(SPACING)));
    }
    if let Some(c) = confirm {
        until = until.min(c.max(spaced(CONFIRM)));
    }
    if let Some(asked) = last_poll.map(|l| l + CONFIRM).filter(|c| *c > now) {
        until = until.min(asked);
    }
    until
}

pub fn job(ctx: &Ctx) -> Result<Option<Job>> {
    let ctx = ctx.clone();
    let events = std::sync::Mutex::new(ctx.events.subscribe());
    Ok(Some(Box::new(move |sd: &Shutdown| run(&ctx, &events, sd))))
}

fn run(
    ctx: &Ctx,
    events: &std::sync::Mutex<std::sync::mpsc::Receiver<Event>>,
    shutdown: &Shutdown,
) -> Result<()> {
    let events = events.lock().unwrap_or_else(|e| e.into_inner());
    let mut next_poll = Instant::now();
    let mut dirty: Option<Instant> = None;
    let mut last_poll: Option<Instant> = None;
    let mut last_error: Option<String> = None;
    let mut confirm: Option<Instant> = None;
    while !shutdown.is_set() {
        let now = Instant::now();
        let until = wake_at(now, next_poll, last_poll, dirty, confirm);
        let wait = until
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        if let Ok(e) = events.recv_timeout(wait) {
            let known = match &e {
                Event::Playing { session_key, .. } => ctx.sessions.tracker.state_of(session_key),
                _ => None,
            };
            ctx.sessions.tracker.on_event(&e);
            if interesting(&e, known.as_deref()) {
                dirty.get_or_insert_with(Instant::now);
            }
        }
        let now = Instant::now();
        if ctx.sessions.take_confirmation() {
            confirm.get_or_insert(last_poll.map_or(now, |t| t + CONFIRM).max(now));
        }
        let confirming = confirm.is_some_and(|c| now >= c);
        let spacing = if confirming { CONFIRM } else { SPACING };
        let spaced = last_poll.is_none_or(|t| now.saturating_duration_since(t) >= spacing);
        let due = now >= next_poll || dirty.is_some_and(|t| t.elapsed() >= DEBOUNCE) || confirming;
        if !due || !spaced {
            continue;
        }
        let cfg = ctx.config();
        next_poll = now + backstop(&cfg);
        let cause = dirty.take();
        confirm = None;
        last_poll = Some(now);
        let Some(plex) = ctx.plex_interactive() else {
            continue;
        };
        match plex.sessions(None) {
            Ok(list) => {
                if last_error.take().is_some() {
                    tracing::info!("session poll: Plex answers again");
                }
                ctx.sessions.publish_caused(parse_sessions(&list), cause);
            }
            Err(e) => {
                let msg = e.to_string();
                if last_error.as_ref() != Some(&msg) {
                    tracing::warn!("session poll: {msg}");
                }
                last_error = Some(msg);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playing(state: &str, transcode: Option<&str>) -> Event {
        Event::Playing {
            session_key: "7".into(),
            client: None,
            rating_key: None,
            state: state.into(),
            view_offset_ms: None,
            transcode_session: transcode.map(String::from),
        }
    }

    #[test]
    fn after_a_poll_the_loop_looks_for_a_confirmation_request_when_it_could_be_due() {
        let t = Instant::now();
        let backstop = t + Duration::from_secs(10);
        // Just polled, nothing pending: wake when a confirmation asked now could be due, not
        // a tick later.
        assert_eq!(wake_at(t, backstop, Some(t), None, None), t + CONFIRM);
        let later = t + Duration::from_millis(100);
        assert_eq!(wake_at(later, backstop, Some(t), None, None), t + CONFIRM);
        // Past that point, a request is seen at the next tick at the latest, as before.
        let past = t + Duration::from_millis(300);
        assert_eq!(wake_at(past, backstop, Some(t), None, None), past + TICK);
        // A confirmation asked: at its time, after the spacing from the last poll.
        assert_eq!(
            wake_at(past, backstop, Some(t), None, Some(past)),
            past,
            "already spaced"
        );
        assert_eq!(
            wake_at(later, backstop, Some(t), None, Some(later)),
            t + CONFIRM
        );
        // A notification: debounced, and spaced from the last poll.
        let (seen, now) = (
            t + Duration::from_millis(550),
            t + Duration::from_millis(600),
        );
        assert_eq!(
            wake_at(now, backstop, Some(t), Some(seen), None),
            t + SPACING
        );
        let (seen, now) = (
            t + Duration::from_millis(650),
            t + Duration::from_millis(700),
        );
        assert_eq!(
            wake_at(now, backstop, Some(t), Some(seen), None),
            seen + DEBOUNCE
        );
        assert_eq!(
            wake_at(t, backstop, None, Some(t), None),
            t + DEBOUNCE,
            "no poll yet"
        );
    }

    #[test]
    fn new_sessions_state_changes_and_transcodes_ask_for_a_listing_repeats_do_not() {
        assert!(
            interesting(&playing("playing", None), None),
            "a new session"
        );
        assert!(
            !interesting(&playing("playing", None), Some("playing")),
            "a repeat"
        );
        assert!(interesting(&playing("paused", None), Some("playing")));
        assert!(interesting(&playing("stopped", None), Some("playing")));
        assert!(interesting(
            &playing("playing", Some("tx")),
            Some("playing")
        ));
        let end = Event::TranscodeSession {
            phase: "end".into(),
            key: "tx".into(),
            detail: serde_json::Value::Null,
        };
        assert!(!interesting(&end, None));
    }
}
