//! Any byte string, split on NUL into argv tokens, decided as if the index knew the input as
//! a 4K HDR10 version with a 1080p SDR sibling whose streams are in another order. Nothing may
//! panic; a switch must re-parse, read the sibling, and pass when decided again.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use downshiftarr_shim::argv::{parse, Parsed};
use downshiftarr_shim::config::ShimConfig;
use downshiftarr_shim::facts::DynamicRange;
use downshiftarr_shim::job::{classify, file_path};
use downshiftarr_shim::policy::{decide, Action, Context, Viewer};
use downshiftarr_shim::protocol::{MediaVersion, StreamInfo, StreamKind};
use downshiftarr_shim::switch::version_facts;
use libfuzzer_sys::fuzz_target;

fn streams(video: &str, langs: &[&str]) -> Vec<StreamInfo> {
    let mut v = vec![StreamInfo { index: 0, kind: StreamKind::Video, codec: Some(video.into()), default: true, ..StreamInfo::default() }];
    for (i, l) in langs.iter().enumerate() {
        v.push(StreamInfo { index: 1 + i as u32, kind: StreamKind::Audio, codec: Some("eac3".into()), language: Some((*l).into()), channels: Some(6), ..StreamInfo::default() });
    }
    v.push(StreamInfo { index: 1 + langs.len() as u32, kind: StreamKind::Subtitle, codec: Some("srt".into()), language: Some("eng".into()), ..StreamInfo::default() });
    v
}

fuzz_target!(|data: &[u8]| {
    let tokens: Vec<OsString> = data.split(|&b| b == 0).map(|t| OsString::from_vec(t.to_vec())).collect();
    let Parsed::Job(inv) = parse(&tokens) else { return };
    let job = classify(&inv);
    let Some(url) = job.primary_input.and_then(|p| inv.inputs[p].url) else { return };
    let path = String::from_utf8_lossy(file_path(inv.token(url))).into_owned();
    let cur = MediaVersion { media_id: "1".into(), width: Some(3840), height: Some(2160), dynamic_range: Some(DynamicRange::Hdr10), file: path, streams: streams("hevc", &["eng", "ger"]), ..MediaVersion::default() };
    let sib = MediaVersion { media_id: "2".into(), width: Some(1920), height: Some(1080), dynamic_range: Some(DynamicRange::Sdr), file: "/m/sibling.mkv".into(), streams: streams("h264", &["ger", "eng"]), ..MediaVersion::default() };
    let versions = [cur, sib];
    let cfg = ShimConfig { socket: String::new(), ..ShimConfig::default() };
    let f = version_facts(&versions[0]);
    let d = decide(&Context { inv: &inv, job: &job, facts: Some(&f), versions: &versions, viewer: &Viewer::default(), config: &cfg });
    if let Action::Switch(sw) = &d.action {
        let new = downshiftarr_shim::edit::apply(&tokens, &sw.edits);
        let Parsed::Job(inv2) = parse(&new) else { panic!("switched argv does not parse") };
        let job2 = classify(&inv2);
        let f2 = version_facts(&versions[1]);
        let again = decide(&Context { inv: &inv2, job: &job2, facts: Some(&f2), versions: &versions, viewer: &Viewer::default(), config: &cfg });
        assert_eq!(again.action, Action::Pass, "{}", again.reason);
    }
});
