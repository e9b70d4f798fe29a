//! Which playing sessions count as remote streams, and why — the reason strings end up in the
//! log line of every transition and in `status` ("alice on Roku (wan)").
//!
//! Remote = Plex's `Session.location == "wan"` or `Player.local == false` (the original
//! tool's rule), unless the player's address falls in `lan_cidrs` / `remote_cidrs`: the
//! longest matching prefix decides (a `/24` VPN range inside a `/8` LAN range is remote), and
//! on a tie `remote_cidrs` wins — counting a stream wrongly costs some seeding speed, missing
//! one makes a friend's stream buffer.

use std::net::IpAddr;

use crate::config::cidr::Cidr;
use crate::config::throttle::ThrottleSettings;

/// One session as the throttle job needs it; the daemon maps its session snapshot onto this.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StreamInput {
    /// `User.title`.
    pub user: String,
    /// `Player.title` (the device name).
    pub player: String,
    /// `Player.product` (`Plex for Roku`, `Plex Web`…).
    pub product: String,
    /// `Player.address` as Plex reports it.
    pub address: Option<String>,
    /// `Session.location`: `lan` or `wan`.
    pub location: Option<String>,
    /// `Player.local`.
    pub local: Option<bool>,
    /// `Player.state`: `playing`, `paused`, `buffering`.
    pub state: String,
    /// `Session.bandwidth`, kbit/s: what Plex reserved for this stream.
    pub bandwidth_kbps: Option<u64>,
    /// `Media.bitrate`, kbit/s.
    pub media_bitrate_kbps: Option<u64>,
}

/// What decides which sessions count (from the `throttle` settings, CIDRs parsed).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CountRules {
    pub lan_cidrs: Vec<Cidr>,
    pub remote_cidrs: Vec<Cidr>,
    pub count_paused: bool,
    pub count_buffering: bool,
    /// Local streams count too.
    pub count_local: bool,
    /// `User.title`s never counted (case-insensitive).
    pub exclude_users: Vec<String>,
    /// Player titles or products never counted (case-insensitive).
    pub exclude_clients: Vec<String>,
}

impl CountRules {
    /// The rules of a validated `throttle` section (a range that does not parse is skipped;
    /// validation names it).
    pub fn from_settings(s: &ThrottleSettings) -> CountRules {
        let parse = |list: &[String]| list.iter().filter_map(|c| Cidr::parse(c).ok()).collect();
        CountRules {
            lan_cidrs: parse(&s.lan_cidrs),
            remote_cidrs: parse(&s.remote_cidrs),
            count_paused: s.count_paused,
            count_buffering: s.count_buffering,
            count_local: s.count_local,
            exclude_users: s.exclude_users.clone(),
            exclude_clients: s.exclude_clients.clone(),
        }
    }
}

/// A stream that counts.
#[derive(Clone, Debug, PartialEq)]
pub struct CountedStream {
    /// `alice on Roku (wan)`.
    pub reason: String,
    /// What it uses of the line: `Session.bandwidth`, else `Media.bitrate`; `None` if neither.
    pub kbps: Option<u64>,
}

/// The sessions that count, in input order.
pub fn count_streams(sessions: &[StreamInput], rules: &CountRules) -> Vec<CountedStream> {
    sessions.iter().filter_map(|s| counted(s, rules)).collect()
}

fn counted(s: &StreamInput, rules: &CountRules) -> Option<CountedStream> {
    let state_counts = match s.state.to_ascii_lowercase().as_str() {
        "playing" => true,
        "paused" => rules.count_paused,
        "buffering" => rules.count_buffering,
        _ => false,
    };
    if !state_counts {
        return None;
    }
    let excluded = |list: &[String], value: &str| {
        !value.is_empty() && list.iter().any(|x| x.eq_ignore_ascii_case(value))
    };
    if excluded(&rules.exclude_users, &s.user)
        || excluded(&rules.exclude_clients, &s.player)
        || excluded(&rules.exclude_clients, &s.product)
    {
        return None;
    }
    let (remote, why) = where_from(s, rules);
    if !remote && !rules.count_local {
        return None;
    }
    let why = if remote {
        why
    } else {
        format!("{why}, count_local")
    };
    let who = if s.user.is_empty() {
        "someone"
    } else {
        &s.user
    };
    let device = [&s.player, &s.product]
        .into_iter()
        .find(|d| !d.is_empty())
        .map_or("an unknown player", String::as_str);
    let mut reason = format!("{who} on {device} ({why})");
    if !s.state.eq_ignore_ascii_case("playing") {
        reason.push_str(&format!(" [{}]", s.state.to_ascii_lowercase()));
    }
    Some(CountedStream {
        reason,
        kbps: s
            .bandwidth_kbps
            .filter(|&b| b > 0)
            .or(s.media_bitrate_kbps.filter(|&b| b > 0)),
    })
}

