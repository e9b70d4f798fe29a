//! `downshiftarr scrobble …`: the scrobble job's commands (issue 12). Each subcommand lives in
//! its own file (`scrobble_history.rs`, …); this one only names them.

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
    /// What became of each Trakt call: delivered, already scrobbled (409), not found,
    /// superseded — newest last.
    History(super::scrobble_history::HistoryArgs),
}

pub fn run(args: ScrobbleArgs) -> Result<ExitCode> {
    match args.command {
        ScrobbleCommand::History(a) => super::scrobble_history::run(a),
    }
}
