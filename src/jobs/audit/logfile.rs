//! The decision log file: what the shim (and `downshiftarr tautulli`) wrote while the daemon
//! was down, brought into the `decisions` table when the daemon starts and shown by
//! `decisions` until then.
//!
//! The shim appends whole lines with `O_APPEND` (one `write(2)` per record,
//! `shim/src/record.rs`), so the file only ever grows by complete lines. Import is
//! idempotent by a stored read position per file: `(device, inode, hash of the first line)`
//! names a file across a rename, and the byte offset after the last imported line is
//! committed in the same transaction as the records it covers — a crash mid-import imports
//! nothing twice and loses nothing. After the import the file is renamed to `<log>.1`; a
//! shim that opened it just before keeps appending to the renamed file, so `<log>.1` is read
//! again (from its stored offset) right after the rename and at every start.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::store::Store;

/// A line longer than this is no record of ours: skipped, not held in memory.
const MAX_LINE: usize = 1 << 20;

/// What one import did.
#[derive(Debug, Default, PartialEq)]
pub struct Imported {
    pub records: usize,
    /// Lines that were not a JSON object (or too long): skipped.
    pub skipped: usize,
    /// The file was renamed to `<log>.1`.
    pub rotated: bool,
}

/// `<log>.1`.
pub fn rotated_path(log: &Path) -> PathBuf {
    let mut p = log.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

/// Which file this is, across renames: device, inode and the hash of its first line.
#[derive(Clone, Debug, PartialEq)]
struct Identity {
    dev: i64,
    ino: i64,
    head: String,
}

/// An open decision log: a regular file, or nothing (absent, a FIFO, a device — never read:
/// opening a FIFO would block, reading a device would never end).
struct LogFile {
    file: File,
    len: u64,
    id: Identity,
}

impl LogFile {
    fn open(path: &Path) -> Result<Option<LogFile>> {
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("unable to read the decision log {}", path.display()))
            }
        };
        let meta = file
            .metadata()
            .with_context(|| format!("unable to stat the decision log {}", path.display()))?;
        if !meta.is_file() {
            anyhow::bail!(
                "the decision log {} is not a regular file: not read (point shim.decision_log at a file)",
                path.display()
            );
        }
        let mut head = Vec::new();
        BufReader::new((&file).take(MAX_LINE as u64))
            .read_until(b'\n', &mut head)
            .with_context(|| format!("unable to read the decision log {}", path.display()))?;
        if head.last() != Some(&b'\n') {
            return Ok(None); // not one complete line yet: nothing to import
        }
        let hash = Sha256::digest(&head);
        let id = Identity {
            dev: meta.dev() as i64,
            ino: meta.ino() as i64,
            head: hash.iter().take(16).map(|b| format!("{b:02x}")).collect(),
        };
        Ok(Some(LogFile {
            file,
            len: meta.len(),
            id,
        }))
    }

    /// Calls `each` for every complete line from `offset`; returns the offset after the last
    /// complete line and how many lines were too long.
    fn lines_from(
        &mut self,
        offset: u64,
        mut each: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<(u64, usize)> {
        self.file.seek(SeekFrom::Start(offset))?;
        let mut r = BufReader::new(&self.file);
        let mut pos = offset;
        let mut too_long = 0;
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = (&mut r)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line)?;
            if n == 0 {
                break;
            }
            if line.last() != Some(&b'\n') {
                if line.len() <= MAX_LINE {
                    break; // an incomplete last line: left for the next import
                }
                // Too long: skip to the end of this line without holding it.
                let mut skipped = n as u64;
                loop {
                    let buf = r.fill_buf()?;
                    if buf.is_empty() {
                        return Ok((pos, too_long)); // never completed: not consumed
                    }
                    match memchr::memchr(b'\n', buf) {
                        Some(i) => {
                            r.consume(i + 1);
                            skipped += i as u64 + 1;
                            break;
                        }
                        None => {
                            let l = buf.len();
                            r.consume(l);
                            skipped += l as u64;
                        }
                    }
                }
                pos += skipped;
                too_long += 1;
                continue;
            }
            pos += n as u64;
            each(&line[..line.len() - 1])?;
        }
        Ok((pos, too_long))
    }
}

