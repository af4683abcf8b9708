//! The client commands: `kura cp`, `ls`, `rm`, `mb`, `rb`, `mpu ls|parts|abort`. Thin over
//! `kura-client`; this file only parses arguments, shows progress and maps errors to exit codes.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use kura_client::{Checkpoint, Client, Config, Error, Progress, SignatureVersion, TransferOptions, TransferReport};
use serde_json::json;

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Service endpoint.
    #[arg(long, env = "OSS_ENDPOINT", default_value = "http://127.0.0.1:9000", global = true)]
    pub endpoint: String,
    /// Region used for V4 signing.
    #[arg(long, env = "OSS_REGION", default_value = "cn-hangzhou", global = true)]
    pub region: String,
    /// Signature version.
    #[arg(long, value_enum, default_value_t = Sig::V4, global = true)]
    pub signature: Sig,
    /// Print machine-readable JSON on stdout (errors too), and no progress bar.
    #[arg(long, global = true)]
    pub json: bool,
    /// Address buckets in the path (`http://host/bucket/key`) even for a host name endpoint
    /// (IP addresses and localhost always are).
    #[arg(long, env = "OSS_PATH_STYLE", global = true)]
    pub path_style: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum Sig {
    V1,
    V4,
}

#[derive(Subcommand, Debug)]
pub enum Mpu {
    /// List unfinished multipart uploads.
    Ls { bucket: String },
    /// List the parts of an upload.
    Parts { object: String, upload_id: String },
    /// Abort an upload and delete its parts.
    Abort { object: String, upload_id: String },
}

#[derive(Args, Debug)]
pub struct CpArgs {
    /// A local file or oss://bucket/key.
    pub src: String,
    /// A local file or directory, or oss://bucket/key (a trailing / keeps the file name).
    pub dst: String,
    /// Part size in bytes (K, M, G suffixes allowed); chosen from the file size by default.
    #[arg(long, value_parser = parse_size)]
    pub part_size: Option<u64>,
    /// Parts in flight (default: up to 8).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Keep upload checkpoints here instead of beside the source file.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Do not resume an interrupted upload, and keep no checkpoint (a failure aborts it).
    #[arg(long)]
    pub no_resume: bool,
}

/// Exit codes: one per kind of failure, so scripts can tell them apart.
pub mod exit {
    pub const OK: i32 = 0;
    pub const OTHER: i32 = 1;
    pub const NOT_FOUND: i32 = 3;
    pub const ACCESS: i32 = 4;
    pub const INTEGRITY: i32 = 5;
    pub const NETWORK: i32 = 6;
    pub const LOCAL_IO: i32 = 7;
    pub const CONFLICT: i32 = 8;
    pub const SERVER: i32 = 9;
    /// Ctrl-C, as shells report a SIGINT.
    pub const INTERRUPTED: i32 = 130;
}

fn exit_code(e: &Error) -> i32 {
    match e.root() {
        Error::Service(s) => match s.code.as_str() {
            "NoSuchBucket" | "NoSuchKey" | "NoSuchUpload" | "NotFound" => exit::NOT_FOUND,
            "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "RequestTimeTooSkewed" => exit::ACCESS,
            "BucketNotEmpty" | "BucketAlreadyExists" | "FileAlreadyExists" => exit::CONFLICT,
            _ if s.status >= 500 || s.status == 429 => exit::SERVER,
            _ => exit::OTHER,
        },
        Error::Invalid(m) if m.contains("OSS_ACCESS_KEY_ID") => exit::ACCESS,
        Error::Invalid(m) if m.starts_with("interrupted") => exit::INTERRUPTED,
        Error::Integrity(_) => exit::INTEGRITY,
        Error::Transport(_) => exit::NETWORK,
        Error::Io { .. } => exit::LOCAL_IO,
        _ => exit::OTHER,
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("not a size: {s}"))
}

