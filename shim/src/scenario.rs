//! The refusal scenarios, named once.
//!
//! A leaf module: the configuration (a `KILL_MESSAGE_<SCENARIO>` key per scenario), the policy
//! (which refuses with one) and the daemon all name them, and none of those imports another
//! for it.

/// Refusal scenarios: each has a `KILL_MESSAGE_<SCENARIO>` message.
/// The first four are the shim's; the rest are the daemon's (reactive guard, Tautulli
/// trigger), named after the original script's `KILL_ON_*` cases.
pub const SCENARIOS: &[&str] = &[
    "unknown_source",
    "rewrite_unsupported",
    "no_fallback_media",
    "unexpected_error",
    "protected_transcode",
    "plex_connect_fail",
    "session_not_found",
    "client_not_found",
    "switch_fail",
];
