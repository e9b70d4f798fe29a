//! `downshiftarr explain`: run exactly the shim's decision path on a command line, without
//! exec'ing anything, and show the decision, the source facts and the changed tokens.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use downshiftarr_shim::config;
use downshiftarr_shim::facts::SourceFacts;
use downshiftarr_shim::policy::{Action, Viewer};
use downshiftarr_shim::record::{self, Change};
use downshiftarr_shim::shim::{evaluate, Outcome, Sources};
use serde::Deserialize;
use serde_json::json;

use crate::cli::ExplainArgs;

/// The `--argv-json` file: the format of `fixtures/plex-argv/*.json`.
#[derive(Deserialize)]
struct ArgvFile {
    args: Vec<String>,
}

pub fn run(args: ExplainArgs) -> Result<ExitCode> {
    let tokens: Vec<OsString> = match &args.argv_json {
        Some(p) => read_argv(p)?,
        None if !args.args.is_empty() => args.args.clone(),
        None => bail!("give the transcoder arguments with --argv-json FILE or after --"),
    };
    let given = match &args.source_json {
        Some(p) => Some(read_source(p)?),
        None => None,
    };
    let env = |k: &str| std::env::var(k).ok();
    let (path, absent) = crate::cli::check_config::config_file(args.config.as_deref())?;
    if let Some(note) = absent {
        eprintln!("downshiftarr: {note}");
    }
    let loaded = config::load(&path, &env);
    for e in &loaded.errors {
        eprintln!("downshiftarr: warning: {e} (using defaults)");
    }
    let viewer = Viewer {
        user: args.user.clone(),
        client: args.client.clone(),
        ..Viewer::default()
    };
    let started = Instant::now();
    let out = evaluate(
        &tokens,
        &loaded.config,
        Sources {
            given,
            daemon: true,
            viewer: &viewer,
        },
        started,
    );
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let mut v = to_json(&out, &tokens);
        // The same list the shim's decision record carries (`[]` when the config is fine).
        v["config_errors"] = json!(loaded.errors);
        serde_json::to_writer(&mut stdout, &v)?;
        writeln!(stdout)?;
    } else {
        write_summary(&mut stdout, &out, &tokens)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What a rewritten job will produce: SDR, at the size its (rewritten) scaler asks for.
struct Output {
    size: Option<(u32, u32)>,
}

impl Output {
    fn describe(&self) -> String {
        match self.size {
            Some((w, h)) => format!("{w}x{h} sdr"),
            None => format!(
                "sdr at the job's own size (at most {}x{})",
                downshiftarr_shim::rewrite::MAX_W,
                downshiftarr_shim::rewrite::MAX_H
            ),
        }
    }
}

/// The output of a rewrite (a switch's output is the chosen version's, shown with it), read
/// back from the command line that would be exec'd: the reason is a static counter label
/// ("rewritten to 1080p sdr") while a 720p job stays 720p.
fn output(out: &Outcome) -> Option<Output> {
    if !matches!(out.decision.action, Action::Rewrite(_)) {
        return None;
    }
    let argv = out.argv.as_ref()?;
    let size = match downshiftarr_shim::argv::parse(argv) {
        downshiftarr_shim::argv::Parsed::Job(inv) => {
            let job = downshiftarr_shim::job::classify(&inv);
            downshiftarr_shim::rewrite::output_target(&inv, &job)
        }
        _ => None,
    };
    Some(Output { size })
}

fn read_argv(p: &Path) -> Result<Vec<OsString>> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("unable to read {}", p.display()))?;
    let f: ArgvFile = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: expected an object with an \"args\" array of strings: {e}",
            p.display()
        )
    })?;
    Ok(f.args.into_iter().map(OsString::from).collect())
}

fn read_source(p: &Path) -> Result<SourceFacts> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("unable to read {}", p.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not valid source facts: {e}", p.display()))
}

fn secret() -> Option<String> {
    std::env::var("X_PLEX_TOKEN").ok()
}

