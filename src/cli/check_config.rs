//! `downshiftarr check-config`: validate the file strictly, then the environment overrides
//! with the names of the one settings table (`config::table`), exactly as the shim applies
//! them.
//!
//! A file named with `--config` must exist; the default (or `$DOWNSHIFTARR_CONFIG`) may be
//! absent, which is said. With `throttle.qbittorrent_url` set, the qBittorrent login is tried
//! once (never retried: five refusals ban the address, the owner's browser too). With
//! `scrobble.client_id` set, one unauthenticated Trakt search shows whether the API answers
//! and accepts the app's client id (no user token is needed or sent). With `--print` the effective configuration is the only thing on
//! stdout (so `| jq` works) and every message goes to stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::cli::CheckConfigArgs;
use crate::clients::qbittorrent::Qbittorrent;
use crate::clients::trakt::{IdType, SearchType, Trakt, TraktError};
use crate::config;
use crate::config::scrobble::ScrobbleSettings;
use crate::config::throttle::ThrottleSettings;

/// The config file to read: a path given with `--config` must exist, the default may be
/// absent. Returns the path and, when it is absent, the note to show.
pub fn config_file(flag: Option<&Path>) -> Result<(PathBuf, Option<String>)> {
    let path = config::path(flag);
    match path.try_exists() {
        Ok(true) => Ok((path, None)),
        Ok(false) if flag.is_some() => bail!(
            "config file {} does not exist: check the --config path",
            path.display()
        ),
        Ok(false) => {
            let note = format!("no config file at {}: using defaults", path.display());
            Ok((path, Some(note)))
        }
        Err(e) => bail!("unable to read config {}: {e}", path.display()),
    }
}

/// Tests the throttle job's access to qBittorrent and says how it went, on one line:
/// `qbittorrent <url>: logged in, WebAPI 2.8.19`, or the client's error (which names the URL
/// and what to do). At most one login is sent: a refused password is not tried again.
/// Returns whether access works.
fn check_qbittorrent(t: &ThrottleSettings, out: &mut dyn Write) -> Result<bool> {
    let url = t.qbittorrent_url.trim();
    let client = t
        .qbit_options()
        .and_then(|o| Qbittorrent::new(o).map_err(|e| e.to_string()));
    let mut client = match client {
        Ok(c) => c,
        Err(e) => {
            writeln!(out, "qbittorrent {url}: {e}")?;
            return Ok(false);
        }
    };
    let api_key = !t.api_key.expose().is_empty();
    let password = !matches!(t.password(), Ok(None));
    // With a password (and no API key), log in first: the password is what is being checked,
    // even where "bypass authentication for localhost" would let the calls through. Otherwise
    // the version call shows whether the API key or the bypass works (the client logs in with
    // the password only if the key is refused).
    let checked = if password && !api_key {
        client.login()
    } else {
        Ok(())
    };
    match checked.and_then(|()| client.webapi_version()) {
        Ok(v) => {
            let how = match (client.login_attempts() > 0, api_key) {
                (true, false) => "logged in",
                (true, true) => "logged in with the password (the api_key was not accepted)",
                (false, true) => "api key accepted",
                (false, false) => "no login needed (localhost bypass)",
            };
            writeln!(out, "qbittorrent {url}: {how}, WebAPI {v}")?;
            // Leave no session behind; a failed logout changes nothing that matters here.
            let _ = client.logout();
            Ok(true)
        }
        Err(e) => {
            writeln!(out, "{e}")?;
            Ok(false)
        }
    }
}

/// Tests the scrobble job's access to Trakt with one `GET /search/imdb/tt0000001` (the app
/// key is all it needs) and says how it went, on one line naming the key to fix. Returns
/// whether Trakt answered and took the key.
fn check_trakt(s: &ScrobbleSettings, out: &mut dyn Write) -> Result<bool> {
    let url = s.trakt_url.trim();
    let client = s
        .trakt_options()
        .and_then(|o| Trakt::new(o).map_err(anyhow::Error::from));
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            writeln!(out, "trakt {url}: {e:#}")?;
            return Ok(false);
        }
    };
    match client.search_id(IdType::Imdb, "tt0000001", SearchType::Movie) {
        Ok(_) => {
            writeln!(out, "trakt {url}: ok (the app's client id is accepted)")?;
            Ok(true)
        }
        Err(TraktError::Permanent {
            status: Some(403), ..
        }) => {
            writeln!(
                out,
                "trakt {url}: the app's client id was refused (403): check scrobble.client_id \
                 (or TRAKT_CLIENT_ID) against https://trakt.tv/oauth/applications"
            )?;
            Ok(false)
        }
        Err(e) => {
            writeln!(
                out,
                "trakt {url}: {e} (check scrobble.trakt_url and the network)"
            )?;
            Ok(false)
        }
    }
}