fn stored_offset(db: &Store, id: &Identity) -> Result<u64> {
    db.import_offset(id.dev, id.ino, &id.head)
}

/// Parses one line: a JSON object, or `None`.
fn record(line: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(line)
        .ok()
        .filter(Value::is_object)
}

/// Imports what is new in one file; the records and the new offset in one transaction.
fn import_file(db: &Store, path: &Path, out: &mut Imported) -> Result<Option<Identity>> {
    let Some(mut f) = LogFile::open(path)? else {
        return Ok(None);
    };
    let from = stored_offset(db, &f.id)?.min(f.len);
    let mut skipped = 0;
    let mut records = 0;
    let too_long = db.write(|db| {
        let (to, too_long) = f.lines_from(from, |line| {
            match record(line) {
                Some(rec) => {
                    db.insert_decision(&rec)?;
                    records += 1;
                }
                None if line.iter().all(u8::is_ascii_whitespace) => {}
                None => skipped += 1,
            }
            Ok(())
        })?;
        db.set_import_offset(f.id.dev, f.id.ino, &f.id.head, to)?;
        Ok(too_long)
    })?;
    out.records += records;
    out.skipped += skipped + too_long;
    Ok(Some(f.id))
}

/// Imports `<log>.1` and `<log>`, renames `<log>` to `<log>.1`, and reads the renamed file
/// once more for lines appended during the rename. Safe to run any number of times.
pub fn import(db: &Store, log: &Path) -> Result<Imported> {
    let old = rotated_path(log);
    let mut out = Imported::default();
    import_file(db, &old, &mut out)?;
    let current = import_file(db, log, &mut out)?;
    if current.is_some() {
        match std::fs::rename(log, &old) {
            Ok(()) => out.rotated = true,
            // Not fatal: the stored offset keeps the next import from repeating anything.
            Err(e) => tracing::warn!(
                "unable to rotate the decision log {} to {}: {e} (imported; the file keeps growing until the daemon may rename it)",
                log.display(),
                old.display()
            ),
        }
    }
    let kept: Vec<Identity> = [
        import_file(db, &old, &mut out)?,
        LogFile::open(log).ok().flatten().map(|f| f.id),
    ]
    .into_iter()
    .flatten()
    .collect();
    // Forget files that are gone, so a reused inode starts from its beginning.
    let rows: Vec<Identity> = db
        .import_files()?
        .into_iter()
        .map(|(dev, ino, head)| Identity { dev, ino, head })
        .collect();
    for id in rows.iter().filter(|id| !kept.contains(id)) {
        db.forget_import_file(id.dev, id.ino, &id.head)?;
    }
    Ok(out)
}

