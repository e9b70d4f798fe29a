//! The dashboard page's assets (owned by the page's side of issue 14; empty until then).
