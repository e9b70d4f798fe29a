//! `downshiftarr`: the admin CLI (and, later, the companion daemon). Dispatch only.

mod check_config;
mod cli;
mod config;
mod daemon;
mod events;
mod explain;
mod index;
mod library;
mod plex;

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
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("downshiftarr: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
