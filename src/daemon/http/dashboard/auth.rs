//! Who may see the dashboard and use the ops API (issue 14).
//!
//! The rule is the ops API's, extended for a browser:
//! - a caller on loopback (and not behind a proxy: a `Forwarded`/`X-Forwarded-For`/
//!   `X-Real-IP` header makes any peer "elsewhere") is let in;
//! - elsewhere, `Authorization: Bearer <daemon.api_key>`, or the cookie a login set;
//! - the login form (`GET /login`, `POST /login` with `api_key`) checks the key in constant
//!   time and sets an `HttpOnly; SameSite=Strict` cookie holding a random session id (never
//!   the key); sessions live in memory, expire ([`SESSION_TTL`]) and die with the key (a
//!   changed or removed `daemon.api_key` ends every session);
//! - a POST authorized only by the cookie must carry `X-Downshiftarr-Action: 1` ([`CSRF_HEADER`]):
//!   a form on another site cannot set that header, the page's own script does.
//!
//! [`page_access`] is the rule for `/` and the page's assets; [`api_access`] for `/api/…`.

use std::collections::VecDeque;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tiny_http::{Method, Request, Response};

use crate::daemon::ctx::Ctx;
use crate::daemon::http::{
    authorized, ct_eq, header_value, is_loopback, percent_decode, text, with_header, Answer,
};

/// The cookie's name.
pub const COOKIE: &str = "downshiftarr_session";
/// The header a cookie-authorized POST must carry (value `1`).
pub const CSRF_HEADER: &str = "X-Downshiftarr-Action";
/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 86_400);
/// Sessions kept at once; a new login beyond this ends the oldest.
pub const MAX_SESSIONS: usize = 64;
/// Failed logins allowed per [`FAILURE_WINDOW`]; beyond, logins are refused (429) until the
/// window has passed: a guessing script gets a handful of tries a minute.
pub const MAX_FAILURES: usize = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// What `/` (and the page's assets) may answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Serve the page.
    Allowed,
    /// Answer the login page with 401 instead ([`login_page`]).
    Login,
}

/// How an ops API call was authorized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Loopback,
    Bearer,
    /// The login cookie: a POST must also carry [`CSRF_HEADER`].
    Cookie,
}

struct Login {
    id: String,
    /// The key it was opened with: a changed key ends it.
    key: String,
    expires: Instant,
}

/// The in-memory session table (and the failed-login window).
#[derive(Default)]
pub struct Logins {
    sessions: Mutex<Vec<Login>>,
    failures: Mutex<VecDeque<Instant>>,
}

impl Logins {
    /// Opens a session for `key`; returns its id.
    pub fn open(&self, key: &str) -> Result<String, String> {
        let id = random_id()?;
        let mut s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        s.retain(|l| l.expires > now);
        if s.len() >= MAX_SESSIONS {
            s.remove(0);
        }
        s.push(Login {
            id: id.clone(),
            key: key.to_string(),
            expires: now + SESSION_TTL,
        });
        Ok(id)
    }

    /// Whether `id` names a live session opened with `key` (every entry compared in
    /// constant time, so the answer's timing says nothing about near misses).
    pub fn valid(&self, id: &str, key: &str) -> bool {
        if id.is_empty() || key.is_empty() {
            return false;
        }
        let now = Instant::now();
        let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        s.iter().fold(false, |found, l| {
            let hit = ct_eq(l.id.as_bytes(), id.as_bytes())
                & ct_eq(l.key.as_bytes(), key.as_bytes())
                & (l.expires > now);
            found | hit
        })
    }

    /// Ends the session `id` (logout).
    pub fn close(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|l| !ct_eq(l.id.as_bytes(), id.as_bytes()));
    }

    /// Counts a failed login.
    fn failed(&self) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.push_back(Instant::now());
        while f.len() > MAX_FAILURES * 2 {
            f.pop_front();
        }
    }

    fn locked_out(&self) -> bool {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        while f.front().is_some_and(|t| t.elapsed() > FAILURE_WINDOW) {
            f.pop_front();
        }
        f.len() >= MAX_FAILURES
    }

    #[cfg(test)]
    fn expire_all(&self) {
        for l in self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter_mut()
        {
            l.expires = Instant::now();
        }
    }
}

