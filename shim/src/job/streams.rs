//! The streams an output gets, as ffmpeg would create them: from its `-map`s (or ffmpeg's
//! implicit selection), each typed by the filter graph feeding it, a typed specifier, the
//! decoder hints before `-i` or the encoder's own name, with every per-stream option read
//! once.

use std::collections::HashMap;

use crate::argv::{Group, Invocation, Opt};
use crate::codecs::{self, Class};
use crate::filtergraph::{At, Graph};

use super::VideoFeed;

/// A stream of an output, as ffmpeg would create it.
pub(super) struct OutStream {
    pub(super) class: Class,
    pub(super) feed: Option<VideoFeed>,
    pub(super) input: Option<usize>,
    /// Picked by ffmpeg's implicit selection among several inputs.
    pub(super) implicit: bool,
}

/// Which output streams a stream specifier selects, as far as we resolve specifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SpecKey {
    /// No specifier: every stream.
    All,
    /// `N`, `N:…`: output stream N.
    Index(usize),
    /// `v`/`V`, `a`, `s` (slot 0, 1, 2); `v:1` is read as `v` (see [`spec_matches`]).
    Type(usize),
    /// Anything else (`m:…`, `p:…`, an index that overflows): nothing we model.
    Never,
}

pub(super) fn spec_key(spec: Option<&[u8]>) -> SpecKey {
    let Some(spec) = spec else {
        return SpecKey::All;
    };
    let first = spec.split(|&b| b == b':').next().unwrap_or_default();
    if !first.is_empty() && first.iter().all(u8::is_ascii_digit) {
        return std::str::from_utf8(first)
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(SpecKey::Never, SpecKey::Index);
    }
    // `v:1` would need per-type counting; Plex writes `v`/`V` alone, and one video stream
    // per output is the only shape we act on, so `v:N` is read as `v`.
    match first {
        b"v" | b"V" => SpecKey::Type(0),
        b"a" => SpecKey::Type(1),
        b"s" => SpecKey::Type(2),
        _ => SpecKey::Never,
    }
}

pub(super) fn type_slot(class: Class) -> Option<usize> {
    match class {
        Class::Video => Some(0),
        Class::Audio => Some(1),
        Class::Subtitle => Some(2),
        Class::Copy | Class::Unknown => None,
    }
}

/// The last option of one family (encoders, video filters) for any output stream, after one
/// pass over the output's options. Positions are indices into the output's options, so the
/// largest matching position is ffmpeg's "last one wins".
#[derive(Default)]
pub(super) struct LastBySpec {
    all: Option<usize>,
    by_type: [Option<usize>; 3],
    by_index: HashMap<usize, usize>,
}

impl LastBySpec {
    fn add(&mut self, key: SpecKey, pos: usize) {
        match key {
            SpecKey::All => self.all = Some(pos),
            SpecKey::Type(t) => self.by_type[t] = Some(pos),
            SpecKey::Index(i) => {
                self.by_index.insert(i, pos);
            }
            SpecKey::Never => {}
        }
    }

    /// The position of the last option that applies to stream `si` of type `class`.
    pub(super) fn last(&self, si: usize, class: Class) -> Option<usize> {
        let typed = type_slot(class).and_then(|t| self.by_type[t]);
        [self.all, typed, self.by_index.get(&si).copied()]
            .into_iter()
            .flatten()
            .max()
    }
}

/// What one pass over an output's options finds.
pub(super) struct OutputOpts<'a> {
    maps: Vec<&'a [u8]>,
    /// `-vf` (`-filter:v`) and `-filter[:spec]`.
    filters: LastBySpec,
    /// `-codec`/`-c`/`-vcodec`/`-acodec`/`-scodec`.
    pub(super) codec: LastBySpec,
    no_video: bool,
    no_audio: bool,
}

