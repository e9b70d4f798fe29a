//! The daemon's SQLite file: opening it (pragmas), its migrations, and every query — the
//! library index (`library`), the decision audit (`decisions`) and the jobs' durable state
//! (`state`). Nothing outside this module writes SQL.
//!
//! One [`Store`] per thread (a connection is not shared); WAL with `synchronous=NORMAL`, so
//! readers never wait for the writer and a commit costs no `fsync` (a power cut may lose the
//! last commits, never consistency); foreign keys on (an item's versions, parts and streams
//! go with it); a 5 s busy timeout between the daemon's writers (sync, audit, jobs).
//! [`Store::write`] makes one transaction of several calls: a `kill -9` at any moment leaves
//! the file as it was before or after it.

pub mod dashboard;
pub mod decisions;
pub mod downloads;
pub mod items;
pub mod library;
pub mod lookup;
pub mod outbox;
pub mod state;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

/// Schema migrations, in order; `PRAGMA user_version` is the number applied. Append only:
/// a database at any earlier version is upgraded in place.
const MIGRATIONS: &[&str] = &[
    // 1: the library
    "CREATE TABLE sections (
        key TEXT PRIMARY KEY, type TEXT NOT NULL, title TEXT NOT NULL,
        updated_at INTEGER, locations TEXT NOT NULL DEFAULT '[]');
     CREATE TABLE items (
        rating_key TEXT PRIMARY KEY, section_key TEXT NOT NULL, type TEXT NOT NULL,
        title TEXT NOT NULL, year INTEGER, parent_key TEXT, grandparent_key TEXT,
        season INTEGER, episode INTEGER, guid TEXT, updated_at INTEGER,
        imdb TEXT, tmdb TEXT, tvdb TEXT, plex TEXT, preferred_id TEXT);
     CREATE INDEX items_section ON items(section_key);
     CREATE INDEX items_title ON items(title, year);
     CREATE INDEX items_show ON items(grandparent_key);
     CREATE TABLE media (
        id TEXT PRIMARY KEY, rating_key TEXT NOT NULL REFERENCES items(rating_key) ON DELETE CASCADE,
        width INTEGER, height INTEGER, bit_depth INTEGER, dynamic_range TEXT, dv_profile INTEGER,
        dv_bl_compatible INTEGER, bitrate_kbps INTEGER, container TEXT, video_codec TEXT, edition TEXT);
     CREATE INDEX media_item ON media(rating_key);
     CREATE TABLE parts (
        id TEXT PRIMARY KEY, media_id TEXT NOT NULL REFERENCES media(id) ON DELETE CASCADE,
        file TEXT NOT NULL);
     CREATE INDEX parts_file ON parts(file);
     CREATE INDEX parts_media ON parts(media_id);
     CREATE TABLE streams (
        part_id TEXT NOT NULL REFERENCES parts(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
        kind TEXT NOT NULL, codec TEXT, language TEXT, channels INTEGER,
        is_default INTEGER NOT NULL, forced INTEGER NOT NULL);
     CREATE INDEX streams_part ON streams(part_id);
     CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 2: the decision audit
    "CREATE TABLE decisions (
        id INTEGER PRIMARY KEY, time TEXT NOT NULL, job TEXT, decision TEXT, reason TEXT,
        session TEXT, input TEXT, record TEXT NOT NULL);
     CREATE INDEX decisions_time ON decisions(time);",
    // 3: who decided (shim, guard, tautulli), for whom, and what enforcement did
    "ALTER TABLE decisions ADD COLUMN origin TEXT NOT NULL DEFAULT 'shim';
     ALTER TABLE decisions ADD COLUMN user TEXT;
     ALTER TABLE decisions ADD COLUMN outcome TEXT;
     CREATE INDEX decisions_session ON decisions(session);",
    // 4: `delete_items` finds a season's episodes without scanning every item (issue 9 §1:
    // removing 20,000 items took 17 s); `grandparent_key` has `items_show` already.
    "CREATE INDEX IF NOT EXISTS items_parent ON items(parent_key);",
    // 5: the decision log's read positions (created on demand by the import until now, so
    // it may exist already), and the jobs' durable state: what the throttle found and set,
    // the scrobbles owed, download decisions (`state`).
    "CREATE TABLE IF NOT EXISTS decision_log_import (
        dev INTEGER NOT NULL, ino INTEGER NOT NULL, head TEXT NOT NULL, offset INTEGER NOT NULL,
        PRIMARY KEY (dev, ino, head));
     CREATE TABLE job_state (
        job TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, updated_at INTEGER NOT NULL,
        PRIMARY KEY (job, key));",
    // 6: a digest of what an item's row and versions hold, so a sync rewrites nothing for an
    // item fetched again unchanged (issue 9: the sync's CPU).
    "ALTER TABLE items ADD COLUMN digest INTEGER;",
    // 7: two indexes every item and file paid for on insert that no query seeks with:
    // `discover` compares titles `COLLATE NOCASE`, which a BINARY index on `title` cannot
    // serve (it scanned the whole index), and files are looked up in memory, never by
    // `parts.file`. A long random text key was one of the dearest inserts of a sync.
    "DROP INDEX IF EXISTS items_title;
     DROP INDEX IF EXISTS parts_file;",
    // 8: the scrobble outbox (issue 12): every Trakt call written before it is sent, removed
    // by its final answer into a bounded history (`outbox`).
    "CREATE TABLE scrobble_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, play TEXT NOT NULL,
        rating_key TEXT NOT NULL, action TEXT NOT NULL, call TEXT NOT NULL, title TEXT,
        at_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        not_before_ms INTEGER NOT NULL DEFAULT 0, last_error TEXT);
     CREATE INDEX scrobble_outbox_user ON scrobble_outbox(user, id);
     CREATE INDEX scrobble_outbox_play ON scrobble_outbox(user, play);
     CREATE TABLE scrobble_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, rating_key TEXT NOT NULL,
        play TEXT NOT NULL, action TEXT NOT NULL, progress REAL NOT NULL, title TEXT,
        at_ms INTEGER NOT NULL, delivered_ms INTEGER NOT NULL, outcome TEXT NOT NULL, trakt TEXT);
     CREATE INDEX scrobble_history_delivered ON scrobble_history(delivered_ms);",
    // 9: smart downloads (issue 13): our own watch history, every decision with its reasons
    // and facts, the durable queue of decisions waiting for Radarr, the searches made.
    "CREATE TABLE download_plays (
        id INTEGER PRIMARY KEY, source TEXT NOT NULL, user TEXT NOT NULL, item_id TEXT NOT NULL,
        at_ms INTEGER NOT NULL, kind TEXT NOT NULL, title TEXT NOT NULL, year INTEGER,
        imdb TEXT, tmdb INTEGER, tvdb INTEGER, percent REAL NOT NULL, address TEXT, client TEXT,
        UNIQUE(source, user, item_id, at_ms));
     CREATE INDEX download_plays_tmdb ON download_plays(tmdb, at_ms);
     CREATE INDEX download_plays_imdb ON download_plays(imdb, at_ms);
     CREATE INDEX download_plays_user ON download_plays(user COLLATE NOCASE, at_ms);
     CREATE TABLE download_decisions (
        id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, user TEXT NOT NULL, title TEXT NOT NULL,
        year INTEGER, tmdb INTEGER, tier TEXT NOT NULL, download INTEGER NOT NULL,
        status TEXT NOT NULL, detail TEXT, radarr_id INTEGER, play TEXT NOT NULL,
        verdict TEXT NOT NULL, facts TEXT NOT NULL, updated_ms INTEGER NOT NULL);
     CREATE INDEX download_decisions_at ON download_decisions(at_ms);
     CREATE TABLE download_queue (
        decision_id INTEGER PRIMARY KEY REFERENCES download_decisions(id) ON DELETE CASCADE,
        attempts INTEGER NOT NULL DEFAULT 0, next_at_ms INTEGER NOT NULL, last_error TEXT);
     CREATE INDEX download_queue_due ON download_queue(next_at_ms);
     CREATE TABLE download_searches (
        tmdb INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, radarr_id INTEGER NOT NULL,
        command_id INTEGER);",
];

