//! Logs: journald when systemd started us (it sets `JOURNAL_STREAM`), stderr otherwise
//! (containers, a terminal). The level can change at run time (`debug` on SIGHUP).

use anyhow::Result;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, Layer, Registry};

/// Changes the log level after start-up.
pub struct LevelHandle(reload::Handle<LevelFilter, Registry>);

impl LevelHandle {
    pub fn set_debug(&self, debug: bool) {
        let level = if debug {
            LevelFilter::DEBUG
        } else {
            LevelFilter::INFO
        };
        if self.0.reload(level).is_ok() {
            tracing::info!("log level {level}");
        }
    }
}

pub fn init(debug: bool) -> Result<LevelHandle> {
    let level = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    };
    let (filter, handle) = reload::Layer::new(level);
    let journald = std::env::var_os("JOURNAL_STREAM")
        .is_some()
        .then(tracing_journald::layer)
        .and_then(Result::ok);
    let registry = tracing_subscriber::registry().with(filter);
    match journald {
        Some(j) => registry
            .with(j.with_syslog_identifier("downshiftarr".into()).boxed())
            .try_init()?,
        None => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_target(false)
                    .boxed(),
            )
            .try_init()?,
    }
    Ok(LevelHandle(handle))
}