pub fn run(args: CheckConfigArgs) -> Result<ExitCode> {
    let (path, absent) = config_file(args.config.as_deref())?;
    // Messages go where they cannot spoil the JSON.
    let mut out: Box<dyn Write> = if args.print {
        Box::new(std::io::stderr())
    } else {
        Box::new(std::io::stdout())
    };
    let mut ok = true;
    // What was said about the configuration as a whole, so the shim's view below does not
    // say it twice; the configuration in effect, for `--print`.
    let mut said = String::new();
    let mut effective = None;
    match config::load(&path) {
        Ok(c) => {
            match &absent {
                Some(note) => writeln!(out, "{note}")?,
                None => writeln!(out, "config {}: ok", path.display())?,
            }
            for note in c.notes() {
                writeln!(out, "note: {note}")?;
            }
            match c.tautulli.resolved() {
                Ok(Some((url, _))) => {
                    writeln!(out, "tautulli {url}: configured (terminate fallback)")?
                }
                Ok(None) => {}
                Err(e) => {
                    writeln!(out, "{e:#}")?;
                    ok = false;
                }
            }
            writeln!(
                out,
                "plex directory: {}",
                crate::jobs::heal::describe_plex_dir(&c)
            )?;
            match c.plex.resolved() {
                Ok((url, _)) => {
                    let plex = crate::plex::Plex::from_config(&c.plex);
                    match plex.and_then(|p| Ok(p.identity()?)) {
                        Ok(id) => writeln!(
                            out,
                            "plex {url}: ok (server {}, version {})",
                            id.get("machineIdentifier")
                                .and_then(|v| v.as_str())
                                .unwrap_or("?"),
                            id.get("version").and_then(|v| v.as_str()).unwrap_or("?")
                        )?,
                        Err(e) => {
                            writeln!(out, "plex: {e}")?;
                            ok = false;
                        }
                    }
                }
                Err(e) => writeln!(out, "plex: {e:#} (the daemon will not sync the library)")?,
            }
            if c.throttle.enabled() {
                ok &= check_qbittorrent(&c.throttle, &mut out)?;
            }
            if c.scrobble.enabled() {
                ok &= check_trakt(&c.scrobble, &mut out)?;
            }
            effective = Some(c);
        }
        Err(e) => {
            said = format!("{e:#}");
            writeln!(out, "{said}")?;
            ok = false;
        }
    }
    let env = |k: &str| std::env::var(k).ok();
    // Which settings the environment gives (values unshown: some are secrets).
    for r in config::table::all() {
        if let Some(name) = r.env.filter(|n| env(n).is_some()) {
            writeln!(
                out,
                "environment: {name} sets {} ({:?}, default {})",
                r.key, r.kind, r.default
            )?;
        }
    }
    let loaded = downshiftarr_shim::config::load(&path, &env);
    let shim_only = |e: &&String| !e.starts_with("config ") && !said.contains(e.as_str());
    for e in loaded.errors.iter().filter(shim_only) {
        writeln!(out, "environment: {e}")?;
        ok = false;
    }
    if let Some(f) = &args.env_file {
        ok &= crate::jobs::guard::trigger::check_env_file(f);
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
    out.flush()?;
    if args.print {
        // The whole configuration in effect (secrets `<redacted>`); when it does not load,
        // the shim's section as the shim would run with it.
        let text = match &effective {
            Some(c) => serde_json::to_string_pretty(c)?,
            None => serde_json::to_string_pretty(&serde_json::json!({ "shim": loaded.config }))?,
        };
        println!("{text}");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
