//! Real end to end: generated 4K HDR10 / HLG and 1080p SDR clips, the release shim installed
//! as `Plex Transcoder` beside a stand-in real transcoder (Debian's ffmpeg behind a script
//! that drops Plex-only options), Plex-shaped software-pipeline command lines, and ffprobe
//! on what came out.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::daemon::{stop, wait_for_daemon, Env};
use crate::fake_plex::FakePlex;
use crate::util::{self, ffprobe, media, Probed};

/// A Plex install dir with the shim in place of the transcoder.
struct Install {
    _root: tempfile::TempDir,
    transcoder: PathBuf,
    session: PathBuf,
    record: PathBuf,
    log: PathBuf,
}

fn install() -> Install {
    util::require("ffmpeg");
    let root = util::tempdir();
    let pms = root.path().join("usr/lib/plexmediaserver");
    std::fs::create_dir_all(&pms).unwrap();
    let transcoder = pms.join("Plex Transcoder");
    std::fs::copy(util::shim(), &transcoder).unwrap();
    std::fs::copy(
        util::repo().join("tests/support/plex-transcoder-standin"),
        pms.join("Plex Transcoder.downshiftarr-real"),
    )
    .unwrap();
    let session = root.path().join("Transcode/Sessions/plex-transcode-e2e-1");
    std::fs::create_dir_all(&session).unwrap();
    let record = root.path().join("standin-args");
    let log = root.path().join("decisions.jsonl");
    Install {
        _root: root,
        transcoder,
        session,
        record,
        log,
    }
}

impl Install {
    /// Runs the installed shim the way PMS does (argv[0] = its path, cwd = session dir).
    fn run(&self, args: &[OsString]) -> std::process::Output {
        self.run_with(args, &self.session.join("no-daemon.sock"))
    }

    /// Runs the installed shim with the daemon at `socket`.
    fn run_with(&self, args: &[OsString], socket: &Path) -> std::process::Output {
        let out = Command::new(&self.transcoder)
            .args(args)
            .current_dir(&self.session)
            .env_remove("DOWNSHIFTARR_REAL_TRANSCODER")
            .env("DOWNSHIFTARR_CONFIG", self.session.join("no-config.json"))
            .env("DOWNSHIFTARR_SOCKET", socket)
            .env("DOWNSHIFTARR_DECISION_LOG", &self.log)
            .env("STANDIN_RECORD", &self.record)
            .env("X_PLEX_TOKEN", "local-e2e-token-0000")
            .output()
            .expect("run the installed shim");
        assert!(
            out.status.success(),
            "transcode failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            util::read(&self.log)
        );
        assert!(out.stdout.is_empty(), "nothing on stdout");
        out
    }
    fn exec_args(&self) -> Vec<String> {
        util::read(&self.record).lines().map(String::from).collect()
    }
    fn out(&self, name: &str) -> PathBuf {
        self.session.join(name)
    }
}

const SESSION: &str = "http://127.0.0.1:32400/video/:/transcode/session/e2e-s1/1f0c2b7e-e2e/";

/// Plex's software pipeline as captured (fixture x264-h264-1080p-sdr-to-404p-dash), with the
/// given input and target size, into an HLS `ssegment` mpegts output.
fn hls_args(hints: &[&str], input: &Path, w: u32, h: u32) -> Vec<OsString> {
    let mut a = head(hints, input, w, h);
    a.extend(
        [
            "-segment_format",
            "mpegts",
            "-f",
            "ssegment",
            "-individual_header_trailer",
            "0",
            "-flags",
            "+global_header",
            "-segment_header_filename",
            "header",
            "-segment_time",
            "1",
            "-segment_start_number",
            "0",
            "-segment_time_delta",
            "0.0625",
            "-segment_list",
            &format!("{SESSION}manifest?X-Plex-Http-Pipeline=infinite"),
            "-segment_list_type",
            "csv",
            "-segment_list_size",
            "5",
            "-segment_list_separate_stream_times",
            "1",
            "-segment_list_unfinished",
            "1",
            "-segment_format_options",
            "output_ts_offset=10",
            "-max_delay",
            "5000000",
            "-avoid_negative_ts",
            "disabled",
            "-map_metadata",
            "-1",
            "-map_chapters",
            "-1",
            "media-%05d.ts",
        ]
        .iter()
        .map(OsString::from),
    );
    a
}

