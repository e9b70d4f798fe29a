//! The durable outbox (issue 12; STYLE.md "state that matters is written before the side
//! effect"): every [`Call`] is written to SQLite before it is sent and removed only by a
//! final answer, so Trakt down for an hour, a restart or a `kill -9` delays a scrobble and
//! never loses or doubles it.
//!
//! - Order per user: [`due`] gives only the oldest row of each user, so a user's calls
//!   reach Trakt in the order they happened (a `stop` never overtakes its `start`), while
//!   one user's back-off never holds another's calls.
//! - Supersede: a new call of a play drops that play's undelivered `start`/`pause` (a later
//!   state says more); a `stop` is never dropped — it is the play on Trakt.
//! - History: each finished call (delivered, 409, not found, superseded) is kept, bounded
//!   (10,000 rows, 90 days), for `downshiftarr scrobble history`.

use anyhow::{Context, Result};

use super::{tokens, Call};
use crate::store::outbox::NewOutboxRow;
use crate::store::Store;

pub use crate::store::outbox::HistoryRow;

/// One owed call.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: i64,
    pub call: Call,
    pub attempts: u32,
    pub not_before_ms: u64,
    pub last_error: Option<String>,
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// What `scrobble history` shows for the item: the title the event knew, an episode as
/// `Show S01E02`.
fn title_of(call: &Call) -> Option<String> {
    let f = call.item.as_ref()?;
    match (&f.show_title, f.season, f.episode) {
        (Some(show), Some(s), Some(e)) => Some(format!("{show} S{s:02}E{e:02}")),
        _ => f.title.clone(),
    }
}

/// Writes `call` (one transaction, superseding the play's undelivered `start`/`pause`);
/// its row id.
pub fn push(store: &Store, call: &Call) -> Result<i64> {
    let json = serde_json::to_string(call).context("a scrobble call cannot be written as JSON")?;
    let user = tokens::key(&call.user);
    let title = title_of(call);
    let row = NewOutboxRow {
        user: &user,
        play: &call.play,
        rating_key: &call.rating_key,
        action: call.action.as_str(),
        call: &json,
        title: title.as_deref(),
        at_ms: call.at_ms,
    };
    store
        .write(|s| s.outbox_insert(&row, now_ms()))
        .with_context(|| {
            format!(
                "unable to write the {} of {} (rating key {}) to the scrobble outbox",
                call.action.as_str(),
                call.user,
                call.rating_key
            )
        })
}

/// The head of each user's queue that is due at `now_ms`, oldest first, at most `limit`.
/// A row that no longer reads as a [`Call`] (a format change, a damaged file) would hold its
/// user's queue forever: it is moved to history as `unreadable`, with its text, and logged
/// with its id — never skipped silently, never sent.
pub fn due(store: &Store, now_ms: u64, limit: usize) -> Result<Vec<Entry>> {
    let rows = store
        .outbox_due(now_ms, limit)
        .context("unable to read the scrobble outbox")?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        match serde_json::from_str::<Call>(&r.call) {
            Ok(call) => out.push(Entry {
                id: r.id,
                call,
                attempts: r.attempts,
                not_before_ms: r.not_before_ms,
                last_error: r.last_error,
            }),
            Err(e) => {
                tracing::error!(
                    "scrobble outbox row {} does not read as a call ({e}): moved to the history as unreadable",
                    r.id
                );
                let raw = serde_json::Value::String(r.call).to_string();
                store
                    .write(|s| s.outbox_finish(r.id, "unreadable", Some(&raw), self::now_ms()))
                    .with_context(|| format!("unable to set aside scrobble outbox row {}", r.id))?;
            }
        }
    }
    Ok(out)
}

/// When the next head becomes due (unix ms), None when the outbox is empty.
pub fn next_due(store: &Store) -> Result<Option<u64>> {
    store
        .outbox_next_due_ms()
        .context("unable to read the scrobble outbox")
}

/// (calls owed, `at_ms` of the oldest).
pub fn depth(store: &Store) -> Result<(u64, Option<u64>)> {
    store
        .outbox_depth()
        .context("unable to read the scrobble outbox")
}

/// A final answer: row `id` leaves the outbox for history with `outcome`, in one transaction.
pub fn delivered(
    store: &Store,
    id: i64,
    outcome: &str,
    trakt: Option<&serde_json::Value>,
) -> Result<()> {
    let trakt = trakt.map(serde_json::Value::to_string);
    store
        .write(|s| s.outbox_finish(id, outcome, trakt.as_deref(), now_ms()))
        .with_context(|| format!("unable to record scrobble outbox row {id} as {outcome}"))?;
    Ok(())
}

/// Keeps row `id` for another attempt not before `not_before_ms`, with the error that held it.
pub fn retry_later(store: &Store, id: i64, not_before_ms: u64, error: &str) -> Result<()> {
    store
        .write(|s| s.outbox_retry_later(id, not_before_ms, error))
        .with_context(|| format!("unable to reschedule scrobble outbox row {id}"))?;
    Ok(())
}