/// The database: one connection, owned by one thread.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("unable to create {}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("unable to open index {}", path.display()))?;
        let store = Store::setup(conn)
            .with_context(|| format!("unable to prepare the index {}", path.display()))?;
        store
            .migrate()
            .with_context(|| format!("unable to migrate the index {}", path.display()))?;
        Ok(store)
    }

    /// Opens an existing database to read (the CLI beside a running daemon); no migration,
    /// so a database of an older version is read as it is.
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("unable to open {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Store { conn })
    }

    /// An in-memory database with every migration (tests, and the CLI's `downloads explain`
    /// before the daemon has created the file: an empty history).
    pub fn in_memory() -> Result<Store> {
        let store = Store::setup(Connection::open_in_memory()?)?;
        store.migrate()?;
        Ok(store)
    }

    /// The connection, for tests that check the SQL itself (query plans, a reference reader).
    #[cfg(test)]
    pub fn conn_for_tests(&self) -> &Connection {
        &self.conn
    }

    /// Runs SQL on the connection (tests that need a broken or odd database).
    #[cfg(test)]
    pub fn exec_for_tests(&self, sql: &str) {
        if let Err(e) = self.conn.execute_batch(sql) {
            panic!("{sql}: {e}");
        }
    }

    fn setup(conn: Connection) -> Result<Store> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Store { conn })
    }

    fn migrate(&self) -> Result<()> {
        let have = self.version()?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(have) {
            self.write(|s| {
                s.conn
                    .execute_batch(sql)
                    .with_context(|| format!("migration {} failed", i + 1))?;
                s.conn.pragma_update(None, "user_version", i + 1)?;
                Ok(())
            })?;
        }
        Ok(())
    }

    /// The schema version (`PRAGMA user_version`): migrations applied.
    pub fn version(&self) -> Result<usize> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Runs `f` in one transaction: committed when it returns `Ok`, rolled back otherwise.
    /// Not re-entrant (a `write` inside `f` is an error).
    pub fn write<T>(&self, f: impl FnOnce(&Store) -> Result<T>) -> Result<T> {
        // `unchecked`: the transaction borrows the connection shared, so `f` can use `self`;
        // SQLite itself refuses a nested BEGIN. `IMMEDIATE` takes the write lock first (under
        // the busy timeout): a transaction that read first and then wrote could otherwise
        // fail at once when another writer committed in between.
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )?;
        let out = f(self)?;
        tx.commit()?;
        Ok(out)
    }

    /// A value in `meta`.
    pub fn meta_get(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    pub fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO meta(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
        Ok(())
    }

    /// How many pages SQLite may cache for this connection (`PRAGMA cache_size`, in KiB):
    /// a full sync runs with a larger cache and gives it back afterwards.
    pub fn set_cache_kib(&self, kib: u32) -> Result<()> {
        self.conn
            .pragma_update(None, "cache_size", -i64::from(kib))?;
        Ok(())
    }
}

