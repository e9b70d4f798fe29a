//! Native header probe: learns a local file's video facts without running ffprobe.
//!
//! Matroska/WebM (EBML), MP4/MOV (ISO BMFF boxes) and MPEG-TS/M2TS (PAT → PMT → the video
//! elementary stream's SPS) are read with positioned, bounded reads: the probe stops as soon
//! as the video track is known and never reads more than `max_bytes` of a file, whatever
//! the sizes written inside it say. Truncated and malicious files give an error, not a
//! panic and not an unbounded read (a fuzz target covers this).

pub mod mkv;
pub mod mp4;
pub mod sps;
pub mod ts;

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::facts::{DynamicRange, Origin, SourceFacts};
use crate::open;

/// Why a probe failed (static, for logs).
pub type ProbeError = &'static str;

/// The video track as the container and its codec record describe it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VideoTrack {
    pub codec: Option<&'static str>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bit_depth: Option<u8>,
    /// ITU-T H.273 transfer characteristics (16 = PQ, 18 = HLG).
    pub transfer: Option<u8>,
    pub dv: Option<DoviConfig>,
}

/// A Dolby Vision decoder configuration record (`dvcC`/`dvvC`, or the TS descriptor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoviConfig {
    pub profile: u8,
    pub bl_present: bool,
    pub bl_compat_id: u8,
}

impl DoviConfig {
    /// Parses the record body (`dv_version_major` first).
    pub fn parse(rec: &[u8]) -> Option<DoviConfig> {
        let b2 = *rec.get(2)?;
        let b3 = *rec.get(3)?;
        let profile = b2 >> 1;
        let bl_present = b3 & 0x01 == 1;
        let bl_compat_id = rec.get(4).map(|b| b >> 4).unwrap_or(0);
        Some(DoviConfig {
            profile,
            bl_present,
            bl_compat_id,
        })
    }
}

impl VideoTrack {
    /// Turns what the container said into source facts.
    pub fn facts(&self) -> SourceFacts {
        let mut f = SourceFacts::empty(Origin::Probe);
        f.width = self.width;
        f.height = self.height;
        f.bit_depth = self.bit_depth;
        f.codec = self.codec.map(String::from);
        f.dynamic_range = Some(match (self.dv, self.transfer) {
            (Some(_), _) => DynamicRange::DolbyVision,
            (None, Some(16)) => DynamicRange::Hdr10,
            (None, Some(18)) => DynamicRange::Hlg,
            // No colour description: players and ffmpeg treat it as SDR, and real HDR
            // masters always signal PQ or HLG.
            _ => DynamicRange::Sdr,
        });
        if let Some(dv) = self.dv {
            f.dv_profile = Some(dv.profile);
            // Compatibility ids 1 (HDR10), 2 (SDR), 4 (HLG), 6 (Blu-ray HDR10) have a base
            // layer any HDR10/HLG tone mapper can use; 0 (profile 5) does not.
            f.dv_base_layer_compatible =
                Some(dv.bl_present && matches!(dv.bl_compat_id, 1 | 2 | 4 | 6) && dv.profile != 5);
        }
        f
    }
}

/// Where the probe reads from: a file, or bytes in memory (the fuzz target's input).
enum Backing {
    File(File),
    Memory(Vec<u8>),
}

/// Positioned reads with a byte budget.
pub struct Reader {
    backing: Backing,
    pub len: u64,
    budget: u64,
}

impl Reader {
    pub fn open(path: &Path, max_bytes: u64) -> Result<Reader, ProbeError> {
        // Never a blocking open: a FIFO named like a movie must not hang the job (issue 9 §2).
        let mut file = open::read(path, open::Kind::RegularOrBlock).map_err(|e| match e {
            open::OpenError::NotFound => "file not found",
            open::OpenError::NotRegular(_) => "not a regular file",
            _ => "file unreadable",
        })?;
        // The size of a block device is where its end is, not what `st_size` says (0).
        let len = file.seek(SeekFrom::End(0)).map_err(|_| "file unreadable")?;
        Ok(Reader {
            backing: Backing::File(file),
            len,
            budget: max_bytes,
        })
    }

    /// A reader over bytes in memory.
    pub fn from_bytes(data: Vec<u8>, max_bytes: u64) -> Reader {
        Reader {
            len: data.len() as u64,
            backing: Backing::Memory(data),
            budget: max_bytes,
        }
    }

    /// Reads up to `n` bytes at `off` (fewer at the end of the file).
    pub fn read_at(&mut self, off: u64, n: usize) -> Result<Vec<u8>, ProbeError> {
        if off >= self.len {
            return Ok(Vec::new());
        }
        let n = (n as u64).min(self.len - off);
        if n > self.budget {
            return Err("probe read budget exhausted");
        }
        self.budget -= n;
        let file = match &self.backing {
            Backing::Memory(d) => return Ok(d[off as usize..(off + n) as usize].to_vec()),
            Backing::File(f) => f,
        };
        let mut buf = vec![0u8; n as usize];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], off + got as u64) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err("file unreadable"),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }
}

/// Probes a local file.
pub fn probe(path: &Path, max_bytes: u64) -> Result<VideoTrack, ProbeError> {
    probe_reader(&mut Reader::open(path, max_bytes)?)
}

/// Probes bytes in memory (used by the fuzz target).
pub fn probe_bytes(data: &[u8], max_bytes: u64) -> Result<VideoTrack, ProbeError> {
    probe_reader(&mut Reader::from_bytes(data.to_vec(), max_bytes))
}

fn probe_reader(r: &mut Reader) -> Result<VideoTrack, ProbeError> {
    let head = r.read_at(0, 12)?;
    if head.len() < 12 {
        return Err("file too short");
    }
    if head[..4] == [0x1A, 0x45, 0xDF, 0xA3] {
        return mkv::probe(r);
    }
    if matches!(
        &head[4..8],
        b"ftyp" | b"moov" | b"mdat" | b"free" | b"wide" | b"skip" | b"pnot"
    ) {
        return mp4::probe(r);
    }
    if head[0] == 0x47 || head[4] == 0x47 {
        return ts::probe(r);
    }
    Err("unknown container")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovi_record() {
        // dv 1.0, profile 8, level 6, rpu+bl present, compat id 1
        let rec = [1, 0, (8 << 1), (6 << 3) | 0b101, 1 << 4];
        let c = DoviConfig::parse(&rec).unwrap();
        assert_eq!(
            c,
            DoviConfig {
                profile: 8,
                bl_present: true,
                bl_compat_id: 1
            }
        );
        let t = VideoTrack {
            dv: Some(c),
            ..Default::default()
        };
        assert_eq!(t.facts().dv_base_layer_compatible, Some(true));
        let p5 = DoviConfig {
            profile: 5,
            bl_present: true,
            bl_compat_id: 0,
        };
        assert!(VideoTrack {
            dv: Some(p5),
            ..Default::default()
        }
        .facts()
        .is_untonemappable_dv());
    }

    #[test]
    fn missing_and_odd_files() {
        assert_eq!(
            probe(Path::new("/nonexistent/x.mkv"), 1 << 20),
            Err("file not found")
        );
        assert_eq!(probe(Path::new("/"), 1 << 20), Err("not a regular file"));
    }
}
