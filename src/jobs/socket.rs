//! The shim's Unix-socket service.
//!
//! Speaks `downshiftarr_shim::protocol` (length-prefixed JSON, version field, 1 MiB frames),
//! and on the same socket the admin CLI's requests (`crate::daemon::admin`: `status`,
//! `tautulli_event`), read only when a frame is not one of the shim's.
//! The socket is created with an explicit mode (0660, via the umask around `bind`) and group
//! (the Plex group), a stale socket is removed only by the holder of the instance lock (the
//! caller), and every connection's peer is checked against root, our own uid, the socket's
//! group and the configured uids/gids: its uid and primary gid from `SO_PEERCRED`, its
//! supplementary groups from `SO_PEERGROUPS` (or `/proc/<pid>/status`), never from the names
//! `/etc/group` lists. Each connection has its own
//! thread and a timeout on every read and write: a malformed, oversized or slow client is
//! dropped without affecting the others. `lookup_source` is answered from memory.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use downshiftarr_shim::protocol::{self, ClientError, Request, Response, PROTOCOL_VERSION};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{Group, Uid};

use super::guard::Guard;
use super::Job;
use crate::daemon::admin::{self, AdminRequest, AdminResponse, Incoming};
use crate::daemon::ctx::{AuditMsg, Ctx};
use crate::daemon::lifecycle::Shutdown;

