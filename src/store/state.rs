//! The jobs' durable state: one JSON value per `(job, key)` — what the throttle found on
//! qBittorrent and what it set (to restore it), scrobbles owed to Trakt, download decisions.
//! Written before the side effect it describes and cleared by its final answer (STYLE.md
//! "state that matters is written before the side effect"), so a restart or `kill -9`
//! resumes where it stopped.

use anyhow::{Context, Result};
use rusqlite::{params, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Store;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Store {
    /// The value stored for `(job, key)`, if any. A value that no longer reads as `T` (a
    /// format change) is an error naming the key, not "absent".
    pub fn state_get<T: DeserializeOwned>(&self, job: &str, key: &str) -> Result<Option<T>> {
        let raw: Option<String> = self
            .conn
            .prepare_cached("SELECT value FROM job_state WHERE job = ?1 AND key = ?2")?
            .query_row(params![job, key], |r| r.get(0))
            .optional()?;
        raw.map(|v| {
            serde_json::from_str(&v)
                .with_context(|| format!("job state {job}/{key} does not read as expected"))
        })
        .transpose()
    }

    /// Stores (or replaces) the value of `(job, key)`.
    pub fn state_put<T: Serialize + ?Sized>(&self, job: &str, key: &str, value: &T) -> Result<()> {
        let v = serde_json::to_string(value)
            .with_context(|| format!("job state {job}/{key} cannot be written as JSON"))?;
        self.conn
            .prepare_cached(
                "INSERT INTO job_state(job, key, value, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(job, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )?
            .execute(params![job, key, v, now()])?;
        Ok(())
    }

    /// Every key `job` has a value for, sorted.
    pub fn state_keys(&self, job: &str) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT key FROM job_state WHERE job = ?1 ORDER BY key")?;
        let keys = st
            .query_map(params![job], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(keys)
    }

    /// Forgets `(job, key)`; whether there was a value.
    pub fn state_delete(&self, job: &str, key: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM job_state WHERE job = ?1 AND key = ?2")?
            .execute(params![job, key])?
            > 0)
    }

    /// Every key of a job with its value, in key order (a job resuming after a restart).
    pub fn state_all<T: DeserializeOwned>(&self, job: &str) -> Result<Vec<(String, T)>> {
        let mut q = self
            .conn
            .prepare_cached("SELECT key, value FROM job_state WHERE job = ?1 ORDER BY key")?;
        let rows = q
            .query_map([job], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(k, v)| {
                let t = serde_json::from_str(&v)
                    .with_context(|| format!("job state {job}/{k} does not read as expected"))?;
                Ok((k, t))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Limit {
        found_kib: u64,
        set_kib: u64,
    }

    #[test]
    fn round_trip_and_delete() {
        let s = Store::in_memory().unwrap();
        assert_eq!(s.state_get::<Limit>("throttle", "global").unwrap(), None);
        let l = Limit {
            found_kib: 0,
            set_kib: 2048,
        };
        s.state_put("throttle", "global", &l).unwrap();
        assert_eq!(s.state_get("throttle", "global").unwrap(), Some(l));
        s.state_put(
            "throttle",
            "global",
            &Limit {
                found_kib: 1,
                set_kib: 2,
            },
        )
        .unwrap();
        assert_eq!(
            s.state_get::<Limit>("throttle", "global")
                .unwrap()
                .unwrap()
                .set_kib,
            2
        );
        assert_eq!(
            s.state_get::<Limit>("scrobble", "global").unwrap(),
            None,
            "per job"
        );
        s.state_put("scrobble", "b", "two").unwrap();
        s.state_put("scrobble", "a", "one").unwrap();
        assert_eq!(
            s.state_all::<String>("scrobble").unwrap(),
            vec![("a".into(), "one".into()), ("b".into(), "two".into())]
        );
        assert!(s.state_delete("throttle", "global").unwrap());
        assert!(!s.state_delete("throttle", "global").unwrap());
        assert_eq!(s.state_get::<Limit>("throttle", "global").unwrap(), None);
        // A value of another shape is an error that names the key, not "absent".
        s.state_put("throttle", "x", "text").unwrap();
        let e = s.state_get::<Limit>("throttle", "x").unwrap_err();
        assert!(format!("{e:#}").contains("throttle/x"), "{e:#}");
    }

    #[test]
    fn survives_reopen() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.sqlite");
        Store::open(&p)
            .unwrap()
            .state_put("downloads", "tt1", &vec![1, 2, 3])
            .unwrap();
        let s = Store::open(&p).unwrap();
        assert_eq!(
            s.state_get::<Vec<u8>>("downloads", "tt1").unwrap(),
            Some(vec![1, 2, 3])
        );
    }

    /// Two connections writing at once wait for each other (busy timeout), none fails.
    #[test]
    fn concurrent_writers_all_land() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.sqlite");
        Store::open(&p).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let s = Store::open(&p).unwrap();
                    for i in 0..50 {
                        // A transaction holding the write lock a while, as a sync batch does.
                        s.write(|s| {
                            s.state_put("job", &format!("{t}-{i}"), &i)?;
                            s.state_put("job", &format!("{t}-{i}-b"), &i)
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = Store::open(&p).unwrap();
        assert_eq!(s.state_all::<u32>("job").unwrap().len(), 400);
    }
}