impl<'a> OutputOpts<'a> {
    pub(super) fn read(inv: &Invocation<'a>, out: &Group) -> OutputOpts<'a> {
        let mut o = OutputOpts {
            maps: Vec::new(),
            filters: LastBySpec::default(),
            codec: LastBySpec::default(),
            no_video: false,
            no_audio: false,
        };
        for (pos, opt) in out.opts.iter().enumerate() {
            match inv.name(opt) {
                b"map" => o.maps.extend(inv.value(opt)),
                b"vf" => o.filters.add(SpecKey::Type(0), pos),
                b"filter" => o.filters.add(spec_key(inv.spec(opt)), pos),
                b"codec" | b"c" => o.codec.add(spec_key(inv.spec(opt)), pos),
                b"vcodec" => o.codec.add(SpecKey::Type(0), pos),
                b"acodec" => o.codec.add(SpecKey::Type(1), pos),
                b"scodec" => o.codec.add(SpecKey::Type(2), pos),
                b"vn" => o.no_video = true,
                b"an" => o.no_audio = true,
                _ => {}
            }
        }
        o
    }

    /// The filter option applying to video stream `si` (an untyped stream counts as video).
    fn video_filter(&self, out: &Group, si: usize, class: Class) -> Option<Opt> {
        let class = if class == Class::Unknown {
            Class::Video
        } else {
            class
        };
        self.filters.last(si, class).map(|i| out.opts[i])
    }
}

/// What a path through a graph carries: an audio filter on it, and the input pad it starts
/// from.
type PathFacts<'a> = (bool, Option<&'a [u8]>);

/// Every `-filter_complex` graph, with what is already known about the paths through it.
pub(super) struct Graphs<'a> {
    /// Graphs that parse, with their option.
    parsed: Vec<(Opt, Graph<'a>)>,
    /// Label → the first graph producing it.
    by_label: HashMap<&'a [u8], usize>,
    /// The last graph we cannot read, if any.
    unreadable: Option<Opt>,
    /// Per graph and filter: whether an audio filter lies on the path up to it, and the
    /// input pad the path starts from; `None` for a cycle.
    memo: HashMap<(usize, At), Option<PathFacts<'a>>>,
}

impl<'a> Graphs<'a> {
    pub(super) fn new(inv: &Invocation<'a>) -> Graphs<'a> {
        let mut g = Graphs {
            parsed: Vec::new(),
            by_label: HashMap::new(),
            unreadable: None,
            memo: HashMap::new(),
        };
        for o in inv
            .globals
            .iter()
            .filter(|o| matches!(inv.name(o), b"filter_complex" | b"lavfi"))
        {
            match inv.value(o).map(Graph::parse) {
                Some(Ok(graph)) => {
                    let gi = g.parsed.len();
                    for at in graph.positions() {
                        for r in &graph.filter(at).outputs {
                            g.by_label.entry(graph.text(r)).or_insert(gi);
                        }
                    }
                    g.parsed.push((*o, graph));
                }
                _ => g.unreadable = Some(*o),
            }
        }
        g
    }

    /// The graph producing `label`, whether its path carries audio, and the input pad the
    /// path starts from. Each filter is walked once over all calls.
    fn feed(&mut self, label: &[u8]) -> Option<(Opt, bool, Option<&'a [u8]>)> {
        let gi = *self.by_label.get(label)?;
        let (opt, g) = &self.parsed[gi];
        let start = g.producer(label)?;
        // Walk upstream until a memoised filter, the path's start, or a cycle.
        let mut stack = Vec::new();
        let mut at = start;
        let mut base: Option<PathFacts<'a>>;
        loop {
            if let Some(known) = self.memo.get(&(gi, at)) {
                base = *known;
                break;
            }
            if stack.len() > g.filter_count() {
                base = None; // a cycle
                break;
            }
            stack.push(at);
            match g.upstream(at) {
                Ok(p) => at = p,
                Err(pad) => {
                    base = Some((false, pad));
                    break;
                }
            }
        }
        while let Some(at) = stack.pop() {
            base = base.map(|(audio, pad)| (audio || codecs::is_audio_filter(g.name(at)), pad));
            self.memo.insert((gi, at), base);
        }
        base.map(|(audio, pad)| (*opt, audio, pad))
    }
}

/// Decoder hints per input: `-codec:N hevc` before `-i` names the type of input stream N.
pub(super) struct Hints<'a> {
    by_input: Vec<Option<HashMap<&'a [u8], Class>>>,
}

