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
            if c.shim.allow_hdr_fallback && c.shim.fallback_sdr_only {
                println!(
                    "note: shim.allow_hdr_fallback has no effect while shim.fallback_sdr_only is on"
                );
            }
            match c.tautulli.resolved() {
                Ok(Some((url, _))) => println!("tautulli {url}: configured (terminate fallback)"),
                Ok(None) => {}
                Err(e) => {
                    println!("{e:#}");
                    ok = false;
                }
            }
            println!("plex directory: {}", crate::daemon::describe_plex_dir(&c));
            match c.plex.resolved() {
                Ok((url, token)) => {
                    let t = |ms| std::time::Duration::from_millis(ms);
                    let plex = crate::plex::Plex::new(
                        &url,
                        &token,
                        t(c.plex.connect_timeout_ms),
                        t(c.plex.read_timeout_ms),
                    );
                    match plex.and_then(|p| p.identity()) {
                        Ok(id) => println!(
                            "plex {url}: ok (server {}, version {})",
                            id.get("machineIdentifier")
                                .and_then(|v| v.as_str())
                                .unwrap_or("?"),
                            id.get("version").and_then(|v| v.as_str()).unwrap_or("?")
                        ),
                        Err(e) => {
                            println!("plex {url}: {e}");
                            ok = false;
                        }
                    }
                }
                Err(e) => println!("plex: {e:#} (the daemon will not sync the library)"),
            }
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
    if let Some(f) = &args.env_file {
        ok &= crate::trigger::check_env_file(f);
    }
    // A file other users can write may not choose what the shim executes (issue 9 §3).
    if let Ok(meta) = std::fs::metadata(&path) {
        use std::os::unix::fs::MetadataExt;
        if let Some(why) = downshiftarr_shim::config::distrust(&path, meta.mode()) {
            let keys = downshiftarr_shim::config::GUARDED_KEYS.join(", ");
            eprintln!(
                "config {}: the shim refuses {keys} from this file: {why}",
                path.display()
            );
            ok &= !loaded.errors.iter().any(|e| e.contains(" ignored: "));
        }
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