/// 32 random bytes from the kernel, hex.
fn random_id() -> Result<String, String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("unable to read /dev/urandom for a session id: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The peer as the rules see it: `None` when a proxy forwarded the request (whatever
/// address it came from, it is not from this host).
pub fn peer_of(req: &Request) -> Option<SocketAddr> {
    let proxied = ["Forwarded", "X-Forwarded-For", "X-Real-IP"]
        .iter()
        .any(|h| header_value(req, h).is_some());
    req.remote_addr().copied().filter(|_| !proxied)
}

/// The configured `daemon.api_key` ("" when unset or unreadable).
pub fn api_key(ctx: &Ctx) -> String {
    match ctx.config().daemon.api_key.get() {
        Ok(Some(k)) => k.expose().to_string(),
        _ => String::new(),
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k.trim() == name).then_some(v.trim())
    })
}

/// How the request is authorized, if it is: loopback, the bearer key, or a live login cookie.
pub fn authorize(
    peer: Option<&SocketAddr>,
    authorization: Option<&str>,
    cookie_header: Option<&str>,
    key: &str,
    logins: &Logins,
) -> Option<Via> {
    if is_loopback(peer) {
        return Some(Via::Loopback);
    }
    if key.is_empty() {
        return None;
    }
    // The ops API's own check (bearer key, constant time), as before the dashboard.
    if authorized(peer, authorization, key) {
        return Some(Via::Bearer);
    }
    let id = cookie_header.and_then(|c| cookie(c, COOKIE))?;
    logins.valid(id, key).then_some(Via::Cookie)
}

/// The rule for `/api/…`: `Ok(via)`, or the answer to send (401 without authorization, 403
/// for a cookie-authorized POST without [`CSRF_HEADER`]).
pub fn api_access(req: &Request, ctx: &Ctx) -> Result<Via, Answer> {
    let key = api_key(ctx);
    let via = authorize(
        peer_of(req).as_ref(),
        header_value(req, "Authorization"),
        header_value(req, "Cookie"),
        &key,
        &ctx.dashboard.logins,
    );
    let reads = matches!(req.method(), Method::Get | Method::Head);
    match api_rule(via, reads, header_value(req, CSRF_HEADER), key.is_empty()) {
        Ok(v) => Ok(v),
        Err((401, msg)) => Err(with_header(text(401, msg), "WWW-Authenticate", "Bearer")),
        Err((code, msg)) => Err(text(code, msg)),
    }
}

/// The ops API's rule over what [`authorize`] found: `reads` is a GET or HEAD, `csrf` the
/// value of [`CSRF_HEADER`].
pub fn api_rule(
    via: Option<Via>,
    reads: bool,
    csrf: Option<&str>,
    no_key: bool,
) -> Result<Via, (u16, &'static str)> {
    match via {
        None if no_key => Err((401, "unauthorized: daemon.api_key is not set, so only loopback callers may use the ops API")),
        None => Err((401, "unauthorized: send Authorization: Bearer <daemon.api_key>, or log in at /login")),
        Some(Via::Cookie) if !reads && csrf.map(str::trim) != Some("1") => Err((
            403,
            "forbidden: a request authorized by the login cookie must carry the header X-Downshiftarr-Action: 1",
        )),
        Some(v) => Ok(v),
    }
}

/// The rule for `/` and the page's assets: the ops API's (loopback, bearer, login cookie).
pub fn page_access(req: &Request, ctx: &Ctx) -> Access {
    let via = authorize(
        peer_of(req).as_ref(),
        header_value(req, "Authorization"),
        header_value(req, "Cookie"),
        &api_key(ctx),
        &ctx.dashboard.logins,
    );
    match via {
        Some(_) => Access::Allowed,
        None => Access::Login,
    }
}