/// `oss://bucket/key` -> (bucket, key); key may be empty.
fn parse_oss(url: &str) -> Result<(String, String), Error> {
    let rest = url
        .strip_prefix("oss://")
        .ok_or_else(|| Error::Invalid(format!("{url}: expected oss://bucket[/key]")))?;
    let (b, k) = rest.split_once('/').unwrap_or((rest, ""));
    if b.is_empty() {
        return Err(Error::Invalid(format!("{url}: no bucket name")));
    }
    Ok((b.to_string(), k.to_string()))
}

fn client(g: &Global) -> Result<Client, Error> {
    let mut cfg = Config::from_env(&g.endpoint, &g.region)?;
    if g.path_style {
        cfg.addressing = kura_client::Addressing::PathStyle;
    }
    cfg.signature = match g.signature {
        Sig::V1 => SignatureVersion::V1,
        Sig::V4 => SignatureVersion::V4,
    };
    Client::new(cfg)
}

/// Prints the outcome and returns the exit code.
pub fn report(g: &Global, result: Result<serde_json::Value, Error>, human: impl FnOnce(&serde_json::Value)) -> i32 {
    match result {
        Ok(v) => {
            if g.json {
                println!("{v}");
            } else {
                human(&v);
            }
            exit::OK
        }
        Err(e) => {
            let code = exit_code(&e);
            if g.json {
                let (oss_code, request_id) = match e.root() {
                    Error::Service(s) => (Some(s.code.clone()), Some(s.request_id.clone())),
                    _ => (None, None),
                };
                let part = match &e {
                    Error::Part { number, .. } => Some(*number),
                    _ => None,
                };
                println!(
                    "{}",
                    json!({"error": {"message": e.to_string(), "code": oss_code, "request_id": request_id, "part": part, "exit_code": code}})
                );
            } else {
                eprintln!("kura: error: {e}");
            }
            code
        }
    }
}

/// Progress on a terminal: a bar; elsewhere: a plain line at most every two seconds.
fn progress_sink(g: &Global, label: String) -> Option<impl Fn(&Progress) + Send + Sync + 'static> {
    if g.json {
        return None;
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message(label.clone());
        b
    });
    let last = Mutex::new(Instant::now());
    Some(move |p: &Progress| {
        if let Some(b) = &bar {
            b.set_length(p.bytes_total);
            b.set_position(p.bytes_done);
            if p.bytes_done >= p.bytes_total {
                b.finish_and_clear();
            }
            return;
        }
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Duration::from_secs(2) || p.parts_done == p.parts_total {
            *last = Instant::now();
            eprintln!(
                "{label}: {}/{} bytes, {}/{} parts, {:.1} MB/s",
                p.bytes_done,
                p.bytes_total,
                p.parts_done,
                p.parts_total,
                p.rate() / 1e6
            );
        }
    })
}

fn report_json(r: &TransferReport, direction: &str) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["direction"] = json!(direction);
    v
}

