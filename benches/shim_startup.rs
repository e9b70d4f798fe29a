//! What the shim adds to every transcoder start, measured as whole processes.
//!
//! Run: `cargo build --release --workspace && cargo bench --bench shim_startup`
//! (`ROUNDS=5000` for more rounds). Each scenario runs the same command line twice per round,
//! interleaved — once exec'ing the stand-in real transcoder (`/bin/true`) directly, once
//! through the shim — so machine noise lands on both sides; the added cost is the median of
//! the per-round differences. Also: a bash wrapper that only execs (the plex-nvdec pattern),
//! the in-process cost of finding no daemon, the binary's size and its peak RSS. With the
//! real daemon up (indexing the tests' fake Plex): a video pass-through and a **switch** to
//! the 1080p SDR version, side by side.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure is a panic

#[path = "../tests/support/plex_job.rs"]
mod plex_job;
use plex_job::PlexJob;

#[path = "../tests/fake_plex.rs"]
#[allow(dead_code)]
mod fake_plex;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use downshiftarr_shim::protocol::Client;

/// The shim under test: `SHIM_BIN`, else the musl build if there is one, else target/release.
fn shim() -> PathBuf {
    if let Some(p) = std::env::var_os("SHIM_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let musl = root.join("target/x86_64-unknown-linux-musl/release/downshiftarr-shim");
    if musl.exists() {
        return musl;
    }
    let p = root.join("target/release/downshiftarr-shim");
    assert!(
        p.exists(),
        "build it first: cargo build --release --workspace"
    );
    p
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let st = cmd.status().expect("spawn");
    let d = t.elapsed();
    assert!(
        st.success() || st.code() == Some(69),
        "benchmark command failed: {cmd:?} {st}"
    );
    d
}

struct Scenario {
    name: &'static str,
    args: Vec<OsString>,
}

/// Runs `args` directly and through `wrapper`, interleaved; returns (direct, through, added) medians in ms.
fn compare(
    wrapper: &Path,
    env: &[(&str, &str)],
    args: &[OsString],
    rounds: usize,
) -> (f64, f64, f64) {
    let (mut direct, mut through, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..rounds + 20 {
        // Both sides get the same explicit environment and the same stdio, so spawning costs
        // the same and only the program differs.
        let mut a = Command::new("/bin/true");
        a.args(args)
            .env_clear()
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut b = Command::new(wrapper);
        b.args(args)
            .env_clear()
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (da, db) = if i % 2 == 0 {
            let da = time(&mut a);
            (da, time(&mut b))
        } else {
            let db = time(&mut b);
            (time(&mut a), db)
        };
        if i >= 20 {
            direct.push(da.as_secs_f64() * 1e3);
            through.push(db.as_secs_f64() * 1e3);
            added.push((db.as_secs_f64() - da.as_secs_f64()) * 1e3);
        }
    }
    (
        median(&mut direct),
        median(&mut through),
        median(&mut added),
    )
}

fn bench_media(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let sdr = dir.join("sdr-1080p.mkv");
    let hdr = dir.join("hdr10-2160p.mkv");
    let make = |out: &Path, args: &[&str]| {
        if out.exists() {
            return;
        }
        let st = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
            .args(args)
            .arg(out)
            .status()
            .expect("ffmpeg is needed to make the benchmark's media");
        assert!(st.success());
    };
    make(
        &sdr,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1920x1080:rate=24:duration=1",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
    );
    make(
        &hdr,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=3840x2160:rate=24:duration=0.25",
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc",
            "-pix_fmt",
            "yuv420p10le",
        ],
    );
    (sdr, hdr)
}

fn plex_job(input: &Path, w: u32, h: u32) -> Vec<OsString> {
    PlexJob::sw_dash(input.to_str().expect("a UTF-8 path"))
        .hints(&["-codec:0", "hevc", "-codec:1", "aac"])
        .before_input(&["-analyzeduration", "20000000", "-probesize", "20000000"])
        .after_input(&[
            "-start_at_zero",
            "-copyts",
            "-fps_mode",
            "cfr",
            "-y",
            "-nostats",
            "-loglevel",
            "quiet",
            "-loglevel_plex",
            "error",
        ])
        .progress(Some(
            "http://127.0.0.1:32400/video/:/transcode/session/bench/u/progress",
        ))
        .size(w, h)
        .output_opts(&[
            "-crf:0",
            "23",
            "-maxrate:0",
            "40000k",
            "-bufsize:0",
            "80000k",
        ])
        .args()
}

/// The real daemon (release build) indexing a fake Plex; killed on drop.
struct Daemon {
    child: std::process::Child,
    socket: PathBuf,
    _plex: fake_plex::FakePlex,
    _dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const MOVIE0_4K: &str = "/data/Movies/Movie 0 (1980)/Movie 0 (1980) - 2160p.mkv";
const MOVIE1_1080: &str = "/data/Movies/Movie 1 (1981)/Movie 1 (1981) - 1080p.mkv";

fn start_daemon(work: &Path) -> Daemon {
    use std::os::unix::fs::PermissionsExt;
    let cli = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/downshiftarr");
    assert!(
        cli.exists(),
        "build it first: cargo build --release --workspace"
    );
    let dir = work.join("daemon");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let plex = fake_plex::FakePlex::start(30, 0, 0);
    let token = dir.join("token");
    std::fs::write(&token, &plex.token).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = dir.join("config.json");
    let socket = dir.join("shim.sock");
    std::fs::write(
        &cfg,
        serde_json::json!({
            "plex": {"url": plex.url, "token_file": token},
            "shim": {"socket": socket},
            "index": {"sync_interval_s": 0},
            "daemon": {"state_dir": dir.join("state"), "runtime_dir": dir.join("run"),
                       "heal_transcoder": false, "socket_group": "", "http_listen": ""}
        })
        .to_string(),
    )
    .unwrap();
    let child = Command::new(cli)
        .args(["daemon", "--config"])
        .arg(&cfg)
        .env_remove("PLEX_TOKEN")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    fake_plex::wait_for_lookup(&socket, MOVIE0_4K, Duration::from_secs(60));
    Daemon {
        child,
        socket,
        _plex: plex,
        _dir: dir,
    }
}

/// Peak RSS of that one child, from `wait4` (RUSAGE_CHILDREN would include every earlier child).
// `wait4` reaps the child; clippy only knows about `Child::wait`.
#[allow(clippy::zombie_processes)]
fn peak_rss_kib(cmd: &mut Command) -> i64 {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut status = 0;
    // SAFETY: wait4 on our own child's pid with valid pointers to a status and a zeroed rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    ru.ru_maxrss
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2000);
    let shim = shim();
    let work = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-work");
    std::fs::create_dir_all(&work).unwrap();
    let (sdr, hdr) = bench_media(&work.join("media"));
    let env: Vec<(&str, &str)> = vec![
        ("PATH", "/usr/bin:/bin"),
        ("DOWNSHIFTARR_REAL_TRANSCODER", "/bin/true"),
        ("DOWNSHIFTARR_CONFIG", "/nonexistent/downshiftarr.json"),
        ("DOWNSHIFTARR_SOCKET", "/nonexistent/shim.sock"),
        ("DOWNSHIFTARR_DECISION_LOG", "/dev/null"),
    ];
    let thumbnail: Vec<OsString> = [
        "-codec:v",
        "libdav1d",
        "-y",
        "-threads",
        "1",
        "-skip_frame",
        "noref",
        "-ss",
        "1321",
        "-i",
    ]
    .iter()
    .map(OsString::from)
    .chain([sdr.as_os_str().to_owned()])
    .chain(
        [
            "-vf",
            "[in]fps=0.5,scale=w=320:h=320,showinfo[out]",
            "-vsync",
            "passthrough",
            "-f",
            "image2",
            "thumb-%05d.jpeg",
        ]
        .iter()
        .map(OsString::from),
    )
    .collect();
    println!("shim: {}", shim.display());
    let scenarios = [
        Scenario {
            name: "pass-through, non-video job (thumbnail)",
            args: thumbnail.clone(),
        },
        Scenario {
            name: "video transcode, native probe of a local MKV (1080p SDR: pass)",
            args: plex_job(&sdr, 1280, 720),
        },
        Scenario {
            name: "video transcode, native probe of a local MKV (4K HDR10: rewrite)",
            args: plex_job(&hdr, 3840, 2160),
        },
    ];
    println!(
        "downshiftarr shim startup benchmark — {rounds} interleaved rounds per scenario, medians\n"
    );
    println!("| scenario | direct exec | through the shim | added |");
    println!("|---|---|---|---|");
    for s in &scenarios {
        let (d, t, a) = compare(&shim, &env, &s.args, rounds);
        println!("| {} | {d:.3} ms | {t:.3} ms | **{a:.3} ms** |", s.name);
    }
    // With the daemon up: the shim asks the index (facts and every version of the item).
    let daemon = start_daemon(&work);
    let sock = daemon.socket.to_string_lossy().into_owned();
    let denv: Vec<(&str, &str)> = env
        .iter()
        .map(|&(k, v)| {
            if k == "DOWNSHIFTARR_SOCKET" {
                (k, sock.as_str())
            } else {
                (k, v)
            }
        })
        .collect();
    for (name, args) in [
        (
            "daemon up: 1080p SDR video transcode (index: pass)",
            plex_job(Path::new(MOVIE1_1080), 1280, 720),
        ),
        (
            "daemon up: 4K HDR video transcode (index: **switch** to the 1080p SDR version)",
            plex_job(Path::new(MOVIE0_4K), 3840, 2160),
        ),
    ] {
        let (d, t, a) = compare(&shim, &denv, &args, rounds);
        println!("| {name} | {d:.3} ms | {t:.3} ms | **{a:.3} ms** |");
    }
    drop(daemon);

    // The plex-nvdec pattern: a bash script that only execs.
    let wrapper = work.join("bash-exec-wrapper");
    std::fs::write(&wrapper, "#!/bin/bash\nexec /bin/true \"$@\"\n").unwrap();
    let mut perm = std::fs::metadata(&wrapper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&wrapper, perm).unwrap();
    let (_, _, bash_added) = compare(&wrapper, &env, &thumbnail, rounds);
    let (_, _, shim_added) = compare(&shim, &env, &thumbnail, rounds);
    println!("| bash wrapper that only execs (plex-nvdec pattern), same job | | | **{bash_added:.3} ms** |");
    println!(
        "\nshim pass-through vs bash exec-only wrapper: {:.1}x cheaper",
        bash_added / shim_added.max(1e-6)
    );

    // No daemon listening: the cost of the attempt itself, in process.
    let mut v = Vec::new();
    for _ in 0..20_000 {
        let t = Instant::now();
        let r = Client::connect(
            Path::new("/run/downshiftarr-nonexistent/shim.sock"),
            Instant::now() + Duration::from_millis(50),
        );
        v.push(t.elapsed().as_secs_f64() * 1e6);
        assert!(r.is_err());
    }
    println!(
        "no daemon listening: {:.1} µs median per attempt (20,000 attempts)",
        median(&mut v)
    );

    let size = std::fs::metadata(&shim).unwrap().len();
    println!(
        "shim binary (release, stripped, static): {:.0} KiB",
        size as f64 / 1024.0
    );
    let mut c = Command::new(&shim);
    c.args(plex_job(&hdr, 3840, 2160))
        .envs(env.iter().copied())
        .env("DOWNSHIFTARR_REAL_TRANSCODER", "/nonexistent/real");
    println!(
        "shim peak RSS deciding a 4K HDR10 rewrite (no exec): {} KiB",
        peak_rss_kib(&mut c)
    );
}
