//! Who and what scrobbles, decided before anything reaches a sink.
//!
//! The checks run in a fixed order and the first refusal wins; each refusal is a whole log
//! line naming the setting that made it (`not scrobbled: bob is not in scrobble.users`).
//! The viewer must be known: an event whose user could not be resolved is never scrobbled —
//! the peers' worst bug is exactly that (a filter on an empty name let other users' plays
//! through to the owner's account, daemon-peers.md §2). A user without their own Trakt
//! tokens is refused too: nobody's play goes to someone else's account.

use super::{Filters, PlaybackEvent, Source};

/// Item kinds that are never scrobbled even when a websocket event's facts say so (webhooks
/// for them are already `Ok(None)`, [`super::event::from_webhook`]).
const NOT_VIDEO: &[&str] = &["track", "album", "artist", "photo", "photoalbum"];

/// `Ok(())` when the event may reach the state machine, else the reason as a log line.
/// `linked(user)`: the user has Trakt tokens.
pub fn check(f: &Filters, ev: &PlaybackEvent, linked: &dyn Fn(&str) -> bool) -> Result<(), String> {
    let rk = &ev.rating_key;
    // 1. The server: a webhook from another server (webhooks travel with the user, apis.md §1.8).
    if let Some(want) = f.server_uuid.as_deref().filter(|w| !w.is_empty()) {
        match ev.server_uuid.as_deref() {
            Some(got) if !got.eq_ignore_ascii_case(want) => {
                return Err(format!(
                    "not scrobbled: server {got} is not scrobble.server_uuid"
                ));
            }
            None if ev.source == Source::Webhook => {
                return Err(format!(
                    "not scrobbled: the webhook for item {rk} names no server (scrobble.server_uuid is set)"
                ));
            }
            _ => {}
        }
    }
    // 2. The viewer, never guessed.
    let Some(user) = ev.user.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
        return Err(match &ev.session_key {
            Some(sk) => format!("not scrobbled: the viewer of session {sk} is unknown"),
            None => format!("not scrobbled: the viewer of item {rk} is unknown"),
        });
    };
    // 3. The whitelist.
    if !f.users.is_empty() && !f.users.iter().any(|u| u.trim().eq_ignore_ascii_case(user)) {
        return Err(format!("not scrobbled: {user} is not in scrobble.users"));
    }
    // 4. Their own Trakt account.
    if !linked(user) {
        return Err(format!(
            "not scrobbled: {user} has no Trakt account linked (downshiftarr trakt login --user {user})"
        ));
    }
    let item = ev.item.as_ref();
    // 5. Sections: with a list, an item whose section is unknown does not pass.
    if !f.sections.is_empty() {
        let id = item.and_then(|i| i.section.as_deref());
        let title = item.and_then(|i| i.section_title.as_deref());
        let hit = f.sections.iter().map(|s| s.trim()).any(|s| {
            id.is_some_and(|id| id == s) || title.is_some_and(|t| t.eq_ignore_ascii_case(s))
        });
        if !hit {
            return Err(match (id, title) {
                (None, None) => format!(
                    "not scrobbled: the library section of item {rk} is unknown (scrobble.sections is set)"
                ),
                _ => format!(
                    "not scrobbled: item {rk} is in section {} which is not in scrobble.sections",
                    title.or(id).unwrap_or_default()
                ),
            });
        }
    }
    let Some(item) = item else {
        return Ok(());
    };
    let name = item.title.as_deref().unwrap_or("?");
    // 6. Trailers and other extras are not the movie.
    if item.extra && !f.include_extras {
        return Err(format!(
            "not scrobbled: item {rk} ({name}) is a trailer or an extra (scrobble.include_extras is off)"
        ));
    }
    if NOT_VIDEO.contains(&item.kind.as_str()) {
        return Err(format!(
            "not scrobbled: item {rk} ({name}) is a {}, only movies and episodes scrobble",
            item.kind
        ));
    }
    // 7. Minimum duration, when known.
    if let Some(d) = item.duration_ms {
        if f.min_duration_ms > 0 && d < f.min_duration_ms {
            return Err(format!(
                "not scrobbled: item {rk} ({name}) lasts {} s, under scrobble.min_duration_ms ({} ms)",
                d / 1000,
                f.min_duration_ms
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::scrobble::{ItemFacts, PlayState};

    const UUID: &str = "54664a3d8acc39983675640ec9ce00b70af9cc36";

    fn ev(user: Option<&str>) -> PlaybackEvent {
        PlaybackEvent {
            source: Source::Websocket,
            at_ms: 1,
            state: PlayState::Playing,
            session_key: Some("12".into()),
            client_id: None,
            rating_key: "13194".into(),
            view_offset_ms: None,
            user: user.map(Into::into),
            server_uuid: None,
            watched_hint: false,
            item: Some(ItemFacts {
                kind: "movie".into(),
                title: Some("Frozen".into()),
                section: Some("1".into()),
                section_title: Some("Movies".into()),
                duration_ms: Some(6_133_055),
                ..ItemFacts::default()
            }),
        }
    }

    fn all(_: &str) -> bool {
        true
    }

    #[test]
    fn a_linked_user_with_no_filters_passes() {
        assert_eq!(check(&Filters::default(), &ev(Some("elan")), &all), Ok(()));
    }

    #[test]
    fn an_unknown_viewer_is_never_scrobbled() {
        let f = Filters::default();
        for u in [None, Some(""), Some("   ")] {
            assert_eq!(
                check(&f, &ev(u), &all).unwrap_err(),
                "not scrobbled: the viewer of session 12 is unknown"
            );
        }
        let mut e = ev(None);
        e.session_key = None;
        e.source = Source::Webhook;
        assert_eq!(
            check(&f, &e, &all).unwrap_err(),
            "not scrobbled: the viewer of item 13194 is unknown"
        );
    }

    #[test]
    fn the_whitelist_is_case_insensitive_and_empty_means_any_linked_user() {
        let f = Filters {
            users: vec!["Alice".into(), " elan ".into()],
            ..Filters::default()
        };
        assert_eq!(check(&f, &ev(Some("ELAN")), &all), Ok(()));
        assert_eq!(check(&f, &ev(Some("alice")), &all), Ok(()));
        assert_eq!(
            check(&f, &ev(Some("bob")), &all).unwrap_err(),
            "not scrobbled: bob is not in scrobble.users"
        );
    }

    #[test]
    fn a_user_without_trakt_tokens_is_never_sent_to_someone_else() {
        let only_alice = |u: &str| u == "alice";
        assert_eq!(
            check(&Filters::default(), &ev(Some("alice")), &only_alice),
            Ok(())
        );
        assert_eq!(
            check(&Filters::default(), &ev(Some("bob")), &only_alice).unwrap_err(),
            "not scrobbled: bob has no Trakt account linked (downshiftarr trakt login --user bob)"
        );
    }

    #[test]
    fn another_servers_webhook_is_ignored() {
        let f = Filters {
            server_uuid: Some(UUID.into()),
            ..Filters::default()
        };
        let mut e = ev(Some("elan"));
        e.source = Source::Webhook;
        e.server_uuid = Some("ffff".into());
        assert_eq!(
            check(&f, &e, &all).unwrap_err(),
            "not scrobbled: server ffff is not scrobble.server_uuid"
        );
        e.server_uuid = Some(UUID.to_uppercase());
        assert_eq!(check(&f, &e, &all), Ok(()));
        e.server_uuid = None;
        assert!(check(&f, &e, &all).unwrap_err().contains("names no server"));
        // The websocket is our own server's: no uuid to check.
        assert_eq!(check(&f, &ev(Some("elan")), &all), Ok(()));
    }

    #[test]
    fn the_server_check_comes_first_then_the_viewer_then_the_list() {
        let f = Filters {
            server_uuid: Some(UUID.into()),
            users: vec!["alice".into()],
            ..Filters::default()
        };
        let mut e = ev(None);
        e.server_uuid = Some("other".into());
        assert!(check(&f, &e, &|_| false)
            .unwrap_err()
            .contains("server other"));
        e.server_uuid = None;
        assert!(check(&f, &e, &|_| false).unwrap_err().contains("unknown"));
        e.user = Some("bob".into());
        assert!(check(&f, &e, &|_| false)
            .unwrap_err()
            .contains("scrobble.users"));
    }

    #[test]
    fn sections_match_by_id_or_title_and_unknown_sections_pass_only_without_a_list() {
        let by_id = Filters {
            sections: vec!["1".into()],
            ..Filters::default()
        };
        let by_title = Filters {
            sections: vec!["movies".into()],
            ..Filters::default()
        };
        let other = Filters {
            sections: vec!["TV Shows".into(), "7".into()],
            ..Filters::default()
        };
        assert_eq!(check(&by_id, &ev(Some("a")), &all), Ok(()));
        assert_eq!(check(&by_title, &ev(Some("a")), &all), Ok(()));
        assert_eq!(
            check(&other, &ev(Some("a")), &all).unwrap_err(),
            "not scrobbled: item 13194 is in section Movies which is not in scrobble.sections"
        );
        let mut bare = ev(Some("a"));
        bare.item = None;
        assert_eq!(check(&Filters::default(), &bare, &all), Ok(()));
        assert!(check(&by_id, &bare, &all)
            .unwrap_err()
            .contains("library section of item 13194 is unknown"));
    }

    #[test]
    fn trailers_and_extras_need_include_extras() {
        let mut e = ev(Some("a"));
        if let Some(i) = e.item.as_mut() {
            i.extra = true;
            i.kind = "clip".into();
        }
        assert_eq!(
            check(&Filters::default(), &e, &all).unwrap_err(),
            "not scrobbled: item 13194 (Frozen) is a trailer or an extra (scrobble.include_extras is off)"
        );
        let f = Filters {
            include_extras: true,
            ..Filters::default()
        };
        assert_eq!(check(&f, &e, &all), Ok(()));
    }

    #[test]
    fn music_is_refused_even_from_the_websocket() {
        let mut e = ev(Some("a"));
        if let Some(i) = e.item.as_mut() {
            i.kind = "track".into();
        }
        assert!(check(&Filters::default(), &e, &all)
            .unwrap_err()
            .contains("is a track"));
    }

    #[test]
    fn short_items_are_refused_when_their_duration_is_known() {
        let f = Filters {
            min_duration_ms: 10 * 60_000,
            ..Filters::default()
        };
        let mut e = ev(Some("a"));
        assert_eq!(check(&f, &e, &all), Ok(()));
        if let Some(i) = e.item.as_mut() {
            i.duration_ms = Some(151_000);
        }
        assert_eq!(
            check(&f, &e, &all).unwrap_err(),
            "not scrobbled: item 13194 (Frozen) lasts 151 s, under scrobble.min_duration_ms (600000 ms)"
        );
        if let Some(i) = e.item.as_mut() {
            i.duration_ms = None;
        }
        assert_eq!(check(&f, &e, &all), Ok(()));
    }
}
