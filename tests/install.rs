//! The installer, the healer, the container init step and the systemd unit — all in temporary
//! trees; no real `/` is touched.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::util;

const PLEX: &str = "usr/lib/plexmediaserver";
const MARKER: &[u8] = b"downshiftarr-shim-marker:v1";

/// A genuine-looking Plex transcoder: a script that answers `-version` and records its args.
fn plex_binary(version: &str) -> String {
    format!("#!/bin/sh\n# Plex Transcoder {version}\n[ -n \"$FAKE_RECORD\" ] && printf '%s\\n' \"$@\" > \"$FAKE_RECORD\"\necho \"Plex Transcoder {version}\"\n")
}

fn write_exe(p: &Path, body: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn plex_tree(root: &Path, version: &str) {
    write_exe(
        &root.join(PLEX).join("Plex Transcoder"),
        &plex_binary(version),
    );
    write_exe(
        &root.join(PLEX).join("Plex Media Server"),
        "#!/bin/sh\nexit 0\n",
    );
}

fn transcoder(root: &Path) -> PathBuf {
    root.join(PLEX).join("Plex Transcoder")
}
fn real(root: &Path) -> PathBuf {
    root.join(PLEX).join("Plex Transcoder.downshiftarr-real")
}

fn is_shim(p: &Path) -> bool {
    std::fs::read(p).is_ok_and(|b| b.windows(MARKER.len()).any(|w| w == MARKER))
}

fn installer(root: &Path, args: &[&str]) -> Output {
    let out = Command::new("bash")
        .arg(util::repo().join("install/install.sh"))
        .args([
            "--root",
            root.to_str().unwrap(),
            "--bin-dir",
            util::bin_dir().to_str().unwrap(),
        ])
        .args(args)
        .env("DOWNSHIFTARR_CONFIG", root.join("no-host-config.json"))
        .env("DOWNSHIFTARR_DECISION_LOG", "")
        .env_remove("PLEX_TOKEN")
        .output()
        .unwrap();
    out
}

/// The lines the installer itself says (not the `+ command` lines of a dry run).
fn said(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.starts_with("downshiftarr:"))
        .collect()
}

fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "installer failed:\n{text}");
    text
}

/// Every path under `root` with its type, mode and content (or link target).
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, m: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                m.insert(
                    rel,
                    format!("link -> {}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if meta.is_dir() {
                m.insert(rel, format!("dir {mode:o}"));
                walk(root, &p, m);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                m.insert(
                    rel,
                    format!("file {mode:o} {} bytes {:x}", bytes.len(), fnv(&bytes)),
                );
            }
        }
    }
    walk(root, root, &mut m);
    m
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, x| {
        (h ^ *x as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in a {
        match b.get(k) {
            None => out.push_str(&format!("- {k}: {v}\n")),
            Some(w) if w != v => out.push_str(&format!("~ {k}: {v} => {w}\n")),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            out.push_str(&format!("+ {k}: {v}\n"));
        }
    }
    out
}

#[test]
fn install_puts_the_shim_in_front_of_the_original() {
    let d = util::tempdir();
    plex_tree(d.path(), "v1");
    let log = ok(&installer(d.path(), &[]));
    assert!(log.contains("Plex found in"), "{log}");
    assert!(
        is_shim(&transcoder(d.path())),
        "the transcoder path holds the shim"
    );
    assert_eq!(
        util::read(&real(d.path())),
        plex_binary("v1"),
        "the original is beside it, unchanged"
    );
    // The installed shim execs the original with the job's arguments.
    let rec = d.path().join("record");
    let out = Command::new(transcoder(d.path()))
        .args([
            "-i",
            "/m/x.mkv",
            "-vf",
            "fps=1",
            "-f",
            "image2",
            "t-%05d.jpeg",
        ])
        .env("FAKE_RECORD", &rec)
        .env("DOWNSHIFTARR_CONFIG", d.path().join("none.json"))
        .env("DOWNSHIFTARR_SOCKET", "")
        .env("DOWNSHIFTARR_DECISION_LOG", "")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        util::read(&rec),
        "-i\n/m/x.mkv\n-vf\nfps=1\n-f\nimage2\nt-%05d.jpeg\n"
    );
    assert!(d
        .path()
        .join("usr/lib/downshiftarr/downshiftarr-shim")
        .exists());
    assert!(d.path().join("etc/downshiftarr/config.json").exists());
    assert!(d
        .path()
        .join("etc/systemd/system/downshiftarr.service")
        .exists());
    let sum = util::read(&d.path().join("var/lib/downshiftarr/original.sha256"));
    assert!(
        sum.ends_with("  Plex Transcoder.downshiftarr-real\n"),
        "{sum}"
    );
}

