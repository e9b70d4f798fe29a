//! One type for every secret of the configuration (the Plex token, the Tautulli API key,
//! next the qBittorrent password): where it may come from, read once, never shown.
//!
//! A secret comes from its environment variable, else its file, else the config file's
//! inline key, in that order. It is resolved once, when the configuration is loaded (and
//! again on SIGHUP), so nothing re-reads a token file on the shim's answer path. A file
//! other users could read or write is refused, as are FIFOs and other non-regular files.
//! `Debug`, `Display` and `Serialize` all print `<redacted>`; [`Secret::expose`] is the one
//! way to the value, so each use is greppable.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What every printed form of a secret shows.
pub const REDACTED: &str = "<redacted>";
/// The largest secret file we read.
const MAX_SECRET_FILE_BYTES: u64 = 64 << 10;

/// Where a secret's value came from; an environment value wins over the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Origin {
    #[default]
    Config,
    Env,
    File,
}

/// A secret value, redacted everywhere but [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret {
    value: String,
    origin: Origin,
    /// Why the secret's file could not be used (said where the secret is needed: a missing
    /// token must not stop the parts of the daemon that do not need it).
    problem: Option<String>,
}

impl Secret {
    /// A secret given inline (tests, the config file).
    pub fn new(value: impl Into<String>) -> Self {
        Secret {
            value: value.into(),
            ..Secret::default()
        }
    }

    /// A secret from an environment variable: wins over a file.
    pub fn from_env(value: &str) -> Self {
        Secret {
            value: value.to_string(),
            origin: Origin::Env,
            problem: None,
        }
    }

    /// Whether the value came from the environment.
    pub fn is_from_env(&self) -> bool {
        self.origin == Origin::Env
    }

    /// The value, for the one place that sends it (a header, a form).
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The secret, `Ok(None)` when none was given, `Err` when its file could not be used.
    pub fn get(&self) -> Result<Option<&Secret>, String> {
        match &self.problem {
            Some(p) => Err(p.clone()),
            None if self.value.is_empty() => Ok(None),
            None => Ok(Some(self)),
        }
    }

    /// Resolves the secret at load: an environment value stays; otherwise a non-empty
    /// `file` (named `file_key` in messages) replaces the inline value, or records why it
    /// could not.
    pub fn load_file(&mut self, file_key: &str, file: &str) {
        self.load_with(file_key, file, GROUP_MAY_READ);
    }

    /// [`load_file`](Self::load_file) for a secret only its owner may read (mode 0600 or
    /// stricter): a password that unlocks more than this service.
    pub fn load_private_file(&mut self, file_key: &str, file: &str) {
        self.load_with(file_key, file, OWNER_ONLY);
    }

    fn load_with(&mut self, file_key: &str, file: &str, mode: FileMode) {
        if self.origin == Origin::Env || file.is_empty() {
            return;
        }
        *self = match read_file_mode(file_key, Path::new(file), mode) {
            Ok(value) => Secret {
                value,
                origin: Origin::File,
                problem: None,
            },
            Err(e) => Secret {
                value: String::new(),
                origin: Origin::File,
                problem: Some(e),
            },
        };
    }
}

/// Reads a secret file: a regular file others may not read or write and the group may not
/// write (mode 0640 or stricter), its first line trimmed, not empty. Errors name the key and the path and say what to do.
pub fn read_file(key: &str, path: &Path) -> Result<String, String> {
    read_file_mode(key, path, GROUP_MAY_READ)
}

/// Which permission bits a secret file may not have, and the advice when it has them.
type FileMode = (u32, &'static str);
const GROUP_MAY_READ: FileMode = (0o027, "chmod 0640 or stricter");
const OWNER_ONLY: FileMode = (0o077, "chmod 0600");

fn read_file_mode(key: &str, path: &Path, (forbidden, advice): FileMode) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let at = format!("{key} {}", path.display());
    // Non-blocking, regular files only: a FIFO must not hang the daemon's start.
    let file = downshiftarr_shim::open::read(path, downshiftarr_shim::open::Kind::Regular)
        .map_err(|e| format!("{at}: {e}"))?;
    let mode = file.metadata().map_err(|e| format!("{at}: {e}"))?.mode();
    if mode & forbidden != 0 {
        return Err(format!("{at}: readable or writable by others ({advice})"));
    }
    let mut text = String::new();
    file.take(MAX_SECRET_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(|e| format!("{at}: {e}"))?;
    let value = text.lines().next().unwrap_or_default().trim().to_string();
    if value.is_empty() {
        return Err(format!("{at} is empty"));
    }
    Ok(value)
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// `<redacted>`; an absent secret prints as `""` so `check-config --print` shows whether one
/// is set without showing it.
impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.value.is_empty() { "" } else { REDACTED })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn every_printed_form_is_redacted() {
        let s = Secret::new("SECRET-TOKEN-42");
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{:?}", Some(&s)), "Some(<redacted>)");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
        assert_eq!(serde_json::to_string(&Secret::default()).unwrap(), "\"\"");
        assert_eq!(s.expose(), "SECRET-TOKEN-42");
        let back: Secret = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(back.expose(), "abc");
    }

    fn file(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
        let p = dir.join(format!("secret-{mode:o}"));
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn a_file_wins_over_the_inline_value_and_the_environment_over_both() {
        let dir = tempfile::tempdir().unwrap();
        let p = file(dir.path(), "from-file\nignored\n", 0o600);
        let p = p.to_str().unwrap();
        let mut s = Secret::new("inline");
        s.load_file("plex.token_file", p);
        assert_eq!(s.get().unwrap().unwrap().expose(), "from-file");
        let mut s = Secret::from_env("from-env");
        s.load_file("plex.token_file", p);
        assert_eq!(s.get().unwrap().unwrap().expose(), "from-env");
        let mut s = Secret::new("inline");
        s.load_file("plex.token_file", "");
        assert_eq!(s.get().unwrap().unwrap().expose(), "inline");
        assert_eq!(Secret::default().get(), Ok(None));
    }

    #[test]
    fn a_file_others_can_read_or_write_is_refused_and_the_error_names_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o604, 0o620, 0o660, 0o644, 0o666] {
            let p = file(dir.path(), "tok\n", mode);
            let e = read_file("tautulli.api_key_file", &p).unwrap_err();
            assert_eq!(
                e,
                format!(
                    "tautulli.api_key_file {}: readable or writable by others (chmod 0640 or stricter)",
                    p.display()
                )
            );
            let mut s = Secret::new("inline");
            s.load_file("tautulli.api_key_file", p.to_str().unwrap());
            assert_eq!(s.get(), Err(e), "a refused file is not \"no secret\"");
        }
        for mode in [0o600, 0o640, 0o400] {
            let p = file(dir.path(), "tok\n", mode);
            assert_eq!(read_file("k", &p), Ok("tok".to_string()), "{mode:o}");
        }
        let p = file(dir.path(), "  \n", 0o600);
        assert!(read_file("k", &p).unwrap_err().ends_with(" is empty"));
        let missing = dir.path().join("missing");
        assert!(read_file("k", &missing).unwrap_err().contains("not found"));
    }

    #[test]
    fn a_fifo_is_refused_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_file("plex.token_file", &fifo).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
