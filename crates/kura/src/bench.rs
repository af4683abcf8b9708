//! `kura bench`: starts a real `kura serve` (this same binary) on loopback with a scratch data
//! directory and measures it against references taken in the same run. Figures are medians.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use futures_util::future::try_join_all;
use md5::{Digest, Md5};
use tokio::sync::Semaphore;

use kura_proto::{sign, timefmt, xml};

const MB: f64 = 1e6;
const MIB: usize = 1024 * 1024;
const AK: &str = "bench-ak";
const SK: &str = "bench-sk";

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Scratch directory (a temporary one under the system temp dir by default).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Size of the big upload, MiB.
    #[arg(long, default_value_t = 1024)]
    pub upload_mib: usize,
    /// Repetitions of each timed step (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Parts for the large Complete (each 102,400 bytes).
    #[arg(long, default_value_t = 10_000)]
    pub many_parts: u32,
    /// Concurrent 64 MiB part uploads for the memory check.
    #[arg(long, default_value_t = 64)]
    pub concurrent: usize,
    /// A PostgreSQL URL: also measure the metadata-bound figures on PostgreSQL (one gateway,
    /// then two over one database) beside the embedded store, in the same run.
    #[arg(long)]
    pub meta: Option<String>,
    /// Only the backend comparison (with --meta): skip the S3 and memory sections.
    #[arg(long)]
    pub meta_only: bool,
    /// Only the small-write section (PutObject and GET of small objects, with the parallel
    /// fsync reference): a quick loop for work on the commit path.
    #[arg(long)]
    pub small_only: bool,
    /// The server's --inline-max-bytes (its default when not given).
    #[arg(long)]
    pub inline_max_bytes: Option<usize>,
    /// Seconds each small-write measurement (and the reference run beside it) runs.
    #[arg(long, default_value_t = 2.0)]
    pub small_secs: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A minimal V1-signing client for the bench (the full client is `kura-client`).
struct Client {
    http: reqwest::Client,
    endpoint: String,
}

impl Client {
    fn request(
        &self,
        method: reqwest::Method,
        bucket: &str,
        key: &str,
        query: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let date = timefmt::http_date(timefmt::now_millis());
        let q: Vec<(String, String)> = query.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let key_opt = (!key.is_empty()).then_some(key);
        let resource = sign::v1_canonical_resource(Some(bucket), key_opt, &q);
        let sts = sign::v1_string_to_sign(method.as_str(), &[], &date, &resource);
        let sig = sign::v1_signature(SK, &sts);
        let path = match key_opt {
            Some(k) => format!("{}/{}/{}", self.endpoint, bucket, kura_proto::encode::encode_path(k)),
            None => format!("{}/{}/", self.endpoint, bucket),
        };
        let qs: Vec<String> = q
            .iter()
            .map(|(a, b)| {
                if b.is_empty() {
                    a.clone()
                } else {
                    format!("{a}={}", kura_proto::encode::encode_component(b))
                }
            })
            .collect();
        let url = if qs.is_empty() {
            path
        } else {
            format!("{path}?{}", qs.join("&"))
        };
        self.http
            .request(method, url)
            .header("date", date)
            .header("authorization", format!("OSS {AK}:{sig}"))
    }