#[test]
fn second_install_changes_nothing_and_dry_run_changes_nothing() {
    let d = util::tempdir();
    plex_tree(d.path(), "v1");
    let before = snapshot(d.path());
    let log = ok(&installer(d.path(), &["--dry-run"]));
    assert!(log.contains("+ mv -f"), "dry run prints the steps: {log}");
    assert_eq!(snapshot(d.path()), before, "dry run changed the tree");
    ok(&installer(d.path(), &[]));
    let once = snapshot(d.path());
    let log = ok(&installer(d.path(), &[]));
    assert!(log.contains("already current"), "{log}");
    let twice = snapshot(d.path());
    assert!(
        once == twice,
        "the second run changed:\n{}",
        diff(&once, &twice)
    );
}

#[test]
fn uninstall_purge_restores_the_tree_byte_for_byte() {
    let d = util::tempdir();
    plex_tree(d.path(), "v1");
    let before = snapshot(d.path());
    ok(&installer(d.path(), &[]));
    let log = ok(&installer(d.path(), &["--uninstall"]));
    assert!(log.contains("matches the checksum"), "{log}");
    assert_eq!(util::read(&transcoder(d.path())), plex_binary("v1"));
    assert!(
        d.path().join("etc/downshiftarr/config.json").exists(),
        "config kept without --purge"
    );
    ok(&installer(d.path(), &[]));
    ok(&installer(d.path(), &["--uninstall", "--purge"]));
    let after = snapshot(d.path());
    assert!(before == after, "not restored:\n{}", diff(&before, &after));
}

