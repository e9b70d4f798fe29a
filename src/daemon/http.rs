//! The loopback HTTP endpoint: `/health` (200 when every job is healthy, 503 otherwise) and
//! `/metrics` (Prometheus text). tiny_http: blocking, small, no async runtime, which fits a
//! thread-per-job daemon.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Result};
use tiny_http::{Header, Response, Server};

use super::health::Health;
use super::lifecycle::Shutdown;

pub fn bind(addr: &str) -> Result<Server> {
    Server::http(addr).map_err(|e| anyhow!("unable to listen on {addr}: {e}"))
}

pub fn serve(server: &Server, health: &Arc<Health>, shutdown: &Shutdown) -> Result<()> {
    while !shutdown.is_set() {
        let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(250)) else {
            continue;
        };
        let path = req.url().split('?').next().unwrap_or("/").to_string();
        let text = |ct: &str| Header::from_bytes("Content-Type", ct).map_err(|_| anyhow!("header"));
        let res = match path.as_str() {
            "/health" => {
                let code = if health.healthy() { 200 } else { 503 };
                Response::from_string(health.status_json().to_string())
                    .with_status_code(code)
                    .with_header(text("application/json")?)
            }
            "/metrics" => Response::from_string(health.metrics())
                .with_header(text("text/plain; version=0.0.4")?),
            _ => Response::from_string("not found\n").with_status_code(404),
        };
        let _ = req.respond(res);
    }
    Ok(())
}
