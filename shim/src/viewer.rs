//! Who is watching a transcode, as the daemon's session tracker knows it.
//!
//! A leaf module: the protocol carries it (`session_context`), the policy judges it
//! (exemptions), the record logs it; none of those imports another for it.

use serde::{Deserialize, Serialize};

/// Who is watching, as the daemon's session tracker knows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Viewer {
    /// Plex username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Client product (`Plex for Android (TV)`, `Plex Web`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Device name (`Living Room Shield`) and platform (`Android`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Client machine identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<bool>,
}

impl Viewer {
    /// Something is known about the viewer.
    pub fn is_known(&self) -> bool {
        self.user.is_some() || self.client.is_some() || self.client_id.is_some()
    }
}
