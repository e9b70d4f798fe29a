//! The Plex command line the tests and benches share, written once
//! (`fixtures/plex-job/sw-x264-2160p-dash.json`) instead of pasted into every file: a 4K
//! software-pipeline DASH job, with a few changes a test asks for (input, target size,
//! decoder hints, progress URL, options around the input and before the output).
//!
//! Included with `#[path]` by the integration tests, the benches, the shim's binary tests and
//! the shim's unit tests, so it needs only std and serde_json.

// Each includer uses a different part.
#![allow(dead_code)]

use std::ffi::OsString;

const FIXTURE: &str = include_str!("../../fixtures/plex-job/sw-x264-2160p-dash.json");

/// A Plex software transcode to DASH, as the fixture has it until changed.
#[derive(Clone, Debug)]
pub struct PlexJob {
    args: Vec<String>,
}

impl PlexJob {
    /// The fixture's job, reading `input`.
    pub fn sw_dash(input: &str) -> PlexJob {
        let v: serde_json::Value = serde_json::from_str(FIXTURE).expect("the plex-job fixture");
        let args = v["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("string arg").to_string())
            .collect();
        let mut job = PlexJob { args };
        let i = job.at("-i") + 1;
        job.args[i] = input.to_string();
        job
    }

    fn at(&self, token: &str) -> usize {
        self.args
            .iter()
            .position(|a| a == token)
            .unwrap_or_else(|| panic!("{token} not in {:?}", self.args))
    }

    /// The decoder hints before `-i` (the fixture's `-codec:0 hevc`) replaced by `hints`.
    pub fn hints(mut self, hints: &[&str]) -> PlexJob {
        let i = self.at("-i");
        self.args.splice(..i, hints.iter().map(|h| h.to_string()));
        self
    }

    /// Options inserted just before `-i` (after the decoder hints).
    pub fn before_input(mut self, opts: &[&str]) -> PlexJob {
        let i = self.at("-i");
        self.args.splice(i..i, opts.iter().map(|o| o.to_string()));
        self
    }

    /// Options inserted right after the input (Plex's global options).
    pub fn after_input(mut self, opts: &[&str]) -> PlexJob {
        let i = self.at("-i") + 2;
        self.args.splice(i..i, opts.iter().map(|o| o.to_string()));
        self
    }

    /// The `-progressurl` value, or no `-progressurl` at all.
    pub fn progress(mut self, url: Option<&str>) -> PlexJob {
        let i = self.at("-progressurl");
        match url {
            Some(u) => self.args[i + 1] = u.to_string(),
            None => {
                self.args.drain(i..i + 2);
            }
        }
        self
    }

    /// The size the software scaler is asked for (the fixture's 3840×2160).
    pub fn size(mut self, w: u32, h: u32) -> PlexJob {
        let i = self.at("-filter_complex") + 1;
        assert!(self.args[i].contains("w=3840:h=2160"), "{}", self.args[i]);
        self.args[i] = self.args[i].replace("w=3840:h=2160", &format!("w={w}:h={h}"));
        self
    }

    /// Output options inserted just before `-f dash`.
    pub fn output_opts(mut self, opts: &[&str]) -> PlexJob {
        let i = self.at("-f");
        self.args.splice(i..i, opts.iter().map(|o| o.to_string()));
        self
    }

    pub fn strings(&self) -> Vec<String> {
        self.args.clone()
    }

    pub fn args(&self) -> Vec<OsString> {
        self.args.iter().map(OsString::from).collect()
    }
}

#[test]
fn each_change_lands_where_it_says() {
    let base = PlexJob::sw_dash("/m/x.mkv").strings();
    assert_eq!(base[..4], ["-codec:0", "hevc", "-i", "/m/x.mkv"]);
    assert_eq!(base[base.len() - 3..], ["-f", "dash", "dash"]);
    let j = PlexJob::sw_dash("/m/x.mkv")
        .hints(&["-codec:0", "h264"])
        .before_input(&["-probesize", "1"])
        .after_input(&["-y"])
        .progress(None)
        .size(1280, 720)
        .output_opts(&["-maxrate:0", "8000k"])
        .strings();
    assert_eq!(
        j,
        [
            "-codec:0",
            "h264",
            "-probesize",
            "1",
            "-i",
            "/m/x.mkv",
            "-y",
            "-filter_complex",
            "[0:0]scale=w=1280:h=720:force_divisible_by=4[0];[0]format=pix_fmts=yuv420p|nv12[1]",
            "-map",
            "[1]",
            "-codec:0",
            "libx264",
            "-maxrate:0",
            "8000k",
            "-f",
            "dash",
            "dash",
        ]
    );
    let p = PlexJob::sw_dash("/m/x.mkv")
        .progress(Some("http://p/"))
        .strings();
    assert_eq!(
        p[p.iter().position(|a| a == "-progressurl").unwrap() + 1],
        "http://p/"
    );
    assert_eq!(PlexJob::sw_dash("/m/x.mkv").hints(&[]).strings()[0], "-i");
}
