//! HEVC and H.264 sequence parameter sets: picture size, bit depth and the VUI colour
//! description (transfer characteristics 16 = PQ, 18 = HLG).
//!
//! MPEG-TS / M2TS files (UHD Blu-ray rips) carry no container-level colour information, so
//! the only place the dynamic range is written is the SPS of the video elementary stream.
//! Matroska and MP4 files without a `Colour` element / `colr` box are read the same way,
//! from the SPS inside their `hvcC` / `avcC` record. Every read is bounds-checked: a
//! truncated or hostile SPS gives `None`, never a panic.

/// What an SPS tells about the picture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpsInfo {
    pub width: u32,
    pub height: u32,
    pub bit_depth: u8,
    /// ITU-T H.273 transfer characteristics, when the VUI carries a colour description.
    pub transfer: Option<u8>,
    pub primaries: Option<u8>,
}

/// Removes emulation-prevention bytes (`00 00 03` → `00 00`).
pub fn unescape(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// A big-endian bit reader with exp-Golomb codes.
pub struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bits { data, pos: 0 }
    }
    pub fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let b = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Some(b as u32)
    }
    pub fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }
    pub fn skip(&mut self, n: usize) -> Option<()> {
        self.pos = self.pos.checked_add(n)?;
        (self.pos <= self.data.len() * 8).then_some(())
    }
    pub fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        Some(((1u64 << zeros) - 1 + rest as u64).min(u32::MAX as u64) as u32)
    }
    /// A signed exp-Golomb code; `None` when it does not fit an `i32`.
    pub fn se(&mut self) -> Option<i32> {
        let k = self.ue()? as i64;
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(v).ok()
    }
}

