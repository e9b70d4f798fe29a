//! The suite itself: a passing run is quiet — the daemons a test starts log to a file in the
//! test's temporary directory — and a failing test shows its daemon's log.

use std::process::{Command, Output};

use crate::daemon::{stop, wait_for_daemon, Env, MOVIE0_4K};
use crate::fake_plex::FakePlex;

/// Run by `a_passing_test_is_quiet_and_a_failing_one_shows_its_daemons_log` in a child run of
/// this test binary, with `DOWNSHIFTARR_TEST_QUIET=pass` or `=fail` (fails on purpose once its
/// daemon has logged); without it, it does nothing.
#[test]
#[ignore = "run by quiet::a_passing_test_is_quiet_and_a_failing_one_shows_its_daemons_log"]
fn a_test_with_a_daemon() {
    let Ok(mode) = std::env::var("DOWNSHIFTARR_TEST_QUIET") else {
        return;
    };
    let env = Env::new(FakePlex::start(1, 0, 0), serde_json::json!({}));
    let daemon = env.daemon();
    wait_for_daemon(&env.socket(), MOVIE0_4K);
    assert_ne!(mode, "fail", "failing on purpose");
    stop(daemon);
}

fn run_child(mode: &str) -> (Output, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "quiet::a_test_with_a_daemon",
            "--test-threads=1",
        ])
        .env("DOWNSHIFTARR_TEST_QUIET", mode)
        .env_remove("RUST_TEST_NOCAPTURE")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn a_passing_test_is_quiet_and_a_failing_one_shows_its_daemons_log() {
    let (out, text) = run_child("pass");
    assert!(
        out.status.success() && text.contains("1 passed"),
        "the child test did not pass:\n{text}"
    );
    assert!(
        !text.contains(" INFO ") && !text.contains(" WARN ") && !text.contains(" ERROR "),
        "a passing test printed its daemon's log:\n{text}"
    );
    let (out, text) = run_child("fail");
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("failing on purpose")
            && text.contains("background.log ---")
            && text.contains(" INFO "),
        "a failing test shows its daemon's log:\n{text}"
    );
}
