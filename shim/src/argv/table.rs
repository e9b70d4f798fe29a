//! How each ffmpeg option is *written*: whether it takes a value, whether it is global, and
//! whether it makes ffmpeg print something and exit. What an option *means* lives elsewhere
//! (`job.rs`, `rewrite.rs`).
//!
//! ffmpeg's own rule (fftools/cmdutils.c `split_commandline`) is that an option it does not
//! know is an AVOption and takes exactly one value, so the table's main job is to list every
//! option that takes *no* value. `-noX` negates a boolean `X`. Names are matched up to the
//! first `:` (the stream specifier), exactly as `find_option` does.
//!
//! Sources: ffmpeg 5.1–7.1 `fftools/ffmpeg_opt.c` and `cmdutils.h` (`CMDUTILS_COMMON_OPTIONS`),
//! plus the Plex-only options of `../shared/reference/transcoder-args.md` §6.

/// How an option is written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// A boolean or action flag: never consumes the next token (`-y`, `-copyts`, `-vn`).
    Flag,
    /// Consumes exactly the next token, whatever it looks like (`-sei:0 -a53_cc`).
    Value,
    /// Prints information and exits (`-version`, `-h full`): the job is informational.
    Info,
}

/// Whether the option belongs to the input/output being built or to the whole command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Global,
    PerFile,
}

/// One row of the option table.
#[derive(Clone, Copy, Debug)]
pub struct OptionDef {
    pub name: &'static str,
    pub arity: Arity,
    pub scope: Scope,
    /// A boolean that can also be written `-noNAME`.
    pub negatable: bool,
}

const fn flag(name: &'static str, scope: Scope, negatable: bool) -> OptionDef {
    OptionDef {
        name,
        arity: Arity::Flag,
        scope,
        negatable,
    }
}
const fn value(name: &'static str, scope: Scope) -> OptionDef {
    OptionDef {
        name,
        arity: Arity::Value,
        scope,
        negatable: false,
    }
}
const fn info(name: &'static str) -> OptionDef {
    OptionDef {
        name,
        arity: Arity::Info,
        scope: Scope::Global,
        negatable: false,
    }
}

use Scope::{Global as G, PerFile as F};

/// Every option whose arity or scope differs from "unknown: one value, per file".
/// Sorted by name (byte order); a test below keeps it that way so lookup can binary-search.
pub static OPTIONS: &[OptionDef] = &[
    info("-help"), // written `--help`
    info("?"),
    info("L"),
    flag("accurate_seek", F, true),
    flag("an", F, false),
    flag("autorotate", F, true),
    flag("autoscale", F, true),
    flag("benchmark", G, false),
    flag("benchmark_all", G, false),
    flag("bitexact", F, true),
    info("bsfs"),
    info("buildconf"),
    info("codecs"),
    info("colors"),
    flag("copy_unknown", G, true),
    flag("copyinkf", F, true),
    flag("copyts", G, true),
    flag("debug_ts", G, true),
    info("decoders"),
    flag("deinterlace", F, false),
    info("demuxers"),
    info("devices"),
    info("dispositions"),
    flag("dn", F, false),
    flag("drop_changed", F, true),
    flag("dump", G, false),
    info("encoders"),
    value("filter_complex", G),
    value("filter_complex_script", G),
    value("filter_hw_device", G),
    value("filter_threads", G),
    info("filters"),
    flag("find_stream_info", F, true),
    flag("fix_sub_duration", F, true),
    flag("fix_sub_duration_heartbeat", F, true),
    info("formats"),
    info("h"),
    info("help"),
    flag("hex", G, false),
    flag("hide_banner", G, true),
    info("hwaccels"),
    flag("ignore_chapters", F, true),
    flag("ignore_unknown", G, true),
    value("init_hw_device", G),
    flag("intra", F, false),
    value("lavfi", G),
    info("layouts"),
    value("loglevel", G),
    // Plex-only: verbosity of the log lines the fork POSTs to PMS.
    value("loglevel_plex", G),
    info("muxers"),
    flag("n", G, false),
    info("pix_fmts"),
    flag("print_graphs", G, true),
    value("progress", G),
    // Plex-only: base URL for progress PUTs and log POSTs.
    value("progressurl", G),
    info("protocols"),
    flag("psnr", F, false),
    flag("qphist", G, true),
    flag("re", F, false),
    flag("recast_media", G, true),
    flag("report", G, false),
    flag("same_quant", F, false),
    flag("sameq", F, false),
    info("sample_fmts"),
    flag("seek_timestamp", F, true),
    flag("shortest", F, true),
    info("sinks"),
    flag("sn", F, false),
    info("sources"),
    flag("start_at_zero", G, true),
    flag("stats", G, true),
    value("stats_period", G),
    flag("stdin", G, true),
    value("v", G),
    info("version"),
    flag("vn", F, false),
    flag("vstats", G, true),
    value("vsync", G),
    flag("xerror", G, true),
    // Plex-only: listed by scaleplex's REWRITER.md among the fork's flags; never seen in a
    // capture. Treated as a flag like its stock sibling `-xerror`.
    flag("xioerror", G, true),
    flag("y", G, false),
];

/// Looks up an option by name (the text after the leading `-`, before any `:`).
pub fn find(name: &[u8]) -> Option<&'static OptionDef> {
    OPTIONS
        .binary_search_by(|d| d.name.as_bytes().cmp(name))
        .ok()
        .map(|i| &OPTIONS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for w in OPTIONS.windows(2) {
            assert!(
                w[0].name.as_bytes() < w[1].name.as_bytes(),
                "{} must sort before {}",
                w[0].name,
                w[1].name
            );
        }
    }

    #[test]
    fn negatable_rows_are_flags() {
        for d in OPTIONS.iter().filter(|d| d.negatable) {
            assert_eq!(
                d.arity,
                Arity::Flag,
                "{} is negatable but not a flag",
                d.name
            );
        }
    }

    #[test]
    fn names_have_no_dash_or_colon_prefix() {
        for d in OPTIONS {
            assert!(!d.name.contains(':'), "{}", d.name);
            assert!(!d.name.is_empty());
        }
    }

    #[test]
    fn lookup_finds_every_row() {
        for d in OPTIONS {
            assert_eq!(find(d.name.as_bytes()).map(|f| f.name), Some(d.name));
        }
        assert!(
            find(b"codec").is_none(),
            "unknown options are not in the table"
        );
    }
}
