//! `downshiftarr scrobble import <crosswatch config.json>`: moving from CrossWatch without
//! logging in again (issue 12).
//!
//! CrossWatch keeps everything in one `config.json` (its Config.md): the Trakt app at
//! `trakt.client_id` / `trakt.client_secret`, the Trakt tokens at `auth.trakt.{access_token,
//! refresh_token, expires_at, scope, token_type}` (older files: beside the app, under
//! `trakt`), the watcher's filters at `scrobble.watch.filters.{username_whitelist,
//! server_uuid}` (the uuid also at `plex.server_uuid`), and the account's Plex username at
//! `plex.username`.
//!
//! [`plan`] is pure (two JSON documents in, the new config and the tokens out) and names the
//! CrossWatch key that is missing. [`run`] applies it: the client secret into a 0600 file,
//! the tokens into the store (one transaction), then our config written atomically (temp
//! file + rename, same mode and owner, every other key kept) — the config last, so a failure
//! leaves it as it was. `--dry-run` prints the plan only. Secrets are never printed.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use super::scrobble::ImportArgs;
use super::trakt::{store_files, unix_now, when};
use crate::clients::trakt::Tokens;
use crate::config::{self, secret::REDACTED};
use crate::jobs::scrobble::tokens;
use crate::store::Store;

/// What an import changes.
#[derive(Debug)]
pub struct Plan {
    /// Our whole config, updated.
    pub config: Value,
    /// The app's client secret and the file it goes to.
    pub secret: String,
    pub secret_file: PathBuf,
    /// The Plex user the tokens are linked to.
    pub user: String,
    pub tokens: Tokens,
    /// One line per change, secrets redacted.
    pub changes: Vec<String>,
    /// Things worth knowing (ignored whitelist entries, a guessed expiry…).
    pub notes: Vec<String>,
}

