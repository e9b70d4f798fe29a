//! Who is playing now: polls `/status/sessions` soon after each playback or transcode
//! notification (debounced 300 ms, at most one poll per 900 ms) and every
//! `enforce.guard_interval_s` as a backstop for a dropped websocket, and publishes each
//! listing (read with the context's interactive client: at most 8 s) as a snapshot for every job (`ctx.sessions`). Notifications also update the
//! tracker between polls, so the shim's viewer question is answered from memory. A failed poll
//! publishes nothing: "Plex did not answer" is never "nobody is playing".

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
    while !shutdown.is_set() {
        if let Ok(e) = events.recv_timeout(Duration::from_millis(100)) {
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
        let spaced = last_poll.is_none_or(|t| t.elapsed() >= SPACING);
        let due = now >= next_poll || dirty.is_some_and(|t| t.elapsed() >= DEBOUNCE);
        if !due || !spaced {
            continue;
        }
        let cfg = ctx.config();
        next_poll = now + Duration::from_secs(cfg.enforce.guard_interval_s.max(1));
        dirty = None;
        last_poll = Some(now);
        let Some(plex) = ctx.plex_interactive() else {
            continue;
        };
        match plex.sessions(None) {
            Ok(list) => {
                if last_error.take().is_some() {
                    tracing::info!("session poll: Plex answers again");
                }
                ctx.sessions.publish(parse_sessions(&list));
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
