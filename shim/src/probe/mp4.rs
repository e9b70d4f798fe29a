//! MP4 / MOV (ISO BMFF): `moov → trak → mdia → (hdlr, minf → stbl → stsd)`.
//!
//! Only box headers are read on the way down; sample tables (`stts`, `stsz`, `stco`), which
//! can be megabytes, are skipped by seeking. From the first video sample entry we read its
//! size, `colr` (nclx/nclc transfer), `hvcC`/`avcC`/`av1C`/`vpcC` (bit depth, SPS colour) and
//! `dvcC`/`dvvC` (Dolby Vision). A `moov` at the end of the file (no `faststart`) is found by
//! walking top-level box headers.

use super::{mkv::av1_depth, sps, DoviConfig, ProbeError, Reader, VideoTrack};

/// The most boxes we visit, whatever the file says.
const MAX_BOXES: usize = 512;

struct BoxHeader {
    kind: [u8; 4],
    /// Offset of the body.
    body: u64,
    /// End offset (exclusive).
    end: u64,
}

fn read_header(r: &mut Reader, at: u64, limit: u64) -> Result<Option<BoxHeader>, ProbeError> {
    if at.saturating_add(8) > limit {
        return Ok(None);
    }
    let h = r.read_at(at, 16)?;
    if h.len() < 8 {
        return Ok(None);
    }
    let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as u64;
    let kind = [h[4], h[5], h[6], h[7]];
    let (body, end) = match size32 {
        0 => (at + 8, limit),
        1 => {
            if h.len() < 16 {
                return Err("mp4 box header truncated");
            }
            let large = u64::from_be_bytes(
                h[8..16]
                    .try_into()
                    .map_err(|_| "mp4 box header truncated")?,
            );
            (at + 16, at.saturating_add(large))
        }
        n => (at + 8, at.saturating_add(n)),
    };
    if end < body {
        return Err("mp4 box size too small");
    }
    Ok(Some(BoxHeader {
        kind,
        body,
        end: end.min(limit),
    }))
}

/// Finds the first child box of `kind` within `[start, end)`.
fn find(
    r: &mut Reader,
    start: u64,
    end: u64,
    kind: &[u8; 4],
    visits: &mut usize,
) -> Result<Option<BoxHeader>, ProbeError> {
    let mut at = start;
    while let Some(h) = read_header(r, at, end)? {
        *visits += 1;
        if *visits > MAX_BOXES {
            return Err("too many mp4 boxes");
        }
        if &h.kind == kind {
            return Ok(Some(h));
        }
        if h.end <= at {
            break;
        }
        at = h.end;
    }
    Ok(None)
}

pub fn probe(r: &mut Reader) -> Result<VideoTrack, ProbeError> {
    let mut visits = 0;
    let len = r.len;
    let moov = find(r, 0, len, b"moov", &mut visits)?.ok_or("mp4 moov box not found")?;
    let mut at = moov.body;
    while let Some(trak) = read_header(r, at, moov.end)? {
        visits += 1;
        if visits > MAX_BOXES {
            return Err("too many mp4 boxes");
        }
        if &trak.kind == b"trak" {
            if let Some(t) = video_trak(r, &trak, &mut visits)? {
                return Ok(t);
            }
        }
        if trak.end <= at {
            break;
        }
        at = trak.end;
    }
    Err("no video track")
}

fn video_trak(
    r: &mut Reader,
    trak: &BoxHeader,
    visits: &mut usize,
) -> Result<Option<VideoTrack>, ProbeError> {
    let Some(mdia) = find(r, trak.body, trak.end, b"mdia", visits)? else {
        return Ok(None);
    };
    let Some(hdlr) = find(r, mdia.body, mdia.end, b"hdlr", visits)? else {
        return Ok(None);
    };
    let hb = r.read_at(hdlr.body, 12)?;
    if hb.get(8..12) != Some(b"vide") {
        return Ok(None);
    }
    let mut t = VideoTrack::default();
    if let Some(tkhd) = find(r, trak.body, trak.end, b"tkhd", visits)? {
        let body = r.read_at(tkhd.body, (tkhd.end - tkhd.body).min(128) as usize)?;
        if body.len() >= 8 {
            let n = body.len();
            let w = u32::from_be_bytes(body[n - 8..n - 4].try_into().unwrap_or_default()) >> 16;
            let h = u32::from_be_bytes(body[n - 4..n].try_into().unwrap_or_default()) >> 16;
            t.width = (w > 0).then_some(w);
            t.height = (h > 0).then_some(h);
        }
    }
    let minf = find(r, mdia.body, mdia.end, b"minf", visits)?.ok_or("mp4 minf missing")?;
    let stbl = find(r, minf.body, minf.end, b"stbl", visits)?.ok_or("mp4 stbl missing")?;
    let stsd = find(r, stbl.body, stbl.end, b"stsd", visits)?.ok_or("mp4 stsd missing")?;
    let body = r.read_at(stsd.body, (stsd.end - stsd.body).min(256 << 10) as usize)?;
    sample_entry(body.get(8..).ok_or("mp4 stsd truncated")?, &mut t)?;
    Ok(Some(t))
}

