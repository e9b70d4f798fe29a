//! The shim's Unix-socket service.
//!
//! Speaks `downshiftarr_shim::protocol` (length-prefixed JSON, version field, 1 MiB frames).
//! The socket is created with an explicit mode (0660, via the umask around `bind`) and group
//! (the Plex group), a stale socket is removed only by the holder of the instance lock (the
//! caller), and every connection's peer credentials (`SO_PEERCRED`) are checked against root,
//! our own uid, the socket's group and the configured uids/gids. Each connection has its own
//! thread and a timeout on every read and write: a malformed, oversized or slow client is
//! dropped without affecting the others. `lookup_source` is answered from memory.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use downshiftarr_shim::protocol::{self, ClientError, Request, Response, PROTOCOL_VERSION};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{Gid, Group, Uid};

use super::health::Health;
use super::lifecycle::Shutdown;
use crate::index::Lookup;

/// What the daemon answers beyond the index: who is watching a transcode session, and the
/// Tautulli trigger (`downshiftarr tautulli`).
pub trait Enforcement: Send + Sync {
    /// The viewer of a transcode session; may ask Plex for at most `wait`.
    fn viewer(&self, transcode: &str, wait: Duration) -> downshiftarr_shim::policy::Viewer;
    /// Handles one Tautulli trigger and says what was done.
    fn tautulli(&self, event: &serde_json::Value) -> serde_json::Value;
}

/// The most connections served at once; more are closed at once (the shim then probes).
const MAX_CONNECTIONS: usize = 2048;
/// Per-read and per-write timeout for a client.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Who may connect.
#[derive(Clone, Debug)]
pub struct Access {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

/// Counters for `status` and `/metrics`.
#[derive(Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub rejected: AtomicU64,
    pub lookups: AtomicU64,
    pub lookup_hits: AtomicU64,
    pub decisions: AtomicU64,
    pub bad_frames: AtomicU64,
}

