//! The shim ↔ daemon protocol, and the shim's blocking client.
//!
//! # Wire format
//!
//! Every message is one frame: a 4-byte big-endian length `N` (1 ≤ N ≤ [`MAX_FRAME`]) followed
//! by `N` bytes of UTF-8 JSON. Every JSON object carries `"v": 1` ([`PROTOCOL_VERSION`]) and a
//! `"type"`. The client sends one request and reads one response; it may send several
//! requests on one connection. End of stream is its own error ([`ClientError::Eof`]).
//!
//! ```text
//! 00 00 00 2f  {"v":1,"type":"lookup_source","path":"/m/A.mkv"}
//! 00 00 00 5c  {"v":1,"type":"source","found":true,"facts":{"width":3840,"height":2160,…},"versions":[…]}
//! ```
//!
//! | request | response |
//! |---|---|
//! | `{"type":"ping"}` | `{"type":"pong"}` |
//! | `{"type":"version"}` | `{"type":"version","version":"0.1.0","protocol":1}` |
//! | `{"type":"lookup_source","path":P}` | `{"type":"source","found":bool,"facts":{…}?,"versions":[…]}` |
//! | `{"type":"report_decision","record":{…}}` | `{"type":"ok"}` |
//! | `{"type":"session_context","transcode_session":S,"wait_ms":N}` | `{"type":"session","viewer":{"user":…,"client":…,"device":…,"local":bool}}` |
//! | anything malformed | `{"type":"error","message":"…"}` |
//!
//! The daemon also answers requests only its admin CLI sends (`status`, `tautulli_event`) on
//! the same socket and in the same framing; they are the daemon's business and are defined in
//! the daemon's crate (`src/daemon/admin.rs`), whose tags never overlap [`REQUEST_TYPES`].
//!
//! # Deadlines
//!
//! The client works against one wall-clock deadline: the connect is non-blocking, and every
//! read and write gets the time that is *left*, so a daemon that drips one byte at a time
//! cannot hold the shim past its budget. No daemon listening costs one failed `connect(2)`.

use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::facts::SourceFacts;

/// The protocol version both sides speak.
pub const PROTOCOL_VERSION: u32 = 1;
/// The largest frame either side accepts.
pub const MAX_FRAME: usize = 1 << 20;

/// One version (media) of a library item, as the daemon's index knows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaVersion {
    pub media_id: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub dynamic_range: Option<crate::facts::DynamicRange>,
    pub dv_profile: Option<u8>,
    /// The video's bit depth, when the index knows it (absent from older daemons' answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_depth: Option<u8>,
    /// Dolby Vision with a compatible base layer (HDR10/SDR/HLG), as [`SourceFacts`] has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dv_base_layer_compatible: Option<bool>,
    pub bitrate_kbps: Option<u32>,
    /// Few distinct values across a library: shared, not copied, in the daemon's memory.
    pub container: Option<Arc<str>>,
    pub edition: Option<Arc<str>>,
    pub file: String,
    #[serde(default)]
    pub streams: Vec<StreamInfo>,
}

/// The type of a stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    #[default]
    Video,
    Audio,
    Subtitle,
}

/// One stream of a version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamInfo {
    pub index: u32,
    pub kind: StreamKind,
    pub codec: Option<Arc<str>>,
    pub language: Option<Arc<str>>,
    pub channels: Option<u32>,
    #[serde(default)]
    pub default: bool,
    #[serde(default)]
    pub forced: bool,
}

/// A request from the shim.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    Ping,
    Version,
    LookupSource {
        path: String,
    },
    ReportDecision {
        record: serde_json::Value,
    },
    SessionContext {
        transcode_session: String,
        /// How long the daemon may look (asking Plex) before it must answer, ms.
        #[serde(default)]
        wait_ms: u32,
    },
}

/// The `"type"` of every [`Request`]: the daemon tells the shim's requests from its own admin
/// requests by them, and names them in the error an unknown type gets.
pub const REQUEST_TYPES: &[&str] = &[
    "ping",
    "version",
    "lookup_source",
    "report_decision",
    "session_context",
];

/// A response from the daemon.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Pong,
    Version {
        version: String,
        protocol: u32,
    },
    Source {
        found: bool,
        #[serde(default)]
        facts: Option<SourceFacts>,
        #[serde(default)]
        versions: Vec<MediaVersion>,
    },
    /// Who is watching a transcode session; every field `null` when the daemon does not
    /// know (yet).
    Session {
        #[serde(default)]
        viewer: crate::viewer::Viewer,
    },
    Ok,
    Error {
        message: String,
    },
}

/// A message on the wire: the version plus the body.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub v: u32,
    #[serde(flatten)]
    pub body: T,
}

