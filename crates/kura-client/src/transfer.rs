//! Parallel, resumable, verified transfers of local files: [`Uploader`] and [`Downloader`].
//!
//! Memory is bounded: an upload job holds one part, read with a positioned read; a download
//! job holds at most two 1 MiB pieces of its range, written with positioned writes as they
//! arrive. Every part's CRC-64 is compared
//! with the server's, and the combined CRC-64 with the object's; a mismatch is an error.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use kura_proto::crc64;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{check_crc, Client};
use crate::error::{Error, Result};

pub const MIN_PART_SIZE: u64 = 100 * 1024;
pub const MAX_PARTS: u64 = 10_000;
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;
const DEFAULT_MAX_JOBS: usize = 8;

/// Part size for a file: 8 MiB, or more so that the file fits in 10,000 parts (rounded up
/// to whole MiB).
pub fn choose_part_size(size: u64) -> u64 {
    let needed = size.div_ceil(MAX_PARTS);
    if needed <= DEFAULT_PART_SIZE {
        DEFAULT_PART_SIZE
    } else {
        needed.div_ceil(1024 * 1024) * 1024 * 1024
    }
}

/// Jobs for a transfer: 8, or fewer when there are fewer parts.
pub fn choose_jobs(size: u64, part_size: u64) -> usize {
    (size.div_ceil(part_size.max(1)) as usize).clamp(1, DEFAULT_MAX_JOBS)
}

/// Where an upload's checkpoint lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    /// No checkpoint: a failed upload is aborted.
    Off,
    /// `.<file name>.<hash>.kura-upload` beside the source file.
    BesideSource,
    /// `<hash>.kura-upload` in this directory.
    Dir(PathBuf),
}

#[derive(Clone, Debug)]
pub struct TransferOptions {
    /// None: [`choose_part_size`].
    pub part_size: Option<u64>,
    /// None: [`choose_jobs`].
    pub jobs: Option<usize>,
    pub checkpoint: Checkpoint,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            part_size: None,
            jobs: None,
            checkpoint: Checkpoint::BesideSource,
        }
    }
}

/// A snapshot of a transfer's progress.
#[derive(Clone, Debug)]
pub struct Progress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub parts_done: u32,
    pub parts_total: u32,
    pub elapsed: Duration,
}