/// The `--json` object.
pub fn to_json(out: &Outcome, tokens: &[OsString]) -> serde_json::Value {
    let secret = secret();
    let mut v = json!({
        "job": out.job.as_str(),
        "decision": out.decision.action.name(),
        "reason": out.decision.reason,
        "source": out.facts,
    });
    if let Some(s) = &out.session {
        v["session"] = json!(s);
    }
    if let Some(a) = &out.argv {
        v["argv"] = json!(a
            .iter()
            .map(|t| record::redact(&record::lossy(t), secret.as_deref()))
            .collect::<Vec<_>>());
    }
    if let Some(m) = &out.message {
        v["message"] = json!(m);
    }
    if let Some(s) = out.decision.shadowed {
        v["shadowed"] = json!(s);
    }
    if let Action::Switch(sw) = &out.decision.action {
        v["switch"] = json!(record::SwitchedTo::of(sw, secret.as_deref()));
        v["output_rewritten"] = json!(sw.output_rewritten);
    }
    if let Some(o) = output(out) {
        v["output"] = json!({"width": o.size.map(|s| s.0), "height": o.size.map(|s| s.1), "dynamic_range": "sdr"});
    }
    if let Some(n) = out.decision.no_switch {
        v["no_switch"] = json!(n);
    }
    if out.viewer.is_known() {
        v["viewer"] = json!(out.viewer);
    }
    let changes = record::changes(tokens, &out.edits, secret.as_deref());
    if !changes.is_empty() {
        v["changes"] = json!(changes);
    }
    if !out.notes.is_empty() {
        v["notes"] = json!(out.notes);
    }
    v
}

fn write_summary(w: &mut impl Write, out: &Outcome, tokens: &[OsString]) -> Result<()> {
    let secret = secret();
    writeln!(
        w,
        "job:       {}{}",
        out.job.as_str(),
        out.session
            .as_ref()
            .map(|s| format!(" (session {s})"))
            .unwrap_or_default()
    )?;
    if let Some(i) = &out.input {
        writeln!(w, "input:     {}", record::input_text(i, secret.as_deref()))?;
    }
    match &out.facts {
        Some(f) => {
            let dims = match (f.width, f.height) {
                (Some(w), Some(h)) => format!("{w}x{h}"),
                (None, Some(h)) => format!("{h} lines"),
                _ => "size unknown".into(),
            };
            let depth = f.bit_depth.map(|d| format!(" {d}-bit")).unwrap_or_default();
            let dr = f
                .dynamic_range
                .map(|d| d.as_str())
                .unwrap_or("range unknown");
            let dv = f
                .dv_profile
                .map(|p| format!(" profile {p}"))
                .unwrap_or_default();
            let from = f
                .from
                .map(|o| format!("{o:?}").to_lowercase())
                .unwrap_or_default();
            writeln!(w, "source:    {dims}{depth} {dr}{dv} (from {from})")?;
        }
        None => writeln!(w, "source:    not learned")?,
    }
    for n in &out.notes {
        writeln!(w, "note:      {n}")?;
    }
    // A rewrite says what the output will be, not the counter label.
    let reason = match output(out) {
        Some(o) => format!("protected source rewritten to {}", o.describe()),
        None => out.decision.reason.to_string(),
    };
    writeln!(w, "decision:  {} — {reason}", out.decision.action.name())?;
    if let Some(s) = out.decision.shadowed {
        writeln!(w, "shadowed:  would have been: {s}")?;
    }
    if let Some(n) = out.decision.no_switch {
        writeln!(w, "no switch: {n}")?;
    }
    if let Action::Switch(sw) = &out.decision.action {
        let v = &sw.version;
        let dims = match (v.width, v.height) {
            (Some(w), Some(h)) => format!("{w}x{h}"),
            _ => "size unknown".into(),
        };
        let dr = v
            .dynamic_range
            .map(|d| d.as_str())
            .unwrap_or("range unknown");
        writeln!(
            w,
            "switch to: {} ({dims} {dr}, media {})",
            record::redact(&v.file, secret.as_deref()),
            v.media_id
        )?;
        for m in &sw.streams {
            writeln!(
                w,
                "  {:?} 0:{} -> 0:{} ({} {} -> {})",
                m.kind,
                m.from,
                m.to,
                m.language.as_deref().unwrap_or("und"),
                m.from_codec.as_deref().unwrap_or("?"),
                m.to_codec.as_deref().unwrap_or("?"),
            )?;
        }
    }
    if out.viewer.is_known() {
        writeln!(
            w,
            "viewer:    {} on {}",
            out.viewer.user.as_deref().unwrap_or("unknown user"),
            out.viewer.client.as_deref().unwrap_or("unknown client")
        )?;
    }
    if let Some(m) = &out.message {
        writeln!(w, "message:   {m}")?;
    }
    let changes = record::changes(tokens, &out.edits, secret.as_deref());
    if !changes.is_empty() {
        writeln!(w, "changes:")?;
        for c in changes {
            match c {
                Change::Replaced { at, from, to } => {
                    writeln!(w, "  [{at}] - {from}")?;
                    writeln!(w, "  [{at}] + {to}")?;
                }
                Change::Inserted { after, insert } => {
                    writeln!(w, "  after [{after}] + {}", insert.join(" "))?
                }
                Change::Removed { at, from } => writeln!(w, "  [{at}] - {from} (dropped)")?,
            }
        }
    }
    Ok(())
}
