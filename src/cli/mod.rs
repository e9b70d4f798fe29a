//! What was typed: the command-line surface, with no I/O (ripgrep's "low args" stage).

pub mod check_config;
pub mod daemon;
pub mod decisions;
pub mod downloads;
pub mod downloads_explain;
pub mod downloads_history;
pub mod downloads_prune;
pub mod explain;
pub mod library;
pub mod ops;
pub mod scrobble;
pub mod scrobble_history;
pub mod scrobble_import;
pub mod status;
pub mod tautulli;
pub mod throttle;
pub mod trakt;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Downshift 4K/HDR/Dolby Vision Plex transcodes to 1080p SDR before the first frame.
#[derive(Debug, Parser)]
#[command(name = "downshiftarr", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what the shim would do with a transcoder command line, without running it.
    Explain(ExplainArgs),
    /// Validate the configuration file and the environment overrides.
    CheckConfig(CheckConfigArgs),
    /// Run the companion daemon (systemd service or container service).
    Daemon(DaemonArgs),
    /// Bring the library index up to date with Plex (incremental unless --full).
    Sync(SyncArgs),
    /// List indexed movies or shows with a title, with their versions and external ids.
    Discover(DiscoverArgs),
    /// The running daemon's uptime, index counts, last sync and job health (exit 0 healthy,
    /// 1 unhealthy, 2 not running).
    Status(StatusArgs),
    /// Drop-in for the original Tautulli script: same arguments, same Downshiftarr.env.
    Tautulli(TautulliArgs),
    /// Every decision (shim, reactive guard, Tautulli trigger) with its reason and outcome.
    Decisions(DecisionsArgs),
    /// Slow qBittorrent while someone streams remotely, on its own (drop-in for the original
    /// plex-helper: same --config file, --once, --dry-run, --verbose); --restore gives back
    /// what a throttle changed.
    Throttle(ThrottleArgs),
    /// Link Plex users to Trakt accounts for scrobbling (device login), list and unlink them.
    Trakt(trakt::TraktArgs),
    /// Scrobbling to Trakt: move from CrossWatch (`import`), what became of each call
    /// (`history`).
    Scrobble(scrobble::ScrobbleArgs),
    /// Smart downloads through Radarr: why a movie would download (`explain`), the stored
    /// `decisions`, `import-history` from Plex or Jellystat, a dry-run `test`, the `prune`
    /// report, the job's `status`.
    Downloads(downloads::DownloadsArgs),
}

#[derive(Debug, Args)]
pub struct ThrottleArgs {
    /// The downshiftarr config (its `throttle` section), or the original tool's JSON file
    /// (`plex_url`, `qbittorrent_url`, `streaming_upload_kbps`…), recognised by its keys.
    /// Default: $DOWNSHIFTARR_CONFIG or /etc/downshiftarr/config.json.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Look once, decide as if every threshold were met, print the decision, exit.
    #[arg(long)]
    pub once: bool,
    /// Decide and print, change nothing in qBittorrent.
    #[arg(long)]
    pub dry_run: bool,
    /// Debug logs.
    #[arg(long)]
    pub verbose: bool,
    /// Give back what a throttle changed (and is recorded), then exit.
    #[arg(long, conflicts_with_all = ["once", "dry_run"])]
    pub restore: bool,
    /// Where the record of what was changed is kept (with the original's file; default:
    /// $STATE_DIRECTORY, else /var/lib/downshiftarr when writable, else
    /// $XDG_STATE_HOME/downshiftarr or ~/.local/state/downshiftarr). With a downshiftarr
    /// config: its `index.database`.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TautulliArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The original script's settings file (default: $ENV_FILE, else Downshiftarr.env next to
    /// the binary or in the working directory).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    #[arg(long, allow_hyphen_values = true)]
    pub rating_key: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub machine_id: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub username: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub session_id: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub session_key: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub user_id: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub video_decision: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub video_resolution: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub stream_video_resolution: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    pub video_dynamic_range: Option<String>,
}

#[derive(Debug, Args)]
pub struct DecisionsArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Only the last DURATION (`90s`, `15m`, `2h`, `7d`).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// At most this many, newest last.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub limit: usize,
}

// Exit status: 0 healthy, 1 unhealthy, 2 not running (or not reachable).
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Config file (default: $DOWNSHIFTARR_CONFIG or /etc/downshiftarr/config.json); the
    /// socket is `shim.socket`, or $DOWNSHIFTARR_SOCKET when set.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print one JSON object: the daemon's answer with "running": true, or
    /// {"running": false, "socket": …, "error": …}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// List everything and compare client-side, ignoring the watermarks.
    #[arg(long)]
    pub full: bool,
    /// Only this section key.
    #[arg(long, value_name = "KEY")]
    pub section: Option<String>,
    /// Only items with this title.
    #[arg(long, value_name = "T")]
    pub title: Option<String>,
    /// With --title: only this year.
    #[arg(long, value_name = "Y", requires = "title")]
    pub year: Option<i64>,
    /// Read Plex, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// With --full: apply deletions that are held back for safety (an empty or incomplete
    /// listing, or more than a fifth of a section), each still confirmed by Plex.
    #[arg(long, requires = "full")]
    pub force: bool,
    /// Items per listing page.
    #[arg(long, value_name = "N")]
    pub page_size: Option<u64>,
}

#[derive(Debug, Args)]
pub struct DiscoverArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, value_name = "T")]
    pub title: String,
    #[arg(long, value_name = "Y")]
    pub year: Option<i64>,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Config file (default: $DOWNSHIFTARR_CONFIG or /etc/downshiftarr/config.json).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Debug logs (also the config key daemon.debug).
    #[arg(long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Config file (default: $DOWNSHIFTARR_CONFIG or /etc/downshiftarr/config.json).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Source facts as JSON instead of learning them as the shim does (daemon, probe,
    /// hints), e.g. {"width":3840,"height":2160,"bit_depth":10,"dynamic_range":"hdr10"};
    /// dynamic_range is one of sdr, hdr10, hdr10plus, hlg, dolby_vision (then also
    /// "dv_profile": 5, 7 or 8).
    #[arg(long, value_name = "FILE")]
    pub source_json: Option<PathBuf>,
    /// Print one JSON object instead of a readable summary.
    #[arg(long)]
    pub json: bool,
    /// Decide as if this Plex user were watching (tests `exempt_users`).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Decide as if this client product or device were playing (tests `exempt_clients`).
    #[arg(long, value_name = "NAME")]
    pub client: Option<String>,
    /// A JSON file with an "args" array (and optional "argv0"), as in fixtures/plex-argv.
    #[arg(long, value_name = "FILE", conflicts_with = "args")]
    pub argv_json: Option<PathBuf>,
    /// The transcoder arguments, after `--`.
    #[arg(last = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub args: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Config file (default: $DOWNSHIFTARR_CONFIG or /etc/downshiftarr/config.json).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the effective configuration as JSON.
    #[arg(long)]
    pub print: bool,
    /// Also check a Tautulli drop-in settings file (Downshiftarr.env): names unknown keys.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
}
