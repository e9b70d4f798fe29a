//! The native probe against real files written by ffmpeg: Matroska, MP4 and M2TS/TS, HDR10,
//! HLG and SDR, each checked against what ffprobe itself reports.

use std::path::Path;

use downshiftarr_shim::facts::DynamicRange;
use downshiftarr_shim::probe;

use crate::util::{self, ffprobe, media};

fn check(path: &Path, w: u32, h: u32, depth: u8, dr: DynamicRange) {
    let f = probe::probe(path, 8 << 20)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .facts();
    assert_eq!(
        (f.width, f.height, f.bit_depth, f.dynamic_range),
        (Some(w), Some(h), Some(depth), Some(dr)),
        "{}",
        path.display()
    );
    // Cross-check against ffprobe, so the expectation is not ours alone.
    let p = ffprobe(path);
    let v = p.iter().find(|s| s.codec_type == "video").unwrap();
    assert_eq!((v.width, v.height), (w, h));
    let trc = match dr {
        DynamicRange::Hdr10 => "smpte2084",
        DynamicRange::Hlg => "arib-std-b67",
        _ => "bt709",
    };
    assert_eq!(v.color_transfer, trc);
}

#[test]
fn matroska_mp4_and_transport_streams() {
    let m = media();
    check(&m.hdr10_2160, 3840, 2160, 10, DynamicRange::Hdr10);
    check(&m.hlg_2160, 3840, 2160, 10, DynamicRange::Hlg);
    check(&m.sdr_1080, 1920, 1080, 8, DynamicRange::Sdr);
    check(&m.hdr10_2160_mp4, 3840, 2160, 10, DynamicRange::Hdr10);
    check(&m.hdr10_2160_m2ts, 3840, 2160, 10, DynamicRange::Hdr10);
    check(&m.sdr_1080_ts, 1920, 1080, 8, DynamicRange::Sdr);
}

#[test]
fn reads_are_bounded() {
    // The tracks of a Matroska file are at its start: 64 KiB is plenty, whatever its size.
    let m = media();
    assert!(
        std::fs::metadata(&m.hdr10_2160).unwrap().len() > 256 << 10,
        "clip large enough to prove the bound"
    );
    assert!(probe::probe(&m.hdr10_2160, 64 << 10).is_ok());
    assert_eq!(
        probe::probe(&m.hdr10_2160, 16).unwrap_err(),
        "probe read budget exhausted"
    );
}

#[test]
fn truncated_and_corrupted_real_files_never_panic() {
    let m = media();
    let dir = util::tempdir();
    for src in [&m.hdr10_2160, &m.hdr10_2160_mp4, &m.hdr10_2160_m2ts] {
        let bytes = std::fs::read(src).unwrap();
        let p = dir.path().join("cut");
        for n in [
            0usize,
            11,
            12,
            40,
            100,
            188 * 3,
            1000,
            4096,
            20_000,
            100_000,
        ] {
            std::fs::write(&p, &bytes[..n.min(bytes.len())]).unwrap();
            let _ = probe::probe(&p, 8 << 20);
        }
        // Flip bytes through the header region.
        let mut seed = 0x9e37_79b9u32;
        for _ in 0..200 {
            let mut b = bytes[..bytes.len().min(64 << 10)].to_vec();
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let i = seed as usize % b.len();
                b[i] = (seed >> 8) as u8;
            }
            std::fs::write(&p, &b).unwrap();
            let _ = probe::probe(&p, 8 << 20);
        }
    }
}
