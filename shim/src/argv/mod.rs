//! A lossless model of an ffmpeg command line.
//!
//! argv is bytes: the model never copies or re-renders a token, it only records *where* each
//! option, value, input and output sits in the original `&[OsString]`. A pass-through execs
//! that original vector untouched; a rewrite is a list of index-based edits (`edit.rs`).
//!
//! The grammar is ffmpeg's (`fftools/cmdutils.c` `split_commandline`), not getopt's:
//! - options before `-i URL` belong to that input, and `-i` closes it;
//! - a token that is not an option (or a lone `-`) is an output URL and closes that output;
//! - the one token right after `--` is always an output URL;
//! - `name:spec` carries a stream specifier; the name alone decides arity;
//! - an option ffmpeg does not know takes exactly one value; `-noX` negates a boolean `X`;
//! - global options may stand anywhere and belong to no input or output.

pub mod table;

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use table::{Arity, Scope};

/// One option occurrence: the token index of `-name[:spec]` and of its value, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opt {
    pub at: usize,
    pub value: Option<usize>,
}

/// An input or output: its options in order, and the token index of its URL.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    pub opts: Vec<Opt>,
    /// `None` only for an output cut off before its URL (truncated captures, trailing options).
    pub url: Option<usize>,
}

/// A parsed ffmpeg command line, borrowing the tokens it was parsed from.
#[derive(Debug)]
pub struct Invocation<'a> {
    pub tokens: &'a [OsString],
    pub inputs: Vec<Group>,
    pub outputs: Vec<Group>,
    pub globals: Vec<Opt>,
}

/// What parsing found.
#[derive(Debug)]
pub enum Parsed<'a> {
    /// A normal job.
    Job(Invocation<'a>),
    /// `-version`, `-encoders`, `-h …` and friends: ffmpeg prints and exits.
    Informational,
    /// ffmpeg itself would reject this command line; the reason is static.
    Invalid(&'static str),
}

/// Parses `tokens` (argv without argv[0]).
pub fn parse(tokens: &[OsString]) -> Parsed<'_> {
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    let mut globals = Vec::new();
    let mut current = Group::default();
    let mut dashdash: Option<usize> = None;
    let mut i = 0;
    while i < tokens.len() {
        let tok = tokens[i].as_bytes();
        let at = i;
        i += 1;
        if tok == b"--" {
            dashdash = Some(i);
            continue;
        }
        if tok.first() != Some(&b'-') || tok.len() == 1 || dashdash == Some(at) {
            current.url = Some(at);
            outputs.push(std::mem::take(&mut current));
            continue;
        }
        let (name, _spec) = split_name(&tok[1..]);
        if name == b"i" {
            if i >= tokens.len() {
                return Parsed::Invalid("option -i is missing its input");
            }
            current.url = Some(i);
            i += 1;
            inputs.push(std::mem::take(&mut current));
            continue;
        }
        let (arity, scope) = match table::find(name) {
            Some(def) => (def.arity, def.scope),
            None => match name.strip_prefix(b"no").and_then(table::find) {
                // ffmpeg tries the AVOption first; none of ours starts with "no" and also
                // names a boolean, so checking the negation here is equivalent.
                Some(def) if def.negatable => (Arity::Flag, def.scope),
                _ => (Arity::Value, Scope::PerFile),
            },
        };
        let value = match arity {
            Arity::Info => return Parsed::Informational,
            Arity::Flag => None,
            Arity::Value => {
                if i >= tokens.len() {
                    return Parsed::Invalid("an option is missing its value at the end");
                }
                i += 1;
                Some(i - 1)
            }
        };
        let opt = Opt { at, value };
        match scope {
            Scope::Global => globals.push(opt),
            Scope::PerFile => current.opts.push(opt),
        }
    }
    if !current.opts.is_empty() {
        // Options after the last output URL: ffmpeg warns and ignores them; captures cut off
        // mid-output look the same. Keep them as an output without a URL so nothing is lost.
        outputs.push(current);
    }
    Parsed::Job(Invocation {
        tokens,
        inputs,
        outputs,
        globals,
    })
}

/// Splits `name:spec` (without the leading `-`).
pub fn split_name(opt: &[u8]) -> (&[u8], Option<&[u8]>) {
    match opt.iter().position(|&b| b == b':') {
        Some(p) => (&opt[..p], Some(&opt[p + 1..])),
        None => (opt, None),
    }
}

impl<'a> Invocation<'a> {
    /// The bytes of token `i`.
    pub fn token(&self, i: usize) -> &'a [u8] {
        self.tokens[i].as_bytes()
    }

    /// The option's name without `-` and without its stream specifier.
    pub fn name(&self, o: &Opt) -> &'a [u8] {
        visit();
        split_name(&self.token(o.at)[1..]).0
    }

    /// The option's stream specifier (`0`, `v`, `s:0`, …), if any.
    pub fn spec(&self, o: &Opt) -> Option<&'a [u8]> {
        split_name(&self.token(o.at)[1..]).1
    }

    /// The option's value bytes, if it takes one.
    pub fn value(&self, o: &Opt) -> Option<&'a [u8]> {
        o.value.map(|v| self.token(v))
    }

    /// Every option of `group` named one of `names`, in order.
    pub fn find_in<'g>(
        &'g self,
        group: &'g Group,
        names: &'g [&'g str],
    ) -> impl Iterator<Item = &'g Opt> + 'g {
        group
            .opts
            .iter()
            .filter(move |o| names.iter().any(|n| n.as_bytes() == self.name(o)))
    }

    /// The last value of a global option, e.g. `-progressurl`.
    pub fn global_value(&self, name: &str) -> Option<&'a [u8]> {
        self.globals
            .iter()
            .rev()
            .find(|o| self.name(o) == name.as_bytes())
            .and_then(|o| self.value(o))
    }

    /// Every option occurrence anywhere, globals included, with the token index order kept.
    pub fn all_opts(&self) -> Vec<Opt> {
        let mut v: Vec<Opt> = self
            .inputs
            .iter()
            .chain(self.outputs.iter())
            .flat_map(|g| g.opts.iter().copied())
            .chain(self.globals.iter().copied())
            .collect();
        v.sort_by_key(|o| o.at);
        v
    }
}

