//! Each Plex user's Trakt tokens, in the store (`job_state`, job `trakt_tokens`, keyed by the
//! Plex username, lower-cased). Trakt's refresh token is single-use: a refreshed pair is
//! written here *before* its access token is used (apis.md §3.3), so a crash between the two
//! never leaves us holding a spent refresh token.

use anyhow::{Context, Result};

use crate::clients::trakt::Tokens;
use crate::store::Store;

/// The `job_state` job name of the tokens.
pub const JOB: &str = "trakt_tokens";

/// The key a Plex username is stored under.
pub fn key(user: &str) -> String {
    user.trim().to_lowercase()
}

/// The tokens linked to `user`, if any.
pub fn load(store: &Store, user: &str) -> Result<Option<Tokens>> {
    store
        .state_get(JOB, &key(user))
        .with_context(|| format!("reading the Trakt tokens of {user:?}"))
}

/// Links `tokens` to `user` (replacing any), in one transaction.
pub fn save(store: &Store, user: &str, tokens: &Tokens) -> Result<()> {
    store
        .write(|s| s.state_put(JOB, &key(user), tokens))
        .with_context(|| format!("saving the Trakt tokens of {user:?}"))
}

/// Unlinks `user`; true when there was something to remove.
pub fn remove(store: &Store, user: &str) -> Result<bool> {
    store.write(|s| s.state_delete(JOB, &key(user)))
}

/// Every linked Plex user (their stored keys), sorted.
pub fn users(store: &Store) -> Result<Vec<String>> {
    store.state_keys(JOB)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(n: u64) -> Tokens {
        Tokens {
            access_token: format!("a{n}"),
            refresh_token: format!("r{n}"),
            expires_in: 86_400,
            created_at: n,
            scope: Some("public".into()),
            token_type: Some("bearer".into()),
        }
    }

    #[test]
    fn tokens_are_kept_per_user_case_blind_and_replaced_whole() {
        let s = Store::in_memory().unwrap();
        assert_eq!(load(&s, "Alice").unwrap(), None);
        save(&s, "Alice", &pair(1)).unwrap();
        save(&s, "bob", &pair(2)).unwrap();
        assert_eq!(load(&s, " alice ").unwrap(), Some(pair(1)));
        save(&s, "ALICE", &pair(3)).unwrap();
        assert_eq!(load(&s, "alice").unwrap(), Some(pair(3)));
        assert_eq!(users(&s).unwrap(), vec!["alice", "bob"]);
        assert!(remove(&s, "Bob").unwrap());
        assert!(!remove(&s, "bob").unwrap());
        assert_eq!(users(&s).unwrap(), vec!["alice"]);
    }
}
