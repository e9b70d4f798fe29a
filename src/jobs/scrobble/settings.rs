//! The `scrobble` section as the job reads it: the state machine's [`Rules`] and the
//! [`Filters`] from `config::scrobble::ScrobbleSettings`. Here rather than in the config
//! module because the config layer does not import the jobs' types (tests/layers.rs).

use super::{Filters, Rules};
use crate::config::scrobble::ScrobbleSettings;

impl ScrobbleSettings {
    /// The state machine's rules.
    pub fn rules(&self) -> Rules {
        Rules {
            watched_threshold: self.watched_threshold,
            pause_debounce_ms: self.pause_debounce_s.saturating_mul(1000),
            pause_tolerance: self.pause_tolerance_pct,
            stop_debounce_ms: self.stop_debounce_s.saturating_mul(1000),
            forced_stop_after_ms: self.forced_stop_after_s.saturating_mul(1000),
        }
    }

    /// The filters applied before anything reaches Trakt (usernames and sections trimmed,
    /// an empty server uuid is none).
    pub fn filters(&self) -> Filters {
        let trimmed = |v: &[String]| v.iter().map(|s| s.trim().to_string()).collect();
        let uuid = self.server_uuid.trim();
        Filters {
            users: trimmed(&self.users),
            server_uuid: (!uuid.is_empty()).then(|| uuid.to_string()),
            sections: trimmed(&self.sections),
            include_extras: self.include_extras,
            min_duration_ms: i64::try_from(self.min_duration_s.saturating_mul(1000))
                .unwrap_or(i64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sections_defaults_are_the_machines() {
        let s = ScrobbleSettings::default();
        assert_eq!(s.rules(), Rules::default());
        assert_eq!(s.filters(), Filters::default());
    }

    #[test]
    fn keys_map_onto_rules_and_filters() {
        let s: ScrobbleSettings = serde_json::from_str(
            r#"{"users":[" Alice ","bob"],"server_uuid":" abc ","sections":[1,"Movies"],
                "include_extras":true,"min_duration_s":300,"watched_threshold":90,
                "pause_debounce_s":3,"pause_tolerance_pct":2.5,"stop_debounce_s":7,
                "forced_stop_after_s":60}"#,
        )
        .unwrap();
        assert_eq!(
            s.rules(),
            Rules {
                watched_threshold: 90.0,
                pause_debounce_ms: 3000,
                pause_tolerance: 2.5,
                stop_debounce_ms: 7000,
                forced_stop_after_ms: 60_000,
            }
        );
        assert_eq!(
            s.filters(),
            Filters {
                users: vec!["Alice".into(), "bob".into()],
                server_uuid: Some("abc".into()),
                sections: vec!["1".into(), "Movies".into()],
                include_extras: true,
                min_duration_ms: 300_000,
            }
        );
    }
}