/// What the daemon answers beyond the index: who is watching a transcode session, and the
/// Tautulli trigger (`downshiftarr tautulli`). The guard answers them (`guard::Guard`).
pub trait Answers: Send + Sync {
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

/// The job: binds the socket at start-up (a socket that cannot be bound stops the daemon,
/// as the shim would otherwise probe every file on its own), then serves until shutdown.
pub fn job(ctx: &Ctx) -> Result<Option<Job>> {
    let cfg = ctx.config();
    // The group is for Plex's transcoder user: on a machine without Plex (a Jellyfin-only
    // owner) a missing `plex` group is expected, not worth a warning — the admin CLI runs as
    // root or as the daemon's own user.
    let mut group = cfg.daemon.socket_group.as_str();
    if super::plex_absent(&cfg).is_some() && !matches!(Group::from_name(group), Ok(Some(_))) {
        group = "";
    }
    let (listener, mut access) = bind(Path::new(&cfg.shim.socket), group)?;
    access.uids.extend(&cfg.daemon.allowed_uids);
    access.gids.extend(&cfg.daemon.allowed_gids);
    let ctx = ctx.clone();
    let answers: Arc<dyn Answers> = Arc::new(Guard::new(&ctx));
    Ok(Some(Box::new(move |sd: &Shutdown| {
        serve(&listener, &access, &ctx, &answers, sd)
    })))
}

/// Serves until shutdown.
pub fn serve(
    l: &Listener,
    access: &Access,
    ctx: &Ctx,
    answers: &Arc<dyn Answers>,
    shutdown: &Shutdown,
) -> Result<()> {
    let stats = &ctx.health.socket;
    // A cached thread pool: connections go to an idle worker when there is one, and a new
    // worker starts only when none is idle (spawning a thread per lookup dominated the p99);
    // a slow client still occupies one worker only. Extra workers exit after 30 s idle.
    let active = Arc::new(AtomicUsize::new(0));
    let idle = Arc::new(AtomicUsize::new(0));
    let (work_tx, work_rx) = std::sync::mpsc::channel::<UnixStream>();
    let work_rx = Arc::new(std::sync::Mutex::new(work_rx));
    let start_worker = |permanent: bool| {
        let (ctx, answers, active, idle, rx) = (
            ctx.clone(),
            answers.clone(),
            active.clone(),
            idle.clone(),
            work_rx.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("shim-conn".into())
            .stack_size(256 << 10)
            .spawn(move || {
                worker(&rx, permanent, &idle, &active, &ctx, &*answers);
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
                stats.connections.inc();
                if !allowed(&conn, access) {
                    stats.rejected.inc();
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
fn worker(
    rx: &std::sync::Mutex<std::sync::mpsc::Receiver<UnixStream>>,
    permanent: bool,
    idle: &AtomicUsize,
    active: &AtomicUsize,
    ctx: &Ctx,
    answers: &dyn Answers,
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
        handle(conn, ctx, answers);
        active.fetch_sub(1, Ordering::Relaxed);
    }
}

fn allowed(conn: &UnixStream, access: &Access) -> bool {
    let Ok(c) = getsockopt(conn, PeerCredentials) else {
        return false;
    };
    if access.uids.contains(&c.uid()) || access.gids.contains(&c.gid()) {
        return true;
    }
    // The groups the peer process holds, not what /etc/group lists for its user's name:
    // a member added with `usermod -aG plex` holds `plex` as a supplementary group only,
    // and a name listed in /etc/group does not hold the group until it logs in again.
    let groups = if access.gids.is_empty() {
        Vec::new()
    } else {
        peer_groups(conn, c.pid())
    };
    let ok = groups.iter().any(|g| access.gids.contains(g));
    if !ok {
        tracing::debug!(
            uid = c.uid(),
            gid = c.gid(),
            pid = c.pid(),
            groups = ?groups,
            "refused a socket client"
        );
    }
    ok
}

/// The peer's supplementary groups as the kernel saw them at `connect`: `SO_PEERGROUPS`
/// (Linux 4.13 and later), else the `Groups:` line of `/proc/<pid>/status`. Empty when
/// neither answers (the peer is then judged by its uid and primary gid alone).
fn peer_groups(conn: &UnixStream, pid: i32) -> Vec<u32> {
    so_peergroups(conn)
        .or_else(|| proc_groups(pid))
        .unwrap_or_default()
}

/// `getsockopt(SO_PEERGROUPS)`, growing the buffer once when the kernel says how much it needs.
fn so_peergroups(conn: &UnixStream) -> Option<Vec<u32>> {
    use std::os::fd::AsRawFd;
    const GID: usize = std::mem::size_of::<libc::gid_t>();
    // NGROUPS_MAX on Linux.
    const MAX_GROUPS: usize = 65_536;
    let mut buf: Vec<libc::gid_t> = vec![0; 64];
    for _ in 0..2 {
        let mut len = (buf.len() * GID) as libc::socklen_t;
        // SAFETY: `buf` is valid for `len` bytes; the kernel writes at most `len` bytes and
        // stores the length it wrote (or, with ERANGE, the length it needs) in `len`.
        let r = unsafe {
            libc::getsockopt(
                conn.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let need = len as usize / GID;
        if r == 0 {
            buf.truncate(need.min(buf.len()));
            return Some(buf);
        }
        let erange = std::io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE);
        if !erange || need <= buf.len() || need > MAX_GROUPS {
            return None; // ENOPROTOOPT before Linux 4.13
        }
        buf.resize(need, 0);
    }
    None
}

/// The `Groups:` line of `/proc/<pid>/status`.
fn proc_groups(pid: i32) -> Option<Vec<u32>> {
    if pid <= 0 {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Groups:"))?;
    line.split_whitespace().map(|g| g.parse().ok()).collect()
}

fn handle(mut conn: UnixStream, ctx: &Ctx, answers: &dyn Answers) {
    let stats = &ctx.health.socket;
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
    let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
    loop {
        let body = match protocol::read_frame(&mut conn) {
            Ok(b) => b,
            Err(ClientError::Eof) => return,
            Err(e) => {
                if !matches!(e, ClientError::Timeout) {
                    stats.bad_frames.inc();
                }
                tracing::debug!("dropping a shim connection: {e}");
                return;
            }
        };
        let response = match admin::decode_request(&body) {
            Ok(Incoming::Shim(req)) => answer(req, ctx, answers).map(|r| protocol::encode(&r)),
            Ok(Incoming::Admin(req)) => Some(protocol::encode(&answer_admin(req, ctx, answers))),
            Err(e) => {
                stats.bad_frames.inc();
                let _ = conn.write_all(&protocol::encode(&Response::Error {
                    message: e.to_string(),
                }));
                return;
            }
        };
        if let Some(r) = response {
            if conn.write_all(&r).is_err() {
                return;
            }
        }
    }
}

/// The answer to one request; `None` for fire-and-forget reports.
fn answer(req: Request, ctx: &Ctx, answers: &dyn Answers) -> Option<Response> {
    let stats = &ctx.health.socket;
    Some(match req {
        Request::Ping => Response::Pong,
        Request::Version => Response::Version {
            version: downshiftarr_shim::VERSION.into(),
            protocol: PROTOCOL_VERSION,
        },
        Request::LookupSource { path } => {
            stats.lookups.inc();
            match ctx.lookup.get(&path) {
                Some(e) => {
                    stats.lookup_hits.inc();
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
            stats.decisions.inc();
            ctx.audit.send(AuditMsg::Shim(record));
            return None;
        }
        Request::SessionContext {
            transcode_session,
            wait_ms,
        } => Response::Session {
            viewer: answers.viewer(
                &transcode_session,
                Duration::from_millis(wait_ms.min(5000) as u64),
            ),
        },
    })
}

/// The answer to one request of the admin CLI (`status`, `tautulli`).
fn answer_admin(req: AdminRequest, ctx: &Ctx, answers: &dyn Answers) -> AdminResponse {
    match req {
        AdminRequest::Status => AdminResponse::Status {
            status: Box::new(ctx.health.status()),
        },
        AdminRequest::TautulliEvent { event } => AdminResponse::Enforced {
            outcome: answers.tautulli(&event),
        },
    }
}

#[cfg(test)]
mod tests {
    //! Real peers: a forked child takes a uid, a primary gid and supplementary groups (the
    //! tests run as root), then connects; `allowed` judges the accepted connection.

    use super::*;
    use std::os::unix::ffi::OsStrExt;

    /// A socket anyone may connect to, in a directory anyone may enter.
    fn open_socket() -> (tempfile::TempDir, PathBuf, UnixListener) {
        let dir = tempfile::Builder::new()
            .prefix("dsa-peer-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("s.sock");
        let l = UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        l.set_nonblocking(true).unwrap();
        (dir, path, l)
    }

    /// Forks a peer with these credentials that connects to `path` and waits for the
    /// connection to close; returns the accepted connection and the peer's pid.
    fn peer(
        path: &Path,
        l: &UnixListener,
        uid: u32,
        gid: u32,
        groups: &[u32],
    ) -> (UnixStream, i32) {
        // Everything the child touches is prepared before the fork: after it, the child
        // makes only async-signal-safe system calls.
        // SAFETY: an all-zero sockaddr_un is valid.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, s) in addr.sun_path.iter_mut().zip(path.as_os_str().as_bytes()) {
            *d = *s as libc::c_char;
        }
        let groups: Vec<libc::gid_t> = groups.to_vec();
        // SAFETY: the child calls only setgroups, setgid, setuid, socket, connect, read and
        // _exit, on memory prepared above.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            unsafe {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    libc::_exit(3);
                }
                let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
                let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
                if libc::connect(fd, (&raw const addr).cast(), len) != 0 {
                    libc::_exit(4);
                }
                let mut b = 0u8;
                libc::read(fd, (&raw mut b).cast(), 1);
                libc::_exit(0);
            }
        }
        assert!(pid > 0, "fork failed");
        let t = std::time::Instant::now();
        loop {
            match l.accept() {
                Ok((c, _)) => return (c, pid),
                Err(_) if t.elapsed() < Duration::from_secs(5) => {
                    let mut status = 0;
                    // SAFETY: waitpid on our own child.
                    if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                        panic!(
                            "the peer exited with {} before connecting (the tests run as root)",
                            libc::WEXITSTATUS(status)
                        );
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("the peer never connected: {e}"),
            }
        }
    }

    fn reap(conn: UnixStream, pid: i32) {
        drop(conn);
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }

    const NOBODY: u32 = 65534;

    /// Fixed answers: what is tested is the service's framing and dispatch.
    struct Fixed;

    impl Answers for Fixed {
        fn viewer(&self, _: &str, _: Duration) -> downshiftarr_shim::policy::Viewer {
            Default::default()
        }
        fn tautulli(&self, event: &serde_json::Value) -> serde_json::Value {
            serde_json::json!({"action": "none", "reason": "test", "seen": event})
        }
    }

    /// Sends one raw frame body and reads the answer's body.
    fn ask(c: &mut UnixStream, body: &[u8]) -> Vec<u8> {
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(body);
        c.write_all(&frame).unwrap();
        protocol::read_frame(c).unwrap()
    }

    /// `status` and `tautulli_event` left the shim's protocol for the daemon's admin one:
    /// the shim's `Request` no longer reads them, the daemon still answers them (typed) on
    /// the same connection as the shim's requests, and a frame neither reads gets an error
    /// naming it before the connection closes.
    #[test]
    fn the_daemon_answers_admin_requests_the_shim_protocol_no_longer_reads() {
        let ctx = Ctx::new(
            PathBuf::from("/nonexistent/config.json"),
            crate::config::Config::default(),
            Shutdown::default(),
            Arc::new(crate::daemon::health::Health::new()),
            crate::store::lookup::Lookup::default(),
        );
        let (mut c, s) = UnixStream::pair().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let served = {
            let ctx = ctx.clone();
            std::thread::spawn(move || handle(s, &ctx, &Fixed))
        };
        let status = br#"{"v":1,"type":"status"}"#;
        assert!(matches!(
            protocol::decode::<Request>(status),
            Err(ClientError::BadFrame(_))
        ));
        let r: Response = protocol::decode(&ask(
            &mut c,
            br#"{"v":1,"type":"lookup_source","path":"/m/none.mkv"}"#,
        ))
        .unwrap();
        assert!(matches!(r, Response::Source { found: false, .. }), "{r:?}");
        let r: AdminResponse = protocol::decode(&ask(&mut c, status)).unwrap();
        let AdminResponse::Status { status } = r else {
            panic!("{r:?}")
        };
        assert_eq!(status.version, downshiftarr_shim::VERSION);
        assert!(status.healthy, "{status:?}");
        assert_eq!((status.shim.lookups, status.shim.lookup_hits), (1, 0));
        let r: AdminResponse = protocol::decode(&ask(
            &mut c,
            br#"{"v":1,"type":"tautulli_event","event":{"rating_key":"5"}}"#,
        ))
        .unwrap();
        let AdminResponse::Enforced { outcome } = r else {
            panic!("{r:?}")
        };
        assert_eq!(outcome["seen"]["rating_key"], "5", "{outcome}");
        let r: Response = protocol::decode(&ask(&mut c, br#"{"v":1,"type":"ping"}"#)).unwrap();
        assert_eq!(r, Response::Pong);
        let r: Response = protocol::decode(&ask(&mut c, br#"{"v":1,"type":"nope"}"#)).unwrap();
        let Response::Error { message } = r else {
            panic!("{r:?}")
        };
        assert!(
            message.contains(r#"unknown request type "nope""#)
                && message.contains("lookup_source")
                && message.contains("status"),
            "{message}"
        );
        assert!(matches!(
            protocol::read_frame(&mut c),
            Err(ClientError::Eof)
        ));
        served.join().unwrap();
        assert_eq!(ctx.health.socket.bad_frames.get(&[]) as u64, 1);
    }

    #[test]
    fn a_peer_holding_the_socket_group_only_as_a_supplementary_group_is_admitted() {
        let (_dir, path, l) = open_socket();
        let access = Access {
            uids: vec![0],
            gids: vec![4242],
        };
        let (conn, pid) = peer(&path, &l, NOBODY, NOBODY, &[4001, 4242]);
        assert!(
            allowed(&conn, &access),
            "nobody holding group 4242 as a supplementary group must be admitted"
        );
        // The fallback for kernels without SO_PEERGROUPS reads the same groups.
        assert_eq!(proc_groups(pid), Some(vec![4001, 4242]));
        assert_eq!(so_peergroups(&conn), Some(vec![4001, 4242]));
        reap(conn, pid);

        let (conn, pid) = peer(&path, &l, NOBODY, NOBODY, &[4001]);
        assert!(!allowed(&conn, &access), "a peer without group 4242");
        reap(conn, pid);
    }

    #[test]
    fn a_user_listed_in_etc_group_who_does_not_hold_the_group_is_refused() {
        // A group whose /etc/group line names a member whose primary group it is not.
        let text = std::fs::read_to_string("/etc/group").unwrap_or_default();
        let listed = text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let gid: u32 = f.get(2)?.parse().ok()?;
            f.get(3)?.split(',').find_map(|name| {
                let u = nix::unistd::User::from_name(name.trim()).ok()??;
                (u.uid.as_raw() != 0 && u.gid.as_raw() != gid)
                    .then(|| (gid, u.uid.as_raw(), u.gid.as_raw()))
            })
        });
        let Some((group, uid, primary)) = listed else {
            eprintln!("no /etc/group line lists a non-root member outside its primary group");
            return;
        };
        let (_dir, path, l) = open_socket();
        let access = Access {
            uids: vec![0],
            gids: vec![group],
        };
        // The process holds only its primary group, as after `usermod -aG` before a new login.
        let (conn, pid) = peer(&path, &l, uid, primary, &[]);
        assert!(
            !allowed(&conn, &access),
            "uid {uid} is listed in group {group} but does not hold it"
        );
        reap(conn, pid);
    }
}