    /// An S3-dialect request as aws-cli sends it over HTTP: SigV4 over a real payload SHA-256,
    /// plus extra headers (the part's CRC32 checksum).
    fn s3_request(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        payload_sha: &str,
        extra: &[(&str, String)],
    ) -> reqwest::RequestBuilder {
        use kura_proto::sigv4;
        let stamp = timefmt::iso8601_basic(timefmt::now_millis());
        let host = self.endpoint.trim_start_matches("http://").to_string();
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), host),
            ("x-amz-content-sha256".into(), payload_sha.into()),
            ("x-amz-date".into(), stamp.clone()),
        ];
        headers.extend(extra.iter().map(|(n, v)| (n.to_string(), v.clone())));
        let mut signed: Vec<String> = headers.iter().map(|(n, _)| n.clone()).collect();
        signed.sort();
        let q: Vec<(String, String)> = query.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let cr = sigv4::canonical_request(
            method.as_str(),
            &sigv4::canonical_uri(path),
            &sigv4::canonical_query(&q),
            &headers,
            &signed,
            payload_sha,
        )
        .unwrap_or_default();
        let scope = sigv4::scope(&stamp[..8], "us-east-1", "s3");
        let key = sigv4::signing_key(SK, &stamp[..8], "us-east-1", "s3");
        let sig = sigv4::sign(&key, &sigv4::string_to_sign(&stamp, &scope, &cr));
        let qs: Vec<String> = q
            .iter()
            .map(|(a, b)| format!("{a}={}", kura_proto::encode::encode_component(b)))
            .collect();
        let url = if qs.is_empty() {
            format!("{}{path}", self.endpoint)
        } else {
            format!("{}{path}?{}", self.endpoint, qs.join("&"))
        };
        let mut rb = self.http.request(method, url);
        for (n, v) in headers.iter().filter(|(n, _)| n != "host") {
            rb = rb.header(n.as_str(), v.as_str());
        }
        rb.header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={AK}/{scope},SignedHeaders={},Signature={sig}",
                signed.join(";")
            ),
        )
    }

    /// A whole S3 multipart upload of `count` copies of `part`, `in_flight` at a time; parts
    /// signed over their SHA-256 (`signed_payload`, as aws-cli does over HTTP) or not.
    async fn s3_upload(
        &self,
        bucket: &str,
        key: &str,
        part: Bytes,
        count: u32,
        in_flight: usize,
        signed_payload: bool,
    ) -> anyhow::Result<()> {
        use kura_proto::{checksum, sigv4};
        let path = format!("/{bucket}/{key}");
        let empty = sigv4::EMPTY_SHA256;
        let r = self
            .send_ok(self.s3_request(
                reqwest::Method::POST,
                &path,
                &[("uploads", "")],
                empty,
                &[("x-amz-checksum-algorithm", "CRC32".into())],
            ))
            .await?;
        let text = r.text().await?;
        let id = text
            .split("<UploadId>")
            .nth(1)
            .and_then(|s| s.split("</UploadId>").next())
            .ok_or_else(|| anyhow::anyhow!("no UploadId in {text}"))?
            .to_string();
        // The same part each time: its hashes are computed once, as a client would per part.
        let sha = if signed_payload {
            sigv4::sha256_hex(&part)
        } else {
            "UNSIGNED-PAYLOAD".to_string()
        };
        let crc = checksum::to_base64(&checksum::digest(checksum::Algorithm::Crc32, &part));
        let sem = std::sync::Arc::new(Semaphore::new(in_flight));
        let futs = (1..=count).map(|n| {
            let (sem, part, sha, crc, path, id) = (
                sem.clone(),
                part.clone(),
                sha.clone(),
                crc.clone(),
                path.clone(),
                id.clone(),
            );
            async move {
                let _permit = sem.acquire().await?;
                let ns = n.to_string();
                let rb = self
                    .s3_request(
                        reqwest::Method::PUT,
                        &path,
                        &[("partNumber", &ns), ("uploadId", &id)],
                        &sha,
                        &[("x-amz-checksum-crc32", crc.clone())],
                    )
                    .body(part);
                let r = self.send_ok(rb).await?;
                let etag = r
                    .headers()
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                Ok::<_, anyhow::Error>(format!(
                    "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag><ChecksumCRC32>{crc}</ChecksumCRC32></Part>"
                ))
            }
        });
        let parts = try_join_all(futs).await?;
        let body = format!("<CompleteMultipartUpload>{}</CompleteMultipartUpload>", parts.concat());
        let sha = sigv4::sha256_hex(body.as_bytes());
        self.send_ok(
            self.s3_request(reqwest::Method::POST, &path, &[("uploadId", &id)], &sha, &[])
                .body(body),
        )
        .await?;
        Ok(())
    }

    /// One ListParts page of 1,000 of an upload of `parts` parts, checked; milliseconds.
    async fn time_list_parts(&self, bucket: &str, key: &str, id: &str, parts: u32) -> anyhow::Result<f64> {
        let t = Instant::now();
        let r = self
            .send_ok(self.request(
                reqwest::Method::GET,
                bucket,
                key,
                &[("max-parts", "1000"), ("uploadId", id)],
            ))
            .await?;
        let page: xml::ListPartsResult = xml::from_xml(&r.text().await?).map_err(anyhow::Error::msg)?;
        if page.parts.len() != 1000.min(parts as usize) {
            bail!("ListParts returned {} parts", page.parts.len());
        }
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    }

    async fn send_ok(&self, rb: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let r = rb.send().await?;
        if !r.status().is_success() {
            let status = r.status();
            bail!("{status}: {}", r.text().await.unwrap_or_default());
        }
        Ok(r)
    }

    async fn initiate(&self, bucket: &str, key: &str) -> anyhow::Result<String> {
        let r = self
            .send_ok(self.request(reqwest::Method::POST, bucket, key, &[("uploads", "")]))
            .await?;
        let res: xml::InitiateMultipartUploadResult = xml::from_xml(&r.text().await?).map_err(anyhow::Error::msg)?;
        Ok(res.upload_id)
    }

    async fn upload_part(&self, bucket: &str, key: &str, id: &str, n: u32, body: Bytes) -> anyhow::Result<String> {
        let ns = n.to_string();
        let rb = self
            .request(
                reqwest::Method::PUT,
                bucket,
                key,
                &[("partNumber", &ns), ("uploadId", id)],
            )
            .body(body);
        let r = self.send_ok(rb).await?;
        Ok(r.headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string())
    }

    async fn complete(&self, bucket: &str, key: &str, id: &str, etags: &[String]) -> anyhow::Result<()> {
        let body = xml::to_xml(&xml::CompleteMultipartUpload {
            parts: etags
                .iter()
                .enumerate()
                .map(|(i, e)| xml::CompletePart {
                    part_number: (i + 1).to_string(),
                    etag: e.clone(),
                })
                .collect(),
        });
        self.send_ok(
            self.request(reqwest::Method::POST, bucket, key, &[("uploadId", id)])
                .body(body),
        )
        .await?;
        Ok(())
    }

    /// Uploads parts `1..=count` of `part` bytes each, `in_flight` at a time; returns ETags.
    async fn upload_parts(
        &self,
        bucket: &str,
        key: &str,
        id: &str,
        part: Bytes,
        count: u32,
        in_flight: usize,
    ) -> anyhow::Result<Vec<String>> {
        let sem = std::sync::Arc::new(Semaphore::new(in_flight));
        let futs = (1..=count).map(|n| {
            let sem = sem.clone();
            let part = part.clone();
            async move {
                let _permit = sem.acquire().await?;
                self.upload_part(bucket, key, id, n, part).await
            }
        });
        try_join_all(futs).await
    }
}

