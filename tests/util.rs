//! Shared helpers: where the binaries are, temporary trees, fixtures, generated media, the logs
//! of the processes a test runs in the background, and a scriptable test daemon that speaks the
//! shim protocol.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use downshiftarr_shim::facts::SourceFacts;
use downshiftarr_shim::protocol::{self, Request, Response};

/// The directory of the binaries under test (same cargo profile as this test).
pub fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_downshiftarr"))
        .parent()
        .expect("binary dir")
        .to_path_buf()
}

pub fn cli() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_downshiftarr"))
}

/// The shim binary, built by `cargo test --workspace` because the shim package has
/// integration tests of its own.
pub fn shim() -> PathBuf {
    let p = bin_dir().join("downshiftarr-shim");
    assert!(
        p.exists(),
        "{} missing: run `cargo test --workspace`",
        p.display()
    );
    p
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("dsa-it-")
        .tempdir()
        .expect("temp dir")
}

/// A fixture's arguments (`fixtures/plex-argv/<id>.json`, or `fixtures/plex-argv-own/`).
pub fn fixture_args(id: &str) -> Vec<OsString> {
    let v = fixture_json(id);
    v["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| OsString::from(a.as_str().expect("string arg")))
        .collect()
}

pub fn fixture_json(id: &str) -> serde_json::Value {
    for dir in ["fixtures/plex-argv", "fixtures/plex-argv-own"] {
        let p = repo().join(dir).join(format!("{id}.json"));
        if let Ok(t) = std::fs::read_to_string(&p) {
            return serde_json::from_str(&t).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
    }
    panic!("no fixture {id}");
}

/// Every fixture id.
pub fn fixture_ids() -> Vec<String> {
    let mut ids = Vec::new();
    for dir in ["fixtures/plex-argv", "fixtures/plex-argv-own"] {
        for e in std::fs::read_dir(repo().join(dir)).expect("fixtures dir") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "json") {
                ids.push(p.file_stem().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    ids.sort();
    ids
}

/// A stand-in real transcoder that writes its arguments, one per line, to `$REC` and succeeds.
pub fn recording_transcoder(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("real-transcoder");
    std::fs::write(&p, "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$REC\"\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Stdout or stderr for a process a test runs in the background (a daemon), appended to `path`
/// — a file in the test's temporary directory — instead of the terminal, so that a passing run
/// prints nothing; the test's guard shows the file when the test fails
/// ([`show_log_if_failing`], [`ChildLog`]).
pub fn log_stdio(path: &Path) -> Stdio {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Stdio::from)
        .unwrap_or_else(|e| panic!("cannot open the test log {}: {e}", path.display()))
}

/// Prints a background process's log when the current test is failing: call it from the `Drop`
/// of the guard that owns the process (the test harness shows it with the failure).
pub fn show_log_if_failing(path: &Path) {
    if !std::thread::panicking() {
        return;
    }
    match std::fs::read(path) {
        Ok(log) => eprintln!(
            "--- {} ---\n{}--- end of {} ---",
            path.display(),
            String::from_utf8_lossy(&log),
            path.display()
        ),
        Err(e) => eprintln!("--- no log at {}: {e} ---", path.display()),
    }
}

/// The log file of a background process that has no other guard: shown when the test fails.
/// Declare it after the temporary directory that holds it, so it is dropped (and read) first.
pub struct ChildLog(PathBuf);

impl ChildLog {
    pub fn new(path: PathBuf) -> ChildLog {
        ChildLog(path)
    }

    /// For `Command::stdout` / `Command::stderr` (call once for each).
    pub fn stdio(&self) -> Stdio {
        log_stdio(&self.0)
    }
}

impl Drop for ChildLog {
    fn drop(&mut self) {
        show_log_if_failing(&self.0);
    }
}

/// Fails loudly when a real component the issue requires is missing (CI installs it).
pub fn require(tool: &str) {
    let ok = Command::new(tool)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
        || Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{tool} is required for this test: apt-get install -y {tool} (tests/run does)"
    );
}

/// Generated test media, made once per machine and cached under the cargo target dir.
pub struct Media {
    pub hdr10_2160: PathBuf,
    pub hlg_2160: PathBuf,
    pub sdr_1080: PathBuf,
    pub hdr10_2160_mp4: PathBuf,
    pub hdr10_2160_m2ts: PathBuf,
    pub sdr_1080_ts: PathBuf,
    /// Two versions of one title: 4K HDR10 with English (440 Hz) then German (1000 Hz)
    /// AAC tracks, and 1080p SDR with German (AC-3, 1000 Hz) first and English (AAC, 440 Hz)
    /// second.
    pub two_uhd: PathBuf,
    pub two_hd: PathBuf,
}

/// The tones of the two-version clips.
pub const ENGLISH_HZ: f64 = 440.0;
pub const GERMAN_HZ: f64 = 1000.0;

pub fn media() -> &'static Media {
    static M: OnceLock<Media> = OnceLock::new();
    M.get_or_init(|| {
        require("ffmpeg");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("media-v1");
        std::fs::create_dir_all(&dir).expect("media dir");
        // Serialise generation across test processes.
        let lock = File::create(dir.join(".lock")).expect("lock file");
        lock.lock().expect("lock");
        let m = Media {
            hdr10_2160: dir.join("hdr10-2160p.mkv"),
            hlg_2160: dir.join("hlg-2160p.mkv"),
            sdr_1080: dir.join("sdr-1080p.mkv"),
            hdr10_2160_mp4: dir.join("hdr10-2160p.mp4"),
            hdr10_2160_m2ts: dir.join("hdr10-2160p.m2ts"),
            sdr_1080_ts: dir.join("sdr-1080p.ts"),
            two_uhd: dir.join("two-versions - 2160p.mkv"),
            two_hd: dir.join("two-versions - 1080p.mkv"),
        };
        let x265 = |transfer: &str, out: &Path| {
            let params = format!(
                "log-level=error:colorprim=bt2020:transfer={transfer}:colormatrix=bt2020nc{}",
                if transfer == "smpte2084" { ":hdr10=1:master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400" } else { "" }
            );
            ffmpeg(&[
                "-f", "lavfi", "-i", "testsrc2=size=3840x2160:rate=24:duration=0.5",
                "-f", "lavfi", "-i", "sine=frequency=440:duration=0.5",
                "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", &params,
                "-pix_fmt", "yuv420p10le", "-color_primaries", "bt2020", "-color_trc", transfer,
                "-colorspace", "bt2020nc", "-c:a", "aac", "-b:a", "96k",
            ], out);
        };
        if !m.hdr10_2160.exists() {
            x265("smpte2084", &m.hdr10_2160);
        }
        if !m.hlg_2160.exists() {
            x265("arib-std-b67", &m.hlg_2160);
        }
        if !m.sdr_1080.exists() {
            ffmpeg(&[
                "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=24:duration=0.5",
                "-f", "lavfi", "-i", "sine=frequency=440:duration=0.5",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709",
                "-c:a", "aac", "-b:a", "96k",
            ], &m.sdr_1080);
        }
        if !m.hdr10_2160_mp4.exists() {
            ffmpeg(&["-i", m.hdr10_2160.to_str().unwrap(), "-c", "copy", "-tag:v", "hvc1"], &m.hdr10_2160_mp4);
        }
        if !m.hdr10_2160_m2ts.exists() {
            ffmpeg(&["-i", m.hdr10_2160.to_str().unwrap(), "-c", "copy", "-f", "mpegts", "-mpegts_m2ts_mode", "1"], &m.hdr10_2160_m2ts);
        }
        if !m.two_uhd.exists() {
            ffmpeg(&[
                "-f", "lavfi", "-i", "testsrc2=size=3840x2160:rate=24:duration=0.5",
                "-f", "lavfi", "-i", &format!("sine=frequency={ENGLISH_HZ}:duration=0.5"),
                "-f", "lavfi", "-i", &format!("sine=frequency={GERMAN_HZ}:duration=0.5"),
                "-map", "0", "-map", "1", "-map", "2",
                "-c:v", "libx265", "-preset", "ultrafast",
                "-x265-params", "log-level=error:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc",
                "-pix_fmt", "yuv420p10le", "-color_primaries", "bt2020", "-color_trc", "smpte2084",
                "-colorspace", "bt2020nc", "-c:a", "aac", "-b:a", "64k",
                "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=ger",
            ], &m.two_uhd);
        }
        if !m.two_hd.exists() {
            ffmpeg(&[
                "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=24:duration=0.5",
                "-f", "lavfi", "-i", &format!("sine=frequency={GERMAN_HZ}:duration=0.5"),
                "-f", "lavfi", "-i", &format!("sine=frequency={ENGLISH_HZ}:duration=0.5"),
                "-map", "0", "-map", "1", "-map", "2",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709",
                "-c:a:0", "ac3", "-b:a:0", "96k", "-c:a:1", "aac", "-b:a:1", "64k",
                "-metadata:s:a:0", "language=ger", "-metadata:s:a:1", "language=eng",
            ], &m.two_hd);
        }
        if !m.sdr_1080_ts.exists() {
            ffmpeg(&["-i", m.sdr_1080.to_str().unwrap(), "-c", "copy", "-f", "mpegts"], &m.sdr_1080_ts);
        }
        m
    })
}

fn ffmpeg(args: &[&str], out: &Path) {
    let tmp = out.with_extension(format!(
        "partial.{}",
        out.extension().unwrap().to_string_lossy()
    ));
    let st = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .arg(&tmp)
        .status()
        .expect("run ffmpeg");
    assert!(st.success(), "ffmpeg failed making {}", out.display());
    std::fs::rename(&tmp, out).expect("rename media");
}

/// One stream as ffprobe reports it.
#[derive(Debug, Default)]
pub struct Probed {
    pub codec_type: String,
    pub codec_name: String,
    pub width: u32,
    pub height: u32,
    pub pix_fmt: String,
    pub color_transfer: String,
    pub color_primaries: String,
    pub color_space: String,
    pub channels: u32,
}

pub fn ffprobe(file: &Path) -> Vec<Probed> {
    require("ffprobe");
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-of", "json"])
        .arg(file)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let s = |x: &serde_json::Value, k: &str| x[k].as_str().unwrap_or_default().to_string();
    let n = |x: &serde_json::Value, k: &str| x[k].as_u64().unwrap_or_default() as u32;
    v["streams"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| Probed {
                    codec_type: s(x, "codec_type"),
                    codec_name: s(x, "codec_name"),
                    width: n(x, "width"),
                    height: n(x, "height"),
                    pix_fmt: s(x, "pix_fmt"),
                    color_transfer: s(x, "color_transfer"),
                    color_primaries: s(x, "color_primaries"),
                    color_space: s(x, "color_space"),
                    channels: n(x, "channels"),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How the test daemon behaves.
#[derive(Clone)]
pub enum Behaviour {
    /// Answers `lookup_source` with these facts for every path, records reports.
    Answer(SourceFacts),
    /// Accepts connections and never reads or writes.
    Silent,
    /// Answers every frame with bytes that are not JSON.
    Garbage,
    /// Announces a frame larger than the protocol allows.
    HugeFrame,
    /// Sends a valid answer one byte every 20 ms.
    Drip(SourceFacts),
}

/// A daemon stand-in on a Unix socket, for shim and `explain` tests.
pub struct TestDaemon {
    pub socket: PathBuf,
    pub requests: Arc<std::sync::Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl TestDaemon {
    pub fn spawn(dir: &Path, behaviour: Behaviour) -> TestDaemon {
        let socket = dir.join("shim.sock");
        let listener = UnixListener::bind(&socket).expect("bind test socket");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (st, rq) = (stop.clone(), requests.clone());
        let handle = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !st.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                match &behaviour {
                    Behaviour::Silent => held.push(conn),
                    Behaviour::Garbage => {
                        let _ = protocol::read_frame(&mut conn);
                        let _ = conn.write_all(&[0, 0, 0, 4, 0xff, 0xfe, b'{', b'x']);
                    }
                    Behaviour::HugeFrame => {
                        let _ = protocol::read_frame(&mut conn);
                        let _ = conn.write_all(&(64u32 << 20).to_be_bytes());
                        held.push(conn);
                    }
                    Behaviour::Answer(facts) | Behaviour::Drip(facts) => {
                        let drip = matches!(behaviour, Behaviour::Drip(_));
                        while let Ok(body) = protocol::read_frame(&mut conn) {
                            let Ok(req) = protocol::decode::<Request>(&body) else {
                                break;
                            };
                            rq.lock().unwrap().push(req.clone());
                            let resp = match req {
                                Request::LookupSource { .. } => Response::Source {
                                    found: true,
                                    facts: Some(facts.clone()),
                                    versions: vec![],
                                },
                                Request::ReportDecision { .. } => continue,
                                Request::Ping => Response::Pong,
                                _ => Response::Error {
                                    message: "unsupported".into(),
                                },
                            };
                            let frame = protocol::encode(&resp);
                            if drip {
                                for b in frame {
                                    if conn.write_all(&[b]).is_err() {
                                        break;
                                    }
                                    std::thread::sleep(Duration::from_millis(20));
                                }
                            } else {
                                let _ = conn.write_all(&frame);
                            }
                        }
                    }
                }
            }
            drop(held);
        });
        TestDaemon {
            socket,
            requests,
            stop,
            handle: Some(handle),
        }
    }

    /// Waits until a decision report arrived (reports are fire-and-forget).
    pub fn wait_for_report(&self) -> Option<serde_json::Value> {
        for _ in 0..200 {
            if let Some(Request::ReportDecision { record }) = self
                .requests
                .lock()
                .unwrap()
                .iter()
                .find(|r| matches!(r, Request::ReportDecision { .. }))
                .cloned()
            {
                return Some(record);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Reads a whole file as text.
pub fn read(p: &Path) -> String {
    let mut s = String::new();
    File::open(p)
        .and_then(|mut f| f.read_to_string(&mut s))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    s
}

/// Source facts in one line.
pub fn facts(w: u32, h: u32, depth: u8, dr: &str) -> SourceFacts {
    serde_json::from_value(
        serde_json::json!({"width": w, "height": h, "bit_depth": depth, "dynamic_range": dr}),
    )
    .expect("facts")
}

/// The dominant frequency of a file's first audio stream, from its zero crossings.
pub fn tone_hz(file: &Path) -> f64 {
    require("ffmpeg");
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(file)
        .args([
            "-map", "0:a:0", "-ac", "1", "-ar", "16000", "-f", "s16le", "-",
        ])
        .output()
        .expect("decode audio");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<i16> = out
        .stdout
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    // Skip the encoder's start-up and the fade at the end.
    let body = &samples[samples.len() / 8..samples.len() * 7 / 8];
    let crossings = body.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
    crossings as f64 / 2.0 / (body.len() as f64 / 16000.0)
}
