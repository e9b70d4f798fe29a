//! MPEG-TS and Blu-ray M2TS: PAT → PMT → first video elementary stream → its SPS.
//!
//! UHD Blu-ray rips are `.m2ts` (192-byte packets: a 4-byte timestamp before each 188-byte
//! TS packet). The transport stream carries no colour information of its own, so width,
//! height, bit depth and transfer come from the HEVC/H.264 sequence parameter set; Dolby
//! Vision is announced in the PMT (registration descriptor `DOVI`, DOVI video descriptor
//! 0xB0). Reading stops as soon as the SPS is parsed.

use super::{sps, DoviConfig, ProbeError, Reader, VideoTrack};

const CHUNK: usize = 192 * 1024;

#[derive(Default)]
struct State {
    pmt_pid: Option<u16>,
    video_pid: Option<u16>,
    stream_type: u8,
    dv: Option<DoviConfig>,
    psi: Vec<u8>,
    es: Vec<u8>,
    es_started: bool,
}

pub fn probe(r: &mut Reader) -> Result<VideoTrack, ProbeError> {
    let head = r.read_at(0, 192 * 3)?;
    let (stride, offset) = if sync(&head, 188, 0) {
        (188usize, 0usize)
    } else if sync(&head, 192, 4) {
        (192, 4)
    } else {
        return Err("not an mpeg transport stream");
    };
    let mut st = State::default();
    let mut pos = 0u64;
    loop {
        let buf = r.read_at(pos, CHUNK)?;
        if buf.len() < stride {
            break;
        }
        let whole = buf.len() / stride * stride;
        for pkt in buf[..whole].chunks_exact(stride) {
            let p = &pkt[offset..offset + 188];
            if p[0] != 0x47 {
                return Err("transport stream lost sync");
            }
            if let Some(t) = packet(p, &mut st)? {
                return Ok(t);
            }
        }
        pos += whole as u64;
    }
    Err(if st.video_pid.is_some() {
        "video sequence header not found"
    } else {
        "no video stream in transport stream"
    })
}

fn sync(b: &[u8], stride: usize, offset: usize) -> bool {
    (0..3).all(|k| b.get(k * stride + offset) == Some(&0x47))
}

fn packet(p: &[u8], st: &mut State) -> Result<Option<VideoTrack>, ProbeError> {
    let pusi = p[1] & 0x40 != 0;
    let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
    let afc = (p[3] >> 4) & 3;
    let mut start = 4usize;
    if afc == 2 || afc == 0 {
        return Ok(None);
    }
    if afc == 3 {
        start += 1 + p[4] as usize;
    }
    let Some(payload) = p.get(start..) else {
        return Ok(None);
    };
    if pid == 0 && st.pmt_pid.is_none() {
        if let Some(sec) = section(payload, pusi, &mut st.psi) {
            st.pmt_pid = pat(&sec);
        }
    } else if Some(pid) == st.pmt_pid && st.video_pid.is_none() {
        if let Some(sec) = section(payload, pusi, &mut st.psi) {
            pmt(&sec, st);
        }
    } else if Some(pid) == st.video_pid {
        if pusi {
            let Some(es) = pes_payload(payload) else {
                return Ok(None);
            };
            st.es_started = true;
            st.es.extend_from_slice(es);
        } else if st.es_started {
            st.es.extend_from_slice(payload);
        }
        if st.es.len() > 2 << 20 {
            return Err("video sequence header not found");
        }
        return Ok(parse_es(st));
    }
    Ok(None)
}

/// Accumulates a PSI section; returns it once complete.
fn section(payload: &[u8], pusi: bool, acc: &mut Vec<u8>) -> Option<Vec<u8>> {
    if pusi {
        let ptr = *payload.first()? as usize;
        acc.clear();
        acc.extend_from_slice(payload.get(1 + ptr..)?);
    } else if !acc.is_empty() {
        acc.extend_from_slice(payload);
    }
    if acc.len() < 3 {
        return None;
    }
    let len = (((acc[1] & 0x0f) as usize) << 8 | acc[2] as usize) + 3;
    if acc.len() >= len {
        let sec = acc[..len].to_vec();
        acc.clear();
        return Some(sec);
    }
    if acc.len() > 4096 {
        acc.clear();
    }
    None
}

fn pat(sec: &[u8]) -> Option<u16> {
    if sec.first() != Some(&0) {
        return None;
    }
    let end = sec.len().checked_sub(4)?;
    sec.get(8..end)?.chunks_exact(4).find_map(|e| {
        let program = u16::from_be_bytes([e[0], e[1]]);
        (program != 0).then(|| u16::from_be_bytes([e[2] & 0x1f, e[3]]))
    })
}

