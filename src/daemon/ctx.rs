//! The daemon context: what every job is handed. One per daemon, cheap to clone (an `Arc`).
//!
//! - the live configuration (swapped whole on SIGHUP; a job takes an `Arc` snapshot per pass,
//!   never a deep copy) and the secrets resolved from it once per load;
//! - health and metrics, the shutdown signal;
//! - the Plex event bus and who is playing now (the `sessions` job publishes snapshots);
//! - the in-memory index lookup, the store's path, what was handled and enforced;
//! - the queues between jobs (decision audit, refusals, Plex webhooks);
//! - one cached client per outside service, rebuilt when the configuration changes it.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::Value;

use super::health::Health;
use super::lifecycle::Shutdown;
use super::memory::Memory;
use crate::clients::tautulli::Tautulli;
use crate::config::Config;
use crate::plex::events::Bus;
use crate::plex::sessions::Sessions;
use crate::plex::Plex;
use crate::store::lookup::Lookup;

/// The cap on a Plex request made on a viewer's behalf (terminate, switch, a session lookup):
/// a slow Plex must not hold the guard for the whole `plex.read_timeout_ms` of a sync.
const INTERACTIVE_TIMEOUT: Duration = Duration::from_secs(8);

/// What goes into the decision audit.
#[derive(Debug)]
pub enum AuditMsg {
    /// A decision record the shim reported, stored as it came.
    Shim(Value),
    /// A decision of the daemon's own (guard, refusal, Tautulli trigger).
    Daemon(Value),
    /// What enforcing a refused transcode came to.
    Outcome {
        session: String,
        outcome: String,
        user: Option<String>,
    },
    /// Plex named the viewer of a transcode the shim decided about.
    Viewer { session: String, user: String },
}

/// A bounded queue between two jobs. Sending never blocks (a full queue drops and says so);
/// the receiving job may be restarted by the supervisor, so its end is shared.
pub struct Queue<T> {
    name: &'static str,
    tx: SyncSender<T>,
    rx: Mutex<Receiver<T>>,
}

impl<T> Queue<T> {
    pub fn new(name: &'static str, capacity: usize) -> Queue<T> {
        let (tx, rx) = sync_channel(capacity);
        Queue {
            name,
            tx,
            rx: Mutex::new(rx),
        }
    }

    /// Queues `item`; false (and a warning) when the queue is full.
    pub fn send(&self, item: T) -> bool {
        let ok = self.tx.try_send(item).is_ok();
        if !ok {
            tracing::warn!("{} queue full: an item was dropped", self.name);
        }
        ok
    }

    /// The next item, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<T> {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner());
        match rx.recv_timeout(timeout) {
            Ok(item) => Some(item),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }
}

/// The configuration in effect, and what was resolved from it at load.
pub struct Loaded {
    pub config: Config,
    /// Plex's URL and token (env, file or config), read once per load: the shim's viewer
    /// question never waits on a token file.
    pub plex_access: Result<(String, String), String>,
    /// Tautulli's URL and API key, when Tautulli is configured.
    pub tautulli_access: Result<Option<(String, String)>, String>,
}

impl Loaded {
    pub fn new(config: Config) -> Loaded {
        let plex_access = config.plex.resolved().map_err(|e| format!("{e:#}"));
        let tautulli_access = config.tautulli.resolved().map_err(|e| format!("{e:#}"));
        Loaded {
            config,
            plex_access,
            tautulli_access,
        }
    }
}

impl Deref for Loaded {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

/// A client and the (URL, secret) it was built for.
type Cached<T> = Option<((String, String), Arc<T>)>;

pub struct Inner {
    pub config_path: PathBuf,
    live: RwLock<Arc<Loaded>>,
    pub shutdown: Shutdown,
    pub health: Arc<Health>,
    pub events: Bus,
    pub sessions: Sessions,
    pub lookup: Lookup,
    /// The SQLite file of the index and the audit.
    pub db_path: PathBuf,
    pub memory: Memory,
    pub audit: Queue<AuditMsg>,
    /// Shim records with `decision: refuse`, for the refusal worker.
    pub refusals: Queue<Value>,
    /// Plex webhook payloads (`POST /webhook/plex/<token>`), as posted, for the scrobble job:
    /// the HTTP thread answers at once and queues the work.
    pub webhooks: Queue<Value>,
    /// `POST /api/scrobble/stop` sets it, `…/start` clears it: the scrobble job keeps
    /// listening but sends nothing new while it is set.
    pub scrobble_paused: AtomicBool,
    /// Work for the downloads job: Jellyfin and Plex webhook bodies, re-evaluations. The HTTP
    /// thread answers at once and queues the work.
    pub downloads: Queue<crate::model::downloads::Intake>,
    /// The web dashboard's logins and its requests to jobs (a sync now, a throttle restore).
    pub dashboard: crate::daemon::http::dashboard::Shared,
    plex: Mutex<Cached<Plex>>,
    plex_interactive: Mutex<Cached<Plex>>,
    tautulli: Mutex<Cached<Tautulli>>,
}

/// The daemon context.
#[derive(Clone)]
pub struct Ctx(Arc<Inner>);

impl Deref for Ctx {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Ctx {
    pub fn new(
        config_path: PathBuf,
        config: Config,
        shutdown: Shutdown,
        health: Arc<Health>,
        lookup: Lookup,
    ) -> Ctx {
        let db_path = config.index.database_path(&config.daemon);
        Ctx(Arc::new(Inner {
            config_path,
            live: RwLock::new(Arc::new(Loaded::new(config))),
            shutdown,
            health,
            events: Bus::default(),
            sessions: Sessions::default(),
            lookup,
            db_path,
            memory: Memory::default(),
            audit: Queue::new("decision audit", 4096),
            refusals: Queue::new("refusal", 256),
            webhooks: Queue::new("webhook", 1024),
            scrobble_paused: AtomicBool::new(false),
            downloads: Queue::new("downloads", 4096),
            dashboard: Default::default(),
            plex: Mutex::default(),
            plex_interactive: Mutex::default(),
            tautulli: Mutex::default(),
        }))
    }
}

impl Inner {
    /// The configuration in effect now (a snapshot: SIGHUP swaps it, a pass keeps its own).
    pub fn config(&self) -> Arc<Loaded> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts a reloaded configuration in effect; returns the previous one.
    pub fn set_config(&self, config: Config) -> Arc<Loaded> {
        let new = Arc::new(Loaded::new(config));
        std::mem::replace(
            &mut *self.live.write().unwrap_or_else(|e| e.into_inner()),
            new,
        )
    }

