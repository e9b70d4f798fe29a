//! `downshiftarr`: the companion daemon and the admin CLI. Dispatch only.

use clap::Parser;
use downshiftarr::cli;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Explain(args) => cli::explain::run(args),
        cli::Command::CheckConfig(args) => cli::check_config::run(args),
        cli::Command::Daemon(args) => cli::daemon::run(args),
        cli::Command::Sync(args) => cli::library::sync(args),
        cli::Command::Discover(args) => cli::library::discover(args),
        cli::Command::Status(args) => cli::status::run(args),
        cli::Command::Tautulli(args) => cli::tautulli::run(args),
        cli::Command::Decisions(args) => cli::decisions::run(args),
        cli::Command::Throttle(args) => cli::throttle::run(args),
        cli::Command::Trakt(args) => cli::trakt::run(args),
        cli::Command::Scrobble(args) => cli::scrobble::run(args),
        cli::Command::Downloads(args) => cli::downloads::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("downshiftarr: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