impl Progress {
    /// Bytes per second so far.
    pub fn rate(&self) -> f64 {
        self.bytes_done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Something to call as a transfer moves.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

#[derive(Clone, Debug, Serialize)]
pub struct TransferReport {
    pub bucket: String,
    pub key: String,
    pub size: u64,
    /// Unquoted ETag of the object.
    pub etag: String,
    pub crc64: u64,
    pub parts: u32,
    pub part_size: u64,
    /// Parts found on the server from an earlier, interrupted run and not sent again.
    pub parts_reused: u32,
    pub upload_id: Option<String>,
    /// Why an earlier upload could not be resumed, when there was one.
    pub restarted: Option<String>,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct CheckpointRecord {
    version: u32,
    endpoint: String,
    bucket: String,
    key: String,
    upload_id: String,
    file_size: u64,
    file_mtime_ns: u128,
    part_size: u64,
}

fn mtime_ns(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos())
}

fn checkpoint_path(mode: &Checkpoint, source: &Path, endpoint: &str, bucket: &str, key: &str) -> Option<PathBuf> {
    use md5::{Digest, Md5};
    let abs = std::fs::canonicalize(source).unwrap_or_else(|_| source.to_path_buf());
    let id = hex::encode(Md5::digest(
        format!("{}\n{endpoint}\n{bucket}\n{key}", abs.display()).as_bytes(),
    ));
    match mode {
        Checkpoint::Off => None,
        Checkpoint::BesideSource => {
            let name = abs
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Some(abs.with_file_name(format!(".{name}.{}.kura-upload", &id[..12])))
        }
        Checkpoint::Dir(d) => Some(d.join(format!("{id}.kura-upload"))),
    }
}

fn write_checkpoint(path: &Path, rec: &CheckpointRecord) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let tmp = path.with_extension("kura-upload.tmp");
    let text = serde_json::to_vec_pretty(rec).map_err(|e| Error::Invalid(e.to_string()))?;
    std::fs::write(&tmp, text).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Part sizes the client accepts: at least one byte, at most 5 GiB (the server's limit).
fn check_part_size(part_size: u64) -> Result<()> {
    if part_size == 0 || part_size > MAX_PART_SIZE {
        return Err(Error::Invalid(format!(
            "part size must be between 1 byte and {MAX_PART_SIZE} bytes"
        )));
    }
    Ok(())
}

/// The source must not change while it is uploaded: same size and modification time as when
/// it was opened (a torn upload would otherwise pass every per-part check).
fn unchanged(file: &File, before: &std::fs::Metadata, source: &Path) -> Result<()> {
    let now = file
        .metadata()
        .map_err(|e| Error::io(format!("reading {}", source.display()), e))?;
    if now.len() != before.len() || mtime_ns(&now) != mtime_ns(before) {
        return Err(Error::Integrity(format!(
            "{} changed while it was being uploaded",
            source.display()
        )));
    }
    Ok(())
}

fn read_part(file: &File, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, offset)?;
    Ok(buf)
}

/// Shared progress counters.
struct Tracker {
    start: Instant,
    bytes: AtomicU64,
    parts: AtomicU64,
    bytes_total: u64,
    parts_total: u32,
    callback: Option<ProgressFn>,
}

impl Tracker {
    fn new(start: Instant, bytes_total: u64, parts_total: u32, callback: Option<ProgressFn>) -> Self {
        Tracker {
            start,
            bytes: AtomicU64::new(0),
            parts: AtomicU64::new(0),
            bytes_total,
            parts_total,
            callback,
        }
    }

    fn add(&self, bytes: u64, parts: u64) {
        let b = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let p = self.parts.fetch_add(parts, Ordering::Relaxed) + parts;
        if let Some(cb) = &self.callback {
            cb(&Progress {
                bytes_done: b,
                bytes_total: self.bytes_total,
                parts_done: p as u32,
                parts_total: self.parts_total,
                elapsed: self.start.elapsed(),
            });
        }
    }
}

/// Uploads local files, in parallel parts, resumably.
pub struct Uploader {
    client: Client,
    opts: TransferOptions,
    progress: Option<ProgressFn>,
    active: Arc<std::sync::Mutex<Option<String>>>,
}

impl Uploader {
    pub fn new(client: Client, opts: TransferOptions) -> Self {
        Uploader {
            client,
            opts,
            progress: None,
            active: Arc::default(),
        }
    }

    /// The id of the multipart upload in progress, if any: what to abort when the transfer
    /// is cancelled (dropped) without a checkpoint.
    pub fn active_upload(&self) -> Arc<std::sync::Mutex<Option<String>>> {
        self.active.clone()
    }

    fn set_active(&self, id: Option<String>) {
        *self.active.lock().unwrap_or_else(|e| e.into_inner()) = id;
    }

    pub fn on_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    pub async fn upload_file(&self, source: &Path, bucket: &str, key: &str) -> Result<TransferReport> {
        let result = self.upload_file_inner(source, bucket, key).await;
        self.set_active(None);
        result
    }

    async fn upload_file_inner(&self, source: &Path, bucket: &str, key: &str) -> Result<TransferReport> {
        let start = Instant::now();
        let file = File::open(source).map_err(|e| Error::io(format!("opening {}", source.display()), e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", source.display()), e))?;
        if !meta.is_file() {
            return Err(Error::Invalid(format!("{} is not a regular file", source.display())));
        }
        let size = meta.len();
        let part_size = self.opts.part_size.unwrap_or_else(|| choose_part_size(size));
        check_part_size(part_size)?;
        let parts_total = size.div_ceil(part_size).max(1);
        if size > part_size && part_size < MIN_PART_SIZE {
            return Err(Error::Invalid(format!(
                "part size {part_size} is below the minimum of {MIN_PART_SIZE} bytes"
            )));
        }
        if parts_total > MAX_PARTS {
            return Err(Error::Invalid(format!(
                "{size} bytes in parts of {part_size} makes {parts_total} parts; the limit is {MAX_PARTS}"
            )));
        }
        let tracker = Arc::new(Tracker::new(start, size, parts_total as u32, self.progress.clone()));
        let file = Arc::new(file);

        if size <= part_size {
            let f = file.clone();
            let data = tokio::task::spawn_blocking(move || read_part(&f, 0, size))
                .await
                .map_err(|e| Error::Invalid(e.to_string()))?
                .map_err(|e| Error::io(format!("reading {}", source.display()), e))?;
            let crc = crc64::checksum(&data);
            unchanged(&file, &meta, source)?;
            let r = self.client.put_object(bucket, key, Bytes::from(data)).await?;
            tracker.add(size, 1);
            return Ok(TransferReport {
                bucket: bucket.into(),
                key: key.into(),
                size,
                etag: r.etag,
                crc64: r.crc64.unwrap_or(crc),
                parts: 1,
                part_size,
                parts_reused: 0,
                upload_id: None,
                restarted: None,
                seconds: start.elapsed().as_secs_f64(),
            });
        }

        let endpoint = self.client.config().endpoint.clone();
        let cp_path = checkpoint_path(&self.opts.checkpoint, source, &endpoint, bucket, key);
        let wanted = |upload_id: String| CheckpointRecord {
            version: 1,
            endpoint: endpoint.clone(),
            bucket: bucket.into(),
            key: key.into(),
            upload_id,
            file_size: size,
            file_mtime_ns: mtime_ns(&meta),
            part_size,
        };

        // Resume: the checkpoint names an upload; the server's own part list says what is done.
        let mut done: Vec<Option<(String, u64)>> = vec![None; parts_total as usize];
        let mut restarted = None;
        let mut upload_id = None;
        if let Some(p) = &cp_path {
            if let Ok(text) = std::fs::read(p) {
                match serde_json::from_slice::<CheckpointRecord>(&text) {
                    Ok(old) if old == wanted(old.upload_id.clone()) => {
                        match self.reusable_parts(&file, &old, &mut done).await {
                            Ok(()) => upload_id = Some(old.upload_id),
                            Err(e) if e.code() == Some("NoSuchUpload") => {
                                restarted = Some("the earlier upload no longer exists".to_string())
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(old) => {
                        restarted = Some(if old.file_size != size || old.file_mtime_ns != mtime_ns(&meta) {
                            "the file changed since the earlier upload".to_string()
                        } else {
                            "the part size or destination differs from the earlier upload".to_string()
                        });
                        if old.bucket == bucket && old.key == key && old.endpoint == endpoint {
                            let _ = self.client.abort_multipart_upload(bucket, key, &old.upload_id).await;
                        }
                    }
                    Err(_) => restarted = Some("the checkpoint file could not be read".to_string()),
                }
            }
        }
        let reused = done.iter().filter(|d| d.is_some()).count() as u32;
        let upload_id = match upload_id {
            Some(id) => id,
            None => {
                done.iter_mut().for_each(|d| *d = None);
                let id = self.client.initiate_multipart_upload(bucket, key).await?;
                if let Some(p) = &cp_path {
                    if let Err(e) = write_checkpoint(p, &wanted(id.clone())) {
                        let _ = self.client.abort_multipart_upload(bucket, key, &id).await;
                        return Err(e);
                    }
                }
                id
            }
        };
        self.set_active(Some(upload_id.clone()));
        let reused_bytes: u64 = (0..parts_total)
            .filter(|i| done[*i as usize].is_some())
            .map(|i| part_size.min(size - i * part_size))
            .sum();
        tracker.add(reused_bytes, reused as u64);

        let result = self
            .upload_parts(&file, bucket, key, &upload_id, size, part_size, &mut done, &tracker)
            .await
            .and_then(|()| unchanged(&file, &meta, source));
        if let Err(e) = result {
            // Without a checkpoint nobody will resume it: abort. A changed file cannot be
            // resumed either.
            if cp_path.is_none() || matches!(e, Error::Integrity(_)) {
                let _ = self.client.abort_multipart_upload(bucket, key, &upload_id).await;
                if let Some(p) = &cp_path {
                    let _ = std::fs::remove_file(p);
                }
            }
            return Err(e);
        }
        let parts: Vec<(u32, String)> = done
            .iter()
            .enumerate()
            .map(|(i, d)| (i as u32 + 1, d.as_ref().map(|(e, _)| e.clone()).unwrap_or_default()))
            .collect();
        let local_crc = crc64::combine_all(done.iter().enumerate().map(|(i, d)| {
            (
                d.as_ref().map_or(0, |(_, c)| *c),
                part_size.min(size - i as u64 * part_size),
            )
        }));
        let complete = match self
            .client
            .complete_multipart_upload(bucket, key, &upload_id, &parts)
            .await
        {
            Ok(c) => c,
            // A Complete whose answer was lost and that a server without Kura's idempotent
            // Complete refuses on retry: the object is there if its size and CRC say so.
            Err(e) if e.code() == Some("NoSuchUpload") => match self.client.head_object(bucket, key).await {
                Ok(h) if h.size == size && h.crc64 == Some(local_crc) => crate::client::WriteResult {
                    etag: h.etag,
                    crc64: h.crc64,
                },
                _ => return Err(e),
            },
            Err(e) => {
                if cp_path.is_none() {
                    let _ = self.client.abort_multipart_upload(bucket, key, &upload_id).await;
                }
                return Err(e);
            }
        };
        if let Some(p) = &cp_path {
            let _ = std::fs::remove_file(p);
        }
        if let Err(e) = check_crc(complete.crc64, local_crc, || format!("object {key}")) {
            // The object the server made is not the file: do not leave it looking good.
            let _ = self.client.delete_object(bucket, key).await;
            return Err(e);
        }
        Ok(TransferReport {
            bucket: bucket.into(),
            key: key.into(),
            size,
            etag: complete.etag,
            crc64: complete.crc64.unwrap_or(local_crc),
            parts: parts_total as u32,
            part_size,
            parts_reused: reused,
            upload_id: Some(upload_id),
            restarted,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Fills `done` with the parts of `old` the server has whose size and CRC-64 match the file.
    async fn reusable_parts(
        &self,
        file: &Arc<File>,
        old: &CheckpointRecord,
        done: &mut [Option<(String, u64)>],
    ) -> Result<()> {
        let listed = self
            .client
            .list_all_parts(&old.bucket, &old.key, &old.upload_id)
            .await?;
        for p in listed {
            let i = p.part_number as usize;
            if i == 0 || i > done.len() {
                continue;
            }
            let offset = (i as u64 - 1) * old.part_size;
            let len = old.part_size.min(old.file_size - offset);
            if p.size != len {
                continue;
            }
            let f = file.clone();
            let data = tokio::task::spawn_blocking(move || read_part(&f, offset, len))
                .await
                .map_err(|e| Error::Invalid(e.to_string()))?
                .map_err(|e| Error::io("reading the source file", e))?;
            let crc = crc64::checksum(&data);
            if p.hash_crc64ecma.parse::<u64>().ok() == Some(crc) {
                done[i - 1] = Some((p.etag.trim_matches('"').to_string(), crc));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload_parts(
        &self,
        file: &Arc<File>,
        bucket: &str,
        key: &str,
        upload_id: &str,
        size: u64,
        part_size: u64,
        done: &mut [Option<(String, u64)>],
        tracker: &Arc<Tracker>,
    ) -> Result<()> {
        let jobs = self.opts.jobs.unwrap_or_else(|| choose_jobs(size, part_size)).max(1);
        let sem = Arc::new(Semaphore::new(jobs));
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut set = JoinSet::new();
        for (i, slot) in done.iter().enumerate() {
            if slot.is_some() {
                continue;
            }
            let permit = sem
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| Error::Invalid(e.to_string()))?;
            // Start no more parts once one has failed.
            if failed.load(Ordering::Relaxed) {
                break;
            }
            let (client, file, tracker, failed) = (self.client.clone(), file.clone(), tracker.clone(), failed.clone());
            let (bucket, key, upload_id) = (bucket.to_string(), key.to_string(), upload_id.to_string());
            let number = i as u32 + 1;
            let offset = i as u64 * part_size;
            let len = part_size.min(size - offset);
            set.spawn(async move {
                let _permit = permit;
                let part = async {
                    let data = tokio::task::spawn_blocking(move || read_part(&file, offset, len))
                        .await
                        .map_err(|e| Error::Invalid(e.to_string()))?
                        .map_err(|e| Error::io("reading the source file", e))?;
                    let crc = crc64::checksum(&data);
                    let r = client
                        .upload_part(&bucket, &key, &upload_id, number, Bytes::from(data))
                        .await?;
                    tracker.add(len, 1);
                    Ok::<_, Error>((r.etag, crc))
                };
                let result = part.await.map_err(|e| Error::Part {
                    number,
                    source: Box::new(e),
                });
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                (number, result)
            });
        }
        let mut first_error = None;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((number, Ok(v))) => done[number as usize - 1] = Some(v),
                Ok((_, Err(e))) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(Error::Invalid(format!("a part task failed: {e}")));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None if done.iter().all(Option::is_some) => Ok(()),
            None => Err(Error::Invalid("some parts were not uploaded".into())),
        }
    }
}

/// Where one range of a download goes: the destination file at `offset`, with the shared
/// writeback window.
struct RangeSink {
    file: Arc<File>,
    offset: u64,
    pending: InWriteback,
}

/// Bytes of a range gathered before they are written: the write of one piece overlaps the
/// arrival of the next, so a range's bytes reach the disk as they come in rather than after the
/// whole range has been received.
const WRITE_PIECE: usize = 1024 * 1024;

/// GETs `[offset, offset + len)` (if the object still has `etag`) and writes it to the sink as
/// it arrives; returns the range's CRC-64. A failed attempt is retried from the start of the
/// range (its bytes are simply written again).
async fn fetch_range_into(
    client: &Client,
    bucket: &str,
    key: &str,
    len: u64,
    etag: &str,
    sink: &RangeSink,
) -> Result<u64> {
    let mut attempt = 0u32;
    loop {
        // The piece being written, outside the attempt: however the attempt ends, its write is
        // waited for before a retry rewrites the range or the download returns.
        let mut writing: Option<tokio::task::JoinHandle<std::io::Result<Vec<u8>>>> = None;
        let result = async {
            let mut r = client
                .get_object(bucket, key, Some((sink.offset, sink.offset + len)), Some(etag))
                .await?;
            let mut crc = crc64::Crc64::new();
            let mut received = 0u64;
            // Two buffers per range, reused: one filling while the other is written (fresh
            // megabytes for every piece cost more in page faults than the copy itself).
            let mut piece = Vec::with_capacity(WRITE_PIECE);
            let mut spare: Option<Vec<u8>> = None;
            let mut written_to = sink.offset;
            loop {
                let chunk = r.chunk().await?;
                if let Some(chunk) = &chunk {
                    received += chunk.len() as u64;
                    if received > len {
                        return Err(Error::Integrity(format!(
                            "the server sent more than the {len} bytes asked for"
                        )));
                    }
                    crc.update(chunk);
                    piece.extend_from_slice(chunk);
                }
                let last = chunk.is_none();
                if piece.len() >= WRITE_PIECE || (last && !piece.is_empty()) {
                    if let Some(w) = writing.take() {
                        let mut done = w
                            .await
                            .map_err(|e| Error::Invalid(e.to_string()))?
                            .map_err(|e| Error::io("writing the destination file", e))?;
                        done.clear();
                        spare = Some(done);
                    }
                    let next = spare.take().unwrap_or_else(|| Vec::with_capacity(WRITE_PIECE));
                    let buf = std::mem::replace(&mut piece, next);
                    let (file, pending, at) = (sink.file.clone(), sink.pending.clone(), written_to);
                    written_to += buf.len() as u64;
                    writing = Some(tokio::task::spawn_blocking(move || {
                        write_through(&file, &buf, at, &pending).map(|()| buf)
                    }));
                }
                if last {
                    break;
                }
            }
            if let Some(w) = writing.take() {
                w.await
                    .map_err(|e| Error::Invalid(e.to_string()))?
                    .map_err(|e| Error::io("writing the destination file", e))?;
            }
            if received != len {
                return Err(Error::Integrity(format!("expected {len} bytes, received {received}")));
            }
            Ok(crc.finish())
        }
        .await;
        if let Some(w) = writing.take() {
            let _ = w.await;
        }
        match result {
            Err(e) if attempt < client.config().max_retries && e.is_retryable() => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(6))).await;
            }
            other => return other,
        }
    }
}

/// Ranges of the destination file written and sent to the disk, oldest first, not yet dropped
/// from the page cache.
type InWriteback = Arc<std::sync::Mutex<std::collections::VecDeque<(u64, u64)>>>;

/// How many written pieces may be on their way to the disk before the oldest is waited for and
/// dropped from the page cache (32 MiB in [`WRITE_PIECE`]s).
const WRITEBACK_RANGES: usize = 32;

/// Writes one range of the destination file and starts its writeback at once; once more than
/// [`WRITEBACK_RANGES`] are on their way, waits for the oldest and drops it from the page
/// cache. Left to the kernel, a fast download piles up dirty pages faster than writeback drains
/// them (here about 350 MB/s) and then stalls every writer; this keeps the disk busy and the
/// cache small without waiting on each range. The final `sync_all` makes the file durable.
fn write_through(file: &File, buf: &[u8], offset: u64, pending: &InWriteback) -> std::io::Result<()> {
    file.write_all_at(buf, offset)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: plain syscalls on a descriptor this function borrows for their duration.
        unsafe {
            if libc::sync_file_range(
                fd,
                offset as libc::off64_t,
                buf.len() as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        let oldest = {
            let mut q = pending.lock().unwrap_or_else(|p| p.into_inner());
            q.push_back((offset, buf.len() as u64));
            if q.len() > WRITEBACK_RANGES {
                q.pop_front()
            } else {
                None
            }
        };
        if let Some((off, len)) = oldest {
            let flags =
                libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            // SAFETY: as above.
            unsafe {
                if libc::sync_file_range(fd, off as libc::off64_t, len as libc::off64_t, flags) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::posix_fadvise(
                    fd,
                    off as libc::off64_t,
                    len as libc::off64_t,
                    libc::POSIX_FADV_DONTNEED,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = pending;
    Ok(())
}

/// Downloads objects into local files with parallel ranged GETs, verified by CRC-64.
pub struct Downloader {
    client: Client,
    opts: TransferOptions,
    progress: Option<ProgressFn>,
}

impl Downloader {
    pub fn new(client: Client, opts: TransferOptions) -> Self {
        Downloader {
            client,
            opts,
            progress: None,
        }
    }

    pub fn on_progress(mut self, f: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }

    /// Writes the object to `<dest>.kura-download` and renames it to `dest` once every range
    /// arrived and the combined CRC-64 matches the object's.
    pub async fn download_file(&self, bucket: &str, key: &str, dest: &Path) -> Result<TransferReport> {
        let start = Instant::now();
        let head = self.client.head_object(bucket, key).await?;
        let size = head.size;
        let part_size = self.opts.part_size.unwrap_or_else(|| choose_part_size(size));
        check_part_size(part_size)?;
        let parts_total = size.div_ceil(part_size) as usize;
        let jobs = self.opts.jobs.unwrap_or_else(|| choose_jobs(size, part_size)).max(1);
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tmp = {
            let mut s = dest.as_os_str().to_owned();
            s.push(".kura-download");
            PathBuf::from(s)
        };
        let file = File::create(&tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        file.set_len(size)
            .map_err(|e| Error::io(format!("sizing {}", tmp.display()), e))?;
        let file = Arc::new(file);
        let pending = InWriteback::default();
        let tracker = Arc::new(Tracker::new(start, size, parts_total as u32, self.progress.clone()));
        let sem = Arc::new(Semaphore::new(jobs));
        let mut set = JoinSet::new();
        for i in 0..parts_total {
            let permit = sem
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| Error::Invalid(e.to_string()))?;
            // Start no more ranges once one has failed.
            if failed.load(Ordering::Relaxed) {
                break;
            }
            let (client, file, tracker, etag) = (self.client.clone(), file.clone(), tracker.clone(), head.etag.clone());
            let pending = pending.clone();
            let failed = failed.clone();
            let (bucket, key) = (bucket.to_string(), key.to_string());
            let offset = i as u64 * part_size;
            let len = part_size.min(size - offset);
            set.spawn(async move {
                let _permit = permit;
                let number = i as u32 + 1;
                let part = async {
                    let sink = RangeSink { file, offset, pending };
                    let crc = fetch_range_into(&client, &bucket, &key, len, &etag, &sink).await?;
                    tracker.add(len, 1);
                    Ok::<_, Error>(crc)
                };
                let result = part.await.map_err(|e| Error::Part {
                    number,
                    source: Box::new(e),
                });
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                (i, result)
            });
        }
        let mut crcs = vec![0u64; parts_total];
        let mut first_error = None;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((i, Ok(crc))) => crcs[i] = crc,
                Ok((_, Err(e))) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(Error::Invalid(format!("a part task failed: {e}")));
                }
            }
        }
        let fail = |e: Error| {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        };
        if let Some(e) = first_error {
            return fail(e);
        }
        let crc = crc64::combine_all(
            crcs.iter()
                .enumerate()
                .map(|(i, c)| (*c, part_size.min(size - i as u64 * part_size))),
        );
        if let Err(e) = check_crc(head.crc64, crc, || format!("object {key}")) {
            return fail(e);
        }
        if let Err(e) = file.sync_all() {
            return fail(Error::io("syncing the destination file", e));
        }
        std::fs::rename(&tmp, dest).map_err(|e| Error::io(format!("renaming to {}", dest.display()), e))?;
        Ok(TransferReport {
            bucket: bucket.into(),
            key: key.into(),
            size,
            etag: head.etag,
            crc64: crc,
            parts: parts_total as u32,
            part_size,
            parts_reused: 0,
            upload_id: None,
            restarted: None,
            seconds: start.elapsed().as_secs_f64(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_and_jobs() {
        assert_eq!(choose_part_size(0), 8 << 20);
        assert_eq!(choose_part_size(80 << 30), 9 << 20); // 80 GiB needs more than 8 MiB parts
        assert!(choose_part_size(48 << 40).div_ceil(1) * MAX_PARTS >= 48 << 40);
        assert_eq!(choose_jobs(1, 8 << 20), 1);
        assert_eq!(choose_jobs(100 << 20, 8 << 20), 8);
        assert_eq!(choose_jobs(20 << 20, 8 << 20), 3);
    }
}