fn pmt(sec: &[u8], st: &mut State) {
    if sec.first() != Some(&2) || sec.len() < 16 {
        return;
    }
    let end = sec.len() - 4;
    let info_len = (((sec[10] & 0x0f) as usize) << 8) | sec[11] as usize;
    let mut at = 12 + info_len;
    while at + 5 <= end {
        let stype = sec[at];
        let pid = u16::from_be_bytes([sec[at + 1] & 0x1f, sec[at + 2]]);
        let es_len = (((sec[at + 3] & 0x0f) as usize) << 8) | sec[at + 4] as usize;
        let desc = sec
            .get(at + 5..(at + 5 + es_len).min(end))
            .unwrap_or_default();
        let mut d = 0;
        while d + 2 <= desc.len() {
            let (tag, len) = (desc[d], desc[d + 1] as usize);
            let body = desc.get(d + 2..d + 2 + len).unwrap_or_default();
            if tag == 0xB0 {
                st.dv = dovi_descriptor(body).or(st.dv);
            }
            d += 2 + len;
        }
        if st.video_pid.is_none() && matches!(stype, 0x24 | 0x1B | 0x02 | 0x01 | 0xEA | 0x10) {
            st.video_pid = Some(pid);
            st.stream_type = stype;
        }
        at += 5 + es_len;
    }
}

/// The DOVI video stream descriptor: like `dvcC`, but the compatibility id follows a
/// dependency PID when there is no base layer in this stream.
fn dovi_descriptor(b: &[u8]) -> Option<DoviConfig> {
    let mut c = DoviConfig::parse(b)?;
    c.bl_compat_id = if c.bl_present {
        b.get(4)? >> 4
    } else {
        b.get(6).map(|x| x >> 4).unwrap_or(0)
    };
    Some(c)
}

fn pes_payload(p: &[u8]) -> Option<&[u8]> {
    if p.get(..3)? != [0, 0, 1] {
        return None;
    }
    let hdr = *p.get(8)? as usize;
    p.get(9 + hdr..)
}

/// Looks for a complete SPS (or MPEG-2 sequence header) in the collected elementary stream.
fn parse_es(st: &State) -> Option<VideoTrack> {
    let es = &st.es;
    let codec = match st.stream_type {
        0x24 => "hevc",
        0x1B => "h264",
        0x01 | 0x02 => "mpeg2video",
        0x10 => "mpeg4",
        _ => "vc1",
    };
    let mut t = VideoTrack {
        codec: Some(codec),
        dv: st.dv,
        ..Default::default()
    };
    if matches!(codec, "vc1" | "mpeg4") {
        return Some(t); // legacy codecs: no HDR; the size is not needed to decide
    }
    let starts: Vec<usize> = es
        .windows(3)
        .enumerate()
        .filter(|(_, w)| *w == [0, 0, 1])
        .map(|(i, _)| i + 3)
        .collect();
    for (k, &s) in starts.iter().enumerate() {
        let Some(&next) = starts.get(k + 1) else {
            break;
        };
        let nal = &es[s..next.saturating_sub(3)];
        match codec {
            "hevc" if nal.first().map(|b| (b >> 1) & 0x3f) == Some(33) => {
                let i = sps::hevc(nal)?;
                return Some(fill(t, i));
            }
            "h264" if nal.first().map(|b| b & 0x1f) == Some(7) => {
                let i = sps::h264(nal)?;
                return Some(fill(t, i));
            }
            "mpeg2video" if nal.first() == Some(&0xB3) && nal.len() >= 4 => {
                t.width = Some(((nal[1] as u32) << 4) | (nal[2] as u32 >> 4));
                t.height = Some((((nal[2] & 0x0f) as u32) << 8) | nal[3] as u32);
                t.bit_depth = Some(8);
                return Some(t);
            }
            _ => {}
        }
    }
    None
}

fn fill(mut t: VideoTrack, i: sps::SpsInfo) -> VideoTrack {
    t.width = Some(i.width);
    t.height = Some(i.height);
    t.bit_depth = Some(i.bit_depth);
    t.transfer = i.transfer;
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_truncation_never_panic() {
        let mut st = State::default();
        let mut seed = 7u32;
        for _ in 0..2000 {
            let mut p = [0u8; 188];
            for b in p.iter_mut() {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = (seed >> 16) as u8;
            }
            p[0] = 0x47;
            let _ = packet(&p, &mut st);
        }
        assert!(pat(&[0, 0xb0, 0x0d, 0, 1]).is_none());
    }
}
