//! The qBittorrent client and the throttle's restore logic against a REAL `qbittorrent-nox`
//! (issue 11), plus qBittorrent ≥ 5.2 behaviour against a faithful fake (`fake_qbittorrent`).
//!
//! Each test starts its own qBittorrent on a free loopback port with a throwaway profile whose
//! WebUI credentials are written to `qBittorrent.conf` before start (PBKDF2-HMAC-SHA512, as
//! qBittorrent stores them), and kills it when the test ends. Without `qbittorrent-nox` the
//! real-server tests are skipped with a printed reason — unless `CI` is set, where they fail.
//!

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use downshiftarr::clients::qbittorrent::{
    QbitError, QbitOptions, Qbittorrent, RateLimit, SpeedState,
};
use downshiftarr::jobs::throttle::apply::Applier;
use downshiftarr::jobs::throttle::machine::Target;
use downshiftarr::jobs::throttle::restore::Write;

pub(crate) const USER: &str = "admin";
pub(crate) const PASSWORD: &str = "correct horse battery";

/// A running `qbittorrent-nox`, killed on drop (also used by `throttle_cli`, `throttle_daemon` and
/// `benches/throttle_reaction.rs`).
pub(crate) struct RealQbit {
    pub(crate) child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    localhost_auth: bool,
}

impl RealQbit {
    /// Starts one, or `None` (after saying why) when the binary is absent outside CI.
    pub(crate) fn start(localhost_auth: bool) -> Option<RealQbit> {
        let Some(_) = find_in_path("qbittorrent-nox") else {
            if std::env::var_os("CI").is_some() {
                panic!("qbittorrent-nox is not installed and CI is set: install the Debian package qbittorrent-nox");
            }
            eprintln!("skipped: qbittorrent-nox is not installed (apt-get install qbittorrent-nox); CI must have it");
            return None;
        };
        let mut q = RealQbit {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            localhost_auth,
        };
        q.write_config();
        q.launch();
        Some(q)
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn conf_path(&self) -> PathBuf {
        self.dir.path().join("qBittorrent/config/qBittorrent.conf")
    }

    /// The configuration "as the owner left it": credentials, no speed limits, quiet network.
    fn write_config(&self) {
        let salt: [u8; 16] = *b"downshiftarr-slt";
        let key = pbkdf2_hmac_sha512(PASSWORD.as_bytes(), &salt, 100_000);
        let conf = format!(
            "[LegalNotice]\nAccepted=true\n\n\
             [BitTorrent]\nSession\\DefaultSavePath={dl}\nSession\\Port={torrent_port}\n\
             Session\\DHTEnabled=false\nSession\\LSDEnabled=false\nSession\\PeXEnabled=false\n\n\
             [Preferences]\nConnection\\UPnP=false\nWebUI\\Address=127.0.0.1\nWebUI\\Port={port}\n\
             WebUI\\Username={USER}\nWebUI\\Password_PBKDF2=\"@ByteArray({salt}:{key})\"\n\
             WebUI\\LocalHostAuth={auth}\n",
            dl = self.dir.path().join("downloads").display(),
            torrent_port = free_port(),
            port = self.port,
            salt = base64(&salt),
            key = base64(&key),
            auth = self.localhost_auth,
        );
        let path = self.conf_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, conf).unwrap();
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("qbittorrent.log")).unwrap();
        let child = Command::new("qbittorrent-nox")
            .arg(format!("--profile={}", self.dir.path().display()))
            .arg(format!("--webui-port={}", self.port))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start qbittorrent-nox");
        self.child = Some(child);
        // Ready when the WebUI answers anything (403 included).
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http
                .get(format!("{}/api/v2/app/version", self.url()))
                .send()
                .is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "qbittorrent-nox did not answer on {} within 30 s; its log:\n{}",
            self.url(),
            std::fs::read_to_string(self.dir.path().join("qbittorrent.log")).unwrap_or_default()
        );
    }

    /// `kill -9`, then start again with the configuration as the owner left it: the limits it
    /// comes back with are its configured ones, whatever it saved or not before dying.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.write_config();
        self.launch();
    }

    /// Sends `sig` (`-STOP`, `-CONT`) to the running qbittorrent-nox.
    pub(crate) fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        assert!(std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success());
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn client(&self, password: Option<&str>) -> Qbittorrent {
        let mut o = QbitOptions::new(&self.url());
        o.username = USER.into();
        o.password = password.map(str::to_string);
        o.timeout = Duration::from_secs(5);
        Qbittorrent::new(o).unwrap()
    }
}

