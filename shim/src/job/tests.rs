//! Job classification over plain command lines.

use super::*;
use crate::argv::{parse, Parsed};
use std::ffi::OsString;

fn kind(args: &[&str]) -> JobKind {
    let t: Vec<OsString> = args.iter().map(OsString::from).collect();
    match parse(&t) {
        Parsed::Job(inv) => classify(&inv).kind,
        other => panic!("{other:?}"),
    }
}

#[test]
fn kinds() {
    let base = ["-i", "/m/a.mkv"];
    let k = |rest: &[&str]| kind(&[&base[..], rest].concat());
    assert_eq!(
        k(&["-map", "0:0", "-codec:0", "libx264", "-f", "mp4", "/t/o.mp4"]),
        JobKind::VideoTranscode
    );
    assert_eq!(
        k(&["-map", "0:v:0", "-c:v", "copy", "-f", "ssegment", "m.ts"]),
        JobKind::DirectStream
    );
    assert_eq!(
        k(&["-codec:v", "copy", "-f", "matroska", "o.mkv"]),
        JobKind::DirectStream
    );
    assert_eq!(
        k(&["-vf", "fps=1", "-f", "image2", "thumb-%05d.jpeg"]),
        JobKind::Thumbnail
    );
    assert_eq!(
        k(&["-map", "0:a:0", "-codec:0", "aac", "-f", "mp4", "o.m4a"]),
        JobKind::AudioOnly
    );
    assert_eq!(k(&["-map", "0:1", "-f", "null", "-"]), JobKind::Analysis);
    assert_eq!(
        k(&[
            "-c:v",
            "libx265",
            "-f",
            "mp4",
            "/l/Plex Versions/TV/.inProgress/a.mp4.1"
        ]),
        JobKind::Optimize
    );
    assert_eq!(k(&["-vn", "-f", "mp4", "o.m4a"]), JobKind::AudioOnly);
}

#[test]
fn live_tv_by_structure_not_words() {
    assert_eq!(
        kind(&[
            "-reconnect",
            "1",
            "-i",
            "http://10.0.0.2:5004/auto/v1",
            "-codec:V",
            "copy",
            "-f",
            "ssegment",
            "m.ts"
        ]),
        JobKind::LiveTv
    );
    assert_eq!(
        kind(&[
            "-i",
            "/m/Live-TV Special (2019)/x 2160p.mkv",
            "-codec:0",
            "libx264",
            "-f",
            "dash",
            "dash"
        ]),
        JobKind::VideoTranscode
    );
}

#[test]
fn references_to_missing_inputs_do_not_panic() {
    assert_eq!(
        kind(&[
            "-i",
            "/m/a.mkv",
            "-filter_complex",
            "[1:0]scale=w=1920:h=800[0]",
            "-map",
            "[0]",
            "-codec:0",
            "libx264",
            "o.mp4"
        ]),
        JobKind::VideoTranscode
    );
    assert_eq!(
        kind(&["-i", "/m/a.mkv", "-map", "7:0", "-codec:0", "libx264", "o.mp4"]),
        JobKind::VideoTranscode
    );
}