impl<'a> Hints<'a> {
    pub(super) fn new(inv: &Invocation<'a>) -> Hints<'a> {
        Hints {
            by_input: vec![None; inv.inputs.len()],
        }
    }

    /// `-map 0:N` with a decoder hint `-codec:N hevc` before that input's `-i`.
    fn class(&mut self, inv: &Invocation<'a>, input: usize, spec: &[u8]) -> Option<Class> {
        let idx = spec.splitn(2, |&b| b == b':').nth(1)?;
        let idx = idx.strip_suffix(b"?").unwrap_or(idx);
        if !idx.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let group = inv.inputs.get(input)?;
        let table = self.by_input.get_mut(input)?.get_or_insert_with(|| {
            let mut t = HashMap::new();
            for o in inv.find_in(group, &["codec", "c"]) {
                if let (Some(spec), Some(v)) = (inv.spec(o), inv.value(o)) {
                    t.insert(spec, codecs::classify(v));
                }
            }
            t
        });
        table.get(idx).copied()
    }
}

/// The streams an output will have, in order.
pub(super) fn streams<'a>(
    inv: &Invocation<'a>,
    out: &Group,
    opts: &OutputOpts<'a>,
    graphs: &mut Graphs<'a>,
    hints: &mut Hints<'a>,
) -> Vec<OutStream> {
    if opts.maps.is_empty() {
        // ffmpeg's implicit selection: the best video stream of *all* inputs (the most
        // pixels; see `implicit_video_input`), the best audio, the first subtitle. Which
        // input wins needs the inputs' facts: input 0 stands in until the caller knows them
        // (`Job::implicit_video`, `Job::select_input`).
        let mut v = Vec::new();
        if !opts.no_video {
            v.push(OutStream {
                class: Class::Video,
                feed: Some(VideoFeed::Stream {
                    input: 0,
                    vf: opts.video_filter(out, 0, Class::Video),
                }),
                input: Some(0),
                implicit: inv.inputs.len() > 1,
            });
        }
        if !opts.no_audio {
            v.push(OutStream {
                class: Class::Audio,
                feed: None,
                input: Some(0),
                implicit: false,
            });
        }
        return v;
    }
    let mut v = Vec::new();
    for &m in &opts.maps {
        if m.first() == Some(&b'-') {
            continue; // a negative map removes streams
        }
        if m.first() == Some(&b'[') && m.last() == Some(&b']') && m.len() >= 2 {
            let label = &m[1..m.len() - 1];
            let stream = match graphs.feed(label) {
                Some((opt, audio, pad)) => {
                    let audio = audio || pad.is_some_and(|p| pad_class(p) == Some(Class::Audio));
                    OutStream {
                        class: if audio { Class::Audio } else { Class::Video },
                        feed: (!audio).then(|| VideoFeed::Graph {
                            opt,
                            label: label.to_vec(),
                        }),
                        input: pad.and_then(pad_input),
                        implicit: false,
                    }
                }
                // A graph we cannot read may produce this label: never fail open on our
                // own parse limits. Its type is then the encoder's; a video encoder makes
                // it a video transcode whose graph the rewrite refuses to touch, so policy
                // rewrites or refuses (issue 9 §3).
                None => OutStream {
                    class: Class::Unknown,
                    feed: graphs.unreadable.map(|opt| VideoFeed::Graph {
                        opt,
                        label: label.to_vec(),
                    }),
                    input: None,
                    implicit: false,
                },
            };
            v.push(stream);
            continue;
        }
        let input = pad_input(m);
        let class = pad_class(m)
            .or_else(|| input.and_then(|i| hints.class(inv, i, m)))
            .unwrap_or(Class::Unknown);
        let vf = opts.video_filter(out, v.len(), class);
        let feed = input.map(|input| VideoFeed::Stream { input, vf });
        v.push(OutStream {
            class,
            feed,
            input,
            implicit: false,
        });
    }
    v
}

/// `0:0` → input 0; `1:s:0` → input 1.
pub(super) fn pad_input(spec: &[u8]) -> Option<usize> {
    let digits = spec.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    std::str::from_utf8(&spec[..digits]).ok()?.parse().ok()
}

/// `0:v`, `0:V?`, `0:a:1` → the type the specifier names.
pub(super) fn pad_class(spec: &[u8]) -> Option<Class> {
    let rest = spec.splitn(2, |&b| b == b':').nth(1)?;
    match rest.first()? {
        b'v' | b'V' => Some(Class::Video),
        b'a' => Some(Class::Audio),
        b's' => Some(Class::Subtitle),
        _ => None,
    }
}

/// Whether a stream specifier selects output stream `si` of type `class`.
pub fn spec_matches(spec: Option<&[u8]>, si: usize, class: Class) -> bool {
    match spec_key(spec) {
        SpecKey::All => true,
        SpecKey::Index(i) => i == si,
        SpecKey::Type(t) => type_slot(class) == Some(t),
        SpecKey::Never => false,
    }
}
