//! Shared by the integration tests: a real `kura serve` on a free port.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, Stdio};

pub const AK: &str = "it-ak";
pub const SK: &str = "it-sk";

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut s = start_in(dir.path());
    s._dir = Some(dir);
    s
}

/// Starts a server on an existing data directory (which the caller keeps).
pub fn start_in(dir: &std::path::Path) -> Server {
    start_with(dir, &[])
}

/// Starts a server on an existing data directory with extra `kura serve` flags.
pub fn start_with(dir: &std::path::Path, extra: &[&str]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kura"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir)
        .args(["--access-key-id", AK, "--access-key-secret", SK])
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("listening on") {
        assert_eq!(out.read(&mut byte).unwrap(), 1, "server exited before listening");
        seen.push(byte[0]);
    }
    Server {
        child,
        port,
        _dir: None,
    }
}

/// Files under a directory of the data dir.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

impl Server {
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
