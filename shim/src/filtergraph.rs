//! A span-preserving model of an ffmpeg filter graph (`-filter_complex`, `-vf`).
//!
//! The peer shim rewrote graphs with a prefix regex and turned `tonemap_opencl` into the
//! non-existent `null_opencl` (peer-downshiftarr.md W5). Here a graph is tokenised the way
//! libavfilter's `graphparser.c` does it — chains split on `;`, filters on `,`, `[label]`s
//! around each filter, `\` escapes and `'…'` quotes respected — and every piece keeps its byte
//! range in the original string. Edits splice new text at those ranges, so whatever we do not
//! touch (Plex's escaped `inlineass` arguments, spaces, labels) stays byte-identical.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

/// One filter: `[in]…name=args[out]…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// `name=args` without the labels.
    pub body: Range<usize>,
    pub name: Range<usize>,
    pub args: Option<Range<usize>>,
    /// Label texts without brackets.
    pub inputs: Vec<Range<usize>>,
    pub outputs: Vec<Range<usize>>,
}

/// A linear chain of filters separated by `,`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub filters: Vec<Filter>,
}

/// A parsed graph borrowing its source bytes.
#[derive(Clone, Debug)]
pub struct Graph<'a> {
    pub src: &'a [u8],
    pub chains: Vec<Chain>,
    /// Output label → the first filter producing it: one lookup per step of a path, so a
    /// path through a long chain costs its length, not its length times the graph's size.
    producers: HashMap<&'a [u8], At>,
    /// Filters in the whole graph; a walk longer than this has met a cycle.
    filter_count: usize,
}

/// Why a graph could not be parsed (static, for logs and counters).
pub type GraphError = &'static str;

/// A position in a graph: chain index and filter index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct At {
    pub chain: usize,
    pub filter: usize,
}

impl<'a> Graph<'a> {
    pub fn parse(src: &'a [u8]) -> Result<Graph<'a>, GraphError> {
        let mut p = Parser { s: src, i: 0 };
        let mut chains = Vec::new();
        loop {
            let mut filters = Vec::new();
            loop {
                filters.push(p.filter()?);
                p.skip_ws();
                match p.peek() {
                    Some(b',') => p.i += 1,
                    _ => break,
                }
            }
            chains.push(Chain { filters });
            p.skip_ws();
            match p.peek() {
                Some(b';') => p.i += 1,
                None => break,
                Some(_) => return Err("unexpected character in filter graph"),
            }
            p.skip_ws();
            if p.peek().is_none() {
                break; // a trailing ';' is accepted by libavfilter
            }
        }
        let mut producers = HashMap::new();
        let mut filter_count = 0;
        for (c, ch) in chains.iter().enumerate() {
            filter_count += ch.filters.len();
            for (f, filter) in ch.filters.iter().enumerate() {
                for o in &filter.outputs {
                    producers.entry(&src[o.clone()]).or_insert(At {
                        chain: c,
                        filter: f,
                    });
                }
            }
        }
        Ok(Graph {
            src,
            chains,
            producers,
            filter_count,
        })
    }

    /// How many filters the graph has.
    pub fn filter_count(&self) -> usize {
        self.filter_count
    }

    /// The filter before `at` on its picture's path: the previous filter of its chain, else
    /// the producer of its first input label. `Err(pad)` at the start of the path, with the
    /// input pad (`0:0`) or unknown label reached, if any.
    pub fn upstream(&self, at: At) -> Result<At, Option<&'a [u8]>> {
        crate::argv::visit();
        if at.filter > 0 {
            return Ok(At {
                chain: at.chain,
                filter: at.filter - 1,
            });
        }
        let first_in = self.filter(at).inputs.first().map(|r| self.text(r));
        match first_in.and_then(|l| self.producer(l)) {
            Some(p) => Ok(p),
            None => Err(first_in),
        }
    }

    pub fn filter(&self, at: At) -> &Filter {
        &self.chains[at.chain].filters[at.filter]
    }

