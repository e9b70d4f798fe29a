//! `downshiftarr tautulli`: the original Tautulli script's drop-in. Its settings come from the
//! original `Downshiftarr.env` file and the environment; the trigger goes to the daemon when it
//! runs, else it is decided here with Plex's own answers (`jobs::guard::trigger` holds the
//! flow both share).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use downshiftarr_shim::config::ShimConfig;
use downshiftarr_shim::facts::SourceFacts;
use downshiftarr_shim::protocol::{Client, MediaVersion};
use downshiftarr_shim::switch;

use crate::cli::TautulliArgs;
use crate::daemon::admin::{AdminRequest, AdminResponse};
use crate::daemon::logging::{self, ScriptLog};
use crate::jobs::guard::enforce::{Enforcer, Outcome};
use crate::jobs::guard::trigger::{handle, notifies, parse_env_file, Knowledge, Trigger};
use crate::plex::sessions::Session;

fn env_file_path(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ENV_FILE") {
        return Some(PathBuf::from(p));
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("Downshiftarr.env")));
    [beside, Some(PathBuf::from("Downshiftarr.env"))]
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
}

pub fn run(args: TautulliArgs) -> Result<ExitCode> {
    let trigger = Trigger {
        rating_key: args.rating_key.unwrap_or_default(),
        machine_id: args.machine_id.unwrap_or_default(),
        username: args.username.unwrap_or_default(),
        session_id: args.session_id.unwrap_or_default(),
        session_key: args.session_key.unwrap_or_default(),
        user_id: args.user_id.unwrap_or_default(),
        video_decision: args.video_decision.unwrap_or_default(),
        video_resolution: args.video_resolution.unwrap_or_default(),
        stream_video_resolution: args.stream_video_resolution.unwrap_or_default(),
        video_dynamic_range: args.video_dynamic_range.unwrap_or_default(),
        notify_min_level: None,
    };
    // The process environment wins over the file, as python-dotenv does.
    let mut problems = Vec::new();
    let env_path = env_file_path(args.env_file.as_deref());
    let file_env = match &env_path {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(t) => parse_env_file(&t),
            Err(e) => {
                problems.push(format!(
                    "unable to read the settings file {}: {e} (using the environment only)",
                    p.display()
                ));
                HashMap::new()
            }
        },
        None => HashMap::new(),
    };
    let env = |k: &str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| file_env.get(k).cloned())
    };
    // The original script's log: where it was, as verbose as it was.
    let (log, errors) = ScriptLog::from_env(&env, env_path.as_deref().and_then(Path::parent));
    problems.extend(errors);
    if let Err(e) = logging::init_script(&log) {
        eprintln!("downshiftarr tautulli: unable to start logging: {e:#}");
    }
    let (http_timeout, error) = http_timeout(&env);
    problems.extend(error);
    for p in &problems {
        tracing::warn!("{p}");
    }
    // The settings in effect, for a DEBUG log. Secret values are replaced by the log's
    // writer (`logging::Redacting`), the one place every line passes, not here.
    let mut keys: Vec<&String> = file_env.keys().collect();
    keys.sort();
    tracing::debug!(
        settings = %env_path.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
        "{}",
        keys.iter()
            .map(|k| format!("{k}={}", env(k).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let trigger = Trigger {
        notify_min_level: env("TAUTULLI_LOG_MIN_LEVEL"),
        ..trigger
    };
    tracing::debug!(?trigger, "tautulli trigger");
    let path = crate::config::path(args.config.as_deref());
    let shim_loaded = downshiftarr_shim::config::load(&path, &env);
    let outcome = match ask_daemon(&shim_loaded.config, &trigger) {
        Some(o) => {
            tracing::info!(
                "tautulli trigger (decided by the daemon): {} {}",
                o.get("action").and_then(|a| a.as_str()).unwrap_or("?"),
                o.get("reason").and_then(|a| a.as_str()).unwrap_or("")
            );
            println!("{}", serde_json::to_string(&o)?);
            o
        }
        None => {
            let o = standalone(&path, &env, shim_loaded.config, &trigger, http_timeout)?;
            let v = serde_json::to_value(&o)?;
            println!("{}", serde_json::to_string(&v)?);
            v
        }
    };
    let failed = outcome.get("action").and_then(|a| a.as_str()) == Some("failed");
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Hands the trigger to the daemon; `None` when it is not running.
fn ask_daemon(shim: &ShimConfig, t: &Trigger) -> Option<serde_json::Value> {
    if shim.socket.is_empty() {
        return None;
    }
    // Finding the session may take the configured retries; the daemon answers after that.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut c = Client::connect(Path::new(&shim.socket), deadline).ok()?;
    match c.call_as(&AdminRequest::TautulliEvent {
        event: serde_json::to_value(t).ok()?,
    }) {
        Ok(AdminResponse::Enforced { outcome }) => Some(outcome),
        Ok(other) => {
            tracing::warn!("unexpected daemon answer {other:?}; deciding here");
            None
        }
        Err(e) => {
            tracing::info!("daemon: {e}; deciding here");
            None
        }
    }
}

/// `HTTP_TIMEOUT_S` (default 8): every request the drop-in makes to Plex and Tautulli.
fn http_timeout(env: &dyn Fn(&str) -> Option<String>) -> (Duration, Option<String>) {
    const DEFAULT: Duration = Duration::from_secs(8);
    match env("HTTP_TIMEOUT_S") {
        None => (DEFAULT, None),
        Some(v) => match v.trim().parse::<f64>() {
            Ok(s) if s > 0.0 && s <= 300.0 => (Duration::from_secs_f64(s), None),
            _ => (
                DEFAULT,
                Some(format!(
                    "HTTP_TIMEOUT_S={v:?}: expected seconds above 0 and at most 300; using 8"
                )),
            ),
        },
    }
}

/// Logs an outcome at its level.
fn log_outcome(o: &Outcome) {
    let user = o.user.as_deref().unwrap_or("");
    match o.level() {
        tracing::Level::ERROR => tracing::error!(user, "tautulli trigger: {}", o.line()),
        tracing::Level::WARN => tracing::warn!(user, "tautulli trigger: {}", o.line()),
        _ => tracing::info!(user, "tautulli trigger: {}", o.line()),
    }
}

fn standalone(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    shim: ShimConfig,
    t: &Trigger,
    http_timeout: Duration,
) -> Result<Outcome> {
    // The one loader, with the settings file's names applied as the daemon applies them.
    let (cfg, problems) = crate::config::load_lenient(path, env);
    for p in problems {
        tracing::warn!("{p}");
    }
    let url = cfg.plex.url.clone();
    let token = match cfg.plex.resolved() {
        Ok((_, t)) => Some(t),
        Err(e) => {
            // A refused or unreadable token file is said, not taken for "no token".
            if !cfg.plex.token_file.is_empty() {
                tracing::warn!("{e:#}");
            }
            None
        }
    };
    let plex = match token {
        Some(tok) => Some(crate::plex::Plex::new(
            &url,
            &tok,
            Duration::from_millis(cfg.plex.connect_timeout_ms).min(http_timeout),
            http_timeout,
        )?),
        None => {
            tracing::warn!("no Plex token: set PLEX_TOKEN in the settings file or plex.token_file in the config");
            None
        }
    };
    // HTTP_TIMEOUT_S, when the settings give it, wins over tautulli.timeout_ms.
    let taut_timeout = match env("HTTP_TIMEOUT_S") {
        Some(_) => http_timeout,
        None => Duration::from_millis(cfg.tautulli.timeout_ms),
    };
    let tautulli = match cfg.tautulli.resolved() {
        Ok(Some((u, k))) => crate::clients::tautulli::Tautulli::new(&u, &k, taut_timeout).ok(),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!("{e:#}");
            None
        }
    };
    let shadow = cfg.enforce.shadow_mode.unwrap_or(shim.shadow_mode);
    let enf = Enforcer {
        plex: plex.as_ref(),
        tautulli: tautulli.as_ref(),
        cfg: &cfg.enforce,
        shim: &shim,
        notifier: cfg
            .tautulli
            .log_notifier_id
            .map(|id| (id, cfg.tautulli.log_subject.clone())),
        tracker: None,
        shutdown: None,
    };
    let o = handle(
        &enf,
        t,
        &FromPlex {
            plex: plex.as_ref(),
        },
        shadow,
    );
    log_outcome(&o);
    if notifies(&o, t.notify_min_level.as_deref()) {
        enf.notify("tautulli trigger", &o);
    }
    // The daemon stores its triggers' decisions; without it they go where the shim writes
    // its own, and the daemon imports them when it starts.
    let rec = o.record("tautulli", &t.audit_session(), None, o.reason);
    if !shim.decision_log.is_empty() {
        let written = serde_json::to_vec(&rec)
            .is_ok_and(|line| downshiftarr_shim::record::append(&shim.decision_log, &line));
        if !written {
            tracing::warn!(
                "unable to append this decision to the decision log {}: check that the directory exists and is writable by this user",
                shim.decision_log
            );
        }
    }
    Ok(o)
}

/// Standalone knowledge: Plex's own answer for the item.
pub struct FromPlex<'a> {
    pub plex: Option<&'a crate::plex::Plex>,
}

impl Knowledge for FromPlex<'_> {
    fn versions(&self, s: &Session) -> Option<(SourceFacts, Vec<MediaVersion>)> {
        let item = self
            .plex?
            .metadata(&[s.rating_key.clone()?])
            .ok()?
            .into_iter()
            .next()?;
        let mut all = crate::plex::json::versions(&item);
        // The index keeps a version's first part as its file and streams; so does this.
        for v in &mut all {
            if let Some((_, file, streams)) = v.parts.first() {
                v.media.file = file.clone();
                v.media.streams = streams.clone();
            }
        }
        let cur = all
            .iter()
            .find(|v| Some(&v.media.media_id) == s.media_id.as_ref())?;
        let facts = switch::version_facts(&cur.media);
        Some((facts, all.into_iter().map(|v| v.media).collect()))
    }
    fn handled(&self, _: Option<&str>, _: Option<&str>) -> bool {
        false
    }
}