/// Parses an HEVC SPS NAL unit (with its 2-byte header, still escaped).
pub fn hevc(nal: &[u8]) -> Option<SpsInfo> {
    let rbsp = unescape(nal);
    let mut b = Bits::new(rbsp.get(2..)?);
    b.bits(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = b.bits(3)?;
    b.bit()?; // temporal_id_nesting
    profile_tier_level(&mut b, max_sub_layers_minus1)?;
    b.ue()?; // sps_seq_parameter_set_id
    let chroma = b.ue()?;
    if chroma > 3 {
        return None;
    }
    if chroma == 3 {
        b.bit()?;
    }
    let mut width = b.ue()?;
    let mut height = b.ue()?;
    if b.bit()? == 1 {
        let (sw, sh) = match chroma {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let (l, r, t, bo) = (b.ue()?, b.ue()?, b.ue()?, b.ue()?);
        (width, height) = crop((width, height), (sw, sh), (l, r, t, bo));
    }
    let bit_depth = b.ue()?.checked_add(8).filter(|d| *d <= 16)?;
    b.ue()?; // bit_depth_chroma_minus8
    let log2_max_poc_lsb = b.ue()?.checked_add(4).filter(|n| *n <= 16)?;
    let ordering_all = b.bit()?;
    let first = if ordering_all == 1 {
        0
    } else {
        max_sub_layers_minus1
    };
    for _ in first..=max_sub_layers_minus1 {
        b.ue()?;
        b.ue()?;
        b.ue()?;
    }
    for _ in 0..6 {
        b.ue()?; // coding block / transform sizes and depths
    }
    if b.bit()? == 1 && b.bit()? == 1 {
        scaling_list_data(&mut b)?;
    }
    b.bit()?; // amp
    b.bit()?; // sao
    if b.bit()? == 1 {
        b.bits(8)?; // pcm bit depths
        b.ue()?;
        b.ue()?;
        b.bit()?;
    }
    let num_sets = b.ue()?;
    if num_sets > 64 {
        return None;
    }
    let mut num_delta: Vec<u32> = Vec::with_capacity(num_sets as usize);
    for idx in 0..num_sets {
        let n = st_ref_pic_set(&mut b, idx, &num_delta)?;
        num_delta.push(n);
    }
    if b.bit()? == 1 {
        let n = b.ue()?;
        if n > 32 {
            return None;
        }
        for _ in 0..n {
            b.bits(log2_max_poc_lsb)?;
            b.bit()?;
        }
    }
    b.bit()?; // temporal mvp
    b.bit()?; // strong intra smoothing
    let mut info = SpsInfo {
        width,
        height,
        bit_depth: bit_depth as u8,
        transfer: None,
        primaries: None,
    };
    if b.bit()? == 1 {
        vui_colour(&mut b, &mut info);
    }
    Some(info)
}

fn profile_tier_level(b: &mut Bits<'_>, max_sub_layers_minus1: u32) -> Option<()> {
    b.skip(96)?; // general profile/tier/flags (88 bits) + general_level_idc (8)
    let mut present = Vec::new();
    for _ in 0..max_sub_layers_minus1 {
        present.push((b.bit()?, b.bit()?));
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            b.bits(2)?;
        }
    }
    for (p, l) in present {
        if p == 1 {
            b.skip(88)?;
        }
        if l == 1 {
            b.skip(8)?;
        }
    }
    Some(())
}

fn scaling_list_data(b: &mut Bits<'_>) -> Option<()> {
    for size_id in 0..4u32 {
        let step = if size_id == 3 { 3 } else { 1 };
        let mut matrix = 0;
        while matrix < 6 {
            if b.bit()? == 0 {
                b.ue()?;
            } else {
                let coefs = 64.min(1 << (4 + (size_id << 1)));
                if size_id > 1 {
                    b.se()?;
                }
                for _ in 0..coefs {
                    b.se()?;
                }
            }
            matrix += step;
        }
    }
    Some(())
}

fn st_ref_pic_set(b: &mut Bits<'_>, idx: u32, num_delta: &[u32]) -> Option<u32> {
    if idx != 0 && b.bit()? == 1 {
        b.bit()?; // delta_rps_sign
        b.ue()?; // abs_delta_rps_minus1
        let ref_n = *num_delta.get(idx as usize - 1)?;
        let mut n = 0;
        for _ in 0..=ref_n {
            let used = b.bit()?;
            let use_delta = if used == 0 { b.bit()? } else { 1 };
            if used == 1 || use_delta == 1 {
                n += 1;
            }
        }
        return Some(n);
    }
    let neg = b.ue()?;
    let pos = b.ue()?;
    if neg > 16 || pos > 16 {
        return None;
    }
    for _ in 0..neg + pos {
        b.ue()?;
        b.bit()?;
    }
    Some(neg + pos)
}

/// Reads the VUI up to the colour description; stops quietly if it is cut short.
fn vui_colour(b: &mut Bits<'_>, info: &mut SpsInfo) {
    let _ = (|| -> Option<()> {
        if b.bit()? == 1 && b.bits(8)? == 255 {
            b.bits(32)?; // sar width/height
        }
        if b.bit()? == 1 {
            b.bit()?; // overscan_appropriate
        }
        if b.bit()? == 1 {
            b.bits(4)?; // video_format, full_range
            if b.bit()? == 1 {
                info.primaries = Some(b.bits(8)? as u8);
                info.transfer = Some(b.bits(8)? as u8);
            }
        }
        Some(())
    })();
}

/// Applies a cropping window (`sps_conf_win_*` / `frame_crop_*` offsets, in `unit`s of
/// luma samples) to the coded size. A window that is not smaller than the picture, or whose
/// size overflows, is invalid: it is ignored and the coded size kept, as ffmpeg's decoders
/// do ("ignoring cropping information"), so a hostile crop can never make a 2160-line
/// picture measure smaller than it decodes (issue 9 §2).
fn crop(
    (width, height): (u32, u32),
    (unit_w, unit_h): (u32, u32),
    (left, right, top, bottom): (u32, u32, u32, u32),
) -> (u32, u32) {
    let cut = |dim: u32, unit: u32, a: u32, b: u32| {
        a.checked_add(b)
            .and_then(|s| s.checked_mul(unit))
            .filter(|c| *c < dim)
    };
    match (
        cut(width, unit_w, left, right),
        cut(height, unit_h, top, bottom),
    ) {
        (Some(cw), Some(ch)) => (width - cw, height - ch),
        _ => (width, height),
    }
}

/// Parses an H.264 SPS NAL unit (with its 1-byte header, still escaped).
pub fn h264(nal: &[u8]) -> Option<SpsInfo> {
    let rbsp = unescape(nal);
    let mut b = Bits::new(rbsp.get(1..)?);
    let profile = b.bits(8)?;
    b.bits(16)?; // constraint flags, level
    b.ue()?;
    let mut chroma = 1;
    let mut bit_depth = 8;
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma = b.ue()?;
        if chroma > 3 {
            return None;
        }
        if chroma == 3 {
            b.bit()?;
        }
        bit_depth = b.ue()?.checked_add(8).filter(|d| *d <= 14)?;
        b.ue()?;
        b.bit()?;
        if b.bit()? == 1 {
            for i in 0..(if chroma != 3 { 8 } else { 12 }) {
                if b.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            // delta_scale is -128..=127; anything else is a broken SPS.
                            let delta = b.se().filter(|d| (-128..=127).contains(d))?;
                            next = (last + delta + 256) % 256;
                        }
                        last = if next == 0 { last } else { next };
                    }
                }
            }
        }
    }
    b.ue()?; // log2_max_frame_num_minus4
    match b.ue()? {
        0 => {
            b.ue()?;
        }
        1 => {
            b.bit()?;
            b.se()?;
            b.se()?;
            let n = b.ue()?;
            if n > 255 {
                return None;
            }
            for _ in 0..n {
                b.se()?;
            }
        }
        _ => {}
    }
    b.ue()?; // max_num_ref_frames
    b.bit()?;
    let w_mbs = b.ue()?.checked_add(1)?;
    let h_units = b.ue()?.checked_add(1)?;
    let frame_mbs_only = b.bit()?;
    if frame_mbs_only == 0 {
        b.bit()?;
    }
    b.bit()?; // direct_8x8
    let mut width = w_mbs.checked_mul(16)?;
    let mut height = h_units.checked_mul(16)?.checked_mul(2 - frame_mbs_only)?;
    if b.bit()? == 1 {
        let (sw, sh) = match chroma {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let sh = sh * (2 - frame_mbs_only);
        let (l, r, t, bo) = (b.ue()?, b.ue()?, b.ue()?, b.ue()?);
        (width, height) = crop((width, height), (sw, sh), (l, r, t, bo));
    }
    let mut info = SpsInfo {
        width,
        height,
        bit_depth: bit_depth as u8,
        transfer: None,
        primaries: None,
    };
    if b.bit()? == 1 {
        vui_colour(&mut b, &mut info);
    }
    Some(info)
}