/// The records of `<log>.1` and `<log>` not imported yet (for `decisions` while the daemon
/// is down), oldest file first: at most the last `limit` with a `time` at or after `since`
/// (a log that grew for months is streamed, not held). `db` is the audit database, when
/// there is one.
pub fn pending(db: Option<&Store>, log: &Path, since: &str, limit: usize) -> Result<Vec<Value>> {
    let mut recs = std::collections::VecDeque::new();
    for path in [rotated_path(log), log.to_path_buf()] {
        let Some(mut f) = LogFile::open(&path)? else {
            continue;
        };
        let from = match db {
            Some(db) => stored_offset(db, &f.id)?.min(f.len),
            None => 0,
        };
        f.lines_from(from, |line| {
            let Some(r) = record(line) else {
                return Ok(());
            };
            if r.get("time").and_then(Value::as_str).unwrap_or("") >= since {
                if recs.len() == limit {
                    recs.pop_front();
                }
                if limit > 0 {
                    recs.push_back(r);
                }
            }
            Ok(())
        })?;
    }
    Ok(recs.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn db() -> Store {
        Store::in_memory().unwrap()
    }

    fn line(n: u32) -> String {
        format!(
            "{{\"time\":\"2026-11-30T10:00:{n:02}.000Z\",\"pid\":{n},\"session\":\"tx-{n}\",\"job\":\"video_transcode\",\"decision\":\"pass\",\"reason\":\"r{n}\"}}\n"
        )
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn sessions(db: &Store) -> Vec<String> {
        let mut s: Vec<String> = db
            .decisions_since("", 1000)
            .unwrap()
            .iter()
            .map(|d| {
                serde_json::from_str::<Value>(&d.record).unwrap()["session"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        s.sort();
        s
    }

    #[test]
    fn a_repeated_import_adds_nothing_and_new_lines_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("decisions.jsonl");
        append(&log, &(line(1) + &line(2)));
        let db = db();
        let first = import(&db, &log).unwrap();
        assert_eq!(first.records, 2);
        assert!(first.rotated && !log.exists() && rotated_path(&log).exists());
        assert_eq!(import(&db, &log).unwrap().records, 0);
        // A shim that opened the file before the rename appends to `.1`; a new one creates
        // the log again.
        append(&rotated_path(&log), &line(3));
        append(&log, &line(4));
        assert_eq!(import(&db, &log).unwrap().records, 2);
        assert_eq!(import(&db, &log).unwrap().records, 0);
        assert_eq!(sessions(&db), ["tx-1", "tx-2", "tx-3", "tx-4"]);
    }

    #[test]
    fn an_incomplete_or_hostile_line_is_never_imported_half() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("d.jsonl");
        let huge = "x".repeat(MAX_LINE + 10);
        append(
            &log,
            &format!("{}not json\n{huge}\n{}", line(1), &line(2)[..20]),
        );
        let db = db();
        let r = import(&db, &log).unwrap();
        assert_eq!((r.records, r.skipped), (1, 2));
        // The writer finishes its line later (into the renamed file).
        append(&rotated_path(&log), &line(2)[20..]);
        assert_eq!(import(&db, &log).unwrap().records, 1);
        assert_eq!(sessions(&db), ["tx-1", "tx-2"]);
    }

    #[test]
    fn a_failed_import_commits_nothing_so_the_retry_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("d.jsonl");
        append(&log, &(line(1) + &line(2)));
        let broken = db();
        // Every insert fails, as a crash mid-import would stop it.
        broken.exec_for_tests(
            "CREATE TRIGGER broken BEFORE INSERT ON decisions BEGIN SELECT RAISE(ABORT, 'broken'); END",
        );
        assert!(import(&broken, &log).is_err());
        assert!(log.exists(), "not rotated");
        let db = db();
        assert_eq!(import(&db, &log).unwrap().records, 2);
        assert_eq!(
            pending(Some(&db), &log, "", 10).unwrap(),
            Vec::<Value>::new()
        );
    }

    #[test]
    fn pending_shows_only_what_the_daemon_has_not_imported() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("d.jsonl");
        append(&log, &line(1));
        let db = db();
        import(&db, &log).unwrap();
        append(&rotated_path(&log), &line(2));
        append(&log, &line(3));
        let p = pending(Some(&db), &log, "", 10).unwrap();
        let s: Vec<&str> = p.iter().map(|r| r["session"].as_str().unwrap()).collect();
        assert_eq!(s, ["tx-2", "tx-3"]);
        assert_eq!(pending(None, &log, "", 10).unwrap().len(), 3);
        // --since and --limit apply while reading.
        let p = pending(None, &log, "2026-11-30T10:00:02", 1).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0]["session"], "tx-3");
    }

    #[test]
    fn a_fifo_is_not_opened_for_reading() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("fifo");
        let c = std::ffi::CString::new(log.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo on a path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let db = db();
        let e = import(&db, &log).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
