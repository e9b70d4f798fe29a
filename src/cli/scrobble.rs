//! `downshiftarr scrobble …`: the scrobble job's admin commands (issue 12). What was typed
//! only; each command lives in its own module (`scrobble_history.rs`, `scrobble_import.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct ScrobbleArgs {
    #[command(subcommand)]
    pub command: ScrobbleCommand,
}

#[derive(Debug, Subcommand)]
pub enum ScrobbleCommand {
    /// Pause scrobbling in the running daemon: it keeps listening, sends nothing new (the
    /// dashboard's "Pause scrobbling").
    Pause(OpsArgs),
    /// Resume scrobbling in the running daemon.
    Resume(OpsArgs),
    /// What became of each Trakt call: delivered, already scrobbled (409), not found,
    /// superseded — newest last.
    History(super::scrobble_history::HistoryArgs),
    /// Move from CrossWatch: take its Trakt app (trakt.client_id/secret), its Trakt tokens
    /// (auth.trakt.*), username_whitelist and server_uuid into our config and store, so
    /// nobody logs in again. Stop CrossWatch's scrobbler first: Trakt's refresh token is
    /// single-use, two programs refreshing one pair lock each other out.
    Import(ImportArgs),
}

/// A command that asks the running daemon.
#[derive(Debug, Args)]
pub struct OpsArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// CrossWatch's config.json (`/config/config.json` in its container).
    #[arg(value_name = "CROSSWATCH_CONFIG")]
    pub crosswatch: PathBuf,
    /// Our config file, updated in place (default: $DOWNSHIFTARR_CONFIG or
    /// /etc/downshiftarr/config.json; created when absent).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The Plex user the Trakt tokens belong to. Default: CrossWatch's plex.username.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Print what would change (secrets redacted), change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: ScrobbleArgs) -> Result<ExitCode> {
    match args.command {
        ScrobbleCommand::History(a) => super::scrobble_history::run(a),
        ScrobbleCommand::Import(a) => super::scrobble_import::run(a),
        ScrobbleCommand::Pause(a) => ops(a, "/api/scrobble/stop", "scrobbling paused"),
        ScrobbleCommand::Resume(a) => ops(a, "/api/scrobble/start", "scrobbling resumed"),
    }
}

fn ops(a: OpsArgs, path: &str, done: &str) -> Result<ExitCode> {
    let cfg = crate::config::load(&crate::config::path(a.config.as_deref()))?;
    super::ops::action(&cfg, path, done)
}