/// What can go wrong on the wire.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing listens at the socket path (or it refuses).
    NotRunning,
    /// The deadline passed.
    Timeout,
    /// The peer closed the connection.
    Eof,
    /// A frame announced more than [`MAX_FRAME`] bytes (or zero).
    FrameSize(usize),
    /// The frame was not a message of this protocol.
    BadFrame(String),
    /// The peer speaks another protocol version.
    Version(u32),
    Io(io::Error),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NotRunning => write!(f, "daemon not running"),
            ClientError::Timeout => write!(f, "daemon did not answer in time"),
            ClientError::Eof => write!(f, "daemon closed the connection"),
            ClientError::FrameSize(n) => write!(f, "frame of {n} bytes is outside 1..={MAX_FRAME}"),
            ClientError::BadFrame(e) => write!(f, "malformed frame: {e}"),
            ClientError::Version(v) => {
                write!(f, "protocol version {v}, expected {PROTOCOL_VERSION}")
            }
            ClientError::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    /// A static label for logs and counters.
    pub fn label(&self) -> &'static str {
        match self {
            ClientError::NotRunning => "daemon not running",
            ClientError::Timeout => "daemon timeout",
            ClientError::Eof => "daemon closed connection",
            ClientError::FrameSize(_) => "daemon frame size",
            ClientError::BadFrame(_) => "daemon malformed frame",
            ClientError::Version(_) => "daemon protocol version",
            ClientError::Io(_) => "daemon socket error",
        }
    }
}

fn map_io(e: io::Error) -> ClientError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout,
        io::ErrorKind::UnexpectedEof => ClientError::Eof,
        _ => ClientError::Io(e),
    }
}

/// Encodes a message as a frame.
pub fn encode<T: Serialize>(body: &T) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    // Serializing our own types to a Vec cannot fail (no maps with non-string keys).
    let _ = serde_json::to_writer(
        &mut out,
        &Envelope {
            v: PROTOCOL_VERSION,
            body,
        },
    );
    let n = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&n.to_be_bytes());
    out
}

/// Decodes a frame body.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ClientError> {
    #[derive(Deserialize)]
    struct V {
        v: u32,
    }
    let v: V = serde_json::from_slice(body).map_err(|e| ClientError::BadFrame(e.to_string()))?;
    if v.v != PROTOCOL_VERSION {
        return Err(ClientError::Version(v.v));
    }
    let e: Envelope<T> =
        serde_json::from_slice(body).map_err(|e| ClientError::BadFrame(e.to_string()))?;
    Ok(e.body)
}

/// Reads one frame body from a blocking reader (whose timeouts the caller manages).
pub fn read_frame<R: Read>(r: &mut R) -> Result<Vec<u8>, ClientError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(map_io)?;
    let n = u32::from_be_bytes(len) as usize;
    if n == 0 || n > MAX_FRAME {
        return Err(ClientError::FrameSize(n));
    }
    let mut body = vec![0u8; n];
    r.read_exact(&mut body).map_err(map_io)?;
    Ok(body)
}

/// A socket whose every read and write is bounded by one deadline.
struct Deadlined {
    sock: UnixStream,
    deadline: Instant,
}

impl Deadlined {
    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
        } else {
            Ok(left)
        }
    }
}

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.set_read_timeout(Some(self.left()?))?;
        self.sock.read(buf)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.set_write_timeout(Some(self.left()?))?;
        // std's `UnixStream` sends with `MSG_NOSIGNAL`: a daemon that hung up costs an EPIPE
        // (and a fallback), never a SIGPIPE (test `writing_to_a_daemon_that_hung_up…`).
        self.sock.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connection to the daemon, bounded by a deadline.
pub struct Client {
    io: Deadlined,
}

impl Client {
    /// Connects without blocking: a missing socket or a full backlog fails at once.
    pub fn connect(path: &Path, deadline: Instant) -> Result<Client, ClientError> {
        let sock = connect_nonblocking(path)?;
        sock.set_nonblocking(false).map_err(ClientError::Io)?;
        Ok(Client {
            io: Deadlined { sock, deadline },
        })
    }

    /// Sends a request and reads its response.
    pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        self.call_as(req)
    }

    /// Sends any message in this framing and reads the answer as `Resp`: the daemon's admin
    /// requests (`downshiftarr status`, `downshiftarr tautulli`) travel this way.
    pub fn call_as<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        req: &Req,
    ) -> Result<Resp, ClientError> {
        self.io.write_all(&encode(req)).map_err(map_io)?;
        let body = read_frame(&mut self.io)?;
        decode(&body)
    }

    /// Sends a request without waiting for the response.
    pub fn send(&mut self, req: &Request) -> Result<(), ClientError> {
        self.io.write_all(&encode(req)).map_err(map_io)
    }
}