pub async fn cp(g: &Global, a: CpArgs) -> i32 {
    let result = async {
        let client = client(g)?;
        let opts = TransferOptions {
            part_size: a.part_size,
            jobs: a.jobs,
            checkpoint: match (&a.checkpoint_dir, a.no_resume) {
                (_, true) => Checkpoint::Off,
                (Some(d), false) => Checkpoint::Dir(d.clone()),
                (None, false) => Checkpoint::BesideSource,
            },
        };
        match (a.src.starts_with("oss://"), a.dst.starts_with("oss://")) {
            (false, true) => {
                let (bucket, mut key) = parse_oss(&a.dst)?;
                let src = Path::new(&a.src);
                if key.is_empty() || key.ends_with('/') {
                    let name = src
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    key.push_str(&name);
                }
                let checkpointed = opts.checkpoint != Checkpoint::Off;
                let mut up = kura_client::Uploader::new(client.clone(), opts);
                if let Some(p) = progress_sink(g, format!("{} -> oss://{bucket}/{key}", a.src)) {
                    up = up.on_progress(p);
                }
                let active = up.active_upload();
                tokio::select! {
                    r = up.upload_file(src, &bucket, &key) => Ok(report_json(&r?, "upload")),
                    _ = tokio::signal::ctrl_c() => {
                        // Without a checkpoint nobody can resume it: abort what was started.
                        let id = active.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        match id {
                            Some(id) if !checkpointed => {
                                let _ = client.abort_multipart_upload(&bucket, &key, &id).await;
                                Err(Error::Invalid("interrupted; the upload was aborted".into()))
                            }
                            Some(_) => Err(Error::Invalid("interrupted; run the same command again to resume".into())),
                            None => Err(Error::Invalid("interrupted".into())),
                        }
                    }
                }
            }
            (true, false) => {
                let (bucket, key) = parse_oss(&a.src)?;
                if key.is_empty() {
                    return Err(Error::Invalid(format!("{}: no object key", a.src)));
                }
                let mut dst = PathBuf::from(&a.dst);
                if dst.is_dir() {
                    dst.push(key.rsplit('/').next().unwrap_or(&key));
                }
                let mut down = kura_client::Downloader::new(client, opts);
                if let Some(p) = progress_sink(g, format!("oss://{bucket}/{key} -> {}", dst.display())) {
                    down = down.on_progress(p);
                }
                let r = down.download_file(&bucket, &key, &dst).await?;
                Ok(report_json(&r, "download"))
            }
            _ => Err(Error::Invalid(
                "one side of cp must be oss://bucket/key and the other a local path".into(),
            )),
        }
    }
    .await;
    report(g, result, |v| {
        let mb = v["size"].as_f64().unwrap_or(0.0) / 1e6;
        let secs = v["seconds"].as_f64().unwrap_or(0.0).max(1e-9);
        if let Some(reason) = v["restarted"].as_str() {
            eprintln!("kura: started over: {reason}");
        }
        println!(
            "{} oss://{}/{}: {} bytes in {} parts ({} reused), CRC-64 {}, {:.1} MB/s",
            if v["direction"] == "upload" {
                "uploaded to"
            } else {
                "downloaded from"
            },
            v["bucket"].as_str().unwrap_or(""),
            v["key"].as_str().unwrap_or(""),
            v["size"],
            v["parts"],
            v["parts_reused"],
            v["crc64"],
            mb / secs
        );
    })
}

pub async fn ls(g: &Global, target: Option<String>) -> i32 {
    let result = async {
        let client = client(g)?;
        match target {
            None => {
                let buckets = client.list_buckets().await?;
                Ok(json!(buckets.iter().map(|b| json!({"name": b.name, "created": b.creation_date})).collect::<Vec<_>>()))
            }
            Some(t) => {
                let (bucket, prefix) = parse_oss(&t)?;
                let mut entries = Vec::new();
                let mut token: Option<String> = None;
                loop {
                    let page = client.list_objects_page(&bucket, &prefix, "/", token.as_deref(), 1000).await?;
                    for p in &page.common_prefixes {
                        entries.push(json!({"prefix": p.prefix}));
                    }
                    for c in &page.contents {
                        entries.push(json!({"key": c.key, "size": c.size, "last_modified": c.last_modified, "etag": c.etag.trim_matches('"')}));
                    }
                    match page.next_continuation_token {
                        Some(t) if page.is_truncated => token = Some(t),
                        _ => break,
                    }
                }
                Ok(json!(entries))
            }
        }
    }
    .await;
    report(g, result, |v| {
        for e in v.as_array().into_iter().flatten() {
            if let Some(n) = e["name"].as_str() {
                println!("{}  oss://{n}", e["created"].as_str().unwrap_or(""));
            } else if let Some(p) = e["prefix"].as_str() {
                println!("{:>24}  {:>14}  {p}", "", "PRE");
            } else {
                println!(
                    "{:>24}  {:>14}  {}",
                    e["last_modified"].as_str().unwrap_or(""),
                    e["size"],
                    e["key"].as_str().unwrap_or("")
                );
            }
        }
    })
}

