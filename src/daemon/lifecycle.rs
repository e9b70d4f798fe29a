//! The daemon's lifecycle: one shutdown signal fanned out to every job, SIGHUP as a reload
//! request, the instance lock, and systemd's readiness notification.
//!
//! Signals are blocked in every thread (before any is spawned) and received by one thread
//! with `sigwait`, so no job is ever interrupted mid-syscall and no handler runs async code
//! (kanidm unixd's habit).

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{SigSet, Signal};

/// Shared by every job: the stop flag (with a condvar to sleep on) and the reload counter.
#[derive(Clone, Default)]
pub struct Shutdown {
    inner: Arc<(Mutex<bool>, Condvar)>,
    stopping: Arc<AtomicBool>,
    reloads: Arc<AtomicU64>,
}

impl Shutdown {
    pub fn trigger(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let (m, c) = &*self.inner;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        c.notify_all();
    }
    pub fn is_set(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
    /// Sleeps up to `d`; returns true if shutdown was requested.
    pub fn wait(&self, d: Duration) -> bool {
        let (m, c) = &*self.inner;
        let guard = m.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = c
            .wait_timeout_while(guard, d, |stop| !*stop)
            .unwrap_or_else(|e| e.into_inner());
        *guard
    }
    pub fn request_reload(&self) {
        self.reloads.fetch_add(1, Ordering::SeqCst);
        let (_, c) = &*self.inner;
        c.notify_all();
    }
    pub fn reload_generation(&self) -> u64 {
        self.reloads.load(Ordering::SeqCst)
    }
}

/// Blocks the signals the daemon handles in this thread (and so in every thread it spawns).
pub fn block_signals() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().context("unable to block signals")?;
    Ok(set)
}

/// Receives signals forever: SIGTERM/SIGINT stop, SIGHUP reloads.
pub fn spawn_signal_thread(set: SigSet, shutdown: Shutdown) -> Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            match set.wait() {
                Ok(Signal::SIGHUP) => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    shutdown.request_reload();
                }
                Ok(sig) => {
                    tracing::info!("{sig}: stopping");
                    shutdown.trigger();
                    return;
                }
                Err(e) => {
                    tracing::error!("sigwait failed: {e}");
                    shutdown.trigger();
                    return;
                }
            }
        })
        .context("unable to start the signal thread")?;
    Ok(())
}

/// Holds the instance lock on the state directory for the daemon's lifetime.
pub struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    pub fn acquire(state_dir: &Path) -> Result<InstanceLock> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("unable to create state directory {}", state_dir.display()))?;
        let path = state_dir.join("daemon.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("unable to open instance lock {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(InstanceLock { _file: file }),
            Err(TryLockError::WouldBlock) => bail!(
                "another downshiftarr daemon already runs on {}",
                state_dir.display()
            ),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("unable to lock {}", path.display()))
            }
        }
    }
}

/// Tells systemd (Type=notify) something; a no-op without `NOTIFY_SOCKET`.
pub fn notify(state: &str) {
    let Some(addr) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = addr.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), Path::new(&addr))
    };
    if let Err(e) = sent {
        tracing::warn!("unable to notify systemd: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_wakes_sleepers() {
        let s = Shutdown::default();
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.wait(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        s.trigger();
        assert!(t.join().unwrap());
        assert!(s.wait(Duration::from_millis(1)));
    }

    #[test]
    fn second_lock_fails() {
        let d = tempfile::tempdir().unwrap();
        let _a = InstanceLock::acquire(d.path()).unwrap();
        let e = InstanceLock::acquire(d.path()).err().unwrap();
        assert!(e.to_string().contains("another downshiftarr daemon"), "{e}");
    }

    #[test]
    fn notify_reaches_a_datagram_socket() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("notify");
        let rx = UnixDatagram::bind(&p).unwrap();
        // SAFETY-free: set_var is unsafe only with concurrent env readers; this test's
        // variable is read by this thread alone.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &p) };
        notify("READY=1");
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let mut buf = [0u8; 16];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
