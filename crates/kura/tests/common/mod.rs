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
        .args(meta_args(dir))
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

/// `--meta URL` when the suite runs against PostgreSQL (`KURA_TEST_PG_URL`, set by
/// scripts/test): one fresh database per data directory, so a server restarted on the same
/// directory finds its metadata again. Empty for the embedded store.
pub fn meta_args(dir: &std::path::Path) -> Vec<String> {
    match pg_database_for(dir) {
        Some(url) => vec!["--meta".into(), url],
        None => vec![],
    }
}

/// The PostgreSQL database of a data directory (created on first use), when testing on PostgreSQL.
pub fn pg_database_for(dir: &std::path::Path) -> Option<String> {
    let base = std::env::var("KURA_TEST_PG_URL").ok()?;
    std::fs::create_dir_all(dir).unwrap();
    let marker = dir.join("test-meta-url");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return Some(url);
    }
    let name = format!("kt_{}", hex_id());
    let port = base.rsplit(':').next().unwrap_or_default().to_string();
    let bin = std::env::var("KURA_TEST_PG_BIN").unwrap_or_default();
    let user = std::env::var("KURA_TEST_PG_USER").unwrap_or_default();
    let ok = Command::new(format!("{bin}/createdb"))
        .args(["-h", "127.0.0.1", "-p", &port, "-U", &user, &name])
        .status()
        .expect("createdb runs");
    assert!(ok.success(), "createdb {name} failed");
    let url = format!("{base}/{name}");
    std::fs::write(&marker, &url).unwrap();
    Some(url)
}

fn hex_id() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}{n}", nanos, std::process::id())
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
