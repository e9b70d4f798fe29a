//! What the rules read of the `downloads` section, for one user: the section's thresholds
//! overlaid with `downloads.users.<name>`, and who a player is (tracked, or a guest and why).

use std::net::IpAddr;

use crate::config::cidr::Cidr;
use crate::config::downloads::{DownloadsSettings, UserThresholds};

/// What the rules read for one user.
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

fn user_of<'a>(s: &'a DownloadsSettings, user: &str) -> Option<&'a UserThresholds> {
    s.users
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(user.trim()))
        .map(|(_, v)| v)
}

pub fn thresholds(s: &DownloadsSettings, user: &str) -> Thresholds {
    let u = user_of(s, user).cloned().unwrap_or_default();
    Thresholds {
        min_watched_percent: u.min_watched_percent.unwrap_or(s.min_watched_percent),
        window_days: s.window_days,
        watch_count_threshold: u.watch_count_threshold.unwrap_or(s.watch_count_threshold),
        instant_rating: u.instant_rating.unwrap_or(s.instant_rating),
        rewatch_min_rating: u.rewatch_min_rating.unwrap_or(s.rewatch_min_rating),
        gem_rating: s.gem_rating,
        gem_max_votes: s.gem_max_votes,
        old_foreign_before_year: s.old_foreign_before_year,
        keywords: s.keywords.clone(),
        rare_genres: s.rare_genres.clone(),
        instant_genres: s.instant_genres.clone(),
        min_seeders_rare: s.min_seeders_rare,
    }
}

/// Who played.
#[derive(Clone, Debug, PartialEq)]
pub enum Who {
    Tracked,
    /// A guest, and why.
    Guest(String),
}

/// A network of `home_networks`: a CIDR, or the original's prefix form (`192.168.`).
pub fn network(text: &str) -> Option<Cidr> {
    if let Ok(c) = Cidr::parse(text.trim()) {
        return Some(c);
    }
    let t = text.trim().trim_end_matches('.');
    let parts: Vec<&str> = t.split('.').collect();
    if parts.is_empty() || parts.len() > 4 || parts.iter().any(|p| p.parse::<u8>().is_err()) {
        return None;
    }
    let mut octets: Vec<&str> = parts.clone();
    while octets.len() < 4 {
        octets.push("0");
    }
    Cidr::parse(&format!("{}/{}", octets.join("."), parts.len() * 8)).ok()
}

pub fn who(s: &DownloadsSettings, user: &str, address: Option<IpAddr>) -> Who {
    if user_of(s, user).is_some_and(|u| u.never) {
        return Who::Guest(format!("{user}: downloads.users.{user}.never"));
    }
    if !s.tracked_users.is_empty()
        && !s
            .tracked_users
            .iter()
            .any(|t| t.trim().eq_ignore_ascii_case(user.trim()))
    {
        return Who::Guest(format!(
            "{user} is not a tracked user (downloads.tracked_users: {})",
            s.tracked_users.join(", ")
        ));
    }
    if s.guests_by_network && !s.home_networks.is_empty() {
        if let Some(a) = address {
            let home = s
                .home_networks
                .iter()
                .filter_map(|n| network(n))
                .any(|c| c.contains(a));
            if !home {
                return Who::Guest(format!(
                    "{user} played from {a}, outside downloads.home_networks"
                ));
            }
        }
    }
    Who::Tracked
}