impl Drop for RealQbit {
    fn drop(&mut self) {
        self.kill();
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn kib(k: u64) -> RateLimit {
    RateLimit::from_kib(k)
}

#[test]
fn login_limits_and_alternative_mode() {
    let Some(q) = RealQbit::start(true) else {
        return;
    };
    let mut c = q.client(Some(PASSWORD));
    let v = c.webapi_version().unwrap();
    assert!(v.0 >= 2, "{v}");
    assert_eq!(c.login_attempts(), 1, "one login, on the first 403");
    assert_eq!(
        c.speed_state().unwrap(),
        SpeedState {
            upload: RateLimit(0),
            download: RateLimit(0),
            alt_mode: false
        }
    );
    c.set_upload_limit(kib(500)).unwrap();
    c.set_download_limit(kib(2000)).unwrap();
    assert_eq!(
        c.upload_limit().unwrap(),
        RateLimit(512_000),
        "bytes/s on the wire"
    );
    assert_eq!(c.download_limit().unwrap(), kib(2000));
    c.set_alt_speed_mode(true).unwrap();
    c.set_alt_speed_mode(true).unwrap();
    assert!(
        c.alt_speed_mode().unwrap(),
        "setting the mode twice leaves it on (no toggle)"
    );
    c.set_alt_speed_mode(false).unwrap();
    assert!(!c.alt_speed_mode().unwrap());
    assert_eq!(
        c.upload_limit().unwrap(),
        kib(500),
        "the normal limit again"
    );
    assert_eq!(c.login_attempts(), 1, "the session was reused throughout");
}

#[test]
fn limit_throttle_is_stored_before_it_is_applied_and_restored_exactly() {
    let Some(q) = RealQbit::start(true) else {
        return;
    };
    let mut c = q.client(Some(PASSWORD));
    // qBittorrent keeps limits in whole KiB/s (300000 B/s reads back as 299008).
    c.set_upload_limit(RateLimit(300_000)).unwrap();
    let owners = c.upload_limit().unwrap();
    assert_eq!(owners, RateLimit(299_008));
    let mut observer = q.client(Some(PASSWORD));
    let target = Target::Limits {
        upload: kib(100),
        download: Some(kib(50)),
    };
    let mut stored = None;
    let state = Applier::new(&mut c)
        .engage(target, "1 remote stream: alice on Roku (wan)", 1, |s| {
            // Persisted before any change: qBittorrent still has the owner's values.
            assert_eq!(observer.upload_limit().unwrap(), owners);
            stored = Some(s.to_json()?);
            Ok(())
        })
        .unwrap();
    assert_eq!(stored.as_deref(), Some(state.to_json().unwrap().as_str()));
    assert_eq!(observer.upload_limit().unwrap(), kib(100));
    assert_eq!(observer.download_limit().unwrap(), kib(50));
    // The daemon restarts: the stored record is all it has.
    let state =
        downshiftarr::jobs::throttle::apply::ThrottleState::from_json(&stored.unwrap()).unwrap();
    let mut fresh = q.client(Some(PASSWORD));
    let plan = Applier::new(&mut fresh).release(&state, None).unwrap();
    assert!(plan.user_changed.is_empty(), "{plan:?}");
    assert_eq!(observer.upload_limit().unwrap(), owners);
    assert_eq!(observer.download_limit().unwrap(), RateLimit::UNLIMITED);
    // A failed store changes nothing.
    let e = Applier::new(&mut fresh)
        .engage(target, "r", 2, |_| Err("disk full".into()))
        .unwrap_err();
    assert!(
        e.to_string().contains("not stored") && e.to_string().contains("disk full"),
        "{e}"
    );
    assert_eq!(observer.upload_limit().unwrap(), owners);
}

#[test]
fn alt_speed_throttle_toggles_and_restores_the_mode_only() {
    let Some(q) = RealQbit::start(true) else {
        return;
    };
    let mut c = q.client(Some(PASSWORD));
    c.set_upload_limit(kib(300)).unwrap();
    let state = Applier::new(&mut c)
        .engage(Target::AltSpeed, "1 remote stream", 1, |_| Ok(()))
        .unwrap();
    assert!(c.alt_speed_mode().unwrap());
    let plan = Applier::new(&mut c).release(&state, None).unwrap();
    assert_eq!(plan.writes, [Write::AltMode(false)]);
    assert!(!c.alt_speed_mode().unwrap());
    assert_eq!(
        c.upload_limit().unwrap(),
        kib(300),
        "the owner's own limit untouched"
    );
}

#[test]
fn a_logged_out_session_is_renewed_with_one_login() {
    let Some(q) = RealQbit::start(true) else {
        return;
    };
    let mut c = q.client(Some(PASSWORD));
    c.upload_limit().unwrap();
    assert_eq!(c.login_attempts(), 1);
    c.logout().unwrap();
    // The server now answers 403 to us: one login, then the call succeeds.
    assert_eq!(c.upload_limit().unwrap(), RateLimit::UNLIMITED);
    assert_eq!(c.login_attempts(), 2);
    // A restart of qBittorrent forgets every session: same again.
    let mut q = q;
    q.restart();
    c.upload_limit().unwrap();
    assert_eq!(c.login_attempts(), 3);
}

#[test]
fn a_wrong_password_is_tried_once_per_back_off_and_never_gets_us_banned() {
    let Some(q) = RealQbit::start(true) else {
        return;
    };
    let mut o = QbitOptions::new(&q.url());
    o.username = USER.into();
    o.password = Some("wrong".into());
    o.backoff_initial = Duration::from_secs(3);
    let mut c = Qbittorrent::new(o).unwrap();
    let t0 = Instant::now();
    let first = c.upload_limit().unwrap_err();
    assert!(matches!(first, QbitError::LoginRefused { .. }), "{first}");
    // A daemon polling every 10 ms for a second (well inside the 3 s back-off): no login.
    let mut polls = 0;
    while t0.elapsed() < Duration::from_secs(1) {
        let e = c.upload_limit().unwrap_err();
        assert!(matches!(e, QbitError::BackingOff { .. }), "{e}");
        polls += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(polls > 5, "{polls}");
    assert_eq!(c.login_attempts(), 1);
    let msg = c.auth_problem().unwrap();
    let login_url = format!("{}/api/v2/auth/login", q.url());
    assert!(
        msg.contains(&format!(
            "login refused at {login_url} as \"admin\"; next attempt in"
        )) && msg.contains("check qbittorrent password"),
        "{msg}"
    );
    assert!(!msg.contains("wrong"), "no password in messages: {msg}");
    // After the back-off: exactly one more attempt, and the next wait is longer.
    std::thread::sleep(
        (t0 + Duration::from_millis(3200)).saturating_duration_since(Instant::now()),
    );
    assert!(matches!(
        c.upload_limit().unwrap_err(),
        QbitError::LoginRefused { .. }
    ));
    assert!(matches!(
        c.upload_limit().unwrap_err(),
        QbitError::BackingOff { .. }
    ));
    assert_eq!(c.login_attempts(), 2);
    let msg = c.auth_problem().unwrap();
    assert!(
        msg.contains("next attempt in 6s") || msg.contains("next attempt in 5s"),
        "the back-off doubled: {msg}"
    );
    // Two failures, far from qBittorrent's five: the owner (and we, fixed) still get in.
    let mut owner = q.client(Some(PASSWORD));
    assert_eq!(owner.upload_limit().unwrap(), RateLimit::UNLIMITED);
    c.set_credentials(USER, Some(PASSWORD.into()));
    assert_eq!(c.upload_limit().unwrap(), RateLimit::UNLIMITED);
    assert!(c.auth_problem().is_none());
}

#[test]
fn localhost_bypass_works_without_credentials_and_without_logging_in() {
    let Some(q) = RealQbit::start(false) else {
        return;
    };
    let mut anonymous = q.client(None);
    anonymous.set_upload_limit(kib(64)).unwrap();
    assert_eq!(anonymous.upload_limit().unwrap(), kib(64));
    let mut wrong = q.client(Some("wrong"));
    assert_eq!(wrong.upload_limit().unwrap(), kib(64));
    assert_eq!((anonymous.login_attempts(), wrong.login_attempts()), (0, 0));
    // The same client against a server that wants a login says what to configure.
    let Some(locked) = RealQbit::start(true) else {
        return;
    };
    let e = locked.client(None).upload_limit().unwrap_err();
    assert!(
        matches!(e, QbitError::NoCredentials { .. })
            && e.to_string().contains("QBITTORRENT_PASSWORD"),
        "{e}"
    );
}

#[test]
fn a_qbittorrent_restart_is_reapplied_and_a_hand_change_is_left_alone() {
    let Some(mut q) = RealQbit::start(true) else {
        return;
    };
    let mut c = q.client(Some(PASSWORD));
    let target = Target::Limits {
        upload: kib(200),
        download: None,
    };
    let state = Applier::new(&mut c)
        .engage(target, "1 remote stream", 1, |_| Ok(()))
        .unwrap();
    assert!(Applier::new(&mut c)
        .verify(&state)
        .unwrap()
        .writes
        .is_empty());
    q.restart();
    let plan = Applier::new(&mut c).verify(&state).unwrap();
    assert_eq!(plan.writes, [Write::Upload(kib(200))], "{plan:?}");
    assert_eq!(
        c.upload_limit().unwrap(),
        kib(200),
        "re-applied after the restart"
    );
    // The owner sets their own limit mid-throttle: verify and release both leave it.
    let mut owner = q.client(Some(PASSWORD));
    owner.set_upload_limit(kib(123)).unwrap();
    let plan = Applier::new(&mut c).verify(&state).unwrap();
    assert!(plan.writes.is_empty());
    assert!(
        plan.user_changed[0].contains("changed by hand to 123 KiB/s"),
        "{plan:?}"
    );
    let plan = Applier::new(&mut c).release(&state, None).unwrap();
    assert!(plan.writes.is_empty() && !plan.user_changed.is_empty());
    assert_eq!(owner.upload_limit().unwrap(), kib(123));
}

#[test]
fn the_test_password_hash_is_pbkdf2_hmac_sha512() {
    // The published PBKDF2-HMAC-SHA512 vector (password, salt, c = 1); python3's
    // hashlib.pbkdf2_hmac gives the same.
    let dk = pbkdf2_hmac_sha512(b"password", b"salt", 1);
    assert_eq!(
        hex(&dk),
        "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252\
         c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce"
    );
    assert_eq!(base64(b"any carnal pleas"), "YW55IGNhcm5hbCBwbGVhcw==");
    assert_eq!(base64(b"any carnal pleasu"), "YW55IGNhcm5hbCBwbGVhc3U=");
    assert_eq!(base64(b"any carnal pleasur"), "YW55IGNhcm5hbCBwbGVhc3Vy");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> [u8; 64] {
    use sha2::{Digest, Sha512};
    let mut k = [0u8; 128];
    if key.len() > 128 {
        k[..64].copy_from_slice(&Sha512::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha512::new();
    inner.update(k.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha512::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// PBKDF2-HMAC-SHA512 with a 64-byte key (one block), as qBittorrent stores WebUI passwords.
fn pbkdf2_hmac_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 64] {
    let mut u = hmac_sha512(password, &[salt, &1u32.to_be_bytes()]);
    let mut t = u;
    for _ in 1..iterations {
        u = hmac_sha512(password, &[&u]);
        t.iter_mut().zip(u).for_each(|(a, b)| *a ^= b);
    }
    t
}

fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