    pub fn text(&self, r: &Range<usize>) -> &'a [u8] {
        &self.src[r.clone()]
    }

    pub fn name(&self, at: At) -> &'a [u8] {
        crate::argv::visit();
        self.text(&self.filter(at).name)
    }

    /// The chain and filter whose output label is `label`.
    pub fn producer(&self, label: &[u8]) -> Option<At> {
        self.producers.get(label).copied()
    }

    /// Every filter position in source order.
    pub fn positions(&self) -> impl Iterator<Item = At> + '_ {
        self.chains.iter().enumerate().flat_map(|(c, ch)| {
            (0..ch.filters.len()).map(move |f| At {
                chain: c,
                filter: f,
            })
        })
    }

    /// The filters from a graph input pad to the filter producing `label`, in processing
    /// order, following the *first* input of every filter (the main picture of an
    /// `overlay`), plus the input pad reached (`0:0`), if any.
    ///
    /// `None` when no filter produces `label`, or for a cycle (libavfilter rejects those).
    /// There is no length limit of our own: a chain of 10,000 filters that ffmpeg accepts is
    /// walked to its end (issue 9 §3: a fixed limit of 256 made such a job pass unjudged).
    pub fn path_to(&self, label: &[u8]) -> Option<(Vec<At>, Option<&'a [u8]>)> {
        let mut at = self.producer(label)?;
        let mut path = Vec::new();
        while path.len() < self.filter_count {
            path.push(at);
            match self.upstream(at) {
                Ok(p) => at = p,
                Err(pad) => {
                    path.reverse();
                    return Some((path, pad));
                }
            }
        }
        None // more steps than filters: a cycle
    }

    /// Labels that are produced but never consumed inside the graph (the graph's outputs).
    pub fn open_outputs(&self) -> Vec<&'a [u8]> {
        let consumed: HashSet<&[u8]> = self
            .positions()
            .flat_map(|at| self.filter(at).inputs.iter().map(|r| self.text(r)))
            .collect();
        self.positions()
            .flat_map(|at| self.filter(at).outputs.iter().map(|r| self.text(r)))
            .filter(|l| !consumed.contains(*l))
            .collect()
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.i += 1;
        }
    }
    fn labels(&mut self) -> Result<Vec<Range<usize>>, GraphError> {
        let mut v = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() != Some(b'[') {
                return Ok(v);
            }
            let start = self.i + 1;
            let end = self.s[start..]
                .iter()
                .position(|&b| b == b']')
                .ok_or("unterminated label in filter graph")?;
            if end == 0 {
                return Err("empty label in filter graph");
            }
            v.push(start..start + end);
            self.i = start + end + 1;
        }
    }
    fn filter(&mut self) -> Result<Filter, GraphError> {
        let inputs = self.labels()?;
        self.skip_ws();
        let start = self.i;
        while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_' || b == b'@')
        {
            self.i += 1;
        }
        if self.i == start {
            return Err("missing filter name in filter graph");
        }
        let name = start..self.i;
        // libavfilter reads the name and the arguments with `av_get_token`, which skips
        // whitespace around both: `scale = w=1920` is `scale` with `w=1920`.
        let after_name = self.i;
        self.skip_ws();
        let args = if self.peek() == Some(b'=') {
            self.i += 1;
            self.skip_ws();
            let a = self.i;
            self.args_end(a)?;
            Some(a..self.i)
        } else {
            self.i = after_name;
            None
        };
        let body = start..self.i;
        let outputs = self.labels()?;
        Ok(Filter {
            body,
            name,
            args,
            inputs,
            outputs,
        })
    }
    /// Advances over filter arguments up to an unquoted, unescaped `[ ] , ;`.
    fn args_end(&mut self, start: usize) -> Result<(), GraphError> {
        let mut quoted = false;
        while let Some(b) = self.peek() {
            match b {
                b'\\' if !quoted => {
                    self.i += 1;
                    if self.peek().is_none() {
                        return Err("dangling escape in filter graph");
                    }
                }
                b'\'' => quoted = !quoted,
                b'[' | b']' | b',' | b';' if !quoted => break,
                _ => {}
            }
            self.i += 1;
        }
        if quoted {
            return Err("unterminated quote in filter graph");
        }
        // Trailing whitespace belongs to the separator, not the arguments.
        while self.i > start && matches!(self.s[self.i - 1], b' ' | b'\n' | b'\t' | b'\r') {
            self.i -= 1;
        }
        Ok(())
    }
}

/// One `key=value` (or positional `value`) of a filter's argument list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