    /// The Plex client for the configuration in effect, with its configured timeouts: the
    /// library sync's own (its `calls()` count the sync's requests). `None` when Plex is not
    /// configured.
    pub fn plex(&self) -> Option<Arc<Plex>> {
        self.plex_client(&self.plex, None)
    }

    /// The Plex client for everything else (session listings, requests made while a viewer
    /// waits): reads capped at 8 s.
    pub fn plex_interactive(&self) -> Option<Arc<Plex>> {
        self.plex_client(&self.plex_interactive, Some(INTERACTIVE_TIMEOUT))
    }

    fn plex_client(&self, slot: &Mutex<Cached<Plex>>, cap: Option<Duration>) -> Option<Arc<Plex>> {
        let cfg = self.config();
        let key = cfg.plex_access.as_ref().ok()?.clone();
        reuse(slot, key, |(url, token)| {
            let read = Duration::from_millis(cfg.plex.read_timeout_ms);
            let connect = Duration::from_millis(cfg.plex.connect_timeout_ms);
            match Plex::new(url, token, connect, cap.map_or(read, |c| read.min(c))) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!("Plex client for {url}: {e}");
                    None
                }
            }
        })
    }

    /// The Tautulli client, when Tautulli is configured.
    pub fn tautulli(&self) -> Option<Arc<Tautulli>> {
        let cfg = self.config();
        let key = match &cfg.tautulli_access {
            Ok(k) => k.clone()?,
            Err(e) => {
                tracing::warn!("{e}");
                return None;
            }
        };
        reuse(&self.tautulli, key, |(url, api_key)| {
            match Tautulli::new(url, api_key, Duration::from_millis(cfg.tautulli.timeout_ms)) {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::warn!("Tautulli client for {url}: {e}");
                    None
                }
            }
        })
    }
}

/// The cached client when it was built for `key`, else a new one (then cached).
fn reuse<T>(
    slot: &Mutex<Cached<T>>,
    key: (String, String),
    build: impl FnOnce(&(String, String)) -> Option<T>,
) -> Option<Arc<T>> {
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((k, c)) = slot.as_ref() {
        if *k == key {
            return Some(c.clone());
        }
    }
    let c = Arc::new(build(&key)?);
    *slot = Some((key, c.clone()));
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(cfg: Config) -> Ctx {
        Ctx::new(
            PathBuf::from("/nonexistent/config.json"),
            cfg,
            Shutdown::default(),
            Arc::new(Health::new()),
            Lookup::default(),
        )
    }

    #[test]
    fn clients_are_cached_per_configuration_and_rebuilt_when_it_changes() {
        let mut cfg = Config::default();
        cfg.plex.url = "http://127.0.0.1:1".into();
        cfg.plex.token = crate::config::secret::Secret::new("t1");
        let c = ctx(cfg.clone());
        let a = c.plex().expect("configured");
        let b = c.plex().expect("configured");
        assert!(
            Arc::ptr_eq(&a, &b),
            "one client while the configuration stands"
        );
        assert!(
            !Arc::ptr_eq(&a, &c.plex_interactive().expect("configured")),
            "the interactive client is its own"
        );
        cfg.plex.token = crate::config::secret::Secret::new("t2");
        c.set_config(cfg);
        assert!(!Arc::ptr_eq(&a, &c.plex().expect("configured")));
        assert!(c.tautulli().is_none(), "Tautulli is not configured");
    }

    #[test]
    fn a_full_queue_drops_instead_of_blocking() {
        let q = Queue::new("test", 1);
        assert!(q.send(1));
        assert!(!q.send(2));
        assert_eq!(q.recv_timeout(Duration::from_millis(1)), Some(1));
        assert_eq!(q.recv_timeout(Duration::from_millis(1)), None);
    }
}