/// Remote or not, and the words that say why.
fn where_from(s: &StreamInput, rules: &CountRules) -> (bool, String) {
    let addr: Option<IpAddr> = s.address.as_deref().and_then(|a| {
        a.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
    });
    if let Some(addr) = addr {
        let best = |list: &[Cidr]| {
            list.iter()
                .filter(|c| c.contains(addr))
                .map(Cidr::prefix_len)
                .max()
        };
        match (best(&rules.lan_cidrs), best(&rules.remote_cidrs)) {
            (Some(lan), Some(remote)) if lan > remote => {
                return (false, format!("{addr} in lan_cidrs"));
            }
            (_, Some(_)) => return (true, format!("{addr} in remote_cidrs")),
            (Some(_), None) => return (false, format!("{addr} in lan_cidrs")),
            (None, None) => {}
        }
    }
    if s.location
        .as_deref()
        .is_some_and(|l| l.eq_ignore_ascii_case("wan"))
    {
        return (true, "wan".into());
    }
    if s.local == Some(false) {
        return (true, "not local".into());
    }
    (false, "local".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(
        user: &str,
        player: &str,
        address: &str,
        location: &str,
        state: &str,
    ) -> StreamInput {
        StreamInput {
            user: user.into(),
            player: player.into(),
            product: format!("Plex for {player}"),
            address: Some(address.into()),
            location: Some(location.into()),
            local: Some(location == "lan"),
            state: state.into(),
            bandwidth_kbps: Some(8000),
            media_bitrate_kbps: Some(20000),
        }
    }

    fn rules() -> CountRules {
        CountRules {
            lan_cidrs: vec![
                Cidr::parse("192.168.1.0/24").unwrap(),
                Cidr::parse("10.0.0.0/8").unwrap(),
            ],
            remote_cidrs: vec![Cidr::parse("10.8.0.0/24").unwrap()],
            ..CountRules::default()
        }
    }

    fn reasons(sessions: &[StreamInput], rules: &CountRules) -> Vec<String> {
        count_streams(sessions, rules)
            .into_iter()
            .map(|c| c.reason)
            .collect()
    }

    #[test]
    fn remote_local_vpn_and_proxy_cases() {
        let sessions = [
            session("alice", "Roku", "203.0.113.9", "wan", "playing"),
            session("carol", "Chrome", "192.168.1.30", "lan", "playing"),
            // A VPN client inside the /8 LAN range, but in the more specific remote /24.
            session("bob", "iPhone", "10.8.0.3", "lan", "playing"),
            // A LAN client behind a reverse proxy that Plex thinks is remote.
            session("dave", "Shield", "192.168.1.44", "wan", "playing"),
        ];
        assert_eq!(
            reasons(&sessions, &rules()),
            [
                "alice on Roku (wan)",
                "bob on iPhone (10.8.0.3 in remote_cidrs)"
            ]
        );
        // Without overrides, Plex's view stands.
        assert_eq!(
            reasons(&sessions, &CountRules::default()),
            ["alice on Roku (wan)", "dave on Shield (wan)"]
        );
    }

    #[test]
    fn player_local_false_counts_without_a_location() {
        let mut s = session("erin", "TV", "198.51.100.2", "wan", "playing");
        s.location = None;
        s.local = Some(false);
        assert_eq!(
            reasons(&[s], &CountRules::default()),
            ["erin on TV (not local)"]
        );
    }

    #[test]
    fn paused_and_buffering_count_only_when_asked() {
        let sessions = [
            session("alice", "Roku", "203.0.113.9", "wan", "paused"),
            session("bob", "TV", "203.0.113.10", "wan", "buffering"),
            session("carol", "TV", "203.0.113.11", "wan", "stopped"),
        ];
        assert!(count_streams(&sessions, &CountRules::default()).is_empty());
        let r = CountRules {
            count_paused: true,
            count_buffering: true,
            ..CountRules::default()
        };
        assert_eq!(
            reasons(&sessions, &r),
            [
                "alice on Roku (wan) [paused]",
                "bob on TV (wan) [buffering]"
            ]
        );
    }

    #[test]
    fn count_local_and_exclusions() {
        let sessions = [
            session("carol", "Chrome", "192.168.1.30", "lan", "playing"),
            session("Alice", "Roku", "203.0.113.9", "wan", "playing"),
            session("frank", "Xbox", "203.0.113.12", "wan", "playing"),
        ];
        let r = CountRules {
            count_local: true,
            exclude_users: vec!["alice".into()],
            exclude_clients: vec!["plex for xbox".into()],
            ..CountRules::default()
        };
        assert_eq!(
            reasons(&sessions, &r),
            ["carol on Chrome (local, count_local)"]
        );
    }

    #[test]
    fn bitrate_prefers_bandwidth_then_media_and_odd_input_is_harmless() {
        let mut s = session("alice", "Roku", "not an address", "wan", "PLAYING");
        assert_eq!(count_streams(&[s.clone()], &rules())[0].kbps, Some(8000));
        s.bandwidth_kbps = Some(0);
        assert_eq!(count_streams(&[s.clone()], &rules())[0].kbps, Some(20000));
        s.media_bitrate_kbps = None;
        assert_eq!(count_streams(&[s.clone()], &rules())[0].kbps, None);
        let empty = StreamInput {
            state: "playing".into(),
            local: Some(false),
            ..StreamInput::default()
        };
        assert_eq!(
            reasons(&[empty], &rules()),
            ["someone on an unknown player (not local)"]
        );
        let v6 = session("gina", "TV", "[2001:db8::5]", "lan", "playing");
        let r = CountRules {
            remote_cidrs: vec![Cidr::parse("2001:db8::/32").unwrap()],
            ..CountRules::default()
        };
        assert_eq!(
            reasons(&[v6], &r),
            ["gina on TV (2001:db8::5 in remote_cidrs)"]
        );
    }
}