/// A non-empty string (or a number, as text) at a JSON pointer.
fn text(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A whole number of seconds at a JSON pointer (CrossWatch writes epoch seconds; a float or
/// a numeric string is accepted).
fn seconds(v: &Value, pointer: &str) -> Option<u64> {
    match v.pointer(pointer)? {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn short(id: &str) -> String {
    let head: String = id.chars().take(6).collect();
    format!("{head}…")
}

/// The import, decided: `cw` is CrossWatch's config, `ours` our config file as it is (`{}`
/// when absent), `default_secret_file` where the client secret goes when our config names no
/// `scrobble.client_secret_file`. Errors name the CrossWatch key and what to do.
pub fn plan(
    cw: &Value,
    ours: &Value,
    user_flag: Option<&str>,
    default_secret_file: &Path,
    now: u64,
) -> Result<Plan, String> {
    if !cw.is_object() {
        return Err("not a CrossWatch config: the top level must be an object".into());
    }
    let client_id = text(cw, "/trakt/client_id").ok_or(
        "trakt.client_id is missing: set up the Trakt app in CrossWatch first, or create one at \
         https://trakt.tv/oauth/applications and set scrobble.client_id yourself",
    )?;
    let secret = text(cw, "/trakt/client_secret")
        .ok_or("trakt.client_secret is missing: CrossWatch's Trakt app is incomplete")?;
    // The tokens: auth.trakt (current CrossWatch), else beside the app (older files).
    let base = if text(cw, "/auth/trakt/access_token").is_some() {
        "/auth/trakt"
    } else if text(cw, "/trakt/access_token").is_some() {
        "/trakt"
    } else {
        return Err(
            "auth.trakt.access_token is missing: CrossWatch is not logged in to Trakt; log in \
             there first, or link the account here with `downshiftarr trakt login`"
                .into(),
        );
    };
    let key = |k: &str| format!("{}.{k}", base.trim_start_matches('/').replace('/', "."));
    let access_token = text(cw, &format!("{base}/access_token")).unwrap_or_default();
    let refresh_token = text(cw, &format!("{base}/refresh_token")).ok_or_else(|| {
        format!(
            "{} is missing: Trakt tokens last 24 hours and cannot be renewed without it; log in \
             to Trakt again in CrossWatch, or link here with `downshiftarr trakt login`",
            key("refresh_token")
        )
    })?;
    let mut notes = Vec::new();
    let created = seconds(cw, &format!("{base}/created_at"));
    let expires_in = seconds(cw, &format!("{base}/expires_in"));
    let expires_at = seconds(cw, &format!("{base}/expires_at")).filter(|&t| t > 0);
    let (created_at, expires_in) = match (created, expires_in, expires_at) {
        (Some(c), Some(e), _) => (c, e),
        (c, _, Some(at)) => {
            let c = c.unwrap_or(now).min(at);
            (c, at - c)
        }
        _ => {
            notes.push(format!(
                "{} says nothing of the token's expiry: the daemon refreshes it before its first scrobble",
                key("expires_at")
            ));
            (0, 0)
        }
    };
    let tokens = Tokens {
        access_token,
        refresh_token,
        expires_in,
        created_at,
        scope: text(cw, &format!("{base}/scope")),
        token_type: text(cw, &format!("{base}/token_type")),
    };
    let user = match (
        user_flag.map(str::trim).filter(|u| !u.is_empty()),
        text(cw, "/plex/username"),
    ) {
        (Some(flag), Some(cw_user)) if !flag.eq_ignore_ascii_case(&cw_user) => {
            notes.push(format!(
                "the tokens go to {flag:?} (--user), not CrossWatch's plex.username {cw_user:?}"
            ));
            flag.to_string()
        }
        (Some(flag), _) => flag.to_string(),
        (None, Some(cw_user)) => cw_user,
        (None, None) => {
            return Err(
                "plex.username is missing: say whose Trakt account this is with --user NAME \
                 (the Plex username whose plays go to it)"
                    .into(),
            )
        }
    };

    // The filters.
    let mut whitelist = Vec::new();
    match cw.pointer("/scrobble/watch/filters/username_whitelist") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.trim().is_empty() => {}
        Some(Value::String(s)) => whitelist.push(s.trim().to_string()),
        Some(Value::Array(a)) => {
            for v in a {
                match v.as_str().map(str::trim) {
                    Some(s) if s.to_lowercase().starts_with("id:") || s.to_lowercase().starts_with("uuid:") => {
                        notes.push(format!(
                            "scrobble.watch.filters.username_whitelist: {s:?} ignored (we match Plex usernames; add the user's name to scrobble.users)"
                        ))
                    }
                    Some(s) if !s.is_empty() => whitelist.push(s.to_string()),
                    _ => {}
                }
            }
        }
        Some(_) => {
            return Err(
                "scrobble.watch.filters.username_whitelist: expected a list of usernames".into(),
            )
        }
    }
    let server_uuid =
        text(cw, "/scrobble/watch/filters/server_uuid").or_else(|| text(cw, "/plex/server_uuid"));

    // Our config, every other key kept.
    let mut config = if ours.is_null() {
        json!({})
    } else {
        ours.clone()
    };
    let root = config
        .as_object_mut()
        .ok_or("our config: the top level must be an object")?;
    let section = root
        .entry("scrobble")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or("our config: scrobble must be an object")?;
    let mut changes = Vec::new();
    let old = |s: &Map<String, Value>, k: &str| s.get(k).cloned().unwrap_or(Value::Null);

    if old(section, "client_id").as_str() != Some(client_id.as_str()) {
        changes.push(format!("scrobble.client_id: {}", short(&client_id)));
        section.insert("client_id".into(), json!(client_id));
    }
    let secret_file = match old(section, "client_secret_file").as_str() {
        Some(f) if !f.trim().is_empty() => PathBuf::from(f.trim()),
        _ => default_secret_file.to_path_buf(),
    };
    section.insert("client_secret_file".into(), json!(secret_file));
    changes.push(format!(
        "scrobble.client_secret_file: {} (the client secret, {REDACTED}, written there, mode 0600)",
        secret_file.display()
    ));
    if section.remove("client_secret").is_some() {
        changes.push("scrobble.client_secret: removed (the file replaces it)".into());
    }
    if !whitelist.is_empty() {
        let mut users: Vec<String> = section
            .get("users")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let before = users.clone();
        for w in &whitelist {
            if !users.iter().any(|u| u.eq_ignore_ascii_case(w)) {
                users.push(w.clone());
            }
        }
        if users != before {
            changes.push(format!("scrobble.users: {users:?} (was {before:?})"));
            section.insert("users".into(), json!(users));
        }
        if !users.iter().any(|u| u.eq_ignore_ascii_case(&user)) {
            notes.push(format!(
                "{user:?} is not in scrobble.users: their plays do not scrobble until it is added"
            ));
        }
    }
    if let Some(uuid) = server_uuid {
        let was = old(section, "server_uuid");
        if was.as_str() != Some(uuid.as_str()) {
            let was = if was.is_null() {
                "unset".to_string()
            } else {
                was.to_string()
            };
            changes.push(format!("scrobble.server_uuid: {uuid:?} (was {was})"));
            section.insert("server_uuid".into(), json!(uuid));
        }
    }
    changes.push(format!(
        "Trakt tokens ({REDACTED}) linked to the Plex user {user:?}{}",
        if tokens.expires_in == 0 {
            String::new()
        } else {
            format!(", access token valid until {}", when(tokens.expires_at()))
        }
    ));
    notes.push(
        "stop CrossWatch's scrobbler: Trakt's refresh token is single-use, and two programs \
         refreshing one pair lock each other out"
            .into(),
    );
    Ok(Plan {
        config,
        secret,
        secret_file,
        user,
        tokens,
        changes,
        notes,
    })
}

/// Reads a JSON file (`{}`-like `Null` when absent and `absent_ok`).
fn read_json(path: &Path, what: &str, absent_ok: bool) -> Result<Value> {
    use downshiftarr_shim::open::{self, OpenError};
    use std::io::Read;
    match open::read(path, open::Kind::Regular) {
        Ok(mut f) => {
            let mut t = String::new();
            f.read_to_string(&mut t)
                .with_context(|| format!("unable to read {what} {}", path.display()))?;
            serde_json::from_str(&t)
                .with_context(|| format!("{what} {}: invalid JSON", path.display()))
        }
        Err(OpenError::NotFound) if absent_ok => Ok(Value::Null),
        Err(e) => bail!("unable to read {what} {}: {e}", path.display()),
    }
}

/// Writes `bytes` to `path` atomically: a temp file in the same directory with `mode` (and,
/// as root, the owner `owner`), synced, renamed over.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32, owner: Option<(u32, u32)>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("unable to create {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode; a kept mode is the one asked for.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("unable to write {}", path.display()))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn run(args: ImportArgs) -> Result<ExitCode> {
    let path = config::path(args.config.as_deref());
    let cw = read_json(&args.crosswatch, "CrossWatch config", false)?;
    let ours = read_json(&path, "config", true)?;
    // Where the daemon's state is, as our config says now (the import does not move it).
    let current = config::parse(&if ours.is_null() {
        "{}".into()
    } else {
        ours.to_string()
    })
    .map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))?;
    let state_dir = PathBuf::from(&current.daemon.state_dir);
    let p = plan(
        &cw,
        &ours,
        args.user.as_deref(),
        &state_dir.join("trakt-client-secret"),
        unix_now(),
    )
    .map_err(|e| anyhow::anyhow!("{}: {e}", args.crosswatch.display()))?;
    // The result must load as the daemon will load it.
    let text = serde_json::to_string_pretty(&p.config)? + "\n";
    let new = config::parse(&text).map_err(|e| anyhow::anyhow!("the imported config: {e}"))?;
    new.validate().context("the imported config")?;
    let db = new.index.database_path(&new.daemon);

    let verb = if args.dry_run { "would set" } else { "set" };
    println!(
        "{} {}:",
        if args.dry_run {
            "would update"
        } else {
            "updating"
        },
        path.display()
    );
    for c in &p.changes {
        println!("  {verb} {c}");
    }
    for n in &p.notes {
        println!("note: {n}");
    }
    if args.dry_run {
        println!(
            "dry run: nothing written (the tokens would go to {})",
            db.display()
        );
        return Ok(ExitCode::SUCCESS);
    }

    // As root, what the daemon must read or write belongs to the daemon's user: the owner of
    // its state directory.
    let daemon_owner = std::fs::metadata(&state_dir)
        .ok()
        .filter(|_| is_root())
        .map(|m| (m.uid(), m.gid()));
    write_atomic(
        &p.secret_file,
        format!("{}\n", p.secret).as_bytes(),
        0o600,
        daemon_owner,
    )
    .context("scrobble.client_secret_file")?;
    let store = Store::open(&db).with_context(|| format!("the store {}", db.display()))?;
    tokens::save(&store, &p.user, &p.tokens)?;
    drop(store);
    if let Some((uid, gid)) = daemon_owner {
        for f in store_files(&db).iter().filter(|f| f.exists()) {
            std::os::unix::fs::chown(f, Some(uid), Some(gid))
                .with_context(|| format!("unable to give {} to the daemon's user", f.display()))?;
        }
    }
    // A config that is a symlink (into a mounted directory, say) stays one: its target is
    // what is rewritten.
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    let (mode, owner) = match std::fs::metadata(&path) {
        Ok(m) => (
            m.mode() & 0o7777,
            Some((m.uid(), m.gid())).filter(|_| is_root()),
        ),
        Err(_) => (0o640, None),
    };
    write_atomic(&path, text.as_bytes(), mode, owner)?;
    println!(
        "imported: the Plex user {:?} scrobbles to the Trakt account CrossWatch used; restart the daemon (or send it SIGHUP) to start",
        p.user
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cw() -> Value {
        json!({
            "plex": {"username": "Alice", "server_uuid": "plex-uuid"},
            "trakt": {"client_id": "cw-client-id-123", "client_secret": "cw-secret-456"},
            "auth": {"trakt": {"access_token": "acc-TOKEN-1", "refresh_token": "ref-TOKEN-2", "scope": "public",
                               "token_type": "Bearer", "expires_at": 1_764_086_400u64}},
            "scrobble": {"watch": {"filters": {"username_whitelist": ["Alice", "id:7", "bob"],
                                               "server_uuid": "watch-uuid"}}}
        })
    }

    fn secret_path() -> PathBuf {
        PathBuf::from("/var/lib/downshiftarr/trakt-client-secret")
    }

    #[test]
    fn a_crosswatch_file_becomes_our_section_and_a_token_pair() {
        let ours = json!({"plex": {"url": "http://p:32400"}, "scrobble": {"users": ["carol"], "client_secret": "old"}});
        let p = plan(&cw(), &ours, None, &secret_path(), 1_764_000_000).unwrap();
        assert_eq!(p.user, "Alice");
        assert_eq!(p.secret, "cw-secret-456");
        assert_eq!(p.config["plex"]["url"], "http://p:32400", "other keys kept");
        let s = &p.config["scrobble"];
        assert_eq!(s["client_id"], "cw-client-id-123");
        assert_eq!(s["client_secret_file"], json!(secret_path()));
        assert_eq!(s.get("client_secret"), None);
        assert_eq!(s["users"], json!(["carol", "Alice", "bob"]));
        assert_eq!(s["server_uuid"], "watch-uuid");
        assert_eq!(
            (p.tokens.created_at, p.tokens.expires_in),
            (1_764_000_000, 86_400)
        );
        assert_eq!(p.tokens.token_type.as_deref(), Some("Bearer"));
        let said = format!("{}\n{}", p.changes.join("\n"), p.notes.join("\n"));
        assert!(said.contains("\"id:7\" ignored"), "{said}");
        for secret in ["cw-secret-456", "TOKEN", "cw-client-id-123"] {
            assert!(!said.contains(secret), "{secret} in {said}");
        }
    }

    #[test]
    fn older_shapes_and_missing_pieces() {
        let mut v = cw();
        v["trakt"]["access_token"] = json!("acc2");
        v["trakt"]["refresh_token"] = json!("ref2");
        v["trakt"]["created_at"] = json!(100);
        v["trakt"]["expires_in"] = json!(7_776_000);
        v["auth"] = json!({});
        v["scrobble"] = json!(null);
        let p = plan(&v, &Value::Null, Some("dave"), &secret_path(), 5).unwrap();
        assert_eq!(p.tokens.access_token, "acc2");
        assert_eq!((p.tokens.created_at, p.tokens.expires_in), (100, 7_776_000));
        assert_eq!(p.user, "dave");
        assert_eq!(p.config["scrobble"]["server_uuid"], "plex-uuid");
        assert!(p.notes.iter().any(|n| n.contains("(--user)")));
        // No expiry at all: refreshed at first use.
        let mut v = cw();
        v["auth"]["trakt"]["expires_at"] = json!(0);
        let p = plan(&v, &Value::Null, None, &secret_path(), 5).unwrap();
        assert_eq!(p.tokens.expires_at(), 0);
        assert!(p.tokens.needs_refresh(5));

        for (ptr, key) in [
            (
                "/auth/trakt/access_token",
                "auth.trakt.access_token is missing",
            ),
            (
                "/auth/trakt/refresh_token",
                "auth.trakt.refresh_token is missing",
            ),
            ("/trakt/client_id", "trakt.client_id is missing"),
            ("/trakt/client_secret", "trakt.client_secret is missing"),
            ("/plex/username", "plex.username is missing"),
        ] {
            let mut v = cw();
            *v.pointer_mut(ptr).unwrap() = json!("");
            let e = plan(&v, &Value::Null, None, &secret_path(), 5).unwrap_err();
            assert!(e.starts_with(key), "{ptr}: {e}");
        }
        let e = plan(&json!([1]), &Value::Null, None, &secret_path(), 5).unwrap_err();
        assert!(e.contains("top level"), "{e}");
        let e = plan(&cw(), &json!({"scrobble": 3}), None, &secret_path(), 5).unwrap_err();
        assert!(e.contains("scrobble must be an object"), "{e}");
    }

    #[test]
    fn an_existing_secret_file_is_reused() {
        let ours = json!({"scrobble": {"client_secret_file": "/etc/downshiftarr/trakt.secret"}});
        let p = plan(&cw(), &ours, None, &secret_path(), 5).unwrap();
        assert_eq!(
            p.secret_file,
            PathBuf::from("/etc/downshiftarr/trakt.secret")
        );
    }
}