/// Splits `a=1:b=2:3` on unescaped, unquoted `:`. Escapes are kept verbatim so that
/// [`render_args`] gives back the original bytes.
pub fn split_args(args: &[u8]) -> Vec<Arg> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut quoted = false;
    let mut i = 0;
    while i < args.len() {
        let b = args[i];
        match b {
            b'\\' if !quoted && i + 1 < args.len() => {
                cur.push(b);
                cur.push(args[i + 1]);
                i += 2;
                continue;
            }
            b'\'' => quoted = !quoted,
            b':' if !quoted => {
                out.push(to_arg(std::mem::take(&mut cur)));
                i += 1;
                continue;
            }
            _ => {}
        }
        cur.push(b);
        i += 1;
    }
    out.push(to_arg(cur));
    out
}

fn to_arg(tok: Vec<u8>) -> Arg {
    match tok.iter().position(|&b| b == b'=') {
        Some(p)
            if tok[..p]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
                && p > 0 =>
        {
            Arg {
                key: Some(tok[..p].to_vec()),
                value: tok[p + 1..].to_vec(),
            }
        }
        _ => Arg {
            key: None,
            value: tok,
        },
    }
}

/// Joins arguments back with `:`.
pub fn render_args(args: &[Arg]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, a) in args.iter().enumerate() {
        if n > 0 {
            out.push(b':');
        }
        if let Some(k) = &a.key {
            out.extend_from_slice(k);
            out.push(b'=');
        }
        out.extend_from_slice(&a.value);
    }
    out
}

/// A text splice into a graph's source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Splice {
    pub range: Range<usize>,
    pub text: Vec<u8>,
}

/// Applies splices (non-overlapping; inserts are empty ranges) and returns the new graph.
pub fn apply(src: &[u8], splices: &[Splice]) -> Vec<u8> {
    let mut sorted: Vec<&Splice> = splices.iter().collect();
    sorted.sort_by_key(|s| (s.range.start, s.range.end));
    let mut out = Vec::with_capacity(src.len() + 128);
    let mut pos = 0;
    for s in sorted {
        let start = s.range.start.max(pos);
        out.extend_from_slice(&src[pos..start]);
        out.extend_from_slice(&s.text);
        pos = s.range.end.max(start);
    }
    out.extend_from_slice(&src[pos..]);
    out
}

/// Checks that every label consumed inside the graph is produced inside it or is an input
/// pad (`N:spec`), and that no label is produced twice. Used by tests and as a guard on
/// every rewrite.
pub fn labels_consistent(g: &Graph<'_>) -> bool {
    let mut produced = HashSet::new();
    for at in g.positions() {
        for r in &g.filter(at).outputs {
            if !produced.insert(g.text(r)) {
                return false;
            }
        }
    }
    g.positions().all(|at| {
        g.filter(at).inputs.iter().all(|r| {
            let l = g.text(r);
            produced.contains(l) || is_input_pad(l)
        })
    })
}