/// SQLite's default cache (2 MiB).
pub const DEFAULT_CACHE_KIB: u32 = 2000;

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema of main before the store module (migrations 1–4, `decision_log_import`
    /// created by the import): its data survives the upgrade.
    #[test]
    fn upgrades_a_version_4_database_in_place() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("index.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..4] {
                c.execute_batch(sql).unwrap();
            }
            c.execute_batch(
                "PRAGMA user_version = 4;
                 CREATE TABLE IF NOT EXISTS decision_log_import (
                    dev INTEGER NOT NULL, ino INTEGER NOT NULL, head TEXT NOT NULL, offset INTEGER NOT NULL,
                    PRIMARY KEY (dev, ino, head));
                 INSERT INTO decision_log_import VALUES (1, 2, 'h', 99);
                 INSERT INTO sections(key, type, title) VALUES ('1', 'movie', 'Movies');
                 INSERT INTO items(rating_key, section_key, type, title, updated_at) VALUES ('55', '1', 'movie', 'Dune', 100);
                 INSERT INTO media(id, rating_key, height) VALUES ('m1', '55', 2160);
                 INSERT INTO parts(id, media_id, file) VALUES ('p1', 'm1', '/m/Dune.mkv');
                 INSERT INTO decisions(time, decision, record, origin, user) VALUES ('2026-01-01T00:00:00Z', 'rewrite', '{}', 'shim', 'ann');
                 INSERT INTO meta VALUES ('section:1:watermark', '100');",
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.version().unwrap(), MIGRATIONS.len());
        assert_eq!(s.counts().unwrap().files, 1);
        assert_eq!(s.counts().unwrap().movies, 1);
        assert_eq!(
            s.meta_get("section:1:watermark").unwrap().as_deref(),
            Some("100")
        );
        let rows = s.decisions_since("", 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].user.as_deref(), Some("ann"));
        assert_eq!(
            s.import_offset(1, 2, "h").unwrap(),
            99,
            "read positions kept"
        );
        s.state_put("throttle", "k", &5u32).unwrap();
        assert_eq!(s.state_get::<u32>("throttle", "k").unwrap(), Some(5));
        drop(s);
        // Opening again changes nothing.
        let s = Store::open(&path).unwrap();
        assert_eq!(s.version().unwrap(), MIGRATIONS.len());
        assert_eq!(s.state_get::<u32>("throttle", "k").unwrap(), Some(5));
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let s = Store::in_memory().unwrap();
        let r: Result<()> = s.write(|s| {
            s.meta_set("a", "1")?;
            anyhow::bail!("no");
        });
        assert!(r.is_err());
        assert_eq!(s.meta_get("a").unwrap(), None);
        s.write(|s| s.meta_set("a", "2")).unwrap();
        assert_eq!(s.meta_get("a").unwrap().as_deref(), Some("2"));
    }
}