/// Finds the first SPS in an `hvcC` record's NAL arrays.
pub fn from_hvcc(rec: &[u8]) -> Option<SpsInfo> {
    let n_arrays = *rec.get(22)? as usize;
    let mut p = 23;
    for _ in 0..n_arrays {
        let nal_type = rec.get(p)? & 0x3f;
        let count = u16::from_be_bytes([*rec.get(p + 1)?, *rec.get(p + 2)?]) as usize;
        p += 3;
        for _ in 0..count {
            let len = u16::from_be_bytes([*rec.get(p)?, *rec.get(p + 1)?]) as usize;
            let nal = rec.get(p + 2..p + 2 + len)?;
            if nal_type == 33 {
                return hevc(nal);
            }
            p += 2 + len;
        }
    }
    None
}

/// Finds the first SPS in an `avcC` record.
pub fn from_avcc(rec: &[u8]) -> Option<SpsInfo> {
    let n = *rec.get(5)? as usize & 0x1f;
    if n == 0 {
        return None;
    }
    let len = u16::from_be_bytes([*rec.get(6)?, *rec.get(7)?]) as usize;
    h264(rec.get(8..8 + len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb() {
        // 1 -> 0, 010 -> 1, 011 -> 2, 00100 -> 3
        let mut b = Bits::new(&[0b1010_0110, 0b0100_0000]);
        assert_eq!(b.ue(), Some(0));
        assert_eq!(b.ue(), Some(1));
        assert_eq!(b.ue(), Some(2));
        assert_eq!(b.ue(), Some(3));
    }

    #[test]
    fn unescapes() {
        assert_eq!(unescape(&[0, 0, 3, 1, 0, 0, 3]), vec![0, 0, 1, 0, 0]);
    }

    /// Writes bits and exp-Golomb codes, to build SPS units the way an encoder would.
    #[derive(Default)]
    struct BitWriter {
        bits: Vec<bool>,
    }

    impl BitWriter {
        fn put(&mut self, n: u32, v: u64) -> &mut Self {
            for i in (0..n).rev() {
                self.bits.push((v >> i) & 1 == 1);
            }
            self
        }
        fn ue(&mut self, v: u32) -> &mut Self {
            let v = v as u64 + 1;
            let len = 64 - v.leading_zeros();
            self.put(len - 1, 0).put(len, v)
        }
        /// The NAL unit with `header`, escaped (`00 00 0x` → `00 00 03 0x`).
        fn nal(&mut self, header: &[u8]) -> Vec<u8> {
            self.put(1, 1); // rbsp_stop_one_bit
            while !self.bits.len().is_multiple_of(8) {
                self.bits.push(false);
            }
            let mut out = header.to_vec();
            let mut zeros = 0;
            for chunk in self.bits.chunks(8) {
                let byte = chunk.iter().fold(0u8, |a, b| (a << 1) | *b as u8);
                if zeros >= 2 && byte <= 3 {
                    out.push(3);
                    zeros = 0;
                }
                zeros = if byte == 0 { zeros + 1 } else { 0 };
                out.push(byte);
            }
            out
        }
    }

    /// A baseline-profile H.264 SPS of 3840×2160 (in 16×16 macroblocks) with the given
    /// cropping window (left, right, top, bottom, in units of 2 luma samples).
    fn h264_uhd_sps(crop: Option<(u32, u32, u32, u32)>) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.put(8, 66).put(16, 51); // profile_idc, constraint flags + level_idc
        w.ue(0).ue(0).ue(2).ue(1).put(1, 0); // sps id, frame_num, poc type 2, refs, gaps
        w.ue(3840 / 16 - 1).ue(2160 / 16 - 1); // 240 × 135 macroblocks
        w.put(1, 1).put(1, 1); // frame_mbs_only, direct_8x8_inference
        match crop {
            Some((l, r, t, b)) => w.put(1, 1).ue(l).ue(r).ue(t).ue(b),
            None => w.put(1, 0),
        };
        w.put(1, 0); // no VUI
        w.nal(&[0x67])
    }

    #[test]
    fn h264_measures_a_plain_and_a_cropped_picture() {
        let info = h264(&h264_uhd_sps(None)).unwrap();
        assert_eq!((info.width, info.height, info.bit_depth), (3840, 2160, 8));
        // 1920×1088 coded, 8 lines cropped: the usual 1080p stream.
        let mut w = BitWriter::default();
        w.put(8, 66).put(16, 40).ue(0).ue(0).ue(2).ue(1).put(1, 0);
        w.ue(119).ue(67).put(1, 1).put(1, 1);
        w.put(1, 1).ue(0).ue(0).ue(0).ue(4).put(1, 0);
        let info = h264(&w.nal(&[0x67])).unwrap();
        assert_eq!((info.width, info.height), (1920, 1080));
    }

    /// Issue 9 §2: `2 * (t + b)` wrapped to 1080 in a release build, so a 3840×2160 stream
    /// was measured 3840×1080 and passed as "not protected".
    #[test]
    fn a_huge_h264_crop_never_shrinks_the_picture() {
        let wrapping = [
            (0, 0, 1 << 31, 540),       // 2 × (2^31 + 540) ≡ 1080 (mod 2^32)
            (0, 0, u32::MAX - 1, 0),    // the largest ue(v)
            ((1 << 31) + 960, 0, 0, 0), // width: 2 × … ≡ 1920
            (0, 0, 1080, 0),            // exactly the picture: nothing left
            (0, 0, 600, 600),           // more than the picture
        ];
        for crop in wrapping {
            let info = h264(&h264_uhd_sps(Some(crop)));
            let size = info.map(|i| (i.width, i.height));
            assert!(
                matches!(size, None | Some((3840, 2160))),
                "crop {crop:?} measured {size:?}"
            );
        }
        // And through an MP4/Matroska `avcC` record, the path a real file takes.
        let sps = h264_uhd_sps(Some((0, 0, 1 << 31, 540)));
        let mut avcc = vec![1, 66, 0, 51, 0xff, 0xe1];
        avcc.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        avcc.extend_from_slice(&sps);
        let info = from_avcc(&avcc).map(|i| (i.width, i.height));
        assert!(matches!(info, None | Some((3840, 2160))), "{info:?}");
    }

    /// An HEVC SPS (Main 10, 4:2:0) of 3840×2160 with the given conformance window.
    fn hevc_uhd_sps(window: Option<(u32, u32, u32, u32)>, bit_depth_minus8: u32) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.put(4, 0).put(3, 0).put(1, 1); // vps id, max_sub_layers_minus1 = 0, nesting
        w.put(8, 2).put(32, 0x2000_0000).put(48, 0).put(8, 153); // profile_tier_level
        w.ue(0).ue(1).ue(3840).ue(2160); // sps id, 4:2:0, size
        match window {
            Some((l, r, t, b)) => w.put(1, 1).ue(l).ue(r).ue(t).ue(b),
            None => w.put(1, 0),
        };
        w.ue(bit_depth_minus8).ue(bit_depth_minus8).ue(4); // depths, log2_max_poc_lsb - 4
        w.put(1, 1).ue(4).ue(0).ue(0); // sub_layer_ordering_info
        w.ue(0).ue(3).ue(0).ue(3).ue(2).ue(2); // block sizes
        w.put(1, 0).put(1, 0).put(1, 1).put(1, 0); // scaling, amp, sao, pcm
        w.ue(0).put(1, 0).put(1, 1).put(1, 1).put(1, 0); // rps, long-term, tmvp, smoothing, vui
        w.nal(&[0x42, 0x01])
    }

    #[test]
    fn a_huge_hevc_conformance_window_never_shrinks_the_picture() {
        let info = hevc(&hevc_uhd_sps(None, 2)).unwrap();
        assert_eq!((info.width, info.height, info.bit_depth), (3840, 2160, 10));
        let info = hevc(&hevc_uhd_sps(Some((0, 0, 0, 4)), 2)).unwrap();
        assert_eq!((info.width, info.height), (3840, 2152));
        for window in [
            (0, 0, 1 << 31, 540),
            ((1 << 31) + 960, 0, 0, 0),
            (0, 0, 0, 1080),
        ] {
            let size = hevc(&hevc_uhd_sps(Some(window), 2)).map(|i| (i.width, i.height));
            assert!(
                matches!(size, None | Some((3840, 2160))),
                "window {window:?} measured {size:?}"
            );
        }
        // `8 + ue` with the largest ue(v) overflowed; it is simply an invalid depth.
        assert_eq!(hevc(&hevc_uhd_sps(None, u32::MAX - 1)), None);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678u32;
        for len in 0..200 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            let _ = hevc(&data);
            let _ = h264(&data);
            let _ = from_hvcc(&data);
            let _ = from_avcc(&data);
        }
    }
}
