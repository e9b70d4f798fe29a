//! Logs: journald when systemd started us (it sets `JOURNAL_STREAM`), stderr otherwise
//! (containers, a terminal). The level can change at run time (`debug` on SIGHUP).
//! `downshiftarr tautulli` logs as the original script did instead ([`ScriptLog`]).

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Layer, Registry};

/// Changes the log level after start-up.
pub struct LevelHandle(reload::Handle<LevelFilter, Registry>);

impl LevelHandle {
    pub fn set_debug(&self, debug: bool) {
        let level = if debug {
            LevelFilter::DEBUG
        } else {
            LevelFilter::INFO
        };
        if self.0.reload(level).is_ok() {
            tracing::info!("log level {level}");
        }
    }
}

pub fn init(debug: bool) -> Result<LevelHandle> {
    let level = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let (filter, handle) = reload::Layer::new(level);
    let journald = std::env::var_os("JOURNAL_STREAM")
        .is_some()
        .then(tracing_journald::layer)
        .and_then(Result::ok);
    // The ring behind `/api/logs` sees what the level lets through, redacted.
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(super::logring::RingLayer);
    match journald {
        Some(j) => registry
            .with(j.with_syslog_identifier("downshiftarr".into()).boxed())
            .try_init()?,
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_target(false)
                    .boxed(),
            )
            .try_init()?,
    }
    Ok(LevelHandle(handle))
}

/// The `downshiftarr tautulli` log, set by the original script's `Downshiftarr.env` keys so
/// an owner who swaps the script keeps the log where it was (peer-downshiftarr.md §1.3):
/// `LOG_FILE` (default `downshiftarr.log` beside the `.env` file) rotated at `LOG_MAX_BYTES`
/// (2 000 000) keeping `LOG_BACKUP_COUNT` (5) files, `LOG_TO_STDERR` (1: what Tautulli shows
/// in its script log), `LOG_LEVEL` (`INFO`; `DEBUG` when `VERBOSE=1`). Every line passes
/// through [`Redacting`]: the tokens and API keys never reach a file or stderr.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptLog {
    pub level: LevelFilter,
    pub to_stderr: bool,
    pub file: Option<std::path::PathBuf>,
    pub max_bytes: u64,
    pub backups: u32,
    /// Values that are never written (Plex tokens, the Tautulli API key).
    pub secrets: Vec<String>,
}

/// A `.env` level name (Python's `logging` names).
pub fn parse_level(v: &str) -> Option<LevelFilter> {
    Some(match v.trim().to_ascii_uppercase().as_str() {
        "DEBUG" | "TRACE" => LevelFilter::DEBUG,
        "INFO" => LevelFilter::INFO,
        "WARNING" | "WARN" => LevelFilter::WARN,
        "ERROR" | "CRITICAL" | "FATAL" => LevelFilter::ERROR,
        _ => return None,
    })
}

/// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`.
pub fn parse_flag(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

impl ScriptLog {
    /// The settings from the environment (the `.env` file merged under the process
    /// environment); `dir` is where the `.env` file was found (the original script's
    /// directory). Bad values keep the default and are named in the returned errors.
    pub fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        dir: Option<&Path>,
    ) -> (ScriptLog, Vec<String>) {
        let mut errors = Vec::new();
        let mut flag = |k: &str, default: bool| match env(k) {
            None => default,
            Some(v) => parse_flag(&v).unwrap_or_else(|| {
                errors.push(format!(
                    "{k}={v:?}: expected 1 or 0; using {}",
                    default as u8
                ));
                default
            }),
        };
        let verbose = flag("VERBOSE", false);
        let to_stderr = flag("LOG_TO_STDERR", true);
        let mut level = if verbose {
            LevelFilter::DEBUG
        } else {
            LevelFilter::INFO
        };
        if let Some(v) = env("LOG_LEVEL") {
            match parse_level(&v) {
                Some(l) => level = l,
                None => errors.push(format!(
                    "LOG_LEVEL={v:?}: expected DEBUG, INFO, WARNING or ERROR; using {level}"
                )),
            }
        }
        let mut num = |k: &str, default: u64| match env(k) {
            None => default,
            Some(v) => v.trim().parse().unwrap_or_else(|_| {
                errors.push(format!(
                    "{k}={v:?}: expected a whole number; using {default}"
                ));
                default
            }),
        };
        let max_bytes = num("LOG_MAX_BYTES", 2_000_000);
        let backups = num("LOG_BACKUP_COUNT", 5).min(1000) as u32;
        let file = env("LOG_FILE")
            .map(std::path::PathBuf::from)
            .or_else(|| dir.map(|d| d.join("downshiftarr.log")));
        let secrets = ["PLEX_TOKEN", "PLEX_USER_TOKEN", "TAUTULLI_APIKEY"]
            .iter()
            .filter_map(|k| env(k))
            .filter(|v| !v.trim().is_empty())
            .collect();
        (
            ScriptLog {
                level,
                to_stderr,
                file,
                max_bytes,
                backups,
                secrets,
            },
            errors,
        )
    }
}

/// A writer that redacts `X-Plex-Token=…` and the given secrets from each write (the fmt
/// layer writes one whole event per call).
pub struct Redacting<W> {
    inner: W,
    secrets: Vec<String>,
}

