//! What the shim handled and what the daemon enforced, shared by every enforcer (the refusal
//! worker, the reactive guard, the Tautulli trigger) so no session is enforced twice: a session
//! the trigger terminated is left alone by the guard while Plex still lists it, and the other
//! way round.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::plex::sessions::Session;

/// How long the shim's decision about a transcode session is remembered.
const HANDLED_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a decision about a file counts for any session playing it.
const HANDLED_INPUT_TTL: Duration = Duration::from_secs(30 * 60);
/// How long an enforced session is remembered (Plex drops a terminated session within
/// seconds; a client that never reports back stays listed for a while).
const ENFORCED_TTL: Duration = Duration::from_secs(24 * 3600);

/// What the shim handled and what the guard or the trigger enforced.
#[derive(Default)]
pub struct Memory {
    /// Transcode session → the shim decided about it (and did not merely shadow).
    handled: Mutex<HashMap<String, Instant>>,
    /// Input file → the shim last decided about a transcode of it. A safety net: should Plex
    /// ever name a transcode differently from the transcoder's progress URL, a session the
    /// shim handled is still never enforced twice.
    handled_inputs: Mutex<HashMap<String, Instant>>,
    /// `tx:<transcode key>` / `id:<Session.id>` → the guard or the trigger acted on it.
    enforced: Mutex<HashMap<String, Instant>>,
}

/// The keys a session is remembered by: its transcode key and its `Session.id` (both unique
/// to one playback; the session key is reused across Plex restarts, so it is not one).
fn enforced_keys(s: &Session) -> impl Iterator<Item = String> + '_ {
    let tx = s.transcode.as_deref().map(|t| format!("tx:{t}"));
    let id = s.session_id.as_deref().map(|i| format!("id:{i}"));
    tx.into_iter().chain(id)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Memory {
    /// A shim record: its transcode session and its file are handled.
    pub fn note_shim(&self, rec: &Value) {
        let Some(session) = rec.get("session").and_then(Value::as_str) else {
            return;
        };
        if rec.get("shadowed").is_some_and(|s| !s.is_null()) {
            return;
        }
        let mut h = lock(&self.handled);
        h.retain(|_, t| t.elapsed() < HANDLED_TTL);
        h.insert(session.to_string(), Instant::now());
        if let Some(input) = rec.get("input").and_then(Value::as_str) {
            let mut i = lock(&self.handled_inputs);
            i.retain(|_, t| t.elapsed() < HANDLED_INPUT_TTL);
            i.insert(input.to_string(), Instant::now());
        }
    }

    pub fn is_handled(&self, transcode: &str) -> bool {
        lock(&self.handled).contains_key(transcode)
    }

    /// The shim decided about a transcode of this file recently (every seek starts a new
    /// transcoder, so a session the shim handles keeps reporting).
    pub fn input_handled(&self, file: &str) -> bool {
        lock(&self.handled_inputs)
            .get(file)
            .is_some_and(|t| t.elapsed() < HANDLED_INPUT_TTL)
    }

    /// The guard or the trigger acted on this session.
    pub fn note_enforced(&self, s: &Session) {
        let mut e = lock(&self.enforced);
        e.retain(|_, t| t.elapsed() < ENFORCED_TTL);
        for k in enforced_keys(s) {
            e.insert(k, Instant::now());
        }
    }

    pub fn is_enforced(&self, s: &Session) -> bool {
        let e = lock(&self.enforced);
        enforced_keys(s).any(|k| e.get(&k).is_some_and(|t| t.elapsed() < ENFORCED_TTL))
    }
}
