//! `downshiftarr trakt login | status | logout`: which Plex user scrobbles to which Trakt
//! account (issue 12).
//!
//! `login` runs Trakt's device flow (apis.md §3.3): it prints the code and the address, polls
//! at the interval Trakt gives (one more second after each 429), and stores the token pair
//! under the Plex username in the daemon's SQLite store, in one transaction — the daemon may
//! be running; SQLite's locking is what keeps the two apart. Ctrl-C stops the wait and
//! stores nothing. Tokens are never printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use crate::clients::trakt::{DevicePoll, Tokens, Trakt};
use crate::config::{self, Config};
use crate::daemon::lifecycle::{self, Shutdown};
use crate::jobs::scrobble::tokens;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct TraktArgs {
    /// Config file (default: $DOWNSHIFTARR_CONFIG or /etc/downshiftarr/config.json): the
    /// `scrobble` section (the Trakt app) and where the store is (`index.database`).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: TraktCommand,
}

#[derive(Debug, Subcommand)]
pub enum TraktCommand {
    /// Link a Plex user to a Trakt account: prints a code to enter at trakt.tv/activate,
    /// waits for the approval, stores the tokens. Run it as the daemon's user.
    Login {
        /// The Plex username whose plays go to this Trakt account. Default: the only entry
        /// of `scrobble.users`; with none or several, it must be given.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// The Plex users linked to Trakt, with their token's expiry, and the users of
    /// `scrobble.users` that are not linked.
    Status,
    /// Forget a Plex user's Trakt tokens (nothing of theirs scrobbles afterwards).
    Logout {
        #[arg(long, value_name = "NAME")]
        user: String,
    },
}

pub fn run(args: TraktArgs) -> Result<ExitCode> {
    let (path, _) = super::check_config::config_file(args.config.as_deref())?;
    let config = config::load(&path)?;
    match args.command {
        TraktCommand::Login { user } => login(&config, user.as_deref()),
        TraktCommand::Status => status(&config),
        TraktCommand::Logout { user } => logout(&config, &user),
    }
}

/// The store the daemon uses.
pub fn store_path(config: &Config) -> PathBuf {
    config.index.database_path(&config.daemon)
}

pub fn open_store(config: &Config) -> Result<Store> {
    let path = store_path(config);
    Store::open(&path).with_context(|| {
        format!(
            "the store {} (index.database): run this as the daemon's user",
            path.display()
        )
    })
}

/// Whom a login links: `--user`, else the one entry of `scrobble.users`.
fn login_user(config: &Config, flag: Option<&str>) -> Result<String> {
    if let Some(u) = flag {
        let u = u.trim();
        if u.is_empty() {
            bail!("--user is empty: give the Plex username whose plays go to this Trakt account");
        }
        return Ok(u.to_string());
    }
    match config.scrobble.users.as_slice() {
        [one] => Ok(one.trim().to_string()),
        [] => bail!(
            "whose Trakt account is this? give --user NAME (the Plex username whose plays go to it)"
        ),
        many => bail!(
            "scrobble.users has {} users: say which one this Trakt account is for with --user NAME",
            many.len()
        ),
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `2026-12-05T13:00:00Z`.
pub(crate) fn when(unix_s: u64) -> String {
    downshiftarr_shim::record::rfc3339(UNIX_EPOCH + Duration::from_secs(unix_s))
}

/// The longest wait believed from Trakt's `expires_in` and `interval` (a hostile answer
/// cannot keep the command polling for days or hammering Trakt).
const MAX_WAIT: Duration = Duration::from_secs(3600);
const MAX_INTERVAL_S: u64 = 60;

fn login(config: &Config, user: Option<&str>) -> Result<ExitCode> {
    let user = login_user(config, user)?;
    // Ctrl-C (and SIGTERM) end the wait through one flag; nothing is stored then. Blocked
    // before any thread starts (the HTTP client has one), so the flag's thread gets them.
    let signals = lifecycle::block_signals()?;
    let shutdown = Shutdown::default();
    lifecycle::spawn_signal_thread(signals, shutdown.clone())?;
    let trakt = Trakt::new(config.scrobble.trakt_options()?)?;
    // The store first: a store that cannot be written must not cost the user a login.
    let store = open_store(config)?;

    let code = trakt.device_code().context(
        "asking Trakt for a device code (check scrobble.client_id and scrobble.trakt_url)",
    )?;
    let wait = Duration::from_secs(code.expires_in).min(MAX_WAIT);
    println!("To link the Plex user {user:?} to a Trakt account:");
    println!("  1. open {}", code.verification_url);
    println!("  2. enter the code {}", code.user_code);
    println!(
        "Waiting for the approval (the code is valid for {} minutes; Ctrl-C to give up)…",
        wait.as_secs().div_ceil(60)
    );
    let filters = config.scrobble.filters();
    if !filters.users.is_empty() && !filters.users.iter().any(|u| u.eq_ignore_ascii_case(&user)) {
        println!("note: {user:?} is not in scrobble.users: nothing of theirs scrobbles until it is added");
    }
    let deadline = Instant::now() + wait;
    let mut interval = code.interval.clamp(1, MAX_INTERVAL_S);
    loop {
        if shutdown.wait(Duration::from_secs(interval)) {
            bail!("interrupted: nothing was stored; run `downshiftarr trakt login` again to link {user:?}");
        }
        if Instant::now() >= deadline {
            bail!("the code {} expired before it was approved (after {} minutes): run `downshiftarr trakt login` again", code.user_code, wait.as_secs().div_ceil(60));
        }
        match trakt.poll_device_token(&code.device_code) {
            Ok(DevicePoll::Pending) => {}
            Ok(DevicePoll::SlowDown) => interval = (interval + 1).min(MAX_INTERVAL_S),
            Ok(DevicePoll::Authorized(t)) => {
                tokens::save(&store, &user, &t)?;
                println!(
                    "linked the Plex user {user:?} to Trakt (access token valid until {}; the daemon refreshes it)",
                    when(t.expires_at())
                );
                return Ok(ExitCode::SUCCESS);
            }
            Ok(DevicePoll::InvalidCode) => bail!(
                "Trakt does not know this device code (404): run `downshiftarr trakt login` again"
            ),
            Ok(DevicePoll::AlreadyUsed) => bail!(
                "the code {} was already used (409): nothing stored; run `downshiftarr trakt login` again",
                code.user_code
            ),
            Ok(DevicePoll::Expired) => bail!(
                "the code {} expired before it was approved (410): run `downshiftarr trakt login` again and enter it within {} minutes",
                code.user_code,
                wait.as_secs().div_ceil(60)
            ),
            Ok(DevicePoll::Denied) => bail!(
                "the code {} was denied on Trakt (418): nothing stored",
                code.user_code
            ),
            // Trakt down for a moment: the code stays valid, keep polling until it expires.
            Err(e) if e.retryable() => eprintln!("trakt: {e}; polling again"),
            Err(e) => return Err(e).context("polling Trakt for the approval"),
        }
    }
}

/// One line about a user's tokens.
fn describe(t: &Tokens, now: u64) -> String {
    if t.expires_at() <= now {
        format!(
            "access token expired at {} (the daemon refreshes it before the next scrobble)",
            when(t.expires_at())
        )
    } else {
        format!("access token valid until {}", when(t.expires_at()))
    }
}

fn status(config: &Config) -> Result<ExitCode> {
    let path = store_path(config);
    if !config.scrobble.enabled() {
        println!("scrobbling is off (scrobble.client_id is not set)");
    }
    let linked = if path.exists() {
        let store = Store::open_read_only(&path)
            .with_context(|| format!("the store {} (index.database)", path.display()))?;
        let now = unix_now();
        let mut linked = Vec::new();
        for user in tokens::users(&store)? {
            match tokens::load(&store, &user)? {
                Some(t) => println!("{user}: linked, {}", describe(&t, now)),
                None => continue,
            }
            linked.push(user);
        }
        linked
    } else {
        Vec::new()
    };
    if linked.is_empty() {
        println!("no Plex user is linked to Trakt: run `downshiftarr trakt login --user NAME`");
    }
    for u in &config.scrobble.users {
        if !linked.iter().any(|l| l == &tokens::key(u)) {
            println!(
                "{u}: in scrobble.users, not linked: run `downshiftarr trakt login --user {u}`"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn logout(config: &Config, user: &str) -> Result<ExitCode> {
    let store = open_store(config)?;
    if tokens::remove(&store, user)? {
        println!(
            "unlinked {user:?}: the Trakt tokens are deleted here (revoke the app at \
             https://trakt.tv/oauth/authorized_applications to end them at Trakt too)"
        );
        Ok(ExitCode::SUCCESS)
    } else {
        let users = tokens::users(&store)?;
        eprintln!(
            "{user:?} is not linked to Trakt (linked: {})",
            if users.is_empty() {
                "nobody".to_string()
            } else {
                users.join(", ")
            }
        );
        Ok(ExitCode::from(1))
    }
}

/// Paths the store is made of (for the import's ownership fix).
pub(crate) fn store_files(db: &Path) -> Vec<PathBuf> {
    let name = db.as_os_str().to_os_string();
    let mut out = vec![db.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut n = name.clone();
        n.push(suffix);
        out.push(PathBuf::from(n));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_user_is_the_flag_or_the_one_whitelisted_user() {
        let mut c = Config::default();
        assert_eq!(login_user(&c, Some(" alice ")).unwrap(), "alice");
        let e = login_user(&c, None).unwrap_err().to_string();
        assert!(e.contains("--user NAME"), "{e}");
        assert!(login_user(&c, Some("  ")).is_err());
        c.scrobble.users = vec!["Bob".into()];
        assert_eq!(login_user(&c, None).unwrap(), "Bob");
        c.scrobble.users.push("carol".into());
        let e = login_user(&c, None).unwrap_err().to_string();
        assert!(e.contains("scrobble.users has 2 users"), "{e}");
        assert_eq!(login_user(&c, Some("carol")).unwrap(), "carol");
    }

    #[test]
    fn expiry_is_said_plainly() {
        let t = Tokens {
            access_token: "a".into(),
            refresh_token: "r".into(),
            expires_in: 86_400,
            created_at: 1_764_000_000,
            scope: None,
            token_type: None,
        };
        assert_eq!(
            describe(&t, 1_764_000_000),
            "access token valid until 2025-11-25T16:00:00.000Z"
        );
        assert!(describe(&t, 1_765_000_000).starts_with("access token expired at"));
    }
}