struct Server {
    child: Child,
    endpoint: String,
}

impl Server {
    fn start(data: &Path) -> anyhow::Result<Server> {
        Self::start_with(data, None)
    }

    /// A server on the embedded store with `--inline-max-bytes` set when given.
    fn start_inline(data: &Path, inline_max: Option<usize>) -> anyhow::Result<Server> {
        Self::start_args(data, None, inline_max)
    }

    /// A server on `data`, with its metadata in PostgreSQL when `meta` is given.
    fn start_with(data: &Path, meta: Option<&str>) -> anyhow::Result<Server> {
        Self::start_args(data, meta, None)
    }

    fn start_args(data: &Path, meta: Option<&str>, inline_max: Option<usize>) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(data)
            .args(
                meta.map(|m| vec!["--meta", m, "--meta-pool-size", "32"])
                    .unwrap_or_default(),
            )
            .args(
                inline_max
                    .map(|n| vec!["--inline-max-bytes".to_string(), n.to_string()])
                    .unwrap_or_default(),
            )
            .args([
                "--access-key-id",
                AK,
                "--access-key-secret",
                SK,
                "--deletion-grace-secs",
                "0",
            ])
            .env("KURA_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .context("starting kura serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        loop {
            match lines.next() {
                Some(Ok(l)) if l.contains("listening on") => break,
                Some(Ok(_)) => continue,
                _ => bail!("kura serve did not start"),
            }
        }
        Ok(Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    /// (current RSS, peak RSS) in MiB, from /proc.
    fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(0.0, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The machine's single-core MD5 rate, MB/s.
fn md5_rate(buf: &[u8]) -> f64 {
    let t = Instant::now();
    let mut h = Md5::new();
    h.update(buf);
    std::hint::black_box(h.finalize());
    buf.len() as f64 / MB / t.elapsed().as_secs_f64()
}

/// The machine's single-core SHA-256 rate, MB/s (what the S3 dialect adds per byte).
fn sha256_rate(buf: &[u8]) -> f64 {
    let t = Instant::now();
    std::hint::black_box(kura_proto::sigv4::sha256_hex(buf));
    buf.len() as f64 / MB / t.elapsed().as_secs_f64()
}

/// What two streams of MD5 + write + fsync achieve together on this disk, MB/s: the ceiling a
/// server that hashes and persists every byte can reach with two cores. Each stream writes
/// 8 MiB files and fsyncs each one, as the server does with 8 MiB parts.
fn md5_fsync_two_streams(dir: &Path, per_stream: usize) -> anyhow::Result<f64> {
    let chunk = vec![0x5au8; MIB];
    let t = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let chunk = &chunk;
                s.spawn(move || -> std::io::Result<()> {
                    use std::io::Write;
                    for file in 0..per_stream / (8 * MIB) {
                        let path = dir.join(format!("ref-{i}-{file}"));
                        let mut f = std::fs::File::create(&path)?;
                        let mut h = Md5::new();
                        for _ in 0..8 {
                            h.update(chunk);
                            f.write_all(chunk)?;
                        }
                        f.sync_all()?;
                        std::hint::black_box(h.finalize());
                        std::fs::remove_file(&path)?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("reference thread panicked"))??;
        }
        Ok(())
    })?;
    Ok((2 * per_stream) as f64 / MB / t.elapsed().as_secs_f64())
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let scratch = tempfile_dir(args.dir.as_deref())?;
    let result = bench(&args, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn tempfile_dir(base: Option<&Path>) -> anyhow::Result<PathBuf> {
    let base = base.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("kura-bench-{}", hex::encode(rand::random::<[u8; 6]>())));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

async fn bench(args: &BenchArgs, scratch: &Path) -> anyhow::Result<()> {
    println!("kura bench: medians of {} runs (1 MB = 10^6 bytes)", args.runs);
    let buf: Vec<u8> = (0..256 * MIB)
        .map(|i| (i as u32).wrapping_mul(2654435761) as u8)
        .collect();
    let md5 = median((0..args.runs).map(|_| md5_rate(&buf)).collect());
    println!("reference  MD5, one core (md-5):                 {md5:8.0} MB/s");
    let sha = median((0..args.runs).map(|_| sha256_rate(&buf)).collect());
    println!("reference  SHA-256, one core (sha2):             {sha:8.0} MB/s");
    let ceiling = median(
        (0..args.runs)
            .map(|_| md5_fsync_two_streams(scratch, 256 * MIB))
            .collect::<anyhow::Result<Vec<_>>>()?,
    );
    println!("reference  MD5 + write + fsync, two streams:     {ceiling:8.0} MB/s");

    if let Some(url) = &args.meta {
        compare_backends(args, &buf, scratch, url, md5).await?;
        if args.meta_only {
            return Ok(());
        }
    }

    let data = scratch.join("data");
    let server = Server::start_inline(&data, args.inline_max_bytes)?;
    let client = Client {
        http: reqwest::Client::builder().pool_max_idle_per_host(64).build()?,
        endpoint: server.endpoint.clone(),
    };
    let bucket = "bench";
    client
        .send_ok(client.request(reqwest::Method::PUT, bucket, "", &[]))
        .await?;

    small_writes(args, &client, bucket, &buf, scratch).await?;
    if args.small_only {
        return Ok(());
    }

    // 1 GiB multipart upload, 8 MiB parts, 8 in flight.
    let part = Bytes::from(buf[..8 * MIB].to_vec());
    let parts = (args.upload_mib / 8).max(1) as u32;
    let mut rates = Vec::new();
    for run in 0..args.runs {
        let key = format!("big-{run}");
        let t = Instant::now();
        let id = client.initiate(bucket, &key).await?;
        let etags = client.upload_parts(bucket, &key, &id, part.clone(), parts, 8).await?;
        client.complete(bucket, &key, &id, &etags).await?;
        rates.push((parts as usize * 8 * MIB) as f64 / MB / t.elapsed().as_secs_f64());
    }
    println!(
        "           (each run: {})",
        rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ")
    );
    let upload = median(rates);
    println!(
        "upload     {} MiB, 8 MiB parts, 8 in flight:     {upload:8.0} MB/s  = {:.2}x MD5 one core, {:.0}% of the two-stream ceiling",
        parts * 8,
        upload / md5,
        100.0 * upload / ceiling
    );

    // The same upload in the S3 dialect, as aws-cli sends it over HTTP: SigV4 over each part's
    // SHA-256 (which the server must verify) and a CRC32 checksum per part.
    for (signed, label) in [
        (true, "SigV4 + SHA-256 + CRC32 per part"),
        (false, "UNSIGNED-PAYLOAD + CRC32 per part"),
    ] {
        let mut s3_rates = Vec::new();
        for run in 0..args.runs {
            let t = Instant::now();
            let key = format!("s3-{signed}-{run}");
            client.s3_upload(bucket, &key, part.clone(), parts, 8, signed).await?;
            s3_rates.push((parts as usize * 8 * MIB) as f64 / MB / t.elapsed().as_secs_f64());
        }
        let each: Vec<String> = s3_rates.iter().map(|r| format!("{r:.0}")).collect();
        println!("           (each run: {})", each.join(", "));
        let s3 = median(s3_rates);
        println!(
            "upload S3  same, {label}: {s3:8.0} MB/s  = {:.0}% of the OSS-dialect figure",
            100.0 * s3 / upload
        );
    }

    // Complete latency for 100 parts, then for many parts (each 102,400 bytes, the minimum).
    let small = Bytes::from(buf[..102_400].to_vec());
    let mut lat100 = Vec::new();
    for run in 0..args.runs.max(3) {
        let key = format!("c100-{run}");
        let id = client.initiate(bucket, &key).await?;
        let etags = client.upload_parts(bucket, &key, &id, small.clone(), 100, 16).await?;
        let t = Instant::now();
        client.complete(bucket, &key, &id, &etags).await?;
        lat100.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "complete   100 parts:                            {:8.1} ms",
        median(lat100)
    );

    let key = "many";
    let id = client.initiate(bucket, key).await?;
    let t = Instant::now();
    // When each part was acknowledged, to compare the rate at the first parts with the rate
    // at the last ones (each part is its own row: the 10,000th should cost what the 1st did).
    let acked = std::sync::Mutex::new(Vec::with_capacity(args.many_parts as usize));
    let sem = std::sync::Arc::new(Semaphore::new(32));
    let futs = (1..=args.many_parts).map(|n| {
        let (sem, small, acked, t, client, id) = (sem.clone(), small.clone(), &acked, &t, &client, &id);
        async move {
            let _permit = sem.acquire().await?;
            let etag = client.upload_part(bucket, key, id, n, small).await?;
            acked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(t.elapsed().as_secs_f64());
            Ok::<_, anyhow::Error>(etag)
        }
    });
    let etags = try_join_all(futs).await?;
    let part_rate = args.many_parts as f64 / t.elapsed().as_secs_f64();
    println!(
        "upload     {} parts of 102,400 bytes, 32 in flight: {part_rate:8.0} parts/s",
        args.many_parts
    );
    let mut acked = acked.into_inner().unwrap_or_else(|p| p.into_inner());
    acked.sort_by(|a, b| a.total_cmp(b));
    let window = (acked.len() / 10).max(2);
    let rate_at = |from: usize| {
        let slice = &acked[from..(from + window).min(acked.len())];
        (slice.len() - 1) as f64 / (slice[slice.len() - 1] - slice[0]).max(1e-9)
    };
    if acked.len() >= 2 * window {
        let (first, middle, last) = (
            rate_at(0),
            rate_at(acked.len() / 2 - window / 2),
            rate_at(acked.len() - window),
        );
        println!(
            "           parts/s over the first, middle and last {window} parts: {first:.0}, {middle:.0}, {last:.0} (last = {:.2}x first)",
            last / first
        );
    }
    let mut list = Vec::new();
    for _ in 0..args.runs.max(5) {
        list.push(client.time_list_parts(bucket, key, &id, args.many_parts).await?);
    }
    println!(
        "listparts  page of 1,000:                        {:8.1} ms",
        median(list)
    );
    let t = Instant::now();
    client.complete(bucket, key, &id, &etags).await?;
    println!(
        "complete   {} parts (one run):                 {:8.1} ms",
        args.many_parts,
        t.elapsed().as_secs_f64() * 1000.0
    );

    read_section(args, &client, bucket, "big-0", &data, scratch).await?;

    // Memory: many concurrent 64 MiB part uploads.
    let (_, before) = server.rss_mib();
    let big_part = Bytes::from(vec![7u8; 64 * MIB]);
    let id = client.initiate(bucket, "mem").await?;
    let t = Instant::now();
    client
        .upload_parts(bucket, "mem", &id, big_part, args.concurrent as u32, args.concurrent)
        .await?;
    let secs = t.elapsed().as_secs_f64();
    let (now, peak) = server.rss_mib();
    println!(
        "memory     {} concurrent 64 MiB parts ({:.0} MB/s): server peak RSS {peak:.0} MiB (before {before:.0} MiB, now {now:.0} MiB)",
        args.concurrent,
        (args.concurrent * 64 * MIB) as f64 / MB / secs
    );
    Ok(())
}

/// The figures the metadata store bounds, for one backend setup.
struct BackendFigures {
    upload: f64,
    complete_100_ms: f64,
    part_rate: f64,
    complete_many_ms: f64,
    list_parts_ms: f64,
    put_rate: f64,
    put_p50_ms: f64,
    put_p99_ms: f64,
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Measures one setup through `clients` (one per gateway; requests alternate between them).
async fn backend_figures(
    args: &BenchArgs,
    buf: &[u8],
    clients: &[Client],
    tag: &str,
) -> anyhow::Result<BackendFigures> {
    let bucket = format!("bench-{tag}-{}", hex::encode(rand::random::<[u8; 4]>()));
    let c0 = &clients[0];
    c0.send_ok(c0.request(reqwest::Method::PUT, &bucket, "", &[])).await?;
    let pick = |i: usize| &clients[i % clients.len()];

    // 1 GiB in 8 MiB parts, 8 in flight, the parts spread over the gateways.
    let part = Bytes::from(buf[..8 * MIB].to_vec());
    let parts = (args.upload_mib / 8).max(1) as u32;
    let mut rates = Vec::new();
    for run in 0..args.runs {
        let key = format!("big-{run}");
        let t = Instant::now();
        let id = c0.initiate(&bucket, &key).await?;
        let sem = std::sync::Arc::new(Semaphore::new(8));
        let futs = (1..=parts).map(|n| {
            let (sem, part, bucket, key, id) = (sem.clone(), part.clone(), &bucket, &key, &id);
            async move {
                let _permit = sem.acquire().await?;
                pick(n as usize).upload_part(bucket, key, id, n, part).await
            }
        });
        let etags = try_join_all(futs).await?;
        pick(1).complete(&bucket, &key, &id, &etags).await?;
        rates.push((parts as usize * 8 * MIB) as f64 / MB / t.elapsed().as_secs_f64());
    }
    let upload = median(rates);

    let small = Bytes::from(buf[..102_400].to_vec());
    let mut lat100 = Vec::new();
    for run in 0..args.runs.max(3) {
        let key = format!("c100-{run}");
        let id = c0.initiate(&bucket, &key).await?;
        let etags = c0.upload_parts(&bucket, &key, &id, small.clone(), 100, 16).await?;
        let t = Instant::now();
        pick(1).complete(&bucket, &key, &id, &etags).await?;
        lat100.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    // Many 100 KiB parts, 32 in flight, over the gateways.
    let key = "many";
    let id = c0.initiate(&bucket, key).await?;
    let sem = std::sync::Arc::new(Semaphore::new(32));
    let t = Instant::now();
    let futs = (1..=args.many_parts).map(|n| {
        let (sem, small, bucket, id) = (sem.clone(), small.clone(), &bucket, &id);
        async move {
            let _permit = sem.acquire().await?;
            pick(n as usize).upload_part(bucket, key, id, n, small).await
        }
    });
    let etags = try_join_all(futs).await?;
    let part_rate = args.many_parts as f64 / t.elapsed().as_secs_f64();
    let mut list = Vec::new();
    for i in 0..args.runs.max(5) {
        list.push(pick(i).time_list_parts(&bucket, key, &id, args.many_parts).await?);
    }
    let t = Instant::now();
    pick(1).complete(&bucket, key, &id, &etags).await?;
    let complete_many_ms = t.elapsed().as_secs_f64() * 1000.0;

    // Small PutObject: 4 KiB bodies, 64 in flight.
    let body = Bytes::from(buf[..4096].to_vec());
    let count = 4000usize;
    let sem = std::sync::Arc::new(Semaphore::new(64));
    let t = Instant::now();
    let futs = (0..count).map(|i| {
        let (sem, body, bucket) = (sem.clone(), body.clone(), &bucket);
        async move {
            let _permit = sem.acquire().await?;
            let started = Instant::now();
            let c = pick(i);
            c.send_ok(
                c.request(reqwest::Method::PUT, bucket, &format!("small/{i}"), &[])
                    .body(body),
            )
            .await?;
            Ok::<_, anyhow::Error>(started.elapsed().as_secs_f64() * 1000.0)
        }
    });
    let latencies = try_join_all(futs).await?;
    let put_rate = count as f64 / t.elapsed().as_secs_f64();
    Ok(BackendFigures {
        upload,
        complete_100_ms: median(lat100),
        part_rate,
        complete_many_ms,
        list_parts_ms: median(list),
        put_rate,
        put_p50_ms: percentile(latencies.clone(), 0.5),
        put_p99_ms: percentile(latencies, 0.99),
    })
}

/// The machine's rate of small durable writes: `threads` threads each creating, writing and
/// fsyncing `size`-byte files for `secs` seconds, files/s. What a store that fsyncs one file
/// per small object could reach at best with that much concurrency.
fn parallel_fsync_rate(dir: &Path, threads: usize, size: usize, secs: f64) -> anyhow::Result<f64> {
    let body = vec![0x3cu8; size];
    let dir = dir.join("fsync-ref");
    std::fs::create_dir_all(&dir)?;
    let t = Instant::now();
    let done = std::thread::scope(|s| -> anyhow::Result<usize> {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (body, dir) = (&body, &dir);
                s.spawn(move || -> std::io::Result<usize> {
                    use std::io::Write;
                    let mut n = 0;
                    while t.elapsed().as_secs_f64() < secs {
                        let mut f = std::fs::File::create(dir.join(format!("{i}-{n}")))?;
                        f.write_all(body)?;
                        f.sync_all()?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        let mut total = 0;
        for h in handles {
            total += h.join().map_err(|_| anyhow::anyhow!("reference thread panicked"))??;
        }
        Ok(total)
    })?;
    let rate = done as f64 / t.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&dir)?;
    Ok(rate)
}

/// Requests/s, median and p99 latency (ms) of one small-request measurement.
struct Load {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs `clients` concurrent loops of `op(client index, sequence number)` for `secs` seconds.
async fn closed_loop<F, Fut>(clients: usize, secs: f64, op: F) -> anyhow::Result<Load>
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let t = Instant::now();
    let loops = (0..clients).map(|c| {
        let op = &op;
        async move {
            let mut latencies = Vec::new();
            while t.elapsed().as_secs_f64() < secs {
                let started = Instant::now();
                op(c, latencies.len()).await?;
                latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(latencies)
        }
    });
    let latencies: Vec<f64> = try_join_all(loops).await?.into_iter().flatten().collect();
    Ok(Load {
        rate: latencies.len() as f64 / t.elapsed().as_secs_f64(),
        p50_ms: percentile(latencies.clone(), 0.5),
        p99_ms: percentile(latencies, 0.99),
    })
}

/// PutObject of 4 KiB and 64 KiB bodies with 1, 16 and 64 clients and GET of 4 KiB, each
/// run right after a run of the parallel-fsync reference (16 threads, 4 KiB files): the
/// disk of a shared machine swings by 10x within minutes, so each figure is compared with
/// the reference taken next to it, and the median of those ratios is reported.
async fn small_writes(
    args: &BenchArgs,
    client: &Client,
    bucket: &str,
    buf: &[u8],
    scratch: &Path,
) -> anyhow::Result<()> {
    let reference = || parallel_fsync_rate(scratch, 16, 4096, args.small_secs);
    println!("reference  16 threads creating, writing, fsyncing 4 KiB files: run beside each line below");
    for size in [4096usize, 65536] {
        let body = Bytes::from(buf[..size].to_vec());
        for clients in [1usize, 16, 64] {
            let mut runs = Vec::new();
            for run in 0..args.runs {
                let fsyncs = reference()?;
                let body = &body;
                let load = closed_loop(clients, args.small_secs, |c, n| async move {
                    let key = format!("put{size}/{clients}-{run}/{c}/{n}");
                    client
                        .send_ok(
                            client
                                .request(reqwest::Method::PUT, bucket, &key, &[])
                                .body(body.clone()),
                        )
                        .await?;
                    Ok(())
                })
                .await?;
                runs.push((load, fsyncs));
            }
            report_load(&format!("put {} KiB, {clients:2} clients", size / 1024), runs);
        }
    }
    let mut runs = Vec::new();
    for _ in 0..args.runs {
        let fsyncs = reference()?;
        let load = closed_loop(16, args.small_secs, |c, n| async move {
            let key = format!("put4096/16-0/{c}/{}", n % 20);
            let resp = client
                .send_ok(client.request(reqwest::Method::GET, bucket, &key, &[]))
                .await?;
            resp.bytes().await?;
            Ok(())
        })
        .await?;
        runs.push((load, fsyncs));
    }
    report_load("get 4 KiB, 16 clients", runs);
    Ok(())
}

/// One line per small-request measurement: medians over the runs, the ratio to the
/// reference taken beside each run.
fn report_load(label: &str, runs: Vec<(Load, f64)>) {
    let rate = median(runs.iter().map(|(l, _)| l.rate).collect());
    let fsyncs = median(runs.iter().map(|(_, f)| *f).collect());
    let ratio = median(runs.iter().map(|(l, f)| l.rate / f).collect());
    let p50 = median(runs.iter().map(|(l, _)| l.p50_ms).collect());
    let p99 = median(runs.iter().map(|(l, _)| l.p99_ms).collect());
    println!(
        "small      {label:<24} {rate:8.0} req/s = {ratio:.2}x fsync ref ({fsyncs:.0}/s); median {p50:.2} ms, p99 {p99:.2} ms ({:.1}x median)",
        p99 / p50
    );
}

/// A body handed to the core in one piece (the round-trip count below).
struct OneChunk(Option<Bytes>);

impl kura_core::BodySource for OneChunk {
    async fn next_chunk(&mut self) -> Option<kura_core::Result<Bytes>> {
        self.0.take().map(Ok)
    }
}

/// Database round trips (statements, BEGIN and COMMIT included) of one PutObject, one
/// UploadPart and one Complete, through the core service as the server runs them.
async fn round_trips(url: &str, scratch: &Path) -> anyhow::Result<(u64, u64, u64, u64)> {
    use kura_core::pg_store::{PgStore, ROUND_TRIPS};
    use std::sync::atomic::Ordering;
    let store = PgStore::connect(url, 2).await.map_err(anyhow::Error::msg)?;
    let kura = kura_core::Kura::open(
        std::sync::Arc::new(store),
        &scratch.join("rt"),
        kura_core::Config::default(),
    )
    .map_err(anyhow::Error::msg)?;
    let bucket = format!("rt-{}", hex::encode(rand::random::<[u8; 4]>()));
    let err = |e: kura_core::Error| anyhow::anyhow!("{}", e.message);
    kura.create_bucket(&bucket, None, None).await.map_err(err)?;
    let count = ROUND_TRIPS.load(Ordering::Relaxed);
    let since = |before: u64| ROUND_TRIPS.load(Ordering::Relaxed) - before;
    let body = || OneChunk(Some(Bytes::from(vec![1u8; 102_400])));
    kura.put_object(&bucket, "k", &mut body(), Default::default())
        .await
        .map_err(err)?;
    let put = since(count);
    let id = kura
        .initiate_upload(&bucket, "m", Default::default())
        .await
        .map_err(err)?;
    let mut etags = Vec::new();
    let count = ROUND_TRIPS.load(Ordering::Relaxed);
    let p = kura
        .upload_part(&bucket, "m", &id, 1, &mut body(), Default::default())
        .await
        .map_err(err)?;
    let part = since(count);
    etags.push((1, p.etag));
    for n in 2..=100 {
        let p = kura
            .upload_part(&bucket, "m", &id, n, &mut body(), Default::default())
            .await
            .map_err(err)?;
        etags.push((n, p.etag));
    }
    let count = ROUND_TRIPS.load(Ordering::Relaxed);
    kura.complete_upload(
        &bucket,
        "m",
        &id,
        kura_core::model::PartSelection::Listed(etags),
        Default::default(),
    )
    .await
    .map_err(err)?;
    let complete = since(count);
    let count = ROUND_TRIPS.load(Ordering::Relaxed);
    kura.head_object(&bucket, "m").await.map_err(err)?;
    let head = since(count);
    Ok((put, part, complete, head))
}

/// The metadata-bound figures on the embedded store, on PostgreSQL with one gateway and with
/// two gateways over one database, in one run, as ratios to the embedded store.
async fn compare_backends(args: &BenchArgs, buf: &[u8], scratch: &Path, url: &str, md5: f64) -> anyhow::Result<()> {
    println!(
        "backends   embedded redb vs PostgreSQL at {}",
        kura_core::pg_store::redact_url(url)
    );
    let http = || reqwest::Client::builder().pool_max_idle_per_host(128).build();
    let mut results = Vec::new();
    for (label, gateways) in [("embedded", 0usize), ("postgres", 1), ("postgres x2", 2)] {
        let data = scratch.join(format!("cmp-{}", label.replace(' ', "-")));
        let servers: Vec<Server> = if gateways == 0 {
            vec![Server::start(&data)?]
        } else {
            (0..gateways)
                .map(|_| Server::start_with(&data, Some(url)))
                .collect::<anyhow::Result<_>>()?
        };
        let clients: Vec<Client> = servers
            .iter()
            .map(|s| {
                Ok(Client {
                    http: http()?,
                    endpoint: s.endpoint.clone(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let f = backend_figures(args, buf, &clients, &label.replace(' ', "")).await?;
        drop(servers);
        let _ = std::fs::remove_dir_all(&data);
        results.push((label, f));
    }
    let base = &results[0].1;
    println!(
        "{:<12} {:>16} {:>14} {:>16} {:>16} {:>14} {:>16} {:>18}",
        "backend",
        "upload MB/s",
        "complete 100",
        "parts/s 100KiB",
        "complete many",
        "listparts 1k",
        "put 4KiB/s",
        "put p50/p99 ms"
    );
    for (label, f) in &results {
        println!(
            "{:<12} {:>9.0} {:>5.2}x {:>8.1}ms {:>4.1}x {:>10.0} {:>4.2}x {:>10.0}ms {:>4.1}x {:>8.1}ms {:>4.1}x {:>10.0} {:>4.2}x {:>8.1}/{:.1}",
            label,
            f.upload,
            f.upload / base.upload,
            f.complete_100_ms,
            f.complete_100_ms / base.complete_100_ms,
            f.part_rate,
            f.part_rate / base.part_rate,
            f.complete_many_ms,
            f.complete_many_ms / base.complete_many_ms,
            f.list_parts_ms,
            f.list_parts_ms / base.list_parts_ms,
            f.put_rate,
            f.put_rate / base.put_rate,
            f.put_p50_ms,
            f.put_p99_ms
        );
    }
    println!(
        "           (upload: {} MiB in 8 MiB parts, 8 in flight; MD5 one core {md5:.0} MB/s; complete many = {} parts; times are latencies, x = ratio to embedded)",
        (args.upload_mib / 8).max(1) * 8,
        args.many_parts
    );
    let (put, part, complete, head) = round_trips(url, scratch).await?;
    println!(
        "round trips to PostgreSQL (statements incl. BEGIN/COMMIT): PutObject {put}, UploadPart {part}, Complete of 100 parts {complete}, HEAD {head}"
    );
    Ok(())
}

/// The disk's own sequential rates with O_DIRECT (no page cache), MB/s: (write, read) of a
/// 1 GiB file in 8 MiB requests, the write including its final fsync. A download to a file
/// can go no faster than the write; a cold GET no faster than the read.
fn direct_rates(dir: &Path) -> anyhow::Result<(f64, f64)> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("direct-ref");
    // O_DIRECT wants an aligned buffer.
    let layout = std::alloc::Layout::from_size_align(8 * MIB, 4096)?;
    // SAFETY: the layout has a non-zero size; the buffer is freed below with the same layout.
    let ptr = unsafe { std::alloc::alloc(layout) };
    if ptr.is_null() {
        bail!("allocation failed");
    }
    // SAFETY: `ptr` points to 8 MiB this function owns until the dealloc below.
    let buf = unsafe { std::slice::from_raw_parts_mut(ptr, 8 * MIB) };
    buf.fill(0x3c);
    let result = (|| -> anyhow::Result<(f64, f64)> {
        let t = Instant::now();
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path)?;
            for _ in 0..128 {
                f.write_all(buf)?;
            }
            f.sync_all()?;
        }
        let write = (128 * 8 * MIB) as f64 / MB / t.elapsed().as_secs_f64();
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)?;
        let t = Instant::now();
        let mut total = 0usize;
        loop {
            let n = f.read(buf)?;
            if n == 0 {
                break;
            }
            total += n;
        }
        Ok((write, total as f64 / MB / t.elapsed().as_secs_f64()))
    })();
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(ptr, layout) };
    let _ = std::fs::remove_file(&path);
    result
}

/// Drops the blob files' pages from the page cache (they are clean: fsynced when written), so
/// the next GET reads from the disk; no root needed, unlike drop_caches.
fn evict_blobs(data: &Path) {
    fn walk(dir: &Path) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p);
            } else if let Ok(f) = std::fs::File::open(&p) {
                use std::os::fd::AsRawFd;
                // SAFETY: a hint syscall on a descriptor owned for its duration.
                unsafe {
                    libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
                }
            }
        }
    }
    walk(&data.join("blobs"));
}

/// One GET of `[range)` (or the whole object) into nothing; returns the bytes received.
async fn get_to_sink(client: &Client, bucket: &str, key: &str, range: Option<(u64, u64)>) -> anyhow::Result<u64> {
    let mut rb = client.request(reqwest::Method::GET, bucket, key, &[]);
    if let Some((a, b)) = range {
        rb = rb.header("range", format!("bytes={a}-{}", b - 1));
    }
    let mut r = client.send_ok(rb).await?;
    let mut n = 0u64;
    while let Some(chunk) = r.chunk().await? {
        n += chunk.len() as u64;
    }
    Ok(n)
}

/// Reads: one GET of a 1 GiB object cold and warm, eight ranged GETs at once, and `kura cp`
/// downloading it to a file, beside the disk's own direct read rate.
async fn read_section(
    args: &BenchArgs,
    client: &Client,
    bucket: &str,
    key: &str,
    data: &Path,
    scratch: &Path,
) -> anyhow::Result<()> {
    let size = ((args.upload_mib / 8).max(1) * 8 * MIB) as u64;
    let rates = (0..args.runs)
        .map(|_| direct_rates(scratch))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let direct_write = median(rates.iter().map(|r| r.0).collect());
    let direct = median(rates.iter().map(|r| r.1).collect());
    println!("reference  disk, direct sequential read:       {direct:8.0} MB/s");
    println!("reference  disk, direct sequential write:      {direct_write:8.0} MB/s");
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut ranged = Vec::new();
    let mut cp = Vec::new();
    for _ in 0..args.runs {
        evict_blobs(data);
        let t = Instant::now();
        let n = get_to_sink(client, bucket, key, None).await?;
        cold.push(n as f64 / MB / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let n = get_to_sink(client, bucket, key, None).await?;
        warm.push(n as f64 / MB / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let step = size.div_ceil(8);
        let futs = (0..8u64).map(|i| get_to_sink(client, bucket, key, Some((i * step, ((i + 1) * step).min(size)))));
        let n: u64 = try_join_all(futs).await?.into_iter().sum();
        ranged.push(n as f64 / MB / t.elapsed().as_secs_f64());
        let dest = scratch.join("download.bin");
        let t = Instant::now();
        let status = Command::new(std::env::current_exe()?)
            .args(["cp", "--signature", "v1", &format!("oss://{bucket}/{key}")])
            .arg(&dest)
            .env("OSS_ENDPOINT", &client.endpoint)
            .env("OSS_ACCESS_KEY_ID", AK)
            .env("OSS_ACCESS_KEY_SECRET", SK)
            .env("KURA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("kura cp download failed");
        }
        cp.push(size as f64 / MB / t.elapsed().as_secs_f64());
        let _ = std::fs::remove_file(&dest);
    }
    let (cold, warm, ranged, cp) = (median(cold), median(warm), median(ranged), median(cp));
    println!(
        "read       1 GiB, one GET, cold:                 {cold:8.0} MB/s  = {:.2}x the disk's direct read",
        cold / direct
    );
    println!("read       1 GiB, one GET, warm:                 {warm:8.0} MB/s");
    println!("read       1 GiB, 8 ranged GETs at once:         {ranged:8.0} MB/s");
    println!(
        "read       kura cp download of 1 GiB to a file:  {cp:8.0} MB/s  = {:.2}x the 8 ranged GETs, {:.2}x the disk's direct write",
        cp / ranged,
        cp / direct_write
    );
    Ok(())
}
