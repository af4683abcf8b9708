//! The `kura` client commands as a user runs them, against a real `kura serve`: round trips at
//! the part boundaries, a killed upload resumed, a changed file started over, corruption
//! detected, and the exit codes.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{files_under, start, Server, AK, SK};
use kura_client::{Client, Config, Credentials};
use kura_proto::crc64;

fn kura(s: &Server, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kura"));
    c.args(args)
        .env("OSS_ENDPOINT", s.endpoint())
        .env("OSS_ACCESS_KEY_ID", AK)
        .env("OSS_ACCESS_KEY_SECRET", SK)
        .env_remove("OSS_REGION");
    c
}

fn run(s: &Server, args: &[&str]) -> Output {
    kura(s, args).output().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn write_random(path: &Path, size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(path, &data).unwrap();
    data
}

fn client(s: &Server) -> Client {
    Client::new(Config::new(
        &s.endpoint(),
        "cn-hangzhou",
        Credentials {
            access_key_id: AK.into(),
            access_key_secret: SK.into(),
            session_token: None,
        },
    ))
    .unwrap()
}

/// Waits until the server holds at least `n` parts of the only upload of `bucket`/`key`.
fn wait_for_parts(s: &Server, bucket: &str, key: &str, n: usize) -> usize {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = client(s);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the upload never got going");
        let uploads = rt.block_on(c.list_all_uploads(bucket, key)).unwrap();
        if let Some(u) = uploads.first() {
            let have = rt.block_on(c.list_all_parts(bucket, key, &u.upload_id)).unwrap().len();
            if have >= n {
                return have;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn round_trips_at_part_boundaries() {
    let s = start();
    let dir = tempfile::tempdir().unwrap();
    assert!(run(&s, &["mb", "oss://rtrip"]).status.success());
    let part = 100 * 1024;
    for (i, size) in [0, 1, part, part + 1, 7 * part + 3].into_iter().enumerate() {
        let src = dir.path().join(format!("src-{size}"));
        let data = write_random(&src, size, i as u64 + 7);
        let key = format!("oss://rtrip/f-{size}");
        let up = run(
            &s,
            &[
                "--json",
                "cp",
                src.to_str().unwrap(),
                &key,
                "--part-size",
                "100K",
                "--jobs",
                "3",
            ],
        );
        assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stdout));
        let report = json(&up);
        assert_eq!(report["size"], size);
        assert_eq!(report["crc64"], crc64::checksum(&data));
        assert_eq!(report["parts"], size.div_ceil(part).max(1));
        let back = dir.path().join(format!("back-{size}"));
        let down = run(
            &s,
            &["--json", "cp", &key, back.to_str().unwrap(), "--part-size", "100K"],
        );
        assert!(down.status.success(), "{}", String::from_utf8_lossy(&down.stdout));
        assert_eq!(std::fs::read(&back).unwrap(), data, "size {size}");
        assert_eq!(json(&down)["crc64"], crc64::checksum(&data));
    }
    // Human output: one line saying what happened.
    let src = dir.path().join("src-1");
    let out = run(&s, &["cp", src.to_str().unwrap(), "oss://rtrip/dir/"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("uploaded to oss://rtrip/dir/src-1: 1 bytes in 1 parts"),
        "{text}"
    );
    let ls = run(&s, &["ls", "oss://rtrip/"]);
    let text = String::from_utf8_lossy(&ls.stdout);
    assert!(text.contains("PRE  dir/") && text.contains("f-0"), "{text}");
}

/// Starts an upload, kills the CLI once the server holds a few parts, and returns the number
/// of parts of the upload.
fn upload_then_kill(s: &Server, src: &Path, key: &str, ckpt: &Path) -> usize {
    let mut child = kura(
        s,
        &[
            "cp",
            src.to_str().unwrap(),
            &format!("oss://resume/{key}"),
            "--part-size",
            "128K",
            "--jobs",
            "1",
            "--checkpoint-dir",
            ckpt.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let parts = wait_for_parts(s, "resume", key, 5);
    child.kill().unwrap();
    child.wait().unwrap();
    parts
}

#[test]
fn killed_upload_resumes_and_changed_file_starts_over() {
    let s = start();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    std::fs::create_dir(&ckpt).unwrap();
    assert!(run(&s, &["mb", "oss://resume"]).status.success());
    let src = dir.path().join("big");
    let size = 48 * 1024 * 1024;
    let data = write_random(&src, size, 99);
    let total = size.div_ceil(128 * 1024);

    let before = upload_then_kill(&s, &src, "big", &ckpt);
    assert!(before < total);
    let out = run(
        &s,
        &[
            "--json",
            "cp",
            src.to_str().unwrap(),
            "oss://resume/big",
            "--part-size",
            "128K",
            "--checkpoint-dir",
            ckpt.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let report = json(&out);
    let reused = report["parts_reused"].as_u64().unwrap() as usize;
    assert!(
        reused >= before && reused < total,
        "reused {reused} of {total}, {before} were on the server"
    );
    assert_eq!(report["restarted"], serde_json::Value::Null);
    assert_eq!(report["crc64"], crc64::checksum(&data));
    let back = dir.path().join("back");
    assert!(run(&s, &["cp", "oss://resume/big", back.to_str().unwrap()])
        .status
        .success());
    assert!(std::fs::read(&back).unwrap() == data);
    assert!(files_under(&ckpt).is_empty(), "the checkpoint is removed after success");

    // Interrupted again, then the file changes: the upload starts over, and says why.
    upload_then_kill(&s, &src, "changing", &ckpt);
    std::thread::sleep(Duration::from_millis(20));
    let changed = write_random(&src, size, 1234);
    let out = run(
        &s,
        &[
            "--json",
            "cp",
            src.to_str().unwrap(),
            "oss://resume/changing",
            "--part-size",
            "128K",
            "--checkpoint-dir",
            ckpt.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let report = json(&out);
    assert_eq!(report["parts_reused"], 0);
    assert!(
        report["restarted"].as_str().unwrap().contains("file changed"),
        "{report}"
    );
    assert!(run(&s, &["cp", "oss://resume/changing", back.to_str().unwrap()])
        .status
        .success());
    assert!(std::fs::read(&back).unwrap() == changed);
    // The stale upload was aborted rather than left behind.
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(rt
        .block_on(client(&s).list_all_uploads("resume", ""))
        .unwrap()
        .is_empty());
}

#[test]
fn corruption_on_the_server_is_detected() {
    let s = start();
    let dir = tempfile::tempdir().unwrap();
    assert!(run(&s, &["mb", "oss://rot"]).status.success());
    let src = dir.path().join("f");
    write_random(&src, 300 * 1024, 5);
    assert!(
        run(&s, &["cp", src.to_str().unwrap(), "oss://rot/f", "--part-size", "100K"])
            .status
            .success()
    );
    // Bit rot in one part's blob file.
    let data_dir = s._dir.as_ref().unwrap().path();
    let blobs = files_under(&data_dir.join("blobs"));
    assert_eq!(blobs.len(), 3);
    let mut bytes = std::fs::read(&blobs[1]).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&blobs[1], bytes).unwrap();
    let back = dir.path().join("back");
    let out = run(
        &s,
        &[
            "--json",
            "cp",
            "oss://rot/f",
            back.to_str().unwrap(),
            "--part-size",
            "100K",
        ],
    );
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(json(&out)["error"]["message"].as_str().unwrap().contains("CRC-64"));
    assert!(!back.exists(), "nothing is left at the destination");
    assert!(files_under(dir.path())
        .iter()
        .all(|p| !p.to_string_lossy().ends_with(".kura-download")));
}

#[test]
fn exit_codes_tell_failures_apart() {
    let s = start();
    assert!(run(&s, &["mb", "oss://codes"]).status.success());
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, b"x").unwrap();
    assert!(run(&s, &["cp", f.to_str().unwrap(), "oss://codes/f"]).status.success());

    let out = run(
        &s,
        &["cp", "oss://codes/missing", dir.path().join("m").to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NoSuchKey"));
    let out = kura(&s, &["ls"])
        .env("OSS_ACCESS_KEY_SECRET", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let out = run(&s, &["--json", "rb", "oss://codes"]);
    assert_eq!(out.status.code(), Some(8));
    let e = json(&out);
    assert_eq!(e["error"]["code"], "BucketNotEmpty");
    assert_eq!(e["error"]["request_id"].as_str().unwrap().len(), 24);
    let out = run(&s, &["cp", dir.path().join("nope").to_str().unwrap(), "oss://codes/x"]);
    assert_eq!(out.status.code(), Some(7));
    let out = kura(&s, &["ls"])
        .env("OSS_ENDPOINT", "http://127.0.0.1:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    let out = run(&s, &["mpu", "abort", "oss://codes/f", "NOSUCHUPLOAD"]);
    assert_eq!(out.status.code(), Some(3));
    let out = run(&s, &["cp", "a", "b"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn mpu_commands() {
    let s = start();
    assert!(run(&s, &["mb", "oss://mpu"]).status.success());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = client(&s);
    let id = rt.block_on(c.initiate_multipart_upload("mpu", "k")).unwrap();
    rt.block_on(c.upload_part("mpu", "k", &id, 1, bytes::Bytes::from_static(b"abc")))
        .unwrap();
    let ls = json(&run(&s, &["--json", "mpu", "ls", "oss://mpu"]));
    assert_eq!(ls[0]["upload_id"], id.as_str());
    let parts = json(&run(&s, &["--json", "mpu", "parts", "oss://mpu/k", &id]));
    assert_eq!(parts[0]["size"], 3);
    assert_eq!(parts[0]["crc64"], crc64::checksum(b"abc").to_string());
    assert!(run(&s, &["mpu", "abort", "oss://mpu/k", &id]).status.success());
    assert_eq!(
        json(&run(&s, &["--json", "mpu", "ls", "oss://mpu"])),
        serde_json::json!([])
    );
}

#[test]
fn a_file_changing_during_upload_fails_and_leaves_nothing() {
    let s = start();
    let dir = tempfile::tempdir().unwrap();
    assert!(run(&s, &["mb", "oss://moving"]).status.success());
    let src = dir.path().join("grows");
    write_random(&src, 32 * 1024 * 1024, 3);
    let child = kura(
        &s,
        &[
            "--json",
            "cp",
            src.to_str().unwrap(),
            "oss://moving/f",
            "--part-size",
            "128K",
            "--jobs",
            "1",
            "--no-resume",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = client(&s);
    wait_for_parts(&s, "moving", "f", 3);
    // Someone appends to the file mid-upload.
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&src)
        .unwrap()
        .write_all(b"more")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(json(&out)["error"]["message"].as_str().unwrap().contains("changed"));
    assert!(rt.block_on(c.head_object("moving", "f")).is_err(), "no torn object");
    assert!(
        rt.block_on(c.list_all_uploads("moving", "")).unwrap().is_empty(),
        "the upload was aborted"
    );
}

#[test]
fn odd_keys_and_bad_arguments() {
    let s = start();
    let dir = tempfile::tempdir().unwrap();
    assert!(run(&s, &["mb", "oss://odd"]).status.success());
    let src = dir.path().join("f");
    let data = write_random(&src, 1000, 11);
    for key in ["a/b..c/.d", "sp ace+plus%20", "ключ/файл"] {
        let url = format!("oss://odd/{key}");
        let up = run(&s, &["cp", src.to_str().unwrap(), &url]);
        assert!(up.status.success(), "{key}: {}", String::from_utf8_lossy(&up.stderr));
        let back = dir.path().join("back");
        assert!(run(&s, &["cp", &url, back.to_str().unwrap()]).status.success(), "{key}");
        assert_eq!(std::fs::read(&back).unwrap(), data, "{key}");
    }
    let listed = json(&run(&s, &["--json", "ls", "oss://odd/"]));
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["key"].as_str().or(e["prefix"].as_str()))
        .collect();
    assert!(
        names.contains(&"sp ace+plus%20") && names.contains(&"ключ/") && names.contains(&"a/"),
        "{names:?}"
    );
    // Keys a URL parser would rewrite are refused, not sent to another key.
    let out = run(&s, &["cp", src.to_str().unwrap(), "oss://odd/a/../b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("path segment"));
    // Part size 0 is refused, not a crash; a directory is not a file to upload.
    let out = run(&s, &["cp", src.to_str().unwrap(), "oss://odd/z", "--part-size", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&s, &["cp", dir.path().to_str().unwrap(), "oss://odd/z"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
}

#[test]
fn part_listings_page_past_one_thousand() {
    let s = start();
    assert!(run(&s, &["mb", "oss://many"]).status.success());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = client(&s);
    let id = rt.block_on(c.initiate_multipart_upload("many", "k")).unwrap();
    rt.block_on(async {
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
        let mut tasks = Vec::new();
        for n in 1..=1005u32 {
            let (c, id, sem) = (c.clone(), id.clone(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _p = sem.acquire().await.unwrap();
                c.upload_part("many", "k", &id, n, bytes::Bytes::from(vec![n as u8]))
                    .await
                    .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let parts = rt.block_on(c.list_all_parts("many", "k", &id)).unwrap();
    assert_eq!(parts.len(), 1005);
    assert_eq!(parts.last().unwrap().part_number, 1005);
    let listed = json(&run(&s, &["--json", "mpu", "parts", "oss://many/k", &id]));
    assert_eq!(listed.as_array().unwrap().len(), 1005);
}

/// A TCP proxy that flips one byte in the body of the first request for part 2: corruption
/// in transit, which the server stores faithfully and the client must catch by CRC-64.
fn corrupting_proxy(upstream: u16) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let server = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
            let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut s_read, mut c_write) = (server, client);
            let done = done.clone();
            std::thread::spawn(move || {
                // `seen` holds the stream from offset `seen_start`; `total` is the stream
                // offset of the buffer just read.
                let (mut seen, mut seen_start, mut total) = (Vec::new(), 0usize, 0usize);
                let mut target: Option<usize> = None;
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = match c_read.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if target.is_none() && !done.load(std::sync::atomic::Ordering::SeqCst) {
                        seen.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&seen).into_owned();
                        if let Some(i) = text.find("partNumber=2&") {
                            if let Some(h) = text[i..].find("\r\n\r\n") {
                                target = Some(seen_start + i + h + 4 + 1000);
                                done.store(true, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                        if seen.len() > 1 << 20 {
                            let k = seen.len() - 4096;
                            seen.drain(..k);
                            seen_start += k;
                        }
                    }
                    if let Some(at) = target {
                        if at >= total && at < total + n {
                            buf[at - total] ^= 0x01;
                        }
                    }
                    total += n;
                    if s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
            });
        }
    });
    port
}

#[test]
fn corruption_in_transit_on_upload_is_detected() {
    let s = start();
    assert!(run(&s, &["mb", "oss://transit"]).status.success());
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f");
    write_random(&src, 5 * 100 * 1024, 21);
    let proxy = corrupting_proxy(s.port);
    let out = kura(
        &s,
        &[
            "--json",
            "cp",
            src.to_str().unwrap(),
            "oss://transit/f",
            "--part-size",
            "100K",
            "--jobs",
            "1",
            "--no-resume",
        ],
    )
    .env("OSS_ENDPOINT", format!("http://127.0.0.1:{proxy}"))
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stdout));
    let e = json(&out);
    assert_eq!(e["error"]["part"], 2);
    assert!(e["error"]["message"].as_str().unwrap().contains("CRC-64"));
    // Nothing was made, and the upload was aborted.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = client(&s);
    assert!(rt.block_on(c.head_object("transit", "f")).is_err());
    assert!(rt.block_on(c.list_all_uploads("transit", "")).unwrap().is_empty());
}

#[test]
fn ctrl_c_without_a_checkpoint_aborts_the_upload() {
    let s = start();
    assert!(run(&s, &["mb", "oss://intr"]).status.success());
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("f");
    write_random(&src, 32 * 1024 * 1024, 8);
    let child = kura(
        &s,
        &[
            "cp",
            src.to_str().unwrap(),
            "oss://intr/f",
            "--part-size",
            "128K",
            "--jobs",
            "1",
            "--no-resume",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = client(&s);
    wait_for_parts(&s, "intr", "f", 3);
    // SAFETY: sending SIGINT to our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        rt.block_on(c.list_all_uploads("intr", "")).unwrap().is_empty(),
        "the upload was aborted"
    );
}
