//! Jobs run in their own threads; one that fails is restarted with exponential back-off and
//! never takes the daemon down. Every job watches the same [`Shutdown`].

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;

use std::sync::Arc;

use super::health::Health;
use super::lifecycle::Shutdown;

/// A long-running job: returns `Ok` when shutdown was requested, `Err` when it failed.
pub type JobFn = Box<dyn FnMut(&Shutdown) -> Result<()> + Send>;

/// Starts `job` under supervision.
pub fn spawn(
    name: &'static str,
    shutdown: Shutdown,
    health: Arc<Health>,
    mut job: JobFn,
) -> JoinHandle<()> {
    health.job_started(name);
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut backoff = Duration::from_secs(1);
            loop {
                let started = Instant::now();
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&shutdown)));
                if shutdown.is_set() {
                    return;
                }
                let why = match result {
                    Ok(Ok(())) => "returned without a shutdown".to_string(),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(_) => "panicked".to_string(),
                };
                tracing::error!(
                    job = name,
                    "job failed: {why}; restarting in {}s",
                    backoff.as_secs()
                );
                health.job_failed(name, why);
                if started.elapsed() > Duration::from_secs(300) {
                    backoff = Duration::from_secs(1); // it ran fine for a while
                }
                if shutdown.wait(backoff) {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        });
    match spawned {
        Ok(h) => h,
        Err(e) => {
            // Out of threads: report it and hand back a finished handle; the daemon runs on.
            tracing::error!(job = name, "unable to start the job's thread: {e}");
            std::thread::spawn(|| {})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn failing_job_is_restarted_and_stops_on_shutdown() {
        let s = Shutdown::default();
        let runs = Arc::new(AtomicU32::new(0));
        let r = runs.clone();
        let h = spawn(
            "flaky",
            s.clone(),
            Arc::new(Health::new()),
            Box::new(move |sd: &Shutdown| {
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    anyhow::bail!("first run fails");
                }
                sd.wait(Duration::from_secs(30));
                Ok(())
            }),
        );
        let t = Instant::now();
        while runs.load(Ordering::SeqCst) < 2 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "restarted after the back-off"
        );
        s.trigger();
        h.join().unwrap();
    }
}