fn dash_args(hints: &[&str], input: &Path, w: u32, h: u32) -> Vec<OsString> {
    let mut a = head(hints, input, w, h);
    a.extend(
        [
            "-f",
            "dash",
            "-seg_duration",
            "3",
            "-dash_segment_type",
            "mp4",
            "-init_seg_name",
            "init-stream$RepresentationID$.m4s",
            "-media_seg_name",
            "chunk-stream$RepresentationID$-$Number%05d$.m4s",
            "-window_size",
            "5",
            "-delete_removed",
            "false",
            "-skip_to_segment",
            "1",
            "-manifest_name",
            &format!("{SESSION}manifest?X-Plex-Http-Pipeline=infinite"),
            "-avoid_negative_ts",
            "disabled",
            "-map_metadata",
            "-1",
            "-map_chapters",
            "-1",
            "dash",
        ]
        .iter()
        .map(OsString::from),
    );
    a
}

/// Decoder hints as Plex writes them for each clip (`-codec:N <decoder>` before `-i`).
const HEVC_AAC: &[&str] = &["-codec:0", "hevc", "-codec:1", "aac"];
const H264_AAC: &[&str] = &["-codec:0", "h264", "-codec:1", "aac"];
/// Stock ffmpeg 5.1 rejects an audio decoder hint on MPEG-TS input; Plex's fork does not.
const HEVC_ONLY: &[&str] = &["-codec:0", "hevc"];

fn head(hints: &[&str], input: &Path, w: u32, h: u32) -> Vec<OsString> {
    let graph = format!(
        "[0:0]scale=w={w}:h={h}:force_divisible_by=4[0];[0]format=pix_fmts=yuv420p|nv12[1]"
    );
    let mut a: Vec<OsString> = hints
        .iter()
        .chain(&[
            "-analyzeduration",
            "20000000",
            "-probesize",
            "20000000",
            "-i",
        ])
        .map(OsString::from)
        .collect();
    a.push(input.as_os_str().to_owned());
    a.extend(
        [
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
            "-progressurl",
            &format!("{SESSION}progress"),
            "-filter_complex",
            &graph,
            "-map",
            "[1]",
            "-metadata:s:0",
            "language=eng",
            "-codec:0",
            "libx264",
            "-crf:0",
            "23",
            "-maxrate:0",
            "40000k",
            "-bufsize:0",
            "80000k",
            "-r:0",
            "24",
            "-preset:0",
            "veryfast",
            "-force_key_frames:0",
            "expr:gte(t,n_forced*1)",
            "-filter_complex",
            "[0:1] aresample=async=1:ochl='stereo':rematrix_maxval=0.000000dB:osr=48000[2]",
            "-map",
            "[2]",
            "-metadata:s:1",
            "language=eng",
            "-codec:1",
            "aac",
            "-b:1",
            "128k",
        ]
        .iter()
        .map(OsString::from),
    );
    a
}

fn video(streams: &[Probed]) -> &Probed {
    streams
        .iter()
        .find(|s| s.codec_type == "video")
        .expect("a video stream came out")
}

fn assert_sdr_1080_or_less(streams: &[Probed]) {
    let v = video(streams);
    assert!(
        v.width <= 1920 && v.height <= 1080 && v.width > 0,
        "output is {}x{}",
        v.width,
        v.height
    );
    assert_eq!(v.pix_fmt, "yuv420p", "8-bit output");
    assert_eq!(
        (
            v.color_primaries.as_str(),
            v.color_transfer.as_str(),
            v.color_space.as_str()
        ),
        ("bt709", "bt709", "bt709")
    );
    let a = streams
        .iter()
        .find(|s| s.codec_type == "audio")
        .expect("audio intact");
    assert_eq!((a.codec_name.as_str(), a.channels), ("aac", 2));
}