/// The login page (`assets/login.html`), with `note` (a wrong key, a missing key…) above the
/// form, escaped.
pub fn login_page(code: u16, note: Option<&str>) -> Answer {
    super::assets::login_page(code, note)
}

/// `GET /login`: the form (or straight to `/` when already allowed).
pub fn get_login(req: &Request, ctx: &Ctx) -> Answer {
    if page_access(req, ctx) == Access::Allowed {
        return redirect("/", None);
    }
    let note = api_key(ctx)
        .is_empty()
        .then_some("daemon.api_key is not set: the dashboard is only open on this host (loopback)");
    login_page(200, note)
}

/// `POST /login` with the form's body: the cookie and a redirect to `/`, or the form again
/// with why (401), or 429 after too many failures.
pub fn post_login(ctx: &Ctx, body: &[u8], secure: bool) -> Answer {
    let logins = &ctx.dashboard.logins;
    if logins.locked_out() {
        return login_page(
            429,
            Some("too many failed logins: wait a minute and try again"),
        );
    }
    let key = api_key(ctx);
    if key.is_empty() {
        return login_page(
            401,
            Some("daemon.api_key is not set: the dashboard is only open on this host (loopback)"),
        );
    }
    let given = body
        .split(|&b| b == b'&')
        .find_map(|kv| kv.strip_prefix(b"api_key="))
        .map(percent_decode)
        .unwrap_or_default();
    let given = String::from_utf8_lossy(&given);
    if !ct_eq(given.trim().as_bytes(), key.as_bytes()) {
        logins.failed();
        tracing::warn!("dashboard: a login with a wrong key was refused");
        return login_page(401, Some("wrong key"));
    }
    match logins.open(&key) {
        Ok(id) => {
            tracing::info!("dashboard: logged in");
            redirect("/", Some(&session_cookie(&id, secure)))
        }
        Err(e) => login_page(500, Some(&e)),
    }
}