/// Parses a visual sample entry (`hvc1`, `hev1`, `dvh1`, `avc1`, `av01`, `vp09` …).
fn sample_entry(e: &[u8], t: &mut VideoTrack) -> Result<(), ProbeError> {
    if e.len() < 86 {
        return Err("mp4 sample entry truncated");
    }
    let size = (u32::from_be_bytes([e[0], e[1], e[2], e[3]]) as usize).min(e.len());
    t.codec = Some(match &e[4..8] {
        b"hvc1" | b"hev1" | b"dvh1" | b"dvhe" => "hevc",
        b"avc1" | b"avc3" | b"dva1" | b"dvav" => "h264",
        b"av01" | b"dav1" => "av1",
        b"vp09" => "vp9",
        b"mp4v" => "mpeg4",
        b"encv" => return Err("encrypted video track"),
        _ => "unknown",
    });
    let w = u16::from_be_bytes([e[32], e[33]]) as u32;
    let h = u16::from_be_bytes([e[34], e[35]]) as u32;
    if w > 0 && h > 0 {
        t.width = Some(w);
        t.height = Some(h);
    }
    let mut at = 86;
    let mut sps_info = None;
    while at + 8 <= size {
        let bsize = u32::from_be_bytes([e[at], e[at + 1], e[at + 2], e[at + 3]]) as usize;
        if bsize < 8 || at + bsize > size {
            break;
        }
        let body = &e[at + 8..at + bsize];
        match &e[at + 4..at + 8] {
            b"colr" if body.len() >= 10 && (&body[..4] == b"nclx" || &body[..4] == b"nclc") => {
                t.transfer = Some(u16::from_be_bytes([body[6], body[7]]) as u8);
            }
            b"hvcC" => sps_info = sps::from_hvcc(body),
            b"avcC" => sps_info = sps::from_avcc(body),
            b"av1C" if body.len() > 2 => t.bit_depth = Some(av1_depth(body[2])),
            b"vpcC" if body.len() >= 10 => {
                t.bit_depth = Some(body[6] >> 4);
                t.transfer = t.transfer.or(Some(body[8]));
            }
            b"dvcC" | b"dvvC" | b"dvwC" => t.dv = DoviConfig::parse(body),
            _ => {}
        }
        at += bsize;
    }
    if let Some(s) = sps_info {
        t.bit_depth = t.bit_depth.or(Some(s.bit_depth));
        t.width = t.width.or(Some(s.width));
        t.height = t.height.or(Some(s.height));
        if t.transfer.is_none_or(|x| x == 2) {
            t.transfer = s.transfer.or(t.transfer);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn sample(transfer: u16, dv: Option<[u8; 5]>, moov_last: bool) -> Vec<u8> {
        let mut entry = vec![0u8; 78];
        entry[24..26].copy_from_slice(&3840u16.to_be_bytes());
        entry[26..28].copy_from_slice(&2160u16.to_be_bytes());
        let mut colr = b"nclx".to_vec();
        colr.extend_from_slice(&9u16.to_be_bytes());
        colr.extend_from_slice(&transfer.to_be_bytes());
        colr.extend_from_slice(&9u16.to_be_bytes());
        colr.push(0);
        entry.extend(bx(b"colr", &colr));
        if let Some(d) = dv {
            entry.extend(bx(b"dvvC", &d));
        }
        let stsd = bx(
            b"stsd",
            &[&[0u8; 4][..], &1u32.to_be_bytes(), &bx(b"hvc1", &entry)].concat(),
        );
        let stbl = bx(b"stbl", &[bx(b"stts", &[0; 64]), stsd].concat());
        let minf = bx(b"minf", &stbl);
        let hdlr = bx(b"hdlr", &[&[0u8; 8][..], b"vide", &[0; 12]].concat());
        let mdia = bx(b"mdia", &[bx(b"mdhd", &[0; 24]), hdlr, minf].concat());
        let ahdlr = bx(b"hdlr", &[&[0u8; 8][..], b"soun", &[0; 12]].concat());
        let atrak = bx(b"trak", &bx(b"mdia", &ahdlr));
        let moov = bx(b"moov", &[atrak, bx(b"trak", &mdia)].concat());
        let ftyp = bx(b"ftyp", b"isom\0\0\0\0isom");
        let mdat = bx(b"mdat", &[0; 100]);
        if moov_last {
            [ftyp, mdat, moov].concat()
        } else {
            [ftyp, moov, mdat].concat()
        }
    }

    fn probe_bytes(b: &[u8], tag: &str) -> Result<VideoTrack, ProbeError> {
        let dir =
            std::env::temp_dir().join(format!("dsa-mp4-{}-{tag}-{}", std::process::id(), b.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.mp4");
        std::fs::write(&p, b).unwrap();
        let r = super::super::probe(&p, 1 << 20);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn reads_size_transfer_and_dv_with_moov_anywhere() {
        for last in [false, true] {
            let t = probe_bytes(&sample(16, None, last), "a").unwrap();
            assert_eq!(
                (t.codec, t.width, t.height, t.transfer),
                (Some("hevc"), Some(3840), Some(2160), Some(16))
            );
        }
        let t = probe_bytes(&sample(18, None, false), "b").unwrap();
        assert_eq!(
            t.facts().dynamic_range,
            Some(crate::facts::DynamicRange::Hlg)
        );
        let dv = probe_bytes(
            &sample(16, Some([1, 0, 8 << 1, 0b0011_0101, 1 << 4]), false),
            "c",
        )
        .unwrap();
        assert_eq!(dv.facts().dv_profile, Some(8));
        assert_eq!(dv.facts().dv_base_layer_compatible, Some(true));
    }

    #[test]
    fn truncations_never_panic() {
        let full = sample(16, Some([1, 0, 16, 0, 0]), true);
        for n in (0..full.len()).step_by(3) {
            let _ = probe_bytes(&full[..n], "t");
        }
    }
}
