//! `downshiftarr`: the companion daemon and the admin CLI. Dispatch only.

mod audit;
mod check_config;
mod cli;
mod clients;
mod config;
mod daemon;
mod enforce;
mod events;
mod explain;
mod index;
mod jobs;
mod library;
mod plex;
mod sessions;
mod tautulli;
mod trigger;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Explain(args) => explain::run(args),
        cli::Command::CheckConfig(args) => check_config::run(args),
        cli::Command::Daemon(args) => daemon::run(args),
        cli::Command::Sync(args) => library::sync(args),
        cli::Command::Discover(args) => library::discover(args),
        cli::Command::Status(args) => library::status(args),
        cli::Command::Tautulli(args) => trigger::run(args),
        cli::Command::Decisions(args) => audit::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("downshiftarr: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