/// The directories every real system already has, so the installer creates only its own
/// (`/etc/downshiftarr`, `/var/lib/downshiftarr`, …) — the order in which a purge once failed.
fn system_dirs(root: &Path) {
    for d in [
        "etc/systemd/system",
        "usr/lib",
        "usr/local/bin",
        "var/lib",
        "var/log",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
}

#[test]
fn uninstall_purge_removes_every_created_directory_on_a_real_systems_layout() {
    let d = util::tempdir();
    system_dirs(d.path());
    plex_tree(d.path(), "v1");
    let before = snapshot(d.path());
    ok(&installer(d.path(), &[]));
    let created = util::read(&d.path().join("var/lib/downshiftarr/created-dirs"));
    assert!(
        created.lines().all(|l| l.contains("downshiftarr")),
        "only our own directories were created:\n{created}"
    );
    let out = installer(d.path(), &["--uninstall", "--purge"]);
    let log = ok(&out);
    assert!(log.trim_end().ends_with("uninstalled"), "{log}");
    let after = snapshot(d.path());
    assert!(before == after, "not restored:\n{}", diff(&before, &after));
}

#[test]
fn uninstall_refuses_an_original_that_does_not_match_its_checksum() {
    let d = util::tempdir();
    plex_tree(d.path(), "v1");
    ok(&installer(d.path(), &[]));
    write_exe(&real(d.path()), &plex_binary("tampered"));
    let out = installer(d.path(), &["--uninstall"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not match the checksum"));
    assert!(is_shim(&transcoder(d.path())), "nothing was changed");
}

#[test]
fn a_genuine_binary_over_the_shim_becomes_the_new_original_on_reinstall() {
    let d = util::tempdir();
    plex_tree(d.path(), "v1");
    ok(&installer(d.path(), &[]));
    write_exe(&transcoder(d.path()), &plex_binary("v2")); // a manual update behind our back
    let log = ok(&installer(d.path(), &[]));
    assert!(log.contains("replacing the stale original"), "{log}");
    assert!(is_shim(&transcoder(d.path())));
    assert_eq!(util::read(&real(d.path())), plex_binary("v2"));
}

/// Builds `plexmediaserver_<v>.deb` with the given transcoder.
fn deb(dir: &Path, version: &str) -> PathBuf {
    let pkg = dir.join(format!("pkg-{version}"));
    std::fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    std::fs::write(
        pkg.join("DEBIAN/control"),
        format!("Package: plexmediaserver\nVersion: {version}\nArchitecture: all\nMaintainer: tests <t@example.invalid>\nDescription: fake Plex Media Server for downshiftarr tests\n"),
    )
    .unwrap();
    write_exe(
        &pkg.join(PLEX).join("Plex Transcoder"),
        &plex_binary(version),
    );
    // Real packages carry md5sums; the uninstaller checks a dpkg-upgraded original against them.
    let md5 = Command::new("md5sum")
        .arg(pkg.join(PLEX).join("Plex Transcoder"))
        .output()
        .unwrap();
    let sum = String::from_utf8_lossy(&md5.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(
        pkg.join("DEBIAN/md5sums"),
        format!("{sum}  {PLEX}/Plex Transcoder\n"),
    )
    .unwrap();
    let out = dir.join(format!("plexmediaserver_{version}.deb"));
    let st = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&pkg)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    out
}

fn dpkg_install(root: &Path, deb: &Path) {
    let st = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-not-root", "--force-script-chrootless", "-i"])
        .arg(deb)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "dpkg -i: {}",
        String::from_utf8_lossy(&st.stderr)
    );
}

#[test]
fn a_real_dpkg_upgrade_keeps_the_shim_and_installs_the_new_original() {
    util::require("dpkg");
    let work = util::tempdir();
    let root = work.path().join("root");
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    dpkg_install(&root, &deb(work.path(), "1.41.0"));
    let log = ok(&installer(&root, &[]));
    assert!(
        log.contains("dpkg owns the transcoder: diverting it"),
        "{log}"
    );
    dpkg_install(&root, &deb(work.path(), "1.42.0"));
    assert!(
        is_shim(&transcoder(&root)),
        "the upgrade left the shim in place"
    );
    assert_eq!(
        util::read(&real(&root)),
        plex_binary("1.42.0"),
        "the new transcoder went to the diverted name"
    );
    let out = Command::new(transcoder(&root))
        .arg("-version")
        .env("DOWNSHIFTARR_CONFIG", root.join("none.json"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Plex Transcoder 1.42.0\n",
        "the shim execs the new original"
    );
    // Uninstall verifies the upgraded original against dpkg, removes the diversion and gives
    // the package its file back.
    let log = ok(&installer(&root, &["--uninstall", "--purge"]));
    assert!(
        log.contains("upgraded by dpkg since install and matches the package's checksum"),
        "{log}"
    );
    assert_eq!(util::read(&transcoder(&root)), plex_binary("1.42.0"));
    let q = Command::new("dpkg-divert")
        .args(["--root", root.to_str().unwrap(), "--list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&q.stdout).contains("downshiftarr"),
        "diversion removed"
    );
}

#[test]
fn the_daemon_heals_an_overwrite_behind_dpkgs_back_within_10_seconds() {
    let d = util::tempdir();
    let root = d.path();
    plex_tree(root, "v1");
    ok(&installer(root, &[]));
    let cfg = root.join("etc/downshiftarr/daemon-test.json");
    std::fs::write(
        &cfg,
        serde_json::json!({"shim": {"socket": root.join("run/downshiftarr/shim.sock")}, "daemon": {
            "state_dir": root.join("var/lib/downshiftarr"), "runtime_dir": root.join("run/downshiftarr"),
            "plex_dir": root.join(PLEX), "shim_binary": root.join("usr/lib/downshiftarr/downshiftarr-shim"),
            "heal_interval_s": 5, "http_listen": ""
        }})
        .to_string(),
    )
    .unwrap();
    let log = util::ChildLog::new(root.join("daemon.log"));
    let mut daemon = Command::new(util::cli())
        .args(["daemon", "--config", cfg.to_str().unwrap()])
        .stdout(log.stdio())
        .stderr(log.stdio())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // Something copies a new Plex over the shim in place (no dpkg, no rename).
    let new = plex_binary("v3");
    std::fs::write(transcoder(root), &new).unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10)
        && !(is_shim(&transcoder(root)) && util::read(&real(root)) == new)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let healed_in = t.elapsed();
    assert!(is_shim(&transcoder(root)), "the shim was put back");
    assert_eq!(
        util::read(&real(root)),
        new,
        "the new binary is the original"
    );
    assert!(
        healed_in < Duration::from_secs(10),
        "healed in {healed_in:?}"
    );
    // SIGTERM stops it cleanly within 5 s.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(daemon.id().to_string())
        .status();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = daemon.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "daemon did not stop within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    // And the uninstaller accepts the adopted original: its checksum was updated.
    ok(&installer(root, &["--uninstall"]));
    assert_eq!(util::read(&transcoder(root)), new);
}

/// Lays out a tree shaped like the linuxserver/plex image with our overlay and binaries.
fn image_tree(root: &Path, version: &str) {
    plex_tree(root, version);
    let lib = root.join("usr/lib/downshiftarr");
    std::fs::create_dir_all(&lib).unwrap();
    for (src, name) in [
        (util::cli(), "downshiftarr"),
        (util::shim(), "downshiftarr-shim"),
        (util::repo().join("install/install.sh"), "install.sh"),
    ] {
        std::fs::copy(&src, lib.join(name)).unwrap();
    }
    let st = Command::new("cp")
        .arg("-a")
        .arg(util::repo().join("install/container/root/."))
        .arg(root)
        .status()
        .unwrap();
    assert!(st.success());
}

fn container_init(root: &Path) -> String {
    let out = Command::new("bash")
        .arg(root.join("etc/s6-overlay/s6-rc.d/init-downshiftarr/run"))
        .env("DOWNSHIFTARR_ROOT", root)
        .env("DOWNSHIFTARR_CONFIG", root.join("none.json"))
        .output()
        .unwrap();
    ok(&out)
}

#[test]
fn container_init_installs_is_idempotent_and_reapplies_after_an_update() {
    let d = util::tempdir();
    image_tree(d.path(), "v1");
    let s6 = d.path().join("etc/s6-overlay/s6-rc.d");
    assert!(
        s6.join("init-downshiftarr/dependencies.d/init-plex-update")
            .exists(),
        "ordered after the image's update step"
    );
    assert!(
        s6.join("svc-plex/dependencies.d/init-downshiftarr")
            .exists(),
        "Plex waits for the shim"
    );
    assert_eq!(
        util::read(&s6.join("svc-downshiftarr/type")).trim(),
        "longrun"
    );
    container_init(d.path());
    assert!(is_shim(&transcoder(d.path())));
    let once = snapshot(d.path());
    container_init(d.path());
    let twice = snapshot(d.path());
    assert!(
        once == twice,
        "second start changed:\n{}",
        diff(&once, &twice)
    );
    // The image's update step installs a new Plex over the shim; the next init step heals.
    write_exe(&transcoder(d.path()), &plex_binary("v2"));
    container_init(d.path());
    assert!(is_shim(&transcoder(d.path())));
    assert_eq!(util::read(&real(d.path())), plex_binary("v2"));
}

#[test]
fn the_systemd_unit_verifies_cleanly() {
    util::require("systemd-analyze");
    let d = util::tempdir();
    // verify checks that ExecStart exists: point it at the binary under test.
    let unit = util::read(&util::repo().join("install/systemd/downshiftarr.service")).replace(
        "/usr/lib/downshiftarr/downshiftarr",
        util::cli().to_str().unwrap(),
    );
    let p = d.path().join("downshiftarr.service");
    std::fs::write(&p, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&p)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );
    let u = util::read(&util::repo().join("install/systemd/downshiftarr.service"));
    for needle in [
        "Type=notify",
        "RuntimeDirectory=",
        "StateDirectory=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "UMask=0027",
        "Restart=on-failure",
    ] {
        assert!(u.contains(needle), "unit lacks {needle}");
    }
}

#[test]
fn every_shell_script_passes_shellcheck() {
    util::require("shellcheck");
    let mut scripts: Vec<PathBuf> = vec![
        util::repo().join("install/install.sh"),
        util::repo().join(".ci/run"),
        util::repo().join("tests/run"),
        util::repo().join("tools/rustc-wrapper"),
        util::repo().join("tests/support/plex-transcoder-standin"),
    ];
    for svc in ["init-downshiftarr", "svc-downshiftarr"] {
        scripts.push(util::repo().join(format!(
            "install/container/root/etc/s6-overlay/s6-rc.d/{svc}/run"
        )));
    }
    let out = Command::new("shellcheck").args(&scripts).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn refuses_to_swap_while_a_transcode_is_running_unless_forced() {
    let d = util::tempdir();
    plex_tree(d.path(), "v1");
    // A "transcode": a process whose executable is the transcoder path.
    util::require("ffmpeg");
    std::fs::copy(
        String::from_utf8(
            Command::new("sh")
                .args(["-c", "command -v ffmpeg"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim(),
        transcoder(d.path()),
    )
    .unwrap();
    let mut running = Command::new(transcoder(d.path()))
        .args([
            "-nostdin",
            "-loglevel",
            "quiet",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "anullsrc",
            "-t",
            "30",
            "-f",
            "null",
            "-",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let out = installer(d.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() && err.contains("a transcode is running"),
        "{err}"
    );
    assert!(!real(d.path()).exists(), "nothing was moved");
    let log = ok(&installer(d.path(), &["--force"]));
    assert!(log.contains("installed"), "{log}");
    let _ = running.kill();
    let _ = running.wait();
}

#[test]
fn help_is_whole_and_lists_every_option_the_installer_accepts() {
    let script = util::read(&util::repo().join("install/install.sh"));
    // The options the parser accepts: the `--name)` arms of its `case`.
    let accepted: Vec<&str> = script
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split_once(')'))
        .map(|(name, _)| name)
        .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        .collect();
    assert!(accepted.contains(&"no-systemd"), "{accepted:?}");
    assert!(accepted.len() >= 8, "{accepted:?}");
    let d = util::tempdir();
    let out = installer(d.path(), &["--help"]);
    let help = ok(&out);
    for name in &accepted {
        assert!(
            help.contains(&format!("  --{name}")),
            "--help does not describe --{name}:\n{help}"
        );
    }
    // Every sentence of the description is finished (it was once cut off mid-sentence).
    let prose: Vec<&str> = help
        .split("\n\n")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .collect();
    assert!(
        prose.last().is_some_and(|l| l.ends_with('.')),
        "description cut off:\n{help}"
    );
    let out = installer(d.path(), &["--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown option --frobnicate") && err.contains("--no-systemd"),
        "{err}"
    );
}

#[test]
fn a_dry_run_says_what_it_would_do_never_that_it_did_it() {
    let d = util::tempdir();
    plex_tree(d.path(), "v1");
    let done = [
        "installed",
        "installing",
        "writing",
        "restored",
        "uninstalled",
        "purging",
        "diverting",
        "replacing",
        "kept",
    ];
    let claims = |log: &str| -> Vec<String> {
        said(log)
            .into_iter()
            .filter(|l| {
                l.split(|c: char| !c.is_ascii_alphabetic())
                    .any(|w| done.contains(&w))
            })
            .map(str::to_string)
            .collect()
    };
    let before = snapshot(d.path());
    let log = ok(&installer(d.path(), &["--dry-run"]));
    assert_eq!(claims(&log), Vec::<String>::new(), "{log}");
    assert!(log.contains("would install the shim at"), "{log}");
    assert!(
        said(&log)
            .last()
            .is_some_and(|l| l.contains("dry run: nothing was changed")),
        "{log}"
    );
    assert_eq!(snapshot(d.path()), before, "dry run changed the tree");

    ok(&installer(d.path(), &[]));
    let installed = snapshot(d.path());
    let log = ok(&installer(
        d.path(),
        &["--uninstall", "--purge", "--dry-run"],
    ));
    assert_eq!(claims(&log), Vec::<String>::new(), "{log}");
    assert!(
        log.contains("would restore the original Plex Transcoder"),
        "{log}"
    );
    assert!(
        said(&log)
            .last()
            .is_some_and(|l| l.contains("would uninstall")),
        "{log}"
    );
    assert_eq!(snapshot(d.path()), installed, "dry run changed the tree");
}

#[test]
fn after_installing_it_says_how_to_give_the_daemon_the_plex_token() {
    let d = util::tempdir();
    plex_tree(d.path(), "v1");
    let log = ok(&installer(d.path(), &[]));
    let cfg: serde_json::Value =
        serde_json::from_str(&util::read(&d.path().join("etc/downshiftarr/config.json"))).unwrap();
    assert_eq!(cfg["plex"]["token_file"], "/etc/downshiftarr/plex-token");
    let tail = &log[log.find("downshiftarr: installed").expect("installed")..];
    assert!(
        tail.contains("next: give the daemon your Plex token")
            && tail.contains("cat > /etc/downshiftarr/plex-token")
            && tail.contains("downshiftarr check-config"),
        "the install ends with the next step:\n{tail}"
    );
    // Once the token is there, the install asks for nothing more.
    std::fs::write(d.path().join("etc/downshiftarr/plex-token"), "abc\n").unwrap();
    let log = ok(&installer(d.path(), &[]));
    assert!(!log.contains("Plex token"), "token already there:\n{log}");
    assert!(
        said(&log)
            .last()
            .is_some_and(|l| l.contains("next: downshiftarr check-config")),
        "{log}"
    );
}

/// A source tree as the README's install runs it: `install/install.sh`, `Cargo.toml`, `shim/`,
/// `target/release` with the binaries, and stand-ins for `cargo` and `rustc` first on PATH,
/// with or without the musl target. The stand-in cargo records its arguments and "builds" a
/// musl shim: a script carrying the marker that execs the original.
struct Checkout {
    _dir: tempfile::TempDir,
    src: PathBuf,
    bin: PathBuf,
}

const MUSL_SHIM: &str = "#!/bin/sh\n# downshiftarr-shim-marker:v1 (stand-in musl build)\nexec \"$0.downshiftarr-real\" \"$@\"\n";

fn checkout(musl_target: bool, shim_built: bool) -> Checkout {
    let dir = util::tempdir();
    let src = dir.path().join("src");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(src.join("install")).unwrap();
    std::fs::create_dir_all(src.join("shim")).unwrap();
    std::fs::create_dir_all(src.join("target/release")).unwrap();
    std::fs::write(src.join("Cargo.toml"), "[workspace]\n").unwrap();
    std::fs::copy(
        util::repo().join("install/install.sh"),
        src.join("install/install.sh"),
    )
    .unwrap();
    std::fs::copy(util::cli(), src.join("target/release/downshiftarr")).unwrap();
    if shim_built {
        std::fs::copy(util::shim(), src.join("target/release/downshiftarr-shim")).unwrap();
    }
    let sysroot = dir.path().join("sysroot");
    std::fs::create_dir_all(sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu")).unwrap();
    if musl_target {
        std::fs::create_dir_all(sysroot.join("lib/rustlib/x86_64-unknown-linux-musl")).unwrap();
    }
    write_exe(
        &bin.join("rustc"),
        &format!("#!/bin/sh\necho '{}'\n", sysroot.display()),
    );
    write_exe(
        &bin.join("cargo"),
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> cargo-calls\nmkdir -p target/x86_64-unknown-linux-musl/release\nprintf '%s' '{}' > target/x86_64-unknown-linux-musl/release/downshiftarr-shim\nchmod 755 target/x86_64-unknown-linux-musl/release/downshiftarr-shim\n",
            MUSL_SHIM.replace('\'', "'\\''")
        ),
    );
    Checkout {
        _dir: dir,
        src,
        bin,
    }
}

/// Runs the checkout's installer the README's way: no `--bin-dir`.
fn install_from(c: &Checkout, root: &Path, args: &[&str]) -> Output {
    let path = format!(
        "{}:{}",
        c.bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new("bash")
        .arg(c.src.join("install/install.sh"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env("PATH", path)
        .env("DOWNSHIFTARR_CONFIG", root.join("no-host-config.json"))
        .env("DOWNSHIFTARR_DECISION_LOG", "")
        .env_remove("PLEX_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn from_a_source_tree_with_the_musl_target_it_builds_and_installs_the_musl_shim() {
    let c = checkout(true, true);
    let d = util::tempdir();
    plex_tree(d.path(), "v1");
    let log = ok(&install_from(&c, d.path(), &[]));
    assert_eq!(
        util::read(&c.src.join("cargo-calls")),
        "build --release -p downshiftarr-shim --target x86_64-unknown-linux-musl\n",
        "{log}"
    );
    assert_eq!(
        util::read(&transcoder(d.path())),
        MUSL_SHIM,
        "the musl shim is installed"
    );
    assert!(!log.contains("glibc"), "{log}");
    // Once built, it is not built again.
    ok(&install_from(&c, d.path(), &[]));
    assert_eq!(util::read(&c.src.join("cargo-calls")).lines().count(), 1);
}

#[test]
fn without_the_musl_target_it_installs_the_glibc_shim_and_says_what_that_costs() {
    let c = checkout(false, true);
    let d = util::tempdir();
    plex_tree(d.path(), "v1");
    let log = ok(&install_from(&c, d.path(), &[]));
    assert!(!c.src.join("cargo-calls").exists(), "nothing to build with");
    assert_eq!(
        std::fs::read(transcoder(d.path())).unwrap(),
        std::fs::read(util::shim()).unwrap()
    );
    assert!(
        log.contains("glibc shim: it adds about 0.40 ms to every transcoder start, the musl shim about 0.14 ms")
            && log.contains("rustup target add x86_64-unknown-linux-musl && cargo build --release -p downshiftarr-shim --target x86_64-unknown-linux-musl"),
        "{log}"
    );
}

#[test]
fn a_missing_shim_says_where_it_looked_and_how_to_build_it() {
    let c = checkout(false, false);
    let d = util::tempdir();
    plex_tree(d.path(), "v1");
    let before = snapshot(d.path());
    let out = install_from(&c, d.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let target = c.src.join("target");
    for needle in [
        format!("{}/x86_64-unknown-linux-musl/release", target.display()),
        format!("{}/release", target.display()),
        "cargo build --release -p downshiftarr-shim --target x86_64-unknown-linux-musl".into(),
    ] {
        assert!(err.contains(&needle), "{needle} not in: {err}");
    }
    assert_eq!(snapshot(d.path()), before, "nothing was changed");
}

/// Issue 12: the installer generates the webhook token and the ops API key (32 random bytes,
/// hex) when the config lacks them, keeps the rest of an existing file, and prints the webhook
/// URL to paste into Plex.
#[test]
fn install_generates_the_webhook_token_and_api_key_and_prints_the_webhook_url() {
    let hex64 = |v: &serde_json::Value| {
        v.as_str()
            .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let d = util::tempdir();
    plex_tree(d.path(), "v1");
    let cfg_path = d.path().join("etc/downshiftarr/config.json");
    let log = ok(&installer(d.path(), &[]));
    let cfg: serde_json::Value = serde_json::from_str(&util::read(&cfg_path)).unwrap();
    let (hook, key) = (&cfg["daemon"]["webhook_token"], &cfg["daemon"]["api_key"]);
    assert!(hex64(hook) && hex64(key) && hook != key, "{cfg}");
    let url = format!(
        "http://127.0.0.1:9877/webhook/plex/{}",
        hook.as_str().unwrap()
    );
    assert!(log.contains(&url), "{log}");
    // Again: nothing changes.
    let before = util::read(&cfg_path);
    ok(&installer(d.path(), &[]));
    assert_eq!(util::read(&cfg_path), before);

    // An older config: the tokens are added, the rest kept, the mode kept.
    for (old, keep) in [
        (
            "{\n  \"plex\": { \"api_key\": 1, \"url\": \"http://p:32400\" },\n  \"daemon\": { \"debug\": true, \"http_listen\": \"0.0.0.0:9999\" }\n}\n",
            Some(("/daemon/debug", serde_json::json!(true))),
        ),
        ("{\"daemon\": {}}", None),
        ("{}", None),
        (
            "{\n  \"shim\": {}\n}\n",
            Some(("/shim", serde_json::json!({}))),
        ),
    ] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&cfg_path, old).unwrap();
        std::fs::set_permissions(&cfg_path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let log = ok(&installer(d.path(), &[]));
        let text = util::read(&cfg_path);
        let cfg: serde_json::Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{old:?} became invalid JSON ({e}):\n{text}"));
        assert!(
            hex64(&cfg["daemon"]["webhook_token"]) && hex64(&cfg["daemon"]["api_key"]),
            "{old:?} → {text}"
        );
        if let Some((ptr, v)) = keep {
            assert_eq!(cfg.pointer(ptr), Some(&v), "{text}");
        }
        assert_eq!(
            std::fs::metadata(&cfg_path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert!(log.contains("/webhook/plex/"), "{log}");
        if old.contains("0.0.0.0:9999") {
            assert!(log.contains("http://127.0.0.1:9999/webhook/plex/"), "{log}");
        }
    }
}