#[test]
fn session_ids() {
    let t: Vec<OsString> = [
        "-i",
        "a",
        "-progressurl",
        "http://127.0.0.1:32400/video/:/transcode/session/abc123/uuid/progress",
        "o",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let Parsed::Job(inv) = parse(&t) else {
        panic!()
    };
    assert_eq!(session_id(&inv).as_deref(), Some("abc123"));
}

#[test]
fn locations() {
    assert_eq!(location(b"/m/a.mkv"), Location::File);
    assert_eq!(location(b"file:/m/a.mkv"), Location::File);
    assert_eq!(location(b"http://x/y.ts"), Location::Network);
    assert_eq!(location(b"pipe:0"), Location::Pipe);
    assert_eq!(location(b"/m/odd://name.mkv"), Location::File);
}

fn job(args: &[&str]) -> Job {
    let t: Vec<OsString> = args.iter().map(OsString::from).collect();
    match parse(&t) {
        Parsed::Job(inv) => classify(&inv),
        other => panic!("{other:?}"),
    }
}

/// Issue 9 §3: a graph we cannot read (or cannot follow to its end) that feeds a video
/// encoder is a video transcode, never an "analysis" that passes unjudged.
#[test]
fn graphs_beyond_our_reading_still_feed_a_video_transcode() {
    let long = format!("[0:0]{}scale=w=3840:h=2160[v]", "null,".repeat(300));
    let j = job(&[
        "-i",
        "/m/a.mkv",
        "-filter_complex",
        &long,
        "-map",
        "[v]",
        "-codec:0",
        "libx264",
        "-f",
        "dash",
        "dash",
    ]);
    assert_eq!(j.kind, JobKind::VideoTranscode);
    assert_eq!(j.primary_input, Some(0));
    // A graph that does not parse, mapped into a video encoder.
    let j = job(&[
        "-i",
        "/m/a.mkv",
        "-filter_complex",
        "[0:0]scale=w=3840:h=2160[v",
        "-map",
        "[v]",
        "-codec:0",
        "libx264",
        "-f",
        "dash",
        "dash",
    ]);
    assert_eq!(j.kind, JobKind::VideoTranscode);
    assert!(matches!(
        j.video.map(|v| v.feed),
        Some(VideoFeed::Graph { .. })
    ));
    // The same unreadable graph feeding only an audio encoder stays audio-only.
    let j = job(&[
        "-i",
        "/m/a.mkv",
        "-filter_complex",
        "[0:1]aresample[a",
        "-map",
        "[a]",
        "-codec:0",
        "aac",
        "-f",
        "mp4",
        "o.m4a",
    ]);
    assert_eq!(j.kind, JobKind::AudioOnly);
}

#[test]
fn spaced_filter_syntax_is_read_like_ffmpeg_reads_it() {
    let j = job(&[
        "-i",
        "/m/a.mkv",
        "-filter_complex",
        "[0:0] scale = w=1920:h=1080 [v] ; [v] format = pix_fmts=yuv420p [out]",
        "-map",
        "[out]",
        "-codec:0",
        "libx264",
        "-f",
        "dash",
        "dash",
    ]);
    assert_eq!(j.kind, JobKind::VideoTranscode);
    assert_eq!(j.video.and_then(|v| v.input), Some(0));
}

#[test]
fn implicit_selection_follows_ffmpeg() {
    use Location::*;
    let uhd = Some((3840, 2160));
    let hd = Some((1920, 1080));
    // (inputs, the one ffmpeg encodes the video of)
    let cases: &[(&[Candidate], usize, &str)] = &[
        (&[(0, File, hd), (1, File, uhd)], 1, "the most pixels"),
        (
            &[(0, File, uhd), (1, File, hd)],
            0,
            "the most pixels, first",
        ),
        (
            &[(0, File, hd), (1, File, hd)],
            0,
            "a tie: the first (`score > best`)",
        ),
        (
            &[(0, Pipe, None), (1, File, hd)],
            1,
            "a pipe gives way to a file we measure",
        ),
        (
            &[(0, File, uhd), (1, File, None)],
            1,
            "an unmeasured local file could be the largest: judged (fail closed)",
        ),
    ];
    for &(inputs, want, why) in cases {
        assert_eq!(
            implicit_video_input(inputs),
            Some(want),
            "{why}: {inputs:?}"
        );
    }
    assert_eq!(implicit_video_input(&[]), None);
    // Only without -map and with several inputs.
    let t: Vec<OsString> = ["-i", "a.mkv", "-i", "b.mkv", "-c:v", "libx264", "o.mp4"]
        .iter()
        .map(OsString::from)
        .collect();
    let Parsed::Job(inv) = parse(&t) else {
        panic!()
    };
    let mut j = classify(&inv);
    assert_eq!(j.implicit_candidates(&inv).len(), 2);
    j.select_input(&inv, 1);
    assert_eq!(j.primary_input, Some(1));
    assert!(matches!(
        j.video.map(|v| v.feed),
        Some(VideoFeed::Stream { input: 1, .. })
    ));
    assert!(
        !job(&["-i", "a.mkv", "-i", "b.mkv", "-map", "1:0", "-c:v", "libx264", "o.mp4"])
            .implicit_video
    );
}
