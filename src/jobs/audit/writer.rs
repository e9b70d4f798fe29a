//! The audit job: stores every decision record (the shim's reports and the daemon's own) in
//! the audit table, counts them, remembers which transcodes the shim handled (so the guard
//! leaves them alone) and queues the shim's refusals for the refusal worker.

use std::time::Duration;

use anyhow::Result;
use serde_json::Value;

use crate::daemon::ctx::{AuditMsg, Ctx};
use crate::daemon::lifecycle::Shutdown;
use crate::jobs::Job;

pub fn job(ctx: &Ctx) -> Result<Option<Job>> {
    let ctx = ctx.clone();
    Ok(Some(Box::new(move |sd: &Shutdown| run(&ctx, sd))))
}

fn run(ctx: &Ctx, shutdown: &Shutdown) -> Result<()> {
    let db = crate::jobs::index::open(&ctx.db_path)?;
    while !shutdown.is_set() {
        let Some(msg) = ctx.audit.recv_timeout(Duration::from_millis(250)) else {
            continue;
        };
        match msg {
            AuditMsg::Outcome {
                session,
                outcome,
                user,
            } => super::set_outcome(&db, &session, &outcome, user.as_deref())?,
            AuditMsg::Viewer { session, user } => super::set_user(&db, &session, &user)?,
            AuditMsg::Daemon(rec) => super::insert(&db, &rec)?,
            AuditMsg::Shim(rec) => {
                shim_report(ctx, &rec);
                super::insert(&db, &rec)?;
            }
        }
    }
    Ok(())
}

/// A decision the shim reported: counted, remembered, logged when it changed the job, and
/// queued for termination when it refused.
fn shim_report(ctx: &Ctx, rec: &Value) {
    let field = |k: &str| rec.get(k).and_then(Value::as_str).unwrap_or_default();
    let decision = field("decision");
    ctx.health.decision("shim", decision, field("reason"));
    ctx.memory.note_shim(rec);
    if decision != "pass" {
        tracing::info!(
            decision,
            reason = field("reason"),
            input = field("input"),
            "shim decision"
        );
    }
    if decision == "refuse" && !ctx.refusals.send(rec.clone()) {
        tracing::warn!("a refused session is not terminated (refusal queue full)");
    }
}