/// `POST /logout`: the session ends, the cookie is cleared.
pub fn post_logout(req: &Request, ctx: &Ctx) -> Answer {
    if let Some(id) = header_value(req, "Cookie").and_then(|c| cookie(c, COOKIE)) {
        ctx.dashboard.logins.close(id);
    }
    redirect(
        "/login",
        Some(&format!(
            "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        )),
    )
}

/// The `Set-Cookie` value of a new session (`Secure` when the page came over HTTPS, as a
/// proxy in front says with `X-Forwarded-Proto: https`).
pub fn session_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

fn redirect(to: &str, cookie: Option<&str>) -> Answer {
    let r = with_header(
        Response::from_string(String::new()).with_status_code(303),
        "Location",
        to,
    );
    let r = with_header(r, "Cache-Control", "no-store");
    match cookie {
        Some(c) => with_header(r, "Set-Cookie", c),
        None => r,
    }
}

/// Whether the browser reached us over HTTPS (through a proxy saying so).
pub fn is_https(req: &Request) -> bool {
    header_value(req, "X-Forwarded-Proto").is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_bearer_and_cookie_are_the_three_ways_in() {
        let l = Logins::default();
        let lo = addr("127.0.0.1:1");
        let lan = addr("192.168.1.9:1");
        assert_eq!(
            authorize(Some(&lo), None, None, "", &l),
            Some(Via::Loopback)
        );
        assert_eq!(authorize(Some(&lan), None, None, "k3y", &l), None);
        assert_eq!(authorize(None, None, None, "k3y", &l), None, "proxied");
        assert_eq!(
            authorize(Some(&lan), Some("Bearer k3y"), None, "k3y", &l),
            Some(Via::Bearer)
        );
        assert_eq!(
            authorize(Some(&lan), Some("Bearer k3"), None, "k3y", &l),
            None
        );
        let id = l.open("k3y").unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, l.open("k3y").unwrap(), "random ids");
        let c = format!("theme=dark; {COOKIE}={id}; other=1");
        assert_eq!(
            authorize(Some(&lan), None, Some(&c), "k3y", &l),
            Some(Via::Cookie)
        );
        // A cookie never opens anything when no key is configured, or the key changed.
        assert_eq!(authorize(Some(&lan), None, Some(&c), "", &l), None);
        assert_eq!(authorize(Some(&lan), None, Some(&c), "n3w", &l), None);
        // A forged or truncated id is refused.
        let bad = format!("{COOKIE}={}", &id[..63]);
        assert_eq!(authorize(Some(&lan), None, Some(&bad), "k3y", &l), None);
        assert_eq!(
            authorize(Some(&lan), None, Some(&format!("{COOKIE}=")), "k3y", &l),
            None
        );
        l.close(&id);
        assert_eq!(
            authorize(Some(&lan), None, Some(&c), "k3y", &l),
            None,
            "logged out"
        );
    }

    #[test]
    fn a_cookie_post_needs_the_csrf_header_and_nothing_else_does() {
        assert_eq!(
            api_rule(Some(Via::Cookie), true, None, false),
            Ok(Via::Cookie)
        );
        assert_eq!(
            api_rule(Some(Via::Cookie), false, None, false)
                .unwrap_err()
                .0,
            403
        );
        assert_eq!(
            api_rule(Some(Via::Cookie), false, Some("0"), false)
                .unwrap_err()
                .0,
            403
        );
        assert_eq!(
            api_rule(Some(Via::Cookie), false, Some(" 1 "), false),
            Ok(Via::Cookie)
        );
        assert_eq!(
            api_rule(Some(Via::Bearer), false, None, false),
            Ok(Via::Bearer)
        );
        assert_eq!(
            api_rule(Some(Via::Loopback), false, None, true),
            Ok(Via::Loopback)
        );
        let (code, msg) = api_rule(None, true, Some("1"), false).unwrap_err();
        assert_eq!(code, 401);
        assert!(msg.contains("/login"), "{msg}");
        assert!(api_rule(None, true, None, true)
            .unwrap_err()
            .1
            .contains("not set"));
    }

    #[test]
    fn sessions_expire_and_the_table_is_bounded() {
        let l = Logins::default();
        let first = l.open("k").unwrap();
        for _ in 0..MAX_SESSIONS {
            l.open("k").unwrap();
        }
        assert!(!l.valid(&first, "k"), "the oldest made room");
        let id = l.open("k").unwrap();
        assert!(l.valid(&id, "k"));
        l.expire_all();
        assert!(!l.valid(&id, "k"), "expired");
        assert!(l.sessions.lock().unwrap().len() <= MAX_SESSIONS);
    }

    #[test]
    fn failed_logins_lock_out_for_a_window() {
        let l = Logins::default();
        for _ in 0..MAX_FAILURES - 1 {
            l.failed();
        }
        assert!(!l.locked_out());
        l.failed();
        assert!(l.locked_out());
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_never_the_key() {
        let c = session_cookie("abc", false);
        assert!(c.starts_with("downshiftarr_session=abc;"), "{c}");
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/"));
        assert!(!c.contains("Secure"));
        assert!(session_cookie("abc", true).ends_with("; Secure"));
        assert_eq!(cookie("a=1; b = 2 ;c=3", "b"), Some("2"));
        assert_eq!(cookie("a=1", "b"), None);
        assert_eq!(cookie("", COOKIE), None);
    }

    #[test]
    fn the_login_page_escapes_its_note() {
        let r = login_page(401, Some("<script>x</script>"));
        assert_eq!(r.status_code().0, 401);
        let mut body = String::new();
        r.into_reader().read_to_string(&mut body).unwrap();
        assert!(body.contains("&lt;script&gt;") && !body.contains("<script>"));
        assert!(body.contains("name=\"api_key\""));
    }
}