/// The HLS header and first segment together form a playable transport stream.
fn hls_output(i: &Install) -> PathBuf {
    let joined = i.out("joined.ts");
    let mut bytes = std::fs::read(i.out("header")).unwrap_or_default();
    bytes.extend(std::fs::read(i.out("media-00000.ts")).expect("first HLS segment"));
    std::fs::write(&joined, bytes).unwrap();
    joined
}

fn dash_output(i: &Install, stream: u32) -> PathBuf {
    let joined = i.out(&format!("joined-{stream}.mp4"));
    let mut bytes =
        std::fs::read(i.out(&format!("init-stream{stream}.m4s"))).expect("DASH init segment");
    bytes.extend(
        std::fs::read(i.out(&format!("chunk-stream{stream}-00001.m4s"))).expect("first DASH chunk"),
    );
    std::fs::write(&joined, bytes).unwrap();
    joined
}

#[test]
fn hdr10_4k_to_4k_hls_comes_out_1080p_sdr() {
    let i = install();
    let args = hls_args(HEVC_AAC, &media().hdr10_2160, 3840, 2160);
    i.run(&args);
    let exec = i.exec_args();
    assert_ne!(
        exec,
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        "the job was rewritten"
    );
    assert_sdr_1080_or_less(&ffprobe(&hls_output(&i)));
    let v = ffprobe(&hls_output(&i));
    assert_eq!((video(&v).width, video(&v).height), (1920, 1080));
    let log = util::read(&i.log);
    assert!(
        log.contains("\"decision\":\"rewrite\"") && log.contains("\"from\":\"probe\""),
        "{log}"
    );
    assert!(!log.contains("local-e2e-token-0000"), "token never logged");
}

#[test]
fn hlg_4k_dash_is_tone_mapped_and_tagged() {
    let i = install();
    i.run(&dash_args(HEVC_AAC, &media().hlg_2160, 1280, 720));
    let v = ffprobe(&dash_output(&i, 0));
    assert_eq!(
        (video(&v).width, video(&v).height),
        (1280, 720),
        "Plex's own ≤1080p target is kept"
    );
    assert_eq!(video(&v).color_transfer, "bt709");
    assert_eq!(video(&v).pix_fmt, "yuv420p");
    let a = ffprobe(&dash_output(&i, 1));
    assert_eq!(a[0].codec_type, "audio");
}

#[test]
fn uhd_bluray_m2ts_is_probed_and_downshifted() {
    let i = install();
    i.run(&hls_args(HEVC_ONLY, &media().hdr10_2160_m2ts, 3840, 2160));
    assert_sdr_1080_or_less(&ffprobe(&hls_output(&i)));
}

#[test]
fn sdr_1080p_job_runs_exactly_as_plex_asked() {
    let i = install();
    let args = hls_args(H264_AAC, &media().sdr_1080, 1280, 720);
    i.run(&args);
    assert_eq!(
        i.exec_args(),
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        "byte-identical pass-through"
    );
    let v = ffprobe(&hls_output(&i));
    assert_eq!(
        (
            video(&v).width,
            video(&v).height,
            video(&v).pix_fmt.as_str()
        ),
        (1280, 720, "yuv420p")
    );
    assert!(util::read(&i.log).contains("\"reason\":\"source not protected\""));
}

