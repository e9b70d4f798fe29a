//! Matroska / WebM: EBML header → Segment → Tracks → the first video TrackEntry.
//!
//! Read: PixelWidth/PixelHeight, Colour (BitsPerChannel, TransferCharacteristics 16 = PQ,
//! 18 = HLG), the Dolby Vision configuration in BlockAdditionMapping (`dvcC`/`dvvC`), and
//! as a fallback the SPS inside CodecPrivate (`hvcC`/`avcC`). Tracks normally precede the
//! first Cluster; when they do not, the SeekHead says where they are.

use super::{sps, DoviConfig, ProbeError, Reader, VideoTrack};

const EBML: u32 = 0x1A45DFA3;
const SEGMENT: u32 = 0x18538067;
const SEEK_HEAD: u32 = 0x114D9B74;
const SEEK: u32 = 0x4DBB;
const SEEK_ID: u32 = 0x53AB;
const SEEK_POSITION: u32 = 0x53AC;
const TRACKS: u32 = 0x1654AE6B;
const CLUSTER: u32 = 0x1F43B675;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_TYPE: u32 = 0x83;
const CODEC_ID: u32 = 0x86;
const CODEC_PRIVATE: u32 = 0x63A2;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const COLOUR: u32 = 0x55B0;
const BITS_PER_CHANNEL: u32 = 0x55B2;
const TRANSFER: u32 = 0x55BA;
const BLOCK_ADDITION_MAPPING: u32 = 0x41E4;
const BLOCK_ADD_ID_TYPE: u32 = 0x41E7;
const BLOCK_ADD_ID_EXTRA_DATA: u32 = 0x41ED;
const DVCC: u64 = 0x6476_6343;
const DVVC: u64 = 0x6476_7643;

/// An element header: id, data offset (relative to the buffer or file) and data size
/// (`None` = unknown size).
struct Header {
    id: u32,
    data: u64,
    size: Option<u64>,
}

fn vint(buf: &[u8], at: usize, keep_marker: bool) -> Option<(u64, usize)> {
    let first = *buf.get(at)?;
    if first == 0 {
        return None;
    }
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let mut v = if keep_marker {
        first as u64
    } else {
        (first as u64) & (0xFF >> len)
    };
    for i in 1..len {
        v = (v << 8) | *buf.get(at + i)? as u64;
    }
    Some((v, len))
}

fn header(buf: &[u8], at: usize) -> Option<Header> {
    let (id, il) = vint(buf, at, true)?;
    if il > 4 {
        return None;
    }
    let (size, sl) = vint(buf, at + il, false)?;
    let unknown = size == (1u64 << (7 * sl)) - 1;
    Some(Header {
        id: id as u32,
        data: (at + il + sl) as u64,
        size: (!unknown).then_some(size),
    })
}

/// Children of an in-memory element body.
fn children(buf: &[u8]) -> impl Iterator<Item = (u32, &[u8])> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let h = header(buf, at)?;
        let start = h.data as usize;
        let end = start.checked_add(h.size? as usize)?.min(buf.len());
        at = end;
        Some((h.id, buf.get(start..end)?))
    })
}

fn uint(b: &[u8]) -> u64 {
    b.iter().take(8).fold(0, |v, &x| (v << 8) | x as u64)
}

