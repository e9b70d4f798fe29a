//! The daemon's infrastructure, shared by every job: lifecycle (signals, instance lock, systemd
//! notifications), the supervisor that restarts failed jobs, health, the metrics registry, the
//! typed status, the HTTP endpoint and logging. The jobs themselves live in `crate::jobs`; `downshiftarr daemon`
//! (`crate::cli::daemon`) puts them together.

pub mod admin;
pub mod ctx;
pub mod health;
pub mod http;
pub mod lifecycle;
pub mod logging;
pub mod logring;
pub mod memory;
pub mod metrics;
pub mod status;
pub mod supervisor;
