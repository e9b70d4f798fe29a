//! `downshiftarr check-config`: validate the file strictly, then the environment overrides
//! exactly as the shim applies them.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::CheckConfigArgs;
use crate::config;

pub fn run(args: CheckConfigArgs) -> Result<ExitCode> {
    let path = config::path(args.config.as_deref());
    let mut ok = true;
    match config::load_strict(&path) {
        Ok(c) => {
            println!("config {}: ok", path.display());
            println!("plex directory: {}", crate::daemon::describe_plex_dir(&c));
        }
        Err(e) => {
            println!("{e:#}");
            ok = false;
        }
    }
    let env = |k: &str| std::env::var(k).ok();
    let loaded = downshiftarr_shim::config::load(&path, &env);
    for e in loaded.errors.iter().filter(|e| !e.starts_with("config ")) {
        println!("environment: {e}");
        ok = false;
    }
    if args.print {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "shim": loaded.config }))?
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
