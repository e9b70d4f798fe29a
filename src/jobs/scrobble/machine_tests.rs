//! The machine's rules, one test each, the scenarios, and a randomized property test.

use super::*;
use crate::jobs::scrobble::Source;
use std::collections::HashMap;

/// 100 minutes: 1 % is 60 s.
const DUR: i64 = 6_000_000;
const PCT: i64 = DUR / 100;
const USER: &str = "alice";
const PLAYER: &str = "bsa256dspr4svju3zq3ssndfx";

fn facts() -> ItemFacts {
    ItemFacts {
        kind: "movie".into(),
        title: Some("Frozen".into()),
        duration_ms: Some(DUR),
        ..ItemFacts::default()
    }
}

/// A websocket event (the run loop fills the facts from the index before the machine).
fn ws(sk: &str, rk: &str, state: PlayState, pct: f64, at_s: u64) -> PlaybackEvent {
    PlaybackEvent {
        source: Source::Websocket,
        at_ms: at_s * 1000,
        state,
        session_key: Some(sk.into()),
        client_id: Some(PLAYER.into()),
        rating_key: rk.into(),
        view_offset_ms: Some((pct * PCT as f64) as i64),
        user: Some(USER.into()),
        server_uuid: None,
        watched_hint: false,
        item: Some(facts()),
    }
}

/// A webhook event (`media.*`): no session key, usually no offset.
fn wh(rk: &str, event: &str, at_s: u64) -> PlaybackEvent {
    let (state, hint) = match event {
        "media.play" | "media.resume" => (PlayState::Playing, false),
        "media.scrobble" => (PlayState::Playing, true),
        "media.pause" => (PlayState::Paused, false),
        "media.stop" => (PlayState::Stopped, false),
        other => panic!("{other}"),
    };
    PlaybackEvent {
        source: Source::Webhook,
        at_ms: at_s * 1000,
        state,
        session_key: None,
        client_id: Some(PLAYER.into()),
        rating_key: rk.into(),
        view_offset_ms: None,
        user: Some(USER.into()),
        server_uuid: None,
        watched_hint: hint,
        item: Some(facts()),
    }
}

use PlayState::{Buffering, Paused, Playing, Stopped};
use ScrobbleAction::{Pause, Start, Stop};

fn feed(m: &mut Machines, evs: &[PlaybackEvent]) -> Vec<Call> {
    evs.iter().flat_map(|e| m.on_event(USER, e)).collect()
}

fn actions(calls: &[Call]) -> Vec<(ScrobbleAction, f64)> {
    calls.iter().map(|c| (c.action, c.progress)).collect()
}

fn machines() -> Machines {
    Machines::new(Rules::default())
}

fn listed(keys: &[&str]) -> HashSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

/// A play every 10 s from `from` to `to` percent, reporting as Plex does.
fn watch(sk: &str, rk: &str, from: u32, to: u32, at_s: u64) -> Vec<PlaybackEvent> {
    (0..=(to - from) * 6)
        .map(|k| {
            let pct = from as f64 + k as f64 / 6.0;
            ws(sk, rk, Playing, pct, at_s + k as u64 * 10)
        })
        .collect()
}

#[test]
fn a_movie_watched_to_the_end_is_exactly_one_start_and_one_stop() {
    let mut m = machines();
    let mut evs = vec![ws("21", "13194", Buffering, 0.0, 0)];
    evs.extend(watch("21", "13194", 0, 97, 1));
    let end = evs.last().unwrap().at_ms / 1000 + 10;
    evs.push(ws("21", "13194", Stopped, 97.5, end));
    let calls = feed(&mut m, &evs);
    assert_eq!(actions(&calls), [(Start, 0.0), (Stop, 97.5)]);
    assert_eq!(calls[0].play, calls[1].play);
    assert_eq!(calls[0].play, "alice:13194:0");
    assert_eq!(calls[1].item, Some(facts()));
    assert!(!calls[1].forced);
    assert_eq!(m.active(), 0);
    // Plex's duplicate `stopped` and stale reports of the ended session: nothing more.
    let before = m.suppressed();
    assert!(feed(&mut m, &[ws("21", "13194", Stopped, 97.5, end + 1)]).is_empty());
    assert!(feed(&mut m, &[ws("21", "13194", Playing, 97.0, end + 2)]).is_empty());
    assert_eq!(m.suppressed(), before + 2);
}

