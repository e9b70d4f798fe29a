//! The web dashboard (issue 14): one page served by the daemon's HTTP listener at `/`, built
//! from the JSON endpoints under `/api/dashboard/`.
//!
//! - `assets`: the page's static files compiled into the binary, with ETag and gzip.

pub mod assets;
