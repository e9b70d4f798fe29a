//! Unit tests of the rewrite planner's helpers.

use std::ffi::OsString;

use super::*;

#[test]
fn fits_the_box() {
    assert_eq!(fit_box(3840, 2160, 4), (1920, 1080));
    assert_eq!(fit_box(3840, 1600, 4), (1920, 800));
    assert_eq!(fit_box(4096, 2160, 2), (1920, 1012));
    assert_eq!(fit_box(1280, 720, 2), (1280, 720));
    assert_eq!(fit_box(1440, 1080, 2), (1440, 1080));
}

#[test]
fn bitrates() {
    assert_eq!(kbps(b"3419k"), Some(3419.0));
    assert_eq!(kbps(b"20M"), Some(20000.0));
    assert_eq!(kbps(b"8000000"), Some(8000.0));
    assert_eq!(kbps(b"x"), None);
}

#[test]
fn pixel_formats() {
    assert_eq!(fmt_depth(b"yuv420p|nv12"), 8);
    assert_eq!(fmt_depth(b"p010"), 10);
    assert_eq!(map_fmt_list(b"p010"), b"nv12");
    assert_eq!(map_fmt_list(b"yuv420p10le|p010"), b"yuv420p|nv12");
}

#[test]
fn set_args_keyed_and_positional() {
    assert_eq!(
        set_args(
            b"w=3840:h=2160:format=p010",
            &[(&[b"w"], Some(0), b"1920".to_vec())]
        ),
        b"w=1920:h=2160:format=p010"
    );
    assert_eq!(
        set_args(b"3840:2160", &[(H_KEYS, Some(1), b"1080".to_vec())]),
        b"3840:1080"
    );
    assert_eq!(
        set_args(
            b"w=1280:h=720",
            &[(&[b"format"], Some(2), b"p010".to_vec())]
        ),
        b"w=1280:h=720:format=p010"
    );
}

#[test]
fn options_are_inserted_before_a_dashdash_output() {
    use crate::argv::{parse, Parsed};
    use crate::facts::{DynamicRange, Origin};
    let t: Vec<OsString> = ["-i", "/m/a.mkv", "--", "-out.mkv"]
        .iter()
        .map(OsString::from)
        .collect();
    let Parsed::Job(inv) = parse(&t) else {
        panic!()
    };
    let job = crate::job::classify(&inv);
    let mut f = SourceFacts::empty(Origin::Given);
    f.height = Some(2160);
    f.width = Some(3840);
    f.dynamic_range = Some(DynamicRange::Hdr10);
    let edits = plan(&inv, &job, &f, &ShimConfig::default())
        .unwrap()
        .unwrap();
    let new = crate::edit::apply(&t, &edits);
    assert_eq!(new[new.len() - 2], "--");
    assert!(matches!(parse(&new), Parsed::Job(_)));
}

/// Graphs whose arguments the planner misreads (ffmpeg rejects both: a positional value
/// after a keyed one, an unknown `pix_bmts` option): a rewrite that scaled 1280×720 *up* to
/// 1920×1080, or changed nothing, used to be offered as compliant. Found by the filtergraph
/// fuzzer (`shim/fuzz/regressions/filtergraph/`).
#[test]
fn a_rewrite_that_does_not_settle_is_not_offered() {
    use crate::argv::{parse, Parsed};
    use crate::facts::{DynamicRange, Origin};
    let mut f = SourceFacts::empty(Origin::Given);
    f.width = Some(3840);
    f.height = Some(2160);
    f.bit_depth = Some(10);
    f.dynamic_range = Some(DynamicRange::Hdr10);
    for graph in [
        "[0:0]hwupload[0];[0]scale_cuda=w=1280:h=720:f-ormat=p010,tonemap_cuda=hable:nv12[1]",
        "[0:0]scale=w=1280:h=720,format=p010,tonemap=hable[0];[0]format=pix_bmts=yuv420p|nv12[1]",
    ] {
        let t: Vec<OsString> = [
            "-codec:0",
            "hevc",
            "-i",
            "/m/a.mkv",
            "-filter_complex",
            graph,
            "-map",
            "[1]",
            "-codec:0",
            "libx264",
            "-f",
            "dash",
            "dash",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let Parsed::Job(inv) = parse(&t) else {
            panic!("{graph}: not a job")
        };
        let job = crate::job::classify(&inv);
        assert_eq!(
            plan(&inv, &job, &f, &ShimConfig::default()),
            Err("rewrite does not settle: planning it again changes it"),
            "{graph}"
        );
    }
}
