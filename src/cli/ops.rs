//! The dashboard's actions from the command line (issue 14: each action of the page is also a
//! command): `scrobble pause|resume` and `downloads reevaluate <id>` ask the running daemon
//! through its ops API (`daemon.http_listen`), as the page does. A listener bound to every
//! address (`0.0.0.0`, `[::]`) is asked on loopback; `daemon.api_key` is sent when set.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::config::Config;

/// The ops API's base URL for `daemon.http_listen`.
pub fn base_url(listen: &str) -> Result<String> {
    let listen = listen.trim();
    if listen.is_empty() {
        bail!("daemon.http_listen is empty: the daemon serves no ops API; set it (default 127.0.0.1:9877) and restart the daemon");
    }
    let addr = if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen.to_string()
    };
    Ok(format!("http://{addr}"))
}

/// POSTs an action; the daemon's JSON answer, or an error naming the address and what to do.
pub fn post(cfg: &Config, path: &str) -> Result<Value> {
    let url = format!("{}{path}", base_url(&cfg.daemon.http_listen)?);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")?;
    let mut req = client.post(&url).header("X-Downshiftarr-Action", "1");
    if let Ok(Some(key)) = cfg.daemon.api_key.get() {
        req = req.bearer_auth(key.expose());
    }
    let res = req.send().with_context(|| {
        format!("POST {url}: the daemon did not answer (is `downshiftarr daemon` running?)")
    })?;
    let status = res.status();
    let text = res
        .text()
        .with_context(|| format!("POST {url}: reading the answer"))?;
    if !status.is_success() {
        let hint = match status.as_u16() {
            401 => ": set daemon.api_key (or DOWNSHIFTARR_API_KEY) to the daemon's key",
            404 => ": this daemon does not know the action (an older version, or the job is off)",
            _ => "",
        };
        bail!("POST {url}: {status} {}{hint}", text.trim());
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Runs an action and prints what the daemon said.
pub fn action(cfg: &Config, path: &str, done: &str) -> Result<ExitCode> {
    let v = post(cfg, path)?;
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| done.to_string(), String::from);
    println!("{message}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_on_every_address_is_asked_on_loopback() {
        assert_eq!(base_url("127.0.0.1:9877").unwrap(), "http://127.0.0.1:9877");
        assert_eq!(base_url("0.0.0.0:9000").unwrap(), "http://127.0.0.1:9000");
        assert_eq!(base_url("[::]:9000").unwrap(), "http://[::1]:9000");
        assert_eq!(base_url("nas.lan:9877").unwrap(), "http://nas.lan:9877");
        let e = base_url(" ").unwrap_err().to_string();
        assert!(e.contains("daemon.http_listen is empty"), "{e}");
    }
}