pub fn probe(r: &mut Reader) -> Result<VideoTrack, ProbeError> {
    let head = r.read_at(0, 64)?;
    let eh = header(&head, 0)
        .filter(|h| h.id == EBML)
        .ok_or("not matroska")?;
    let seg_at = eh.data + eh.size.ok_or("ebml header of unknown size")?;
    let sh_buf = r.read_at(seg_at, 16)?;
    let sh = header(&sh_buf, 0)
        .filter(|h| h.id == SEGMENT)
        .ok_or("matroska segment missing")?;
    let seg_data = seg_at + sh.data;
    let seg_end = sh
        .size
        .map(|s| seg_data.saturating_add(s))
        .unwrap_or(r.len)
        .min(r.len);

    let mut at = seg_data;
    let mut tracks_at: Option<u64> = None;
    for _ in 0..256 {
        if at >= seg_end {
            break;
        }
        let hb = r.read_at(at, 16)?;
        let h = header(&hb, 0).ok_or("matroska element header truncated")?;
        match h.id {
            TRACKS => return read_tracks(r, at + h.data, h.size),
            SEEK_HEAD => {
                let size = h.size.ok_or("seekhead of unknown size")?;
                let body = r.read_at(at + h.data, size.min(64 << 10) as usize)?;
                tracks_at = tracks_at.or_else(|| seek_to_tracks(&body).map(|p| seg_data + p));
            }
            CLUSTER => break,
            _ => {}
        }
        let Some(size) = h.size else { break };
        at = at.saturating_add(h.data).saturating_add(size);
    }
    let pos = tracks_at.ok_or("matroska tracks not found")?;
    let hb = r.read_at(pos, 16)?;
    let h = header(&hb, 0)
        .filter(|h| h.id == TRACKS)
        .ok_or("seekhead points at no tracks")?;
    read_tracks(r, pos + h.data, h.size)
}

fn seek_to_tracks(seekhead: &[u8]) -> Option<u64> {
    children(seekhead)
        .filter(|(id, _)| *id == SEEK)
        .find_map(|(_, seek)| {
            let mut id = None;
            let mut pos = None;
            for (cid, v) in children(seek) {
                match cid {
                    SEEK_ID => id = Some(uint(v)),
                    SEEK_POSITION => pos = Some(uint(v)),
                    _ => {}
                }
            }
            (id == Some(TRACKS as u64)).then_some(pos).flatten()
        })
}

fn read_tracks(r: &mut Reader, data: u64, size: Option<u64>) -> Result<VideoTrack, ProbeError> {
    let size = size.ok_or("tracks of unknown size")?.min(4 << 20);
    let body = r.read_at(data, size as usize)?;
    for (id, entry) in children(&body) {
        if id != TRACK_ENTRY {
            continue;
        }
        if let Some(t) = video_entry(entry) {
            return Ok(t);
        }
    }
    Err("no video track")
}