#[cfg(test)]
thread_local! {
    static VISITS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts one look at an option or a filter (tests only), so that a test can prove that
/// deciding stays linear without timing anything.
#[inline]
pub(crate) fn visit() {
    #[cfg(test)]
    VISITS.with(|v| v.set(v.get() + 1));
}

/// Looks counted by [`visit`] on this thread so far.
#[cfg(test)]
pub(crate) fn visits() -> u64 {
    VISITS.with(|v| v.get())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn toks(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    fn job(t: &[OsString]) -> Invocation<'_> {
        match parse(t) {
            Parsed::Job(j) => j,
            other => panic!("expected a job, got {other:?}"),
        }
    }

    #[test]
    fn inputs_outputs_and_globals() {
        let t = toks(&[
            "-codec:0",
            "hevc",
            "-noaccurate_seek",
            "-i",
            "/m/a.mkv",
            "-y",
            "-map",
            "0:0",
            "-codec:0",
            "copy",
            "-f",
            "dash",
            "dash",
        ]);
        let j = job(&t);
        assert_eq!(j.inputs.len(), 1);
        assert_eq!(j.inputs[0].url, Some(4));
        assert_eq!(
            j.inputs[0].opts,
            vec![
                Opt {
                    at: 0,
                    value: Some(1)
                },
                Opt { at: 2, value: None }
            ]
        );
        assert_eq!(j.globals, vec![Opt { at: 5, value: None }]);
        assert_eq!(j.outputs.len(), 1);
        assert_eq!(j.outputs[0].url, Some(12));
        assert_eq!(j.outputs[0].opts.len(), 3);
        assert_eq!(j.name(&j.inputs[0].opts[0]), b"codec");
        assert_eq!(j.spec(&j.inputs[0].opts[0]), Some(&b"0"[..]));
    }

    #[test]
    fn unknown_option_takes_one_value_even_if_it_starts_with_a_dash() {
        let t = toks(&[
            "-i",
            "x",
            "-sei:0",
            "-a53_cc",
            "-codec:0",
            "hevc_vaapi",
            "out",
        ]);
        let j = job(&t);
        assert_eq!(
            j.outputs[0].opts[0],
            Opt {
                at: 2,
                value: Some(3)
            }
        );
        assert_eq!(j.outputs[0].url, Some(6));
    }

    #[test]
    fn dashdash_makes_the_next_token_an_output() {
        let t = toks(&["-i", "in", "--", "-weird-name.ts"]);
        let j = job(&t);
        assert_eq!(j.outputs.len(), 1);
        assert_eq!(j.outputs[0].url, Some(3));
    }

    #[test]
    fn lone_dash_is_an_output() {
        let t = toks(&["-i", "in", "-f", "null", "-"]);
        assert_eq!(job(&t).outputs[0].url, Some(4));
    }

    #[test]
    fn missing_values_and_inputs_are_invalid() {
        assert!(matches!(parse(&toks(&["-i"])), Parsed::Invalid(_)));
        assert!(matches!(
            parse(&toks(&["-i", "a", "-codec:0"])),
            Parsed::Invalid(_)
        ));
    }

    #[test]
    fn informational_flags_anywhere() {
        for f in [
            "-version",
            "-encoders",
            "-hwaccels",
            "-h",
            "--help",
            "-filters",
            "-L",
        ] {
            assert!(
                matches!(parse(&toks(&["-hide_banner", f])), Parsed::Informational),
                "{f}"
            );
        }
    }

    #[test]
    fn trailing_options_become_an_unfinished_output() {
        let t = toks(&["-i", "in", "-codec:0", "libx264"]);
        let j = job(&t);
        assert_eq!(j.outputs.len(), 1);
        assert_eq!(j.outputs[0].url, None);
    }

    #[test]
    fn no_prefixed_unknown_is_a_value_option() {
        // `-nofoo` where `foo` is not a boolean: an AVOption with a value.
        let t = toks(&["-i", "in", "-nofoo", "1", "out"]);
        assert_eq!(job(&t).outputs[0].opts[0].value, Some(3));
    }

    #[test]
    fn non_utf8_tokens_are_kept() {
        let t = vec![
            OsString::from("-i"),
            OsString::from_vec(b"/m/\xff\xfe.mkv".to_vec()),
            OsString::from_vec(b"out\x80".to_vec()),
        ];
        let j = job(&t);
        assert_eq!(j.token(j.inputs[0].url.unwrap()), b"/m/\xff\xfe.mkv");
        assert_eq!(j.token(j.outputs[0].url.unwrap()), b"out\x80");
    }

    #[test]
    fn missing_i_means_outputs_only() {
        let t = toks(&["-f", "lavfi", "x", "out.mp4"]);
        let j = job(&t);
        assert!(j.inputs.is_empty());
        assert_eq!(j.outputs.len(), 2);
    }
}