/// The fake Plex's description of the two clips as two versions of one movie.
fn two_version_movie(uhd: &Path, hd: &Path) -> serde_json::Value {
    let audio = |id: u64, index: u32, codec: &str, lang: &str, default: bool| {
        json!({"id": id, "streamType": 2, "index": index, "codec": codec, "channels": 1,
               "languageCode": lang, "default": default})
    };
    json!({"ratingKey": "5001", "key": "/library/metadata/5001", "type": "movie", "title": "Two Versions",
        "year": 2024, "librarySectionID": 1, "updatedAt": 1_700_000_000, "guid": "plex://movie/5d7700000000000000005001",
        "Media": [
            {"id": 50011, "width": 3840, "height": 2160, "bitrate": 60000, "container": "mkv", "videoResolution": "4k",
             "videoCodec": "hevc", "Part": [{"id": 500111, "file": uhd, "Stream": [
                {"id": 1, "streamType": 1, "index": 0, "codec": "hevc", "bitDepth": 10, "colorTrc": "smpte2084",
                 "width": 3840, "height": 2160, "default": true},
                audio(2, 1, "aac", "eng", true), audio(3, 2, "aac", "ger", false)]}]},
            {"id": 50010, "width": 1920, "height": 1080, "bitrate": 10000, "container": "mkv", "videoResolution": "1080",
             "videoCodec": "h264", "Part": [{"id": 500101, "file": hd, "Stream": [
                {"id": 4, "streamType": 1, "index": 0, "codec": "h264", "bitDepth": 8, "colorTrc": "bt709",
                 "width": 1920, "height": 1080, "default": true},
                audio(5, 1, "ac3", "ger", true), audio(6, 2, "aac", "eng", false)]}]}]})
}

#[test]
fn two_versions_the_shim_transcodes_the_1080p_file_and_its_english_track() {
    let m = media();
    let env = Env::new(
        FakePlex::with_movies(vec![two_version_movie(&m.two_uhd, &m.two_hd)]),
        json!({}),
    );
    let daemon = env.daemon();
    wait_for_daemon(&env.socket(), m.two_uhd.to_str().unwrap());
    let i = install();
    // Plex plays the 4K file's English track (0:1) with its own decoder hints.
    let args = hls_args(HEVC_AAC, &m.two_uhd, 3840, 2160);
    i.run_with(&args, &env.socket());
    let exec = i.exec_args();
    let after = |opt: &str| -> Vec<&str> {
        exec.windows(2)
            .filter(|w| w[0] == opt)
            .map(|w| w[1].as_str())
            .collect()
    };
    assert_eq!(after("-i"), [m.two_hd.to_str().unwrap()], "{exec:?}");
    assert_eq!(
        after("-codec:0")[0],
        "h264",
        "the decoder hint fits the new file"
    );
    assert_eq!(
        after("-codec:2"),
        ["aac"],
        "English is stream 2 of the 1080p file"
    );
    let graphs = after("-filter_complex");
    assert!(
        graphs[0].starts_with("[0:0]scale=w=1920:h=1080"),
        "{graphs:?}"
    );
    assert!(graphs[1].starts_with("[0:2] aresample"), "{graphs:?}");
    // The daemon stored the switch with the version and the mapping.
    let t = std::time::Instant::now();
    let record: String = loop {
        let r = env.db().query_row(
            "SELECT record FROM decisions WHERE decision = 'switch'",
            [],
            |r| r.get(0),
        );
        if let Ok(r) = r {
            break r;
        }
        assert!(t.elapsed().as_secs() < 10, "the switch was not reported");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let rec: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(rec["switched_to"]["media_id"], "50010", "{rec}");
    assert_eq!(rec["switched_to"]["streams"][1]["from"], 1, "{rec}");
    assert_eq!(rec["switched_to"]["streams"][1]["to"], 2, "{rec}");

    let out = ffprobe(&hls_output(&i));
    assert_sdr_1080_or_less(&out);
    let hz = util::tone_hz(&hls_output(&i));
    assert!(
        (hz - util::ENGLISH_HZ).abs() < 60.0,
        "the English tone ({} Hz) came out, not {hz:.0} Hz",
        util::ENGLISH_HZ
    );
    stop(daemon);
}
