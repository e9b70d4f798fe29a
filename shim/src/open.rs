//! Opening files without ever blocking: everything the shim opens goes through here.
//!
//! A plain `open(2)` of a FIFO blocks until the other end appears — for a read, until a
//! writer opens it; for a write, until a reader does. A FIFO named like a movie, as the
//! config file or as the decision log hung every transcoder start (issue 9 §2). So every
//! open is `O_NONBLOCK | O_NOCTTY`, the file type is checked with `fstat` on the open
//! descriptor (no race with a rename), and only then is `O_NONBLOCK` cleared and the file
//! read or written.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What may be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Regular files only (config, decision log).
    Regular,
    /// Regular files or block devices (a media input: a disc image on a raw device).
    RegularOrBlock,
}

/// Why an open failed.
#[derive(Debug)]
pub enum OpenError {
    /// The path is not there.
    NotFound,
    /// The path is a FIFO, socket, directory, character device….
    NotRegular(&'static str),
    /// Any other error of `open(2)` or `fstat(2)`.
    Io(io::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::NotFound => write!(f, "not found"),
            OpenError::NotRegular(what) => write!(f, "not a regular file (a {what})"),
            OpenError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// Opens `path` for reading.
pub fn read(path: &Path, kind: Kind) -> Result<File, OpenError> {
    checked(OpenOptions::new().read(true), path, kind)
}

/// Opens `path` for appending, creating it if missing (mode 0666 less the umask).
pub fn append(path: &Path) -> Result<File, OpenError> {
    checked(
        OpenOptions::new().append(true).create(true),
        path,
        Kind::Regular,
    )
}

fn checked(opts: &mut OpenOptions, path: &Path, kind: Kind) -> Result<File, OpenError> {
    let file = opts
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => OpenError::NotFound,
            // A FIFO opened for writing with no reader: ENXIO.
            _ if e.raw_os_error() == Some(libc::ENXIO) => OpenError::NotRegular("fifo"),
            _ => OpenError::Io(e),
        })?;
    let t = file.metadata().map_err(OpenError::Io)?.file_type();
    let ok = t.is_file() || (kind == Kind::RegularOrBlock && t.is_block_device());
    if !ok {
        return Err(OpenError::NotRegular(if t.is_fifo() {
            "fifo"
        } else if t.is_dir() {
            "directory"
        } else if t.is_socket() {
            "socket"
        } else if t.is_char_device() {
            "character device"
        } else if t.is_block_device() {
            "block device"
        } else {
            "special file"
        }));
    }
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own; the flags are read, then written back.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above. A failure leaves O_NONBLOCK set, harmless on a regular file.
    if flags >= 0 && unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(OpenError::Io(io::Error::last_os_error()));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn fifo(dir: &Path, name: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        p
    }

    #[test]
    fn fifos_and_directories_are_refused_at_once() {
        let dir = std::env::temp_dir().join(format!("dsa-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let f = fifo(&dir, "F 2160p HDR.mkv");
        let started = Instant::now();
        assert!(matches!(
            read(&f, Kind::RegularOrBlock),
            Err(OpenError::NotRegular("fifo"))
        ));
        assert!(matches!(append(&f), Err(OpenError::NotRegular("fifo"))));
        assert!(matches!(
            read(&dir, Kind::Regular),
            Err(OpenError::NotRegular("directory"))
        ));
        assert!(matches!(
            read(Path::new("/dev/null"), Kind::Regular),
            Err(OpenError::NotRegular("character device"))
        ));
        assert!(matches!(
            read(&dir.join("missing"), Kind::Regular),
            Err(OpenError::NotFound)
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
        let log = dir.join("log");
        append(&log).unwrap();
        assert!(read(&log, Kind::Regular).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
