//! `downshiftarr status`: the running daemon's health, asked over the shim's socket and read
//! into the typed [`Status`] the daemon builds. Exit status 0 healthy, 1 unhealthy, 2 not
//! running or not reachable; `--json` always prints one object.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::cli::StatusArgs;
use crate::daemon::status::Status;

/// How to start the daemon, for a `status` that found none.
const START_HINT: &str =
    "start it with `systemctl start downshiftarr` (or run `downshiftarr daemon` in a terminal)";

/// What `status --json` prints: the daemon's status with `"running": true` and the socket, or
/// `{"running": false, "socket": …, "error": …}`.
#[derive(Serialize)]
struct Report {
    running: bool,
    socket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
}

pub fn run(args: StatusArgs) -> Result<ExitCode> {
    let (socket, status) = match daemon_status(args.config.as_deref()) {
        Ok(answer) => answer,
        Err((socket, e)) => {
            if args.json {
                let r = Report {
                    running: false,
                    socket,
                    error: Some(e),
                    status: None,
                };
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!("downshiftarr daemon: not running ({e})");
                println!("{START_HINT}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let code = ExitCode::from(if status.healthy { 0 } else { 1 });
    if args.json {
        let r = Report {
            running: true,
            socket: Some(socket),
            error: None,
            status: Some(status),
        };
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", render(&status));
    }
    Ok(code)
}

/// Asks the daemon for its status. The socket is the shim's: `shim.socket`, or
/// `DOWNSHIFTARR_SOCKET` when set (as the shim reads it). Errors carry the socket tried.
pub(crate) fn daemon_status(
    flag: Option<&std::path::Path>,
) -> std::result::Result<(String, Status), (Option<String>, String)> {
    use crate::daemon::admin::{AdminRequest, AdminResponse};
    use downshiftarr_shim::protocol::{Client, ClientError};
    let (path, _) =
        crate::cli::check_config::config_file(flag).map_err(|e| (None, format!("{e:#}")))?;
    let env = |k: &str| std::env::var(k).ok();
    let socket = downshiftarr_shim::config::load(&path, &env).config.socket;
    if socket.is_empty() {
        return Err((
            Some(socket),
            "no socket configured: shim.socket (or DOWNSHIFTARR_SOCKET) is empty".into(),
        ));
    }
    let fail = |e: String| (Some(socket.clone()), e);
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut c = Client::connect(std::path::Path::new(&socket), deadline).map_err(|e| {
        fail(match e {
            ClientError::NotRunning => format!("nothing listens at {socket}"),
            e => format!("unable to connect to {socket}: {e}"),
        })
    })?;
    match c.call_as(&AdminRequest::Status) {
        Ok(AdminResponse::Status { status }) => Ok((socket.clone(), *status)),
        Ok(AdminResponse::Error { message }) => Err(fail(format!(
            "the daemon at {socket} refused the status request: {message}"
        ))),
        Ok(_) => Err(fail(format!("the daemon at {socket} answered something else"))),
        Err(ClientError::BadFrame(e)) => Err(fail(format!(
            "the daemon at {socket} sent an answer this version cannot read: {e}"
        ))),
        Err(ClientError::Eof) => Err(fail(format!(
            "the daemon at {socket} closed the connection: this user may not use the socket (run as root, the daemon's user or a member of daemon.socket_group)"
        ))),
        Err(e) => Err(fail(format!("the daemon at {socket}: {e}"))),
    }
}

/// The readable status.
fn render(s: &Status) -> String {
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    line(format!(
        "downshiftarr daemon {} — up {} s, {}",
        if s.version.is_empty() {
            "?"
        } else {
            &s.version
        },
        s.uptime_s,
        if s.healthy { "healthy" } else { "UNHEALTHY" }
    ));
    let i = &s.index;
    line(format!(
        "index: {} movies, {} shows, {} episodes, {} files",
        i.movies, i.shows, i.episodes, i.files
    ));
    line(match &s.last_sync {
        Some(l) if l.ok => {
            let sum = l.summary.clone().unwrap_or_default();
            format!(
                "last sync: {} — {} changed, {} removed, {} API calls, {:.2} s",
                l.at, sum.changed, sum.removed, sum.api_calls, sum.seconds
            )
        }
        Some(l) => format!(
            "last sync: {} — FAILED: {}",
            l.at,
            l.error.as_deref().unwrap_or("?")
        ),
        None => "last sync: none yet".into(),
    });
    for (name, j) in &s.jobs {
        line(match &j.last_error {
            Some(e) => format!(
                "job {name}: restarted {} times, last error: {e}",
                j.restarts
            ),
            None => format!("job {name}: ok"),
        });
    }
    line(format!(
        "shim: {} lookups ({} found), {} decisions reported",
        s.shim.lookups, s.shim.lookup_hits, s.shim.decisions
    ));
    let counts: Vec<String> = s
        .enforcement
        .counts
        .iter()
        .map(|c| format!("{} {} ({})", c.count, c.action, c.reason))
        .collect();
    line(format!(
        "enforcement: {}",
        if counts.is_empty() {
            "nothing yet".to_string()
        } else {
            counts.join(", ")
        }
    ));
    if s.enforcement.plex_pass_missing {
        line("PLEX PASS MISSING: Plex answered 401 to terminate — stopping a stream with a message needs Plex Pass on the server owner's account".into());
    }
    if let Some(e) = &s.enforcement.last_error {
        line(format!("last enforcement error: {e}"));
    }
    if let Some(t) = s.sections.get(crate::jobs::throttle::run::JOB) {
        for l in throttle_lines(t) {
            line(l);
        }
    }
    if let Some(t) = s.sections.get(crate::jobs::scrobble::status::JOB) {
        for l in crate::jobs::scrobble::status::lines(t) {
            line(l);
        }
    }
    if let Some(t) = s.sections.get(crate::jobs::downloads::status::JOB) {
        for l in crate::jobs::downloads::status::lines(t) {
            line(l);
        }
    }
    out
}

/// The throttle's section, readable; a section this version cannot read is shown as it is.
fn throttle_lines(v: &serde_json::Value) -> Vec<String> {
    use crate::jobs::throttle::machine::Phase;
    let Ok(t) = serde_json::from_value::<crate::jobs::throttle::run::ThrottleStatus>(v.clone())
    else {
        return vec![format!("throttle: {v}")];
    };
    let mut out = Vec::new();
    let streams = match t.remote_streams.len() {
        0 => "no remote stream".to_string(),
        n => format!("{n} remote stream(s): {}", t.remote_streams.join(", ")),
    };
    out.push(match t.state {
        Phase::Idle => format!(
            "throttle: idle — {streams} (qbittorrent {})",
            t.qbittorrent_url
        ),
        Phase::Streaming => format!(
            "throttle: streaming — {streams} (qbittorrent {})",
            t.qbittorrent_url
        ),
    });
    if let Some(f) = &t.in_force {
        out.push(format!(
            "throttle in force since {}: {f}; will restore {}",
            t.since.as_deref().unwrap_or("?"),
            t.will_restore.as_deref().unwrap_or("nothing")
        ));
    }
    if let Some(u) = &t.left_to_user {
        out.push(format!(
            "throttle: changed by hand, left as the user set it: {u}"
        ));
    }
    if let Some(p) = &t.problem {
        out.push(format!("throttle PROBLEM: {p}"));
    }
    if let Some(l) = &t.last_transition {
        out.push(format!("throttle last change: {l}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::status::{EnforcementCount, JobStatus, SyncStatus, SyncSummary};

    #[test]
    fn the_readable_status_says_what_people_and_tests_look_for() {
        let mut s = Status {
            version: "0.1.0".into(),
            uptime_s: 5,
            healthy: true,
            last_sync: Some(SyncStatus {
                at: "2026-01-01T00:00:00Z".into(),
                ok: true,
                summary: Some(SyncSummary {
                    changed: 3,
                    api_calls: 12,
                    seconds: 1.5,
                    ..SyncSummary::default()
                }),
                error: None,
            }),
            ..Status::default()
        };
        s.index.movies = 9;
        s.index.files = 16;
        s.jobs.insert("sync".into(), JobStatus::default());
        s.jobs.insert(
            "socket".into(),
            JobStatus {
                restarts: 2,
                last_error: Some("bind failed".into()),
            },
        );
        s.enforcement.counts.push(EnforcementCount {
            action: "terminated".into(),
            reason: "refused by the shim".into(),
            count: 1,
        });
        s.enforcement.plex_pass_missing = true;
        let text = render(&s);
        for want in [
            "downshiftarr daemon 0.1.0 — up 5 s, healthy\n",
            "index: 9 movies, 0 shows, 0 episodes, 16 files\n",
            "last sync: 2026-01-01T00:00:00Z — 3 changed, 0 removed, 12 API calls, 1.50 s\n",
            "job socket: restarted 2 times, last error: bind failed\n",
            "job sync: ok\n",
            "enforcement: 1 terminated (refused by the shim)\n",
            "PLEX PASS MISSING",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        s.sections.insert(
            "throttle".into(),
            serde_json::json!({"state": "streaming", "qbittorrent_url": "http://127.0.0.1:8080",
                "remote_streams": ["alice on Roku (wan)"], "in_force": "upload 500 KiB/s (found unlimited)",
                "will_restore": "upload unlimited", "since": "2026-12-04T09:00:00Z",
                "problem": "qbittorrent: login refused"}),
        );
        let text = render(&s);
        for want in [
            "throttle: streaming — 1 remote stream(s): alice on Roku (wan) (qbittorrent http://127.0.0.1:8080)\n",
            "throttle in force since 2026-12-04T09:00:00Z: upload 500 KiB/s (found unlimited); will restore upload unlimited\n",
            "throttle PROBLEM: qbittorrent: login refused\n",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        s.sections.insert(
            "scrobble".into(),
            serde_json::json!({"websocket_connected": true, "users_linked": ["alice"], "outbox_depth": 3}),
        );
        let text = render(&s);
        for want in [
            "scrobble: websocket connected, no event yet; users linked: alice\n",
            "scrobble: 0 play(s) followed, 3 call(s) waiting, 0 duplicate(s) suppressed\n",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        s.last_sync = None;
        s.healthy = false;
        let text = render(&s);
        assert!(text.contains("UNHEALTHY") && text.contains("last sync: none yet"));
    }

    #[test]
    fn json_reports_keep_running_and_socket_beside_the_status() {
        let r = Report {
            running: true,
            socket: Some("/run/x.sock".into()),
            error: None,
            status: Some(Status::default()),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["running"], true);
        assert_eq!(v["socket"], "/run/x.sock");
        assert!(v.get("error").is_none() && v.get("index").is_some());
        let r = Report {
            running: false,
            socket: None,
            error: Some("nothing listens".into()),
            status: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"running": false, "socket": null, "error": "nothing listens"})
        );
    }
}