fn connect_nonblocking(path: &Path) -> Result<UnixStream, ClientError> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; zeroed is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(ClientError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        )));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(ClientError::Io(io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh, valid socket owned by nobody else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as libc::socklen_t;
    // SAFETY: addr is a properly initialised sockaddr_un of at least `len` bytes.
    let rc = unsafe {
        libc::connect(
            fd,
            &addr as *const libc::sockaddr_un as *const libc::sockaddr,
            len,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ECONNREFUSED) | Some(libc::ENOTDIR) => {
                ClientError::NotRunning
            }
            // A full listen backlog: the daemon is not keeping up; do not wait for it.
            Some(libc::EAGAIN) => ClientError::Timeout,
            _ => ClientError::Io(e),
        });
    }
    Ok(UnixStream::from(owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon that hung up is an error to fall back from, never a SIGPIPE: checked in a
    /// forked child with SIGPIPE at its default, as Plex may start the shim.
    #[test]
    fn writing_to_a_daemon_that_hung_up_is_an_error_not_a_signal() {
        let (a, b) = UnixStream::pair().expect("socket pair");
        drop(b);
        // SAFETY: the child only calls async-signal-safe functions and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let mut io = Deadlined {
                sock: a,
                deadline: Instant::now() + Duration::from_secs(1),
            };
            let code = match io.write(b"frame") {
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => 0,
                _ => 1,
            };
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x} (killed by signal {})",
            libc::WTERMSIG(status)
        );
    }

    #[test]
    fn round_trip() {
        let req = Request::LookupSource {
            path: "/m/A.mkv".into(),
        };
        let f = encode(&req);
        assert_eq!(
            u32::from_be_bytes(f[..4].try_into().unwrap()) as usize,
            f.len() - 4
        );
        let text = std::str::from_utf8(&f[4..]).unwrap();
        assert_eq!(text, r#"{"v":1,"type":"lookup_source","path":"/m/A.mkv"}"#);
        assert_eq!(decode::<Request>(&f[4..]).unwrap(), req);
    }

    #[test]
    fn version_and_garbage() {
        assert!(matches!(
            decode::<Response>(br#"{"v":2,"type":"pong"}"#),
            Err(ClientError::Version(2))
        ));
        assert!(matches!(
            decode::<Response>(b"\xff\x00"),
            Err(ClientError::BadFrame(_))
        ));
        assert!(matches!(
            decode::<Response>(br#"{"v":1,"type":"nope"}"#),
            Err(ClientError::BadFrame(_))
        ));
    }

    /// `status` and `tautulli_event` are the daemon's admin requests (`src/daemon/admin.rs`):
    /// the shim's protocol no longer reads them, and every type it does read is listed in
    /// [`REQUEST_TYPES`], which the daemon uses to tell the two apart.
    #[test]
    fn admin_requests_are_not_the_shims_and_every_shim_type_is_listed() {
        for admin in [
            &br#"{"v":1,"type":"status"}"#[..],
            br#"{"v":1,"type":"tautulli_event","event":{}}"#,
        ] {
            assert!(
                matches!(decode::<Request>(admin), Err(ClientError::BadFrame(_))),
                "{}",
                String::from_utf8_lossy(admin)
            );
        }
        let all = [
            Request::Ping,
            Request::Version,
            Request::LookupSource { path: "/m".into() },
            Request::ReportDecision {
                record: serde_json::json!({}),
            },
            Request::SessionContext {
                transcode_session: "t".into(),
                wait_ms: 0,
            },
        ];
        for r in &all {
            // A new variant fails to compile here: add it to `all` and to REQUEST_TYPES.
            match r {
                Request::Ping
                | Request::Version
                | Request::LookupSource { .. }
                | Request::ReportDecision { .. }
                | Request::SessionContext { .. } => {}
            }
            let v = serde_json::to_value(r).unwrap();
            let t = v["type"].as_str().unwrap();
            assert!(REQUEST_TYPES.contains(&t), "{t} is not in REQUEST_TYPES");
        }
        assert_eq!(all.len(), REQUEST_TYPES.len());
    }

    #[test]
    fn frame_limits() {
        let mut big = &((MAX_FRAME as u32 + 1).to_be_bytes())[..];
        assert!(matches!(
            read_frame(&mut big),
            Err(ClientError::FrameSize(_))
        ));
        let mut zero = &[0u8, 0, 0, 0][..];
        assert!(matches!(
            read_frame(&mut zero),
            Err(ClientError::FrameSize(0))
        ));
        let mut short = &[0u8, 0, 0, 9, b'{'][..];
        assert!(matches!(read_frame(&mut short), Err(ClientError::Eof)));
    }

    #[test]
    fn no_daemon_is_not_running() {
        let r = Client::connect(
            Path::new("/nonexistent/dsa.sock"),
            Instant::now() + Duration::from_millis(50),
        );
        assert!(matches!(r, Err(ClientError::NotRunning)));
    }
}