impl<W> Redacting<W> {
    pub fn new(inner: W, secrets: Vec<String>) -> Redacting<W> {
        Redacting { inner, secrets }
    }
}

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut text = String::from_utf8_lossy(buf).into_owned();
        text = downshiftarr_shim::record::redact(&text, None);
        for s in &self.secrets {
            if !s.is_empty() {
                text = text.replace(s.as_str(), "<redacted>");
            }
        }
        self.inner.write_all(text.as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A log file rotated like Python's `RotatingFileHandler`: before a write that would take
/// it to `max_bytes`, `<file>.i` becomes `<file>.i+1` (the oldest beyond `backups` is
/// removed), the file becomes `<file>.1`, and a new file starts. Either number 0: never
/// rotated. Write errors are reported once on stderr and otherwise ignored: logging never
/// stops an enforcement.
pub struct RotatingFile {
    path: std::path::PathBuf,
    max_bytes: u64,
    backups: u32,
    file: Option<std::fs::File>,
    size: u64,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, backups: u32) -> std::io::Result<RotatingFile> {
        let mut r = RotatingFile {
            path: path.to_path_buf(),
            max_bytes,
            backups,
            file: None,
            size: 0,
        };
        r.reopen()?;
        Ok(r)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&self.path)?;
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        self.size = meta.len();
        self.file = Some(f);
        Ok(())
    }

    fn numbered(&self, i: u32) -> std::path::PathBuf {
        let mut p = self.path.as_os_str().to_owned();
        p.push(format!(".{i}"));
        p.into()
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let _ = std::fs::remove_file(self.numbered(self.backups));
        for i in (1..self.backups).rev() {
            let from = self.numbered(i);
            if from.exists() {
                std::fs::rename(&from, self.numbered(i + 1))?;
            }
        }
        std::fs::rename(&self.path, self.numbered(1))?;
        self.reopen()
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let rotating = self.max_bytes > 0 && self.backups > 0;
        if rotating && self.size > 0 && self.size + buf.len() as u64 >= self.max_bytes {
            self.rotate()?;
        }
        let f = match self.file.as_mut() {
            Some(f) => f,
            None => return Ok(buf.len()),
        };
        f.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts the `downshiftarr tautulli` log. A log file that cannot be opened is reported on
/// stderr (naming it) and the command goes on without it.
pub fn init_script(log: &ScriptLog) -> Result<()> {
    let file = match &log.file {
        Some(p) => match RotatingFile::open(p, log.max_bytes, log.backups) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!(
                    "downshiftarr tautulli: unable to open the log file {} (LOG_FILE): {e}; logging to stderr only",
                    p.display()
                );
                None
            }
        },
        None => None,
    };
    let file_layer = file.map(|f| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::sync::Mutex::new(Redacting::new(
                f,
                log.secrets.clone(),
            )))
            .with_ansi(false)
            .with_target(false)
    });
    let stderr_layer = log.to_stderr.then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::sync::Mutex::new(Redacting::new(
                std::io::stderr(),
                log.secrets.clone(),
            )))
            .with_ansi(false)
            .with_target(false)
    });
    tracing_subscriber::registry()
        .with(log.level)
        .with(file_layer)
        .with(stderr_layer)
        .try_init()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_rotates_at_max_bytes_keeping_backup_count_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.log");
        let mut f = RotatingFile::open(&p, 100, 2).unwrap();
        for i in 0..20 {
            writeln!(f, "line {i:02} {}", "x".repeat(30)).unwrap();
        }
        let names: Vec<String> = {
            let mut n: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names, ["d.log", "d.log.1", "d.log.2"]);
        for n in &names {
            let len = std::fs::metadata(dir.path().join(n)).unwrap().len();
            assert!(len < 100, "{n}: {len} bytes");
        }
        let newest = std::fs::read_to_string(&p).unwrap();
        assert!(newest.contains("line 19"), "{newest}");
        let older = std::fs::read_to_string(dir.path().join("d.log.1")).unwrap();
        assert!(
            older.contains("line 17") || older.contains("line 16"),
            "{older}"
        );
    }

    #[test]
    fn secrets_and_plex_tokens_are_redacted() {
        let mut out = Redacting::new(Vec::new(), vec!["s3cr3t-token-value".into()]);
        out.write_all(b"PLEX_TOKEN=s3cr3t-token-value url=http://x/?X-Plex-Token=abc&y=1\n")
            .unwrap();
        let text = String::from_utf8(out.inner).unwrap();
        assert!(!text.contains("s3cr3t") && !text.contains("abc&"), "{text}");
        assert!(text.contains("PLEX_TOKEN=<redacted>"), "{text}");
    }

    #[test]
    fn env_keys_set_the_log() {
        let env = |k: &str| match k {
            "VERBOSE" => Some("1".to_string()),
            "LOG_TO_STDERR" => Some("0".to_string()),
            "LOG_MAX_BYTES" => Some("lots".to_string()),
            _ => None,
        };
        let (l, errors) = ScriptLog::from_env(&env, Some(Path::new("/opt/scripts")));
        assert_eq!(l.level, LevelFilter::DEBUG);
        assert!(!l.to_stderr);
        assert_eq!(l.max_bytes, 2_000_000);
        assert_eq!(l.backups, 5);
        assert_eq!(
            l.file.as_deref(),
            Some(Path::new("/opt/scripts/downshiftarr.log"))
        );
        assert!(errors[0].contains("LOG_MAX_BYTES"), "{errors:?}");
        let env = |k: &str| match k {
            "VERBOSE" => Some("1".to_string()),
            "LOG_LEVEL" => Some("warning".to_string()),
            _ => None,
        };
        assert_eq!(ScriptLog::from_env(&env, None).0.level, LevelFilter::WARN);
    }
}