/// A bound socket that removes its file when dropped (greetd's habit).
pub struct Listener {
    pub path: PathBuf,
    listener: UnixListener,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the socket: mode 0660 from the umask at bind time, then the group.
/// The caller holds the instance lock, so a file at `path` is a stale socket of ours.
pub fn bind(path: &Path, group: &str) -> Result<(Listener, Access)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("unable to create {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!("removed a stale socket at {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("unable to remove stale socket {}", path.display()))
        }
    }
    let old = umask(Mode::from_bits_truncate(0o117));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener = bound.with_context(|| format!("unable to bind socket at {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("unable to chmod {}", path.display()))?;
    let mut gids = Vec::new();
    if !group.is_empty() {
        match Group::from_name(group) {
            Ok(Some(g)) => {
                if let Err(e) = nix::unistd::chown(path, None, Some(g.gid)) {
                    tracing::warn!("unable to give {} to group {group}: {e}", path.display());
                }
                gids.push(g.gid.as_raw());
            }
            _ => tracing::warn!(
                "group {group} does not exist: only root and uid {} may use the socket",
                Uid::current()
            ),
        }
    }
    listener.set_nonblocking(true)?;
    Ok((
        Listener {
            path: path.to_path_buf(),
            listener,
        },
        Access {
            uids: vec![0, Uid::current().as_raw()],
            gids,
        },
    ))
}

/// Serves until shutdown.
pub fn serve(
    l: &Listener,
    access: &Access,
    lookup: &Lookup,
    decisions: &SyncSender<serde_json::Value>,
    enforcement: &Arc<dyn Enforcement>,
    health: &Arc<Health>,
    shutdown: &Shutdown,
) -> Result<()> {
    let stats = &health.socket;
    // A cached thread pool: connections go to an idle worker when there is one, and a new
    // worker starts only when none is idle (spawning a thread per lookup dominated the p99);
    // a slow client still occupies one worker only. Extra workers exit after 30 s idle.
    let active = Arc::new(AtomicUsize::new(0));
    let idle = Arc::new(AtomicUsize::new(0));
    let (work_tx, work_rx) = std::sync::mpsc::channel::<UnixStream>();
    let work_rx = Arc::new(std::sync::Mutex::new(work_rx));
    let start_worker = |permanent: bool| {
        let (lookup, decisions, enf, stats, active, idle, rx) = (
            lookup.clone(),
            decisions.clone(),
            enforcement.clone(),
            health.clone(),
            active.clone(),
            idle.clone(),
            work_rx.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("shim-conn".into())
            .stack_size(256 << 10)
            .spawn(move || {
                worker(
                    &rx, permanent, &idle, &active, &lookup, &decisions, &*enf, &stats,
                );
            });
        if spawned.is_err() {
            tracing::warn!("unable to start a connection thread");
        }
    };
    for _ in 0..4 {
        start_worker(true);
    }
    while !shutdown.is_set() {
        match l.listener.accept() {
            Ok((conn, _)) => {
                stats.connections.fetch_add(1, Ordering::Relaxed);
                if !allowed(&conn, access) {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    continue; // dropped: closed without a word
                }
                if active.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    continue;
                }
                active.fetch_add(1, Ordering::Relaxed);
                let busy = idle.load(Ordering::SeqCst) == 0;
                if work_tx.send(conn).is_err() {
                    break;
                }
                if busy {
                    start_worker(false);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let fd = l.listener.as_fd();
                let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16));
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    Ok(())
}

/// Takes connections from the queue. Permanent workers wait forever, so a queued connection
/// is always served; extra workers exit after 30 s without work.
#[allow(clippy::too_many_arguments)]
fn worker(
    rx: &std::sync::Mutex<std::sync::mpsc::Receiver<UnixStream>>,
    permanent: bool,
    idle: &AtomicUsize,
    active: &AtomicUsize,
    lookup: &Lookup,
    decisions: &SyncSender<serde_json::Value>,
    enforcement: &dyn Enforcement,
    health: &Health,
) {
    loop {
        idle.fetch_add(1, Ordering::SeqCst);
        let next = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            if permanent {
                rx.recv().map_err(|_| ())
            } else {
                rx.recv_timeout(Duration::from_secs(30)).map_err(|_| ())
            }
        };
        idle.fetch_sub(1, Ordering::SeqCst);
        let Ok(conn) = next else { return };
        handle(conn, lookup, decisions, enforcement, health);
        active.fetch_sub(1, Ordering::Relaxed);
    }
}

fn allowed(conn: &UnixStream, access: &Access) -> bool {
    match getsockopt(conn, PeerCredentials) {
        Ok(c) => {
            let ok = access.uids.contains(&c.uid())
                || access.gids.contains(&c.gid())
                || member_of(c.uid(), &access.gids);
            if !ok {
                tracing::debug!(
                    uid = c.uid(),
                    gid = c.gid(),
                    pid = c.pid(),
                    "refused a socket client"
                );
            }
            ok
        }
        Err(_) => false,
    }
}

/// Supplementary groups: a Plex user whose primary group is not `plex` but is a member.
fn member_of(uid: u32, gids: &[u32]) -> bool {
    let Ok(Some(user)) = nix::unistd::User::from_uid(Uid::from_raw(uid)) else {
        return false;
    };
    gids.iter().any(|g| {
        Group::from_gid(Gid::from_raw(*g))
            .ok()
            .flatten()
            .is_some_and(|grp| grp.mem.contains(&user.name))
    })
}

fn handle(
    mut conn: UnixStream,
    lookup: &Lookup,
    decisions: &SyncSender<serde_json::Value>,
    enforcement: &dyn Enforcement,
    health: &Health,
) {
    let stats = &health.socket;
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
    let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
    loop {
        let body = match protocol::read_frame(&mut conn) {
            Ok(b) => b,
            Err(ClientError::Eof) => return,
            Err(e) => {
                if !matches!(e, ClientError::Timeout) {
                    stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!("dropping a shim connection: {e}");
                return;
            }
        };
        let response = match protocol::decode::<Request>(&body) {
            Ok(req) => answer(req, lookup, decisions, enforcement, health),
            Err(e) => {
                stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                let _ = conn.write_all(&protocol::encode(&Response::Error {
                    message: e.to_string(),
                }));
                return;
            }
        };
        if let Some(r) = response {
            if conn.write_all(&protocol::encode(&r)).is_err() {
                return;
            }
        }
    }
}

/// The answer to one request; `None` for fire-and-forget reports.
fn answer(
    req: Request,
    lookup: &Lookup,
    decisions: &SyncSender<serde_json::Value>,
    enforcement: &dyn Enforcement,
    health: &Health,
) -> Option<Response> {
    let stats = &health.socket;
    Some(match req {
        Request::Status => Response::Status {
            status: health.status(),
        },
        Request::Ping => Response::Pong,
        Request::Version => Response::Version {
            version: downshiftarr_shim::VERSION.into(),
            protocol: PROTOCOL_VERSION,
        },
        Request::LookupSource { path } => {
            stats.lookups.fetch_add(1, Ordering::Relaxed);
            match lookup.get(&path) {
                Some(e) => {
                    stats.lookup_hits.fetch_add(1, Ordering::Relaxed);
                    Response::Source {
                        found: true,
                        facts: Some(e.facts),
                        versions: (*e.versions).clone(),
                    }
                }
                None => Response::Source {
                    found: false,
                    facts: None,
                    versions: Vec::new(),
                },
            }
        }
        Request::ReportDecision { record } => {
            stats.decisions.fetch_add(1, Ordering::Relaxed);
            if decisions.try_send(record).is_err() {
                tracing::warn!("decision audit queue full: a record was dropped");
            }
            return None;
        }
        Request::SessionContext {
            transcode_session,
            wait_ms,
        } => Response::Session {
            viewer: enforcement.viewer(
                &transcode_session,
                Duration::from_millis(wait_ms.min(5000) as u64),
            ),
        },
        Request::TautulliEvent { event } => Response::Enforced {
            outcome: enforcement.tautulli(&event),
        },
    })
}
