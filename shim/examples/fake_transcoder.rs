//! A stand-in for the real `Plex Transcoder` used by the tests: it records exactly how it was
//! exec'd — argv[0], every argument as raw bytes, the working directory and the environment —
//! into the file named by `FAKE_TRANSCODER_RECORD`, then exits with `FAKE_TRANSCODER_EXIT`
//! (default 0). A shell script cannot do this: the kernel replaces a script's argv[0].

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    let Some(path) = std::env::var_os("FAKE_TRANSCODER_RECORD") else {
        eprintln!("fake_transcoder: FAKE_TRANSCODER_RECORD is not set");
        std::process::exit(3);
    };
    let mut out = String::new();
    for a in std::env::args_os() {
        out.push_str("arg ");
        out.push_str(&hex(a.as_bytes()));
        out.push('\n');
    }
    if let Ok(cwd) = std::env::current_dir() {
        out.push_str("cwd ");
        out.push_str(&hex(cwd.as_os_str().as_bytes()));
        out.push('\n');
    }
    for (k, v) in std::env::vars_os() {
        out.push_str("env ");
        out.push_str(&hex(k.as_bytes()));
        out.push(' ');
        out.push_str(&hex(v.as_bytes()));
        out.push('\n');
    }
    let ok = std::fs::File::create(&path).and_then(|mut f| f.write_all(out.as_bytes()));
    if ok.is_err() {
        std::process::exit(4);
    }
    let code = std::env::var("FAKE_TRANSCODER_EXIT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    std::process::exit(code);
}