#[test]
fn the_recorded_websocket_sequence_gives_start_pause_start_seek_start_stop() {
    let text = std::fs::read_to_string(format!(
        "{}/fixtures/plex-payloads/plex-ws-playing-movie-sequence.jsonl",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut m = machines();
    let mut calls = Vec::new();
    let mut n = 0u64;
    for e in text.lines().flat_map(crate::plex::events::parse) {
        n += 1;
        let Some(mut ev) = crate::jobs::scrobble::event::from_websocket(&e, n * 10_000) else {
            continue;
        };
        ev.item = Some(ItemFacts {
            duration_ms: Some(6_133_055),
            ..facts()
        });
        calls.extend(m.on_event("elan", &ev));
    }
    let got: Vec<_> = calls.iter().map(|c| c.action).collect();
    // buffering: nothing; playing: start; paused twice: one pause; resume: start; the jump
    // to the credits: start; stopped at 95 %: the stop, a play.
    assert_eq!(got, [Start, Pause, Start, Start, Stop]);
    assert_eq!(calls[4].progress, 94.99);
    assert_eq!(m.suppressed(), 1);
}

#[test]
fn buffering_is_not_a_pause_and_starts_nothing() {
    let mut m = machines();
    assert!(feed(&mut m, &[ws("1", "5", Buffering, 0.0, 0)]).is_empty());
    assert_eq!(m.active(), 1);
    let calls = feed(
        &mut m,
        &[
            ws("1", "5", Playing, 0.0, 5),
            ws("1", "5", Buffering, 0.5, 40),
            // A 60 s stall: the offset did not advance with the clock. Not a seek.
            ws("1", "5", Buffering, 0.5, 100),
            ws("1", "5", Playing, 0.5, 101),
        ],
    );
    assert_eq!(actions(&calls), [(Start, 0.0)]);
}

#[test]
fn pause_and_resume_bursts() {
    let mut m = machines();
    let calls = feed(
        &mut m,
        &[
            ws("1", "5", Playing, 10.0, 0),
            ws("1", "5", Paused, 10.0, 10),
            ws("1", "5", Paused, 10.0, 12), // within the debounce: dropped
            ws("1", "5", Paused, 10.0, 30), // Plex re-reporting the same pause: dropped
            ws("1", "5", Playing, 10.0, 40), // resume: a start again
            ws("1", "5", Playing, 10.1, 46), // one start until a pause
            ws("1", "5", Paused, 10.2, 50),
            ws("1", "5", Paused, 20.0, 52), // moved, but within the debounce: dropped
            ws("1", "5", Paused, 20.0, 70), // a seek while paused, reported later: sent
        ],
    );
    assert_eq!(
        actions(&calls),
        [
            (Start, 10.0),
            (Pause, 10.0),
            (Start, 10.0),
            (Pause, 10.2),
            (Pause, 20.0)
        ]
    );
    assert_eq!(m.suppressed(), 3);
    assert!(calls.iter().all(|c| c.play == calls[0].play));
}

#[test]
fn pause_rules_follow_the_settings() {
    let mut m = Machines::new(Rules {
        pause_debounce_ms: 0,
        pause_tolerance: 0.0,
        ..Rules::default()
    });
    let calls = feed(
        &mut m,
        &[
            ws("1", "5", Playing, 10.0, 0),
            ws("1", "5", Paused, 10.0, 10),
            ws("1", "5", Paused, 10.5, 11),
        ],
    );
    assert_eq!(
        actions(&calls),
        [(Start, 10.0), (Pause, 10.0), (Pause, 10.5)]
    );
}

#[test]
fn a_seek_restarts_forward_and_back_but_normal_progress_does_not() {
    let mut m = machines();
    let calls = feed(
        &mut m,
        &[
            ws("1", "5", Playing, 10.0, 0),
            // 10 s later 10 s further (1/6 %): normal.
            ws("1", "5", Playing, 10.0 + 1.0 / 6.0, 10),
            // 10 s later, 29 s further than the clock: within the slack.
            ws("1", "5", Playing, 10.0 + 1.0 / 6.0 + 39.0 / 60.0, 20),
            // Forward to 50 %: a seek.
            ws("1", "5", Playing, 50.0, 30),
            // Back to 20 %: a seek.
            ws("1", "5", Playing, 20.0, 40),
        ],
    );
    let got: Vec<_> = calls.iter().map(|c| c.action).collect();
    assert_eq!(got, [Start, Start, Start]);
    assert_eq!((calls[1].progress, calls[2].progress), (50.0, 20.0));
}

#[test]
fn stop_progress_from_offset_or_last_known_clamped_and_hinted() {
    // From the offset; beyond the duration: 100.
    let mut m1 = machines();
    let c = feed(
        &mut m1,
        &[
            ws("1", "5", Playing, 0.0, 0),
            ws("1", "5", Stopped, 130.0, 9),
        ],
    );
    assert_eq!(actions(&c), [(Start, 0.0), (Stop, 100.0)]);
    // A webhook stop has no offset: the last known progress of the play.
    let mut m2 = machines();
    let mut evs = watch("1", "5", 80, 85, 0);
    evs.push(wh("5", "media.stop", 400));
    let c = feed(&mut m2, &evs);
    assert_eq!(actions(&c), [(Start, 80.0), (Stop, 85.0)]);
    // media.scrobble: Plex says 90 % passed, whatever we last heard.
    let mut m3 = machines();
    let c = feed(
        &mut m3,
        &[
            wh("5", "media.play", 0),
            wh("5", "media.scrobble", 5000),
            wh("5", "media.stop", 5600),
        ],
    );
    assert_eq!(actions(&c), [(Start, 0.0), (Stop, 90.0)]);
    // An unknown duration: progress stays what it was (no division by zero, no NaN).
    let mut m4 = machines();
    let mut e = ws("1", "5", Playing, 10.0, 0);
    e.item = None;
    let mut s = ws("1", "5", Stopped, 50.0, 9);
    s.item = Some(ItemFacts {
        duration_ms: Some(0),
        ..facts()
    });
    let c = feed(&mut m4, &[e, s]);
    assert_eq!(actions(&c), [(Start, 0.0), (Stop, 0.0)]);
}

#[test]
fn a_stop_below_the_threshold_is_sent_but_is_not_a_play() {
    let mut m = machines();
    let c = feed(
        &mut m,
        &[
            ws("1", "5", Playing, 30.0, 0),
            ws("1", "5", Stopped, 40.0, 9),
        ],
    );
    assert_eq!(actions(&c), [(Start, 30.0), (Stop, 40.0)]);
    // A new session on the same item later: a new play, counted at its own stop.
    let c = feed(
        &mut m,
        &[
            ws("2", "5", Playing, 40.0, 100),
            ws("2", "5", Stopped, 90.0, 200),
        ],
    );
    assert_eq!(actions(&c), [(Start, 40.0), (Stop, 90.0)]);
    assert_ne!(c[0].play, "alice:5:0");
}

#[test]
fn the_threshold_follows_the_rules() {
    let mut m = machines();
    m.set_rules(Rules {
        watched_threshold: 95.0,
        ..Rules::default()
    });
    let c = feed(&mut m, &[ws("1", "5", Stopped, 90.0, 0)]);
    assert!(
        c.is_empty(),
        "a stop of an unstarted play below 95 is nothing: {c:?}"
    );
    let c = feed(&mut m, &[ws("2", "5", Stopped, 96.0, 10)]);
    assert_eq!(actions(&c), [(Start, 96.0), (Stop, 96.0)]);
}

#[test]
fn a_stop_of_a_play_never_started_is_a_start_and_stop_only_when_it_is_a_play() {
    let mut m = machines();
    assert!(feed(&mut m, &[ws("1", "5", Stopped, 50.0, 0)]).is_empty());
    let c = feed(
        &mut m,
        &[
            ws("2", "6", Paused, 80.0, 0),
            ws("2", "6", Stopped, 92.0, 5),
        ],
    );
    assert_eq!(actions(&c), [(Start, 92.0), (Stop, 92.0)]);
    assert_eq!(c[0].play, c[1].play);
}

#[test]
fn a_counted_play_takes_no_further_stop_or_scrobble() {
    let mut m = machines();
    let c = feed(
        &mut m,
        &[
            ws("1", "5", Playing, 85.0, 0),
            ws("1", "5", Stopped, 91.0, 10),
            wh("5", "media.scrobble", 11),
            wh("5", "media.stop", 12),
            ws("1", "5", Stopped, 91.0, 20),
        ],
    );
    assert_eq!(actions(&c), [(Start, 85.0), (Stop, 91.0)]);
    assert_eq!(m.suppressed(), 3);
}

#[test]
fn the_same_play_by_websocket_and_webhook_is_one_play_whatever_the_order() {
    // Realistic interleavings of one viewing (ws reports every 10 s; webhooks at the edges).
    let w = |e: &str, at: u64| wh("5", e, at);
    let s = |st: PlayState, pct: f64, at: u64| ws("9", "5", st, pct, at);
    let orders: Vec<Vec<PlaybackEvent>> = vec![
        // webhook first, ws adopts its play; webhook stop first, ws stop late.
        vec![
            w("media.play", 0),
            s(Playing, 0.0, 1),
            s(Playing, 89.0, 5400),
            w("media.scrobble", 5401),
            s(Playing, 92.0, 5520),
            w("media.stop", 5600),
            s(Stopped, 93.0, 5601),
        ],
        // ws first, webhook joins; ws stop first, webhook scrobble and stop late.
        vec![
            s(Playing, 0.0, 0),
            w("media.play", 2),
            s(Playing, 93.0, 5580),
            s(Stopped, 93.0, 5600),
            w("media.scrobble", 5601),
            w("media.stop", 5602),
        ],
        // The webhook's scrobble after the ws stop, with a pause in between.
        vec![
            s(Playing, 0.0, 0),
            w("media.play", 0),
            s(Paused, 50.0, 3000),
            w("media.pause", 3001),
            s(Playing, 50.0, 3100),
            w("media.resume", 3101),
            s(Stopped, 95.0, 5800),
            w("media.scrobble", 5800),
            w("media.stop", 5801),
        ],
        // Only the webhooks say it ended.
        vec![
            s(Playing, 0.0, 0),
            w("media.play", 1),
            s(Playing, 91.0, 5460),
            w("media.scrobble", 5461),
            w("media.stop", 5500),
        ],
        // Only the websocket says it ended, the webhook stop much later.
        vec![
            w("media.play", 0),
            s(Playing, 0.0, 3),
            s(Stopped, 96.0, 5800),
            w("media.stop", 5900),
        ],
    ];
    for (n, evs) in orders.iter().enumerate() {
        let mut m = machines();
        let c = feed(&mut m, evs);
        let stops: Vec<_> = c.iter().filter(|c| c.action == Stop).collect();
        assert_eq!(stops.len(), 1, "order {n}: {:?}", actions(&c));
        assert!(stops[0].progress >= 80.0, "order {n}: {:?}", actions(&c));
        assert!(c.iter().all(|x| x.play == c[0].play), "order {n}: {c:?}");
        assert_eq!(c[0].action, Start, "order {n}");
        assert_eq!(m.active(), 0, "order {n}");
    }
}

#[test]
fn a_rewatch_is_a_new_play_under_a_new_session_key() {
    let mut m = machines();
    let a = feed(
        &mut m,
        &[
            ws("1", "5", Playing, 0.0, 0),
            ws("1", "5", Stopped, 98.0, 6000),
        ],
    );
    let b = feed(
        &mut m,
        &[
            ws("2", "5", Playing, 0.0, 6100),
            ws("2", "5", Stopped, 98.0, 12000),
        ],
    );
    assert_eq!(actions(&a), [(Start, 0.0), (Stop, 98.0)]);
    assert_eq!(actions(&b), [(Start, 0.0), (Stop, 98.0)]);
    assert_ne!(a[0].play, b[0].play);
    // By webhooks alone: a media.play well after the counted stop is a new play.
    let mut m = machines();
    let a = feed(
        &mut m,
        &[
            wh("5", "media.play", 0),
            wh("5", "media.scrobble", 5400),
            wh("5", "media.stop", 5600),
        ],
    );
    let b = feed(
        &mut m,
        &[
            wh("5", "media.play", 5700),
            wh("5", "media.scrobble", 11000),
        ],
    );
    assert_eq!(actions(&a), [(Start, 0.0), (Stop, 90.0)]);
    assert_eq!(actions(&b), [(Start, 0.0)]);
    assert_ne!(a[0].play, b[0].play);
    // …but not one arriving right after it (a late duplicate).
    let mut m = machines();
    feed(
        &mut m,
        &[
            wh("5", "media.play", 0),
            wh("5", "media.scrobble", 5400),
            wh("5", "media.stop", 5600),
        ],
    );
    assert!(feed(&mut m, &[wh("5", "media.play", 5610)]).is_empty());
}

#[test]
fn autoplay_of_the_next_episode_stops_the_previous_one_first() {
    let mut m = machines();
    let mut evs = watch("7", "101", 0, 97, 0);
    let t = evs.last().unwrap().at_ms / 1000;
    evs.push(ws("7", "102", Playing, 0.0, t + 15));
    evs.push(ws("7", "101", Stopped, 97.0, t + 16)); // Plex's late stop of the previous one
    evs.push(ws("7", "102", Playing, 0.2, t + 25));
    let c = feed(&mut m, &evs);
    let got: Vec<_> = c
        .iter()
        .map(|c| (c.rating_key.as_str(), c.action, c.progress))
        .collect();
    assert_eq!(
        got,
        [
            ("101", Start, 0.0),
            ("101", Stop, 97.0),
            ("102", Start, 0.0)
        ]
    );
    assert_eq!(m.active(), 1);
    // Seen by webhooks only: the same player starting another item.
    let mut m = machines();
    let mut next = wh("102", "media.play", 2700);
    next.item = Some(facts());
    let c = feed(
        &mut m,
        &[
            wh("101", "media.play", 0),
            wh("101", "media.scrobble", 2600),
            next,
        ],
    );
    let got: Vec<_> = c
        .iter()
        .map(|c| (c.rating_key.as_str(), c.action, c.progress))
        .collect();
    assert_eq!(
        got,
        [
            ("101", Start, 0.0),
            ("101", Stop, 90.0),
            ("102", Start, 0.0)
        ]
    );
}

#[test]
fn a_session_that_vanishes_at_93_percent_gets_a_forced_stop_at_93() {
    let mut m = machines();
    let c = feed(&mut m, &watch("3", "5", 90, 93, 0));
    assert_eq!(actions(&c), [(Start, 90.0)]);
    let last = 18 * 10;
    let l = listed(&["3"]);
    let none = listed(&[]);
    assert!(m.tick(last * 1000 + 10_000, Some(&l)).is_empty());
    // A failed listing is never "gone".
    for k in 0..10 {
        assert!(m.tick(last * 1000 + 20_000 + k * 5_000, None).is_empty());
    }
    // Absent once: not yet; absent again within a second: not yet.
    let t0 = last * 1000 + 80_000;
    assert!(m.tick(t0, Some(&none)).is_empty());
    assert!(m.tick(t0 + 500, Some(&none)).is_empty());
    let c = m.tick(t0 + 1_000, Some(&none));
    assert_eq!(actions(&c), [(Stop, 93.0)]);
    assert!(c[0].forced);
    assert_eq!(c[0].at_ms, t0 + 1_000);
    assert_eq!(m.active(), 0);
    // The session's own stop arriving later: already a play, dropped.
    assert!(feed(&mut m, &[ws("3", "5", Stopped, 93.0, last + 200)]).is_empty());
    assert!(m.tick(t0 + 9_000, Some(&none)).is_empty());
}

#[test]
fn an_absence_only_counts_after_the_last_event() {
    // A listing taken before the session's first report must not stop it.
    let mut m = machines();
    feed(&mut m, &[ws("3", "5", Playing, 10.0, 100)]);
    let none = listed(&[]);
    assert!(m.tick(100_000, Some(&none)).is_empty());
    assert!(m.tick(102_000, Some(&none)).is_empty());
    assert!(m.tick(104_900, Some(&none)).is_empty());
    assert_eq!(m.active(), 1);
    // Reappearing resets the count.
    assert!(m.tick(106_000, Some(&none)).is_empty());
    assert!(m.tick(107_500, Some(&listed(&["3"]))).is_empty());
    assert!(m.tick(109_000, Some(&none)).is_empty());
    assert_eq!(actions(&m.tick(110_000, Some(&none))), [(Stop, 10.0)]);
}

#[test]
fn a_paused_play_absent_from_the_list_gets_its_stop_too() {
    let mut m = machines();
    feed(
        &mut m,
        &[
            ws("4", "5", Playing, 40.0, 0),
            ws("4", "5", Paused, 41.0, 60),
        ],
    );
    let none = listed(&[]);
    assert!(m.tick(70_000, Some(&none)).is_empty());
    let c = m.tick(72_000, Some(&none));
    assert_eq!(actions(&c), [(Stop, 41.0)]);
    assert!(c[0].forced);
}

#[test]
fn a_silent_session_still_listed_gets_its_stop_after_the_timeout() {
    let mut m = machines();
    feed(&mut m, &[ws("4", "5", Playing, 85.0, 0)]);
    let l = listed(&["4"]);
    assert!(m.tick(119_999, Some(&l)).is_empty());
    let c = m.tick(120_000, Some(&l));
    assert_eq!(actions(&c), [(Stop, 85.0)]);
    assert!(c[0].forced);
}

#[test]
fn after_a_forced_stop_a_counted_play_reopens_only_for_a_rewatch() {
    let mut m = machines();
    feed(&mut m, &watch("3", "5", 90, 93, 0));
    let none = listed(&[]);
    assert!(m.tick(200_000, Some(&none)).is_empty());
    assert_eq!(m.tick(202_000, Some(&none)).len(), 1);
    // The client comes back where it was: nothing.
    assert!(feed(&mut m, &[ws("3", "5", Playing, 94.0, 400)]).is_empty());
    assert!(feed(&mut m, &[ws("3", "5", Stopped, 95.0, 410)]).is_empty());
    // Back near the start on the same session: a rewatch, a new play.
    let c = feed(&mut m, &[ws("3", "5", Playing, 1.0, 500)]);
    assert_eq!(actions(&c), [(Start, 1.0)]);
    assert_eq!(c[0].play, "alice:5:500000");
}

#[test]
fn after_a_forced_stop_below_the_threshold_the_same_play_resumes() {
    let mut m = machines();
    let first = feed(&mut m, &[ws("3", "5", Playing, 30.0, 0)]);
    let c = m.tick(200_000, Some(&listed(&["3"])));
    assert_eq!(actions(&c), [(Stop, 30.0)]);
    // The session was alive after all.
    let c = feed(
        &mut m,
        &[
            ws("3", "5", Playing, 31.0, 201),
            ws("3", "5", Stopped, 88.0, 3000),
        ],
    );
    assert_eq!(actions(&c), [(Start, 31.0), (Stop, 88.0)]);
    assert!(c.iter().all(|x| x.play == first[0].play));
}

#[test]
fn a_repeated_stop_within_the_debounce_is_dropped_unless_it_makes_a_play() {
    let mut m = machines();
    feed(&mut m, &[ws("3", "5", Playing, 30.0, 0)]);
    assert_eq!(m.tick(120_000, Some(&listed(&["3"]))).len(), 1);
    // Reopened by a late report, then Plex's own stop 2 s after ours: dropped.
    let before = m.suppressed();
    let c = feed(&mut m, &[ws("3", "5", Stopped, 30.0, 122)]);
    assert!(c.is_empty(), "{c:?}");
    assert_eq!(m.suppressed(), before + 1);
    // Same, but the stop says 85 %: a play, sent.
    let mut m = machines();
    feed(&mut m, &[ws("3", "5", Playing, 70.0, 0)]);
    assert_eq!(m.tick(120_000, Some(&listed(&["3"]))).len(), 1);
    let c = feed(&mut m, &[ws("3", "5", Stopped, 85.0, 122)]);
    assert_eq!(actions(&c), [(Stop, 85.0)]);
}

#[test]
fn a_webhook_only_play_is_given_its_duration_before_a_forced_stop() {
    let mut m = machines();
    let c = feed(
        &mut m,
        &[
            wh("5", "media.play", 0),
            wh("5", "media.pause", 600),
            wh("5", "media.resume", 700),
        ],
    );
    assert_eq!(
        c.iter().map(|c| c.action).collect::<Vec<_>>(),
        [Start, Pause, Start]
    );
    let l = listed(&[]);
    // Webhooks say nothing while playing: an empty listing or 2 minutes mean nothing.
    assert!(m.tick(700_000 + 120_000, Some(&l)).is_empty());
    assert!(m.tick(700_000 + DUR as u64, Some(&l)).is_empty());
    let c = m.tick(700_000 + DUR as u64 + 120_000, Some(&l));
    assert_eq!(c.len(), 1);
    assert!(c[0].forced && c[0].action == Stop);
}

#[test]
fn closed_plays_are_forgotten_and_plays_are_bounded() {
    let mut m = machines();
    feed(
        &mut m,
        &[
            ws("1", "5", Playing, 0.0, 0),
            ws("1", "5", Stopped, 99.0, 10),
        ],
    );
    m.tick(10_000 + CLOSED_KEEP_MS - 1, None);
    assert!(
        feed(&mut m, &[ws("1", "5", Stopped, 99.0, 20)]).is_empty(),
        "still remembered"
    );
    m.tick(10_000 + CLOSED_KEEP_MS, None);
    assert_eq!(m.plays.len(), 0);
    // Thousands of sessions at once (hostile or broken input): bounded, and the newest kept.
    let mut m = machines();
    for k in 0..(MAX_PLAYS as u64 + 500) {
        let c = m.on_event(USER, &ws(&k.to_string(), "5", Playing, 1.0, k));
        assert_eq!(c.len(), 1);
    }
    assert_eq!(m.plays.len(), MAX_PLAYS);
    assert_eq!(m.active(), MAX_PLAYS);
    let newest = (MAX_PLAYS as u64 + 499).to_string();
    assert!(m
        .plays
        .iter()
        .any(|p| p.session_key.as_deref() == Some(newest.as_str())));
    assert!(!m
        .plays
        .iter()
        .any(|p| p.session_key.as_deref() == Some("0")));
}

#[test]
fn two_users_on_the_same_item_are_two_plays() {
    let mut m = machines();
    let a = m.on_event("alice", &ws("1", "5", Playing, 0.0, 0));
    let mut e = wh("5", "media.play", 1);
    e.client_id = Some("other-player".into());
    let b = m.on_event("bob", &e);
    assert_eq!((a.len(), b.len()), (1, 1));
    assert_eq!((a[0].user.as_str(), b[0].user.as_str()), ("alice", "bob"));
    assert_ne!(a[0].play, b[0].play);
    assert!(m.on_event("", &ws("2", "5", Playing, 0.0, 0)).is_empty());
}

#[test]
fn the_viewer_matches_case_blind_across_sources() {
    // The session tracker and the webhook's Account.title may differ in case only.
    let mut m = machines();
    let mut c = m.on_event("alice", &ws("1", "5", Playing, 85.0, 0));
    c.extend(m.on_event("Alice", &wh("5", "media.stop", 10)));
    c.extend(m.on_event("alice", &ws("1", "5", Stopped, 85.0, 11)));
    assert_eq!(actions(&c), [(Start, 85.0), (Stop, 85.0)]);
}

#[test]
fn plays_opened_in_the_same_millisecond_get_distinct_ids() {
    let mut m = machines();
    let ids: HashSet<String> = (0..50)
        .map(|k| {
            m.on_event(USER, &ws(&k.to_string(), "5", Playing, 0.0, 7))[0]
                .play
                .clone()
        })
        .collect();
    assert_eq!(ids.len(), 50);
    assert!(ids.contains("alice:5:7000"));
}

/// xorshift64*: a seeded generator, no crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One viewing of item `rk` by session `sk`: reports every 10 s, pauses, seeks, a stop,
/// webhooks at the edges — then shuffled (fully, or locally) and duplicated.
fn viewing(
    r: &mut Rng,
    sk: &str,
    rk: &str,
    t0: u64,
    full_shuffle: bool,
) -> Vec<(u64, PlaybackEvent)> {
    let mut evs: Vec<PlaybackEvent> = Vec::new();
    let mut pct = r.below(10) as f64;
    let mut t = t0;
    let end = 60.0 + r.below(41) as f64;
    evs.push(wh(rk, "media.play", t));
    while pct < end {
        let state = match r.below(20) {
            0 => Paused,
            1 => Buffering,
            _ => Playing,
        };
        if r.below(30) == 0 {
            pct = (pct + r.below(40) as f64 - 15.0).max(0.0); // a seek
        }
        evs.push(ws(sk, rk, state, pct, t));
        if state == Paused && r.below(2) == 0 {
            evs.push(wh(rk, "media.pause", t));
        }
        if pct >= 90.0 && !evs.iter().any(|e| e.watched_hint) {
            evs.push(wh(rk, "media.scrobble", t));
        }
        t += 10;
        pct += 1.0 / 6.0 * r.below(3) as f64;
    }
    evs.push(ws(sk, rk, Stopped, pct, t));
    evs.push(wh(rk, "media.stop", t));
    // Arrival order: a local shuffle (a few events out of place), or any order at all; some
    // events twice.
    let mut arrivals: Vec<(u64, PlaybackEvent)> = Vec::new();
    for (k, e) in evs.into_iter().enumerate() {
        let key = if full_shuffle {
            r.next()
        } else {
            k as u64 * 4 + r.below(12)
        };
        if r.below(8) == 0 {
            let again = if full_shuffle {
                r.next()
            } else {
                key + r.below(8)
            };
            arrivals.push((again, e.clone()));
        }
        arrivals.push((key, e));
    }
    arrivals.sort_by_key(|(k, _)| *k);
    arrivals
}

#[test]
fn randomized_sequences_never_count_twice_never_stop_before_start() {
    for seed in 1..=300u64 {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let full = seed % 3 == 0;
        let mut m = machines();
        let mut all: Vec<(u64, PlaybackEvent)> = Vec::new();
        let items = 1 + r.below(3);
        for v in 0..items {
            let sk = format!("{}", 10 + v);
            let rk = format!("{}", 500 + v);
            all.extend(viewing(&mut r, &sk, &rk, v * 7, full));
        }
        all.sort_by_key(|(k, _)| *k);
        // Arrival times: monotonic, as the run loop stamps them; a full shuffle arrives within
        // a few seconds (every event already late), a local one at the events' own pace.
        let mut calls = Vec::new();
        let mut now = 0u64;
        for (n, (_, mut e)) in all.into_iter().enumerate() {
            now = if full {
                n as u64 * 50
            } else {
                now.max(e.at_ms)
            };
            e.at_ms = now;
            calls.extend(m.on_event(USER, &e));
            if r.below(10) == 0 {
                let keys = (10..10 + items).map(|k| k.to_string()).collect();
                let l = if r.below(2) == 0 { None } else { Some(&keys) };
                calls.extend(m.tick(now, l));
            }
        }
        let mut started: HashMap<&str, bool> = HashMap::new();
        let mut counted: HashMap<&str, u32> = HashMap::new();
        for c in &calls {
            assert!(
                c.progress.is_finite() && (0.0..=100.0).contains(&c.progress),
                "seed {seed}: {c:?}"
            );
            match c.action {
                Start => {
                    started.insert(&c.play, true);
                }
                Stop => {
                    assert!(
                        started.get(c.play.as_str()).copied().unwrap_or(false),
                        "seed {seed}: stop before start {c:?}"
                    );
                    if c.progress >= 80.0 {
                        *counted.entry(&c.rating_key).or_default() += 1;
                    }
                }
                Pause => {}
            }
        }
        for (rk, n) in counted {
            assert_eq!(
                n,
                1,
                "seed {seed}: item {rk} counted {n} times: {:?}",
                actions(&calls)
            );
        }
    }
}

#[test]
fn randomized_events_with_vanishing_sessions_never_panic_nor_stop_before_start() {
    let mut r = Rng(0xDEAD_BEEF);
    let mut m = Machines::new(Rules {
        forced_stop_after_ms: 30_000,
        ..Rules::default()
    });
    let mut started: HashSet<String> = HashSet::new();
    let states = [Playing, Paused, Buffering, Stopped];
    let mut now = 0u64;
    for _ in 0..20_000 {
        now += r.below(5_000);
        let calls = if r.below(5) == 0 {
            let keys: HashSet<String> = (0..r.below(4)).map(|k| k.to_string()).collect();
            m.tick(now, if r.below(3) == 0 { None } else { Some(&keys) })
        } else {
            let mut e = if r.below(3) == 0 {
                wh(
                    &r.below(4).to_string(),
                    [
                        "media.play",
                        "media.pause",
                        "media.stop",
                        "media.scrobble",
                        "media.resume",
                    ][r.below(5) as usize],
                    0,
                )
            } else {
                ws(
                    &r.below(4).to_string(),
                    &r.below(4).to_string(),
                    states[r.below(4) as usize],
                    r.below(120) as f64 - 10.0,
                    0,
                )
            };
            e.at_ms = now;
            if r.below(10) == 0 {
                e.view_offset_ms = Some(i64::MAX - r.below(10) as i64);
            }
            if r.below(10) == 0 {
                e.item = None;
            }
            m.on_event(["alice", "bob"][r.below(2) as usize], &e)
        };
        for c in calls {
            assert!((0.0..=100.0).contains(&c.progress), "{c:?}");
            match c.action {
                Start => {
                    started.insert(c.play);
                }
                Stop => assert!(started.contains(&c.play), "stop before start: {c:?}"),
                Pause => {}
            }
        }
    }
    assert!(m.plays.len() <= MAX_PLAYS);
}