pub async fn rm(g: &Global, target: String) -> i32 {
    let result = async {
        let (bucket, key) = parse_oss(&target)?;
        if key.is_empty() {
            return Err(Error::Invalid(format!(
                "{target}: no object key (use `kura rb` for buckets)"
            )));
        }
        client(g)?.delete_object(&bucket, &key).await?;
        Ok(json!({"deleted": target}))
    }
    .await;
    report(g, result, |_| println!("deleted {target}"))
}

pub async fn mb(g: &Global, target: String) -> i32 {
    let result = async {
        let (bucket, _) = parse_oss(&target)?;
        client(g)?.create_bucket(&bucket).await?;
        Ok(json!({"created": bucket}))
    }
    .await;
    report(g, result, |_| println!("created {target}"))
}

pub async fn rb(g: &Global, target: String) -> i32 {
    let result = async {
        let (bucket, _) = parse_oss(&target)?;
        client(g)?.delete_bucket(&bucket).await?;
        Ok(json!({"removed": bucket}))
    }
    .await;
    report(g, result, |_| println!("removed {target}"))
}

pub async fn mpu(g: &Global, cmd: Mpu) -> i32 {
    let result = async {
        let client = client(g)?;
        match &cmd {
            Mpu::Ls { bucket } => {
                let (bucket, prefix) = parse_oss(bucket)?;
                let uploads = client.list_all_uploads(&bucket, &prefix).await?;
                Ok(json!(uploads
                    .iter()
                    .map(|u| json!({"key": u.key, "upload_id": u.upload_id, "initiated": u.initiated}))
                    .collect::<Vec<_>>()))
            }
            Mpu::Parts { object, upload_id } => {
                let (bucket, key) = parse_oss(object)?;
                let parts = client.list_all_parts(&bucket, &key, upload_id).await?;
                Ok(json!(parts
                    .iter()
                    .map(|p| json!({"part_number": p.part_number, "size": p.size, "etag": p.etag.trim_matches('"'), "crc64": p.hash_crc64ecma, "last_modified": p.last_modified}))
                    .collect::<Vec<_>>()))
            }
            Mpu::Abort { object, upload_id } => {
                let (bucket, key) = parse_oss(object)?;
                client.abort_multipart_upload(&bucket, &key, upload_id).await?;
                Ok(json!({"aborted": upload_id}))
            }
        }
    }
    .await;
    report(g, result, |v| match &cmd {
        Mpu::Ls { .. } => {
            for u in v.as_array().into_iter().flatten() {
                println!(
                    "{}  {}  {}",
                    u["initiated"].as_str().unwrap_or(""),
                    u["upload_id"].as_str().unwrap_or(""),
                    u["key"].as_str().unwrap_or("")
                );
            }
        }
        Mpu::Parts { .. } => {
            for p in v.as_array().into_iter().flatten() {
                println!(
                    "{:>5}  {:>12}  {}  crc64 {}",
                    p["part_number"],
                    p["size"],
                    p["etag"].as_str().unwrap_or(""),
                    p["crc64"].as_str().unwrap_or("")
                );
            }
        }
        Mpu::Abort { upload_id, .. } => println!("aborted {upload_id}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_urls() {
        assert_eq!(parse_size("8M").unwrap(), 8 << 20);
        assert_eq!(parse_size("100k").unwrap(), 100 << 10);
        assert_eq!(parse_size("12345").unwrap(), 12345);
        assert!(parse_size("x").is_err());
        assert_eq!(parse_oss("oss://b/a/b").unwrap(), ("b".into(), "a/b".into()));
        assert_eq!(parse_oss("oss://b").unwrap(), ("b".into(), "".into()));
        assert!(parse_oss("s3://b/k").is_err());
        assert!(parse_oss("oss:///k").is_err());
    }
}
