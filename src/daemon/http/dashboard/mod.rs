//! The web dashboard (issue 14): one page at `/` built from JSON endpoints under
//! `/api/dashboard/…`, with a login form for callers elsewhere than this host.
//!
//! - [`auth`]: who may see the page and call the API (loopback, bearer key, login cookie,
//!   the CSRF header rule for cookie-authorized POSTs);
//! - [`api`]: the endpoints (summary, decisions, one decision, charts) and the actions
//!   (`POST /api/sync`, `POST /api/throttle/restore`);
//! - [`playing`]: who is playing now and downshiftarr's decision for each session;
//! - [`assets`]: the page itself (HTML/CSS/JS compiled into the binary, ETag, gzip, CSP).
//!
//! [`Shared`] is what they keep between requests; it lives in the daemon's context
//! (`ctx.dashboard`), so the jobs the actions drive (the index job's sync, the throttle's
//! restore) see the requests too.

pub mod api;
pub mod assets;
pub mod auth;
pub mod playing;

use std::sync::atomic::AtomicBool;
use std::sync::mpsc::SyncSender;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use crate::daemon::ctx::Queue;
use crate::store::Store;

/// The answer the throttle job sends back to `POST /api/throttle/restore`: what it did, or
/// why it could not.
pub type RestoreReply = SyncSender<Result<String, String>>;

/// What the dashboard keeps between requests, and its requests to jobs.
pub struct Shared {
    /// The login sessions.
    pub logins: auth::Logins,
    /// `POST /api/sync` sets it; the index job takes it (and syncs) within a quarter second
    /// of its wait, or right after the sync it is running.
    pub sync_requested: AtomicBool,
    /// `POST /api/throttle/restore`: the throttle job gives qBittorrent its limits back on its
    /// next turn (within a second) and answers on the channel.
    pub throttle_restore: Queue<RestoreReply>,
    /// The HTTP thread's own read connection to the store, opened on first use.
    db: Mutex<Option<Store>>,
    /// The charts, computed at most once a minute per `days`.
    charts: Mutex<Option<(u32, Instant, Value)>>,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            logins: auth::Logins::default(),
            sync_requested: AtomicBool::new(false),
            throttle_restore: Queue::new("throttle restore", 8),
            db: Mutex::default(),
            charts: Mutex::default(),
        }
    }
}
