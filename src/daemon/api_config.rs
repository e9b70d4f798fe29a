//! `POST /api/config`: a whole configuration, checked as `check-config` checks a file, written
//! atomically over the daemon's file and applied as SIGHUP applies it. A body that does not
//! pass changes nothing and says why, naming the key.
//!
//! `GET /api/config` shows every secret as `<redacted>`; a body that posts `<redacted>` back
//! keeps what the file holds at that key (the secret itself never travels).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::ctx::Ctx;
use crate::config::{self, secret::REDACTED};

/// Checks, writes and applies `body`; the status code and the answer.
pub fn replace(ctx: &Ctx, body: &[u8]) -> (u16, Value) {
    let path = ctx.config_path.clone();
    let mut posted: Value = match serde_json::from_slice(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return refused(&path, "the configuration must be a JSON object"),
        Err(e) => return refused(&path, &format!("invalid JSON: {e}")),
    };
    let current = match read_current(&path) {
        Ok(v) => v,
        Err(e) => return (500, json!({ "error": e })),
    };
    keep_redacted(&mut posted, &current, "");
    let text = match serde_json::to_string_pretty(&posted) {
        Ok(t) => t + "\n",
        Err(e) => {
            return (
                500,
                json!({ "error": format!("unable to write the configuration: {e}") }),
            )
        }
    };
    // Checked exactly as the daemon will load it: the file strictly, the environment, the secrets.
    let tmp = temp_path(&path);
    if let Err(e) = write_file(&tmp, &text, &path) {
        let _ = std::fs::remove_file(&tmp);
        return (500, json!({ "error": e }));
    }
    let new = match config::load(&tmp) {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            let msg =
                format!("{e:#}").replace(&tmp.display().to_string(), &path.display().to_string());
            return refused(&path, &msg);
        }
    };
    if let Err(e) = std::fs::rename(&tmp, &path) {
        let _ = std::fs::remove_file(&tmp);
        return (
            500,
            json!({ "error": format!("unable to replace {}: {e}; the configuration is unchanged", path.display()) }),
        );
    }
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    let restart = config::Config::needs_restart(&ctx.config(), &new);
    tracing::info!(config = %path.display(), "configuration replaced through the ops API; reloading");
    ctx.shutdown.request_reload();
    (
        200,
        json!({
            "written": path.display().to_string(),
            "applied": "reloading now, as on SIGHUP",
            "restart_needed": restart,
        }),
    )
}

fn refused(path: &Path, why: &str) -> (u16, Value) {
    (
        400,
        json!({ "error": format!("configuration refused, {} unchanged: {why}", path.display()) }),
    )
}

/// The file as it is now (`{}` when there is none yet).
fn read_current(path: &Path) -> Result<Value, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => {
            serde_json::from_str(&t).map_err(|e| format!("{}: invalid JSON: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(format!("unable to read {}: {e}", path.display())),
    }
}

/// Every `<redacted>` in `posted` becomes what `current` has at that place, or goes when the
/// file has nothing there (an environment or file secret stays where it came from).
fn keep_redacted(posted: &mut Value, current: &Value, at: &str) {
    let Value::Object(map) = posted else {
        return;
    };
    let mut drop = Vec::new();
    for (k, v) in map.iter_mut() {
        let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
        match v {
            Value::String(s) if s == REDACTED => match current.pointer(&here) {
                Some(c) => *v = c.clone(),
                None => drop.push(k.clone()),
            },
            Value::Object(_) => keep_redacted(v, current, &here),
            _ => {}
        }
    }
    for k in drop {
        map.remove(&k);
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.api-{}.tmp", std::process::id()))
}

/// Writes `text` to `tmp` with the mode and owner of `like` (when it exists), synced.
fn write_file(tmp: &Path, text: &str, like: &Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let meta = std::fs::metadata(like).ok();
    let mode = meta.as_ref().map_or(0o640, |m| m.mode() & 0o7777);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| {
            format!(
                "unable to write beside {}: {e} (the daemon needs write access to its directory)",
                like.display()
            )
        })?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("unable to write {}: {e}", tmp.display()))?;
    if let Some(m) = &meta {
        let _ = std::os::unix::fs::chown(tmp, Some(m.uid()), Some(m.gid()));
    }
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("unable to set the mode of {}: {e}", tmp.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_secrets_keep_the_file_value_or_go() {
        let current = json!({"plex": {"token": "T", "url": "u"}, "daemon": {"api_key": "K"}});
        let mut posted = json!({
            "plex": {"token": REDACTED, "url": "new"},
            "daemon": {"api_key": "changed"},
            "tautulli": {"api_key": REDACTED},
        });
        keep_redacted(&mut posted, &current, "");
        assert_eq!(
            posted,
            json!({"plex": {"token": "T", "url": "new"}, "daemon": {"api_key": "changed"}, "tautulli": {}})
        );
    }
}