fn video_entry(entry: &[u8]) -> Option<VideoTrack> {
    let mut is_video = false;
    let mut t = VideoTrack::default();
    let mut private: &[u8] = &[];
    for (id, v) in children(entry) {
        match id {
            TRACK_TYPE => is_video = uint(v) == 1,
            CODEC_ID => t.codec = codec(v),
            CODEC_PRIVATE => private = v,
            VIDEO => {
                for (vid, vv) in children(v) {
                    match vid {
                        PIXEL_WIDTH => t.width = u32::try_from(uint(vv)).ok(),
                        PIXEL_HEIGHT => t.height = u32::try_from(uint(vv)).ok(),
                        COLOUR => {
                            for (cid, cv) in children(vv) {
                                match cid {
                                    BITS_PER_CHANNEL => {
                                        t.bit_depth = u8::try_from(uint(cv)).ok().filter(|d| *d > 0)
                                    }
                                    TRANSFER => t.transfer = u8::try_from(uint(cv)).ok(),
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            BLOCK_ADDITION_MAPPING => {
                let mut kind = 0;
                let mut extra: &[u8] = &[];
                for (bid, bv) in children(v) {
                    match bid {
                        BLOCK_ADD_ID_TYPE => kind = uint(bv),
                        BLOCK_ADD_ID_EXTRA_DATA => extra = bv,
                        _ => {}
                    }
                }
                if kind == DVCC || kind == DVVC {
                    t.dv = DoviConfig::parse(extra);
                }
            }
            _ => {}
        }
    }
    if !is_video {
        return None;
    }
    let from_sps = match t.codec {
        Some("hevc") => sps::from_hvcc(private),
        Some("h264") => sps::from_avcc(private),
        _ => None,
    };
    if let Some(s) = from_sps {
        t.width = t.width.or(Some(s.width));
        t.height = t.height.or(Some(s.height));
        t.bit_depth = t.bit_depth.or(Some(s.bit_depth));
        if t.transfer.is_none_or(|x| x == 2) {
            t.transfer = s.transfer.or(t.transfer);
        }
    }
    if t.bit_depth.is_none() && t.codec == Some("av1") && private.len() > 2 {
        t.bit_depth = Some(av1_depth(private[2]));
    }
    Some(t)
}

/// `av1C` byte 2: high_bitdepth and twelve_bit flags.
pub fn av1_depth(b: u8) -> u8 {
    match (b & 0x40 != 0, b & 0x20 != 0) {
        (true, true) => 12,
        (true, false) => 10,
        _ => 8,
    }
}

fn codec(id: &[u8]) -> Option<&'static str> {
    Some(match id {
        b"V_MPEGH/ISO/HEVC" => "hevc",
        b"V_MPEG4/ISO/AVC" => "h264",
        b"V_AV1" => "av1",
        b"V_VP9" => "vp9",
        b"V_VP8" => "vp8",
        b"V_MPEG2" => "mpeg2video",
        b"V_MS/VFW/FOURCC" => "vfw",
        _ if id.starts_with(b"V_MPEG4/ISO/") => "mpeg4",
        _ => return None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds an EBML element with a 1-byte-length size when possible.
    pub fn el(id: u32, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let idb = id.to_be_bytes();
        let skip = idb.iter().position(|&b| b != 0).unwrap_or(3);
        v.extend_from_slice(&idb[skip..]);
        let n = body.len() as u64;
        v.push(0x01);
        v.extend_from_slice(&n.to_be_bytes()[1..]);
        v.extend_from_slice(body);
        v
    }

    pub fn sample_mkv(
        width: u32,
        height: u32,
        transfer: Option<u8>,
        dv: Option<[u8; 5]>,
    ) -> Vec<u8> {
        let mut colour = Vec::new();
        colour.extend(el(BITS_PER_CHANNEL, &[10]));
        if let Some(t) = transfer {
            colour.extend(el(TRANSFER, &[t]));
        }
        let mut video = el(PIXEL_WIDTH, &(width as u16).to_be_bytes());
        video.extend(el(PIXEL_HEIGHT, &(height as u16).to_be_bytes()));
        video.extend(el(COLOUR, &colour));
        let mut entry = el(TRACK_TYPE, &[1]);
        entry.extend(el(CODEC_ID, b"V_MPEGH/ISO/HEVC"));
        entry.extend(el(VIDEO, &video));
        if let Some(rec) = dv {
            let mut m = el(BLOCK_ADD_ID_TYPE, &(DVCC as u32).to_be_bytes());
            m.extend(el(BLOCK_ADD_ID_EXTRA_DATA, &rec));
            entry.extend(el(BLOCK_ADDITION_MAPPING, &m));
        }
        let audio = [el(TRACK_TYPE, &[2]), el(CODEC_ID, b"A_EAC3")].concat();
        let tracks = [el(TRACK_ENTRY, &audio), el(TRACK_ENTRY, &entry)].concat();
        let mut file = el(EBML, &el(0x4282, b"matroska"));
        file.extend(el(
            SEGMENT,
            &[
                el(0x1549A966, &[]),
                el(TRACKS, &tracks),
                el(CLUSTER, &[0; 32]),
            ]
            .concat(),
        ));
        file
    }

    fn probe_bytes(b: &[u8]) -> Result<VideoTrack, ProbeError> {
        let dir = std::env::temp_dir().join(format!("dsa-mkv-{}-{}", std::process::id(), b.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.mkv");
        std::fs::write(&p, b).unwrap();
        let r = super::super::probe(&p, 1 << 20);
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn reads_video_track_colour_and_dv() {
        let t = probe_bytes(&sample_mkv(3840, 2160, Some(16), None)).unwrap();
        assert_eq!(
            (t.width, t.height, t.bit_depth, t.transfer),
            (Some(3840), Some(2160), Some(10), Some(16))
        );
        let dv = probe_bytes(&sample_mkv(
            3840,
            2160,
            Some(16),
            Some([1, 0, 5 << 1, 0b0000_0011, 0]),
        ))
        .unwrap();
        assert_eq!(dv.dv.map(|d| d.profile), Some(5));
        assert!(dv.facts().is_untonemappable_dv());
    }

    #[test]
    fn truncations_never_panic() {
        let full = sample_mkv(1920, 1080, Some(1), None);
        for n in 0..full.len() {
            let _ = probe_bytes(&full[..n]);
        }
    }
}
