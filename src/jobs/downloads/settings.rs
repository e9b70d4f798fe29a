//! What the rules read of the `downloads` section, for one user: the section's thresholds
//! overlaid with `downloads.users.<name>` ([`thresholds`]), and who played — a tracked user or
//! a guest, with the reason ([`who`]). The config layer does not know the job's types; this is
//! the one place that maps one onto the other.

use std::net::IpAddr;

use crate::config::cidr::Cidr;
use crate::config::downloads::{DownloadsSettings, UserThresholds};

/// What the rules read for one user (section thresholds overlaid with
/// `downloads.users.<name>`).
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    pub min_watched_percent: f64,
    pub window_days: u32,
    pub watch_count_threshold: u32,
    pub instant_rating: f64,
    pub rewatch_min_rating: f64,
    pub gem_rating: f64,
    pub gem_max_votes: u64,
    pub old_foreign_before_year: u32,
    pub keywords: Vec<String>,
    pub rare_genres: Vec<String>,
    pub instant_genres: Vec<String>,
    pub min_seeders_rare: u32,
}

/// The entry of `downloads.users` for `user`, matched case-insensitively (an exact match
/// first, so `Bob` and `bob` written both keep their own).
fn user_entry<'a>(s: &'a DownloadsSettings, user: &str) -> Option<(&'a str, &'a UserThresholds)> {
    s.users
        .get_key_value(user)
        .or_else(|| {
            let lower = user.to_lowercase();
            s.users.iter().find(|(k, _)| k.to_lowercase() == lower)
        })
        .map(|(k, v)| (k.as_str(), v))
}

/// The thresholds for `user`: the section's, with the user's own where they set one.
pub fn thresholds(s: &DownloadsSettings, user: &str) -> Thresholds {
    let u = user_entry(s, user).map(|(_, u)| u);
    Thresholds {
        min_watched_percent: u
            .and_then(|u| u.min_watched_percent)
            .unwrap_or(s.min_watched_percent),
        window_days: s.window_days,
        watch_count_threshold: u
            .and_then(|u| u.watch_count_threshold)
            .unwrap_or(s.watch_count_threshold),
        instant_rating: u.and_then(|u| u.instant_rating).unwrap_or(s.instant_rating),
        rewatch_min_rating: u
            .and_then(|u| u.rewatch_min_rating)
            .unwrap_or(s.rewatch_min_rating),
        gem_rating: s.gem_rating,
        gem_max_votes: s.gem_max_votes,
        old_foreign_before_year: s.old_foreign_before_year,
        keywords: s.keywords.clone(),
        rare_genres: s.rare_genres.clone(),
        instant_genres: s.instant_genres.clone(),
        min_seeders_rare: s.min_seeders_rare,
    }
}

/// Who played: tracked, guest (by user list, per-user `never`, or by network), with the reason.
#[derive(Clone, Debug, PartialEq)]
pub enum Who {
    Tracked,
    Guest(String),
}

/// Who `user`, playing from `address`, is. In order: `downloads.users.<name>.never`; not in a
/// non-empty `tracked_users` (case-insensitive); with `guests_by_network`, a known address
/// outside every `home_networks` range. An unknown address is not a reason to call anyone a
/// guest.
pub fn who(s: &DownloadsSettings, user: &str, address: Option<IpAddr>) -> Who {
    if let Some((name, u)) = user_entry(s, user) {
        if u.never {
            return Who::Guest(format!("downloads.users.{name}.never is set"));
        }
    }
    let lower = user.trim().to_lowercase();
    if !s.tracked_users.is_empty()
        && !s
            .tracked_users
            .iter()
            .any(|t| t.trim().to_lowercase() == lower)
    {
        return Who::Guest(format!(
            "{user:?} is not in tracked_users ({})",
            s.tracked_users.join(", ")
        ));
    }
    if s.guests_by_network {
        if let Some(addr) = address {
            let home = s
                .home_networks
                .iter()
                .filter_map(|c| Cidr::parse(c).ok())
                .any(|c| c.contains(addr));
            if !home {
                return Who::Guest(format!("{addr} is outside home_networks"));
            }
        }
    }
    Who::Tracked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(json: &str) -> DownloadsSettings {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_users_thresholds_overlay_the_sections() {
        let s = settings(
            r#"{"watch_count_threshold": 2, "instant_rating": 8.5, "min_watched_percent": 90,
                "users": {"Bob": {"watch_count_threshold": 3, "instant_rating": 9.0},
                          "carol": {"min_watched_percent": 80, "rewatch_min_rating": 6.5}}}"#,
        );
        let base = thresholds(&s, "ann");
        assert_eq!(
            (
                base.watch_count_threshold,
                base.instant_rating,
                base.min_watched_percent
            ),
            (2, 8.5, 90.0)
        );
        assert_eq!(base.keywords, s.keywords);
        let bob = thresholds(&s, "bob");
        assert_eq!((bob.watch_count_threshold, bob.instant_rating), (3, 9.0));
        assert_eq!(
            bob.rewatch_min_rating, 7.0,
            "the section's where Bob set none"
        );
        let carol = thresholds(&s, "CAROL");
        assert_eq!(
            (carol.min_watched_percent, carol.rewatch_min_rating),
            (80.0, 6.5)
        );
        assert_eq!(carol.watch_count_threshold, 2);
    }

    #[test]
    fn an_exact_name_wins_over_another_case() {
        let s = settings(
            r#"{"users": {"Bob": {"watch_count_threshold": 3}, "bob": {"watch_count_threshold": 5}}}"#,
        );
        assert_eq!(thresholds(&s, "Bob").watch_count_threshold, 3);
        assert_eq!(thresholds(&s, "bob").watch_count_threshold, 5);
    }

    #[test]
    fn guests_by_list_by_never_and_by_network() {
        let ip = |a: &str| Some(a.parse::<IpAddr>().unwrap());
        let s = settings("{}");
        assert_eq!(who(&s, "anyone", ip("203.0.113.9")), Who::Tracked);
        let s = settings(
            r#"{"tracked_users": ["Ann", "bob"], "users": {"BOB": {"never": true}},
                "home_networks": ["192.168.0.0/16", "100.64.0.0/10"], "guests_by_network": true}"#,
        );
        assert_eq!(who(&s, "ann", ip("192.168.1.4")), Who::Tracked);
        assert_eq!(who(&s, "ANN", ip("100.100.1.1")), Who::Tracked);
        assert_eq!(who(&s, "ann", None), Who::Tracked, "unknown address");
        assert_eq!(
            who(&s, "ann", ip("203.0.113.9")),
            Who::Guest("203.0.113.9 is outside home_networks".into())
        );
        assert_eq!(
            who(&s, "Bob", ip("192.168.1.4")),
            Who::Guest("downloads.users.BOB.never is set".into())
        );
        assert_eq!(
            who(&s, "dave", ip("192.168.1.4")),
            Who::Guest("\"dave\" is not in tracked_users (Ann, bob)".into())
        );
        // The networks alone do nothing without guests_by_network.
        let s = settings(r#"{"home_networks": ["192.168.0.0/16"]}"#);
        assert_eq!(who(&s, "ann", ip("203.0.113.9")), Who::Tracked);
        // A dual-stack socket's mapped address is matched as IPv4.
        let s = settings(r#"{"home_networks": ["192.168.0.0/16"], "guests_by_network": true}"#);
        assert_eq!(who(&s, "ann", ip("::ffff:192.168.1.4")), Who::Tracked);
    }
}