/// `0:0`, `1:s:0`, `0:v` — a label naming an input stream rather than a link.
pub fn is_input_pad(label: &[u8]) -> bool {
    let digits = label.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && label.get(digits) == Some(&b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    const SW: &[u8] = b"[0:0]scale=w=1920:h=800:force_divisible_by=4[0];[0]format=p010,tonemap=mobius[1];[1]format=pix_fmts=yuv420p|nv12[2]";

    #[test]
    fn parses_chains_filters_and_labels() {
        let g = Graph::parse(SW).unwrap();
        assert_eq!(g.chains.len(), 3);
        assert_eq!(g.chains[1].filters.len(), 2);
        assert_eq!(
            g.name(At {
                chain: 1,
                filter: 1
            }),
            b"tonemap"
        );
        assert_eq!(g.open_outputs(), vec![&b"2"[..]]);
        let (path, pad) = g.path_to(b"2").unwrap();
        assert_eq!(pad, Some(&b"0:0"[..]));
        let names: Vec<&[u8]> = path.iter().map(|&a| g.name(a)).collect();
        assert_eq!(names, vec![&b"scale"[..], b"format", b"tonemap", b"format"]);
        assert!(labels_consistent(&g));
    }

    #[test]
    fn audio_graph_with_space_after_label() {
        let g = Graph::parse(
            b"[0:1] aresample=async=1:ochl='stereo':rematrix_maxval=0.000000dB:osr=48000[2]",
        )
        .unwrap();
        assert_eq!(
            g.name(At {
                chain: 0,
                filter: 0
            }),
            b"aresample"
        );
        assert_eq!(g.open_outputs(), vec![&b"2"[..]]);
    }

    #[test]
    fn escaped_arguments_stay_intact() {
        let src = br"[2]inlineass=overrides=A\\\=yes\\\,B\\\=1:font_size=54[3];[3]hwupload[4]";
        let g = Graph::parse(src).unwrap();
        assert_eq!(g.chains.len(), 2);
        let f = g.filter(At {
            chain: 0,
            filter: 0,
        });
        assert_eq!(
            render_args(&split_args(g.text(f.args.as_ref().unwrap()))),
            g.text(f.args.as_ref().unwrap())
        );
    }

    #[test]
    fn overlay_path_follows_the_main_picture() {
        let src = b"[0:5]scale=3840:2160,hwupload[0];[0:0]hwupload[1];[1]scale_vaapi=w=3840:h=2160:format=p010[2];[2]hwmap=derive_device=opencl,tonemap_opencl=tonemap=mobius:format=nv12,hwmap=derive_device=vaapi:reverse=1[5];[5][0]overlay_vaapi,scale_vaapi=format=nv12[6];[6]hwupload[7]";
        let g = Graph::parse(src).unwrap();
        let (path, pad) = g.path_to(b"7").unwrap();
        assert_eq!(pad, Some(&b"0:0"[..]));
        assert_eq!(g.name(path[1]), b"scale_vaapi");
        assert!(labels_consistent(&g));
    }

    #[test]
    fn splices_apply_in_order() {
        let g = Graph::parse(b"[0:0]scale=w=3840:h=2160[0]").unwrap();
        let f = g.filter(At {
            chain: 0,
            filter: 0,
        });
        let out = apply(
            g.src,
            &[
                Splice {
                    range: f.args.clone().unwrap(),
                    text: b"w=1920:h=1080".to_vec(),
                },
                Splice {
                    range: f.body.end..f.body.end,
                    text: b",format=nv12".to_vec(),
                },
            ],
        );
        assert_eq!(out, b"[0:0]scale=w=1920:h=1080,format=nv12[0]");
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [&b"[0:0"[..], b"", b"[a]", b"scale='x", b"x\\", b"[]scale"] {
            assert!(
                Graph::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn spaces_around_names_and_arguments_like_libavfilter() {
        let g = Graph::parse(b"[0:0] scale = w=1920:h=1080 [v]; [v] null [out]").unwrap();
        let f = g.filter(At {
            chain: 0,
            filter: 0,
        });
        assert_eq!(g.text(&f.name), b"scale");
        assert_eq!(g.text(f.args.as_ref().unwrap()), b"w=1920:h=1080");
        assert_eq!(g.path_to(b"out").unwrap().1, Some(&b"0:0"[..]));
        // Arguments of only spaces are empty, not a reversed range.
        let g = Graph::parse(b"scale=   ,null").unwrap();
        let f = g.filter(At {
            chain: 0,
            filter: 0,
        });
        assert_eq!(g.text(f.args.as_ref().unwrap()), b"");
    }

    #[test]
    fn long_chains_are_followed_to_their_start_and_cycles_end() {
        let long = format!("[0:0]{}scale=w=1:h=1[v]", "null,".repeat(5000));
        let g = Graph::parse(long.as_bytes()).unwrap();
        let (path, pad) = g.path_to(b"v").unwrap();
        assert_eq!((path.len(), pad), (5001, Some(&b"0:0"[..])));
        let g = Graph::parse(b"[b]null[a];[a]null[b]").unwrap();
        assert!(g.path_to(b"a").is_none());
    }

    #[test]
    fn args_split_and_keys() {
        let a = split_args(b"w=1280:h=720:format=p010");
        assert_eq!(
            a[1],
            Arg {
                key: Some(b"h".to_vec()),
                value: b"720".to_vec()
            }
        );
        let p = split_args(b"hable:nv12");
        assert_eq!(p[0].key, None);
        assert_eq!(render_args(&a), b"w=1280:h=720:format=p010");
    }

    #[test]
    fn input_pads() {
        assert!(is_input_pad(b"0:0"));
        assert!(is_input_pad(b"1:s:0"));
        assert!(!is_input_pad(b"0"));
        assert!(!is_input_pad(b"in"));
    }
}