/// Calls finished at or after `since_ms`, newest last, at most `limit`.
pub fn history(store: &Store, since_ms: u64, limit: usize) -> Result<Vec<HistoryRow>> {
    store
        .scrobble_history(since_ms, limit)
        .context("unable to read the scrobble history")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::trakt::ScrobbleAction;

    fn call(user: &str, play: &str, action: ScrobbleAction, progress: f64) -> Call {
        Call {
            user: user.into(),
            rating_key: "42".into(),
            play: play.into(),
            action,
            progress,
            at_ms: 1_000,
            forced: false,
            item: None,
        }
    }

    fn actions(e: &[Entry]) -> Vec<(String, &'static str, f64)> {
        e.iter()
            .map(|e| (e.call.user.clone(), e.call.action.as_str(), e.call.progress))
            .collect()
    }

    #[test]
    fn a_later_state_supersedes_an_undelivered_start_or_pause_never_a_stop() {
        use ScrobbleAction::*;
        let s = Store::in_memory().unwrap();
        push(&s, &call("ann", "p1", Start, 1.0)).unwrap();
        push(&s, &call("ann", "p1", Pause, 10.0)).unwrap();
        // Another play of the same user is not touched.
        push(&s, &call("ann", "p2", Start, 0.0)).unwrap();
        assert_eq!(depth(&s).unwrap().0, 2, "the start of p1 was superseded");
        push(&s, &call("ann", "p1", Stop, 95.0)).unwrap();
        push(&s, &call("ann", "p1", Stop, 96.0)).unwrap();
        // Another user's play of the same name is not touched.
        push(&s, &call("bob", "p1", Start, 0.0)).unwrap();
        let mut left = Vec::new();
        let mut now = 0;
        while let Some(e) = due(&s, now, 10)
            .unwrap()
            .into_iter()
            .find(|e| e.call.user == "ann")
        {
            left.push((e.call.play.clone(), e.call.action.as_str(), e.call.progress));
            delivered(&s, e.id, "started", None).unwrap();
            now += 1;
        }
        assert_eq!(
            left,
            vec![
                ("p2".into(), "start", 0.0),
                ("p1".into(), "stop", 95.0),
                ("p1".into(), "stop", 96.0)
            ]
        );
        let h = history(&s, 0, 100).unwrap();
        let superseded: Vec<_> = h
            .iter()
            .filter(|r| r.outcome == "superseded")
            .map(|r| (r.action.as_str(), r.progress))
            .collect();
        assert_eq!(superseded, vec![("start", 1.0), ("pause", 10.0)]);
        assert_eq!(depth(&s).unwrap().0, 1, "bob's start is still owed");
    }

    #[test]
    fn due_gives_each_users_head_in_order_and_a_held_head_holds_only_its_user() {
        use ScrobbleAction::*;
        let s = Store::in_memory().unwrap();
        let a1 = push(&s, &call("Ann", "p1", Start, 1.0)).unwrap();
        push(&s, &call("bob", "q1", Start, 2.0)).unwrap();
        push(&s, &call("ann", "p2", Start, 3.0)).unwrap();
        assert_eq!(
            actions(&due(&s, 0, 10).unwrap()),
            vec![("Ann".into(), "start", 1.0), ("bob".into(), "start", 2.0)]
        );
        // Ann's head waits: her second call is not sent before it; Bob goes on.
        retry_later(&s, a1, 5_000, "Trakt answered 502").unwrap();
        assert_eq!(
            actions(&due(&s, 4_999, 10).unwrap()),
            vec![("bob".into(), "start", 2.0)]
        );
        let e = &due(&s, 5_000, 10).unwrap()[0];
        assert_eq!((e.id, e.attempts), (a1, 1));
        assert_eq!(e.last_error.as_deref(), Some("Trakt answered 502"));
        assert_eq!(next_due(&s).unwrap(), Some(0));
        assert_eq!(depth(&s).unwrap(), (3, Some(1_000)));
        delivered(&s, a1, "started", Some(&serde_json::json!({"id": 1}))).unwrap();
        assert_eq!(
            actions(&due(&s, 0, 10).unwrap()),
            vec![("bob".into(), "start", 2.0), ("ann".into(), "start", 3.0)]
        );
        let h = history(&s, 0, 10).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].trakt, Some(serde_json::json!({"id": 1})));
        // Delivering a row that is gone is not an error (and records nothing).
        delivered(&s, a1, "started", None).unwrap();
        assert_eq!(history(&s, 0, 10).unwrap().len(), 1);
    }

    #[test]
    fn a_garbled_row_is_set_aside_and_does_not_hold_its_user() {
        let s = Store::in_memory().unwrap();
        let id = push(&s, &call("ann", "p1", ScrobbleAction::Start, 1.0)).unwrap();
        push(&s, &call("ann", "p2", ScrobbleAction::Stop, 90.0)).unwrap();
        s.exec_for_tests(&format!(
            "UPDATE scrobble_outbox SET call = '{{\"nope\":1}}' WHERE id = {id}"
        ));
        assert!(due(&s, 0, 10).unwrap().is_empty());
        let next = due(&s, 0, 10).unwrap();
        assert_eq!(next[0].call.play, "p2");
        let h = history(&s, 0, 10).unwrap();
        assert_eq!((h[0].id > 0, h[0].outcome.as_str()), (true, "unreadable"));
        assert_eq!(h[0].trakt, Some(serde_json::json!("{\"nope\":1}")));
    }

    #[test]
    fn history_is_bounded_and_newest_last() {
        let s = Store::in_memory().unwrap();
        let now = now_ms();
        s.exec_for_tests(&format!(
            "INSERT INTO scrobble_history(user, rating_key, play, action, progress, at_ms,
                delivered_ms, outcome) VALUES ('ann', '1', 'p', 'stop', 90, 0, {}, 'scrobbled')",
            now - crate::store::outbox::HISTORY_MAX_AGE_MS - 1
        ));
        for i in 0..3 {
            let id = push(
                &s,
                &call("ann", &format!("p{i}"), ScrobbleAction::Stop, 90.0),
            )
            .unwrap();
            delivered(&s, id, "scrobbled", None).unwrap();
        }
        let h = history(&s, 0, 100).unwrap();
        assert_eq!(h.len(), 3, "the 91-day-old row is gone");
        assert!(h.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(history(&s, 0, 2).unwrap()[1].play, "p2");
    }
}
