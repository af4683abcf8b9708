//! The core service: the rules of the OSS API over the metadata store and the blob files.
//! No HTTP type crosses into here; the server hands over typed inputs and a body source.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::blob::{BlobInfo, BlobStore, InFlight};
use crate::classes::StorageClass;
use crate::error::{Code, Error, Result};
use crate::meta::{Blocking, CompleteRequest, DeleteCondition, MetaStore, ScanStart, WriteCondition};
use crate::model::*;
use crate::redb_store::RedbStore;
use kura_proto::checksum::{self, Algorithm};
use kura_proto::timefmt::now_millis;

pub const MAX_PART_NUMBER: u32 = 10_000;
pub const MAX_KEY_LEN: usize = 1023;
pub const MAX_LIST: usize = 1000;

#[derive(Debug, Clone)]
pub struct Config {
    /// Region reported by bucket info and location (`cn-hangzhou`).
    pub region: String,
    /// Smallest size of every part but the last at Complete (102,400 bytes on OSS).
    pub min_part_size: u64,
    /// Largest part and largest single PutObject body (5 GiB).
    pub max_body_size: u64,
    pub max_buckets: usize,
    /// How long a dropped blob stays on disk before the sweeper removes it.
    pub deletion_grace: Duration,
    /// How long a Complete's answer is kept for retries.
    pub completed_retention: Duration,
    /// Free space kept on the data volume for metadata commits and deletes: a body write that
    /// would eat into it is refused with InsufficientStorage.
    pub min_free_bytes: u64,
    /// With gateways sharing the data directory: how old a file another gateway may still own
    /// must be before an orphan sweep removes it. A temporary file untouched this long has no
    /// writer (a body idle for 60 s is cut off), and a blob file this old that no metadata
    /// knows was never committed (its commit follows the rename at once and has long ended).
    pub shared_file_grace: Duration,
    /// PutObject and CopyObject results up to this many bytes are kept in the metadata store
    /// (when it supports it: the embedded one) instead of a file: one commit makes them
    /// durable, shared with concurrent writes. 0 keeps every object in files.
    pub inline_max: usize,
    /// The embedded store's page cache (redb), bytes.
    pub meta_cache_bytes: usize,
    /// How long a RestoreObject of an archived object takes (the services take minutes to
    /// hours; an emulator's tests want seconds).
    pub restore_delay: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            region: "cn-hangzhou".into(),
            min_part_size: 102_400,
            max_body_size: 5 * 1024 * 1024 * 1024,
            max_buckets: 100,
            deletion_grace: Duration::from_secs(60),
            completed_retention: Duration::from_secs(2 * 24 * 3600),
            min_free_bytes: 256 * 1024 * 1024,
            shared_file_grace: Duration::from_secs(3600),
            inline_max: DEFAULT_INLINE_MAX,
            meta_cache_bytes: crate::redb_store::DEFAULT_CACHE_BYTES,
            restore_delay: Duration::from_secs(1),
        }
    }
}

/// Chosen by measurement (`kura bench --small-only --inline-max-bytes N`, see the README).
pub const DEFAULT_INLINE_MAX: usize = 16 * 1024;

/// A request body as the core sees it: chunks until None.
pub trait BodySource: Send {
    fn next_chunk(&mut self) -> impl Future<Output = Option<Result<Bytes>>> + Send;
    /// Checksums that arrived after the data (aws-chunked trailers), once the body has ended.
    fn trailing_checksums(&self) -> Vec<(Algorithm, Vec<u8>)> {
        Vec::new()
    }
}

/// What to compute over a body and check it against, besides MD5 and CRC-64.
#[derive(Debug, Clone, Default)]
pub struct BodyChecks {
    /// Content-MD5 sent by the client; a mismatch is InvalidDigest and nothing is stored.
    pub content_md5: Option<[u8; 16]>,
    /// The checksum to compute and keep with the object or part.
    pub store: Option<Algorithm>,
    /// Values the client sent in headers; a mismatch is BadDigest and nothing is stored.
    pub expected: Vec<(Algorithm, Vec<u8>)>,
    /// Algorithms whose values arrive as trailers (see [`BodySource::trailing_checksums`]).
    pub trailing: Vec<Algorithm>,
    /// The signed payload hash (`x-amz-content-sha256`), when it is a real hash.
    pub payload_sha256: Option<Vec<u8>>,
    /// The body length the client declared, when it did: checked against free space first.
    pub declared_len: Option<u64>,
    /// The client sent `Expect: 100-continue`: it waits for the answer before sending the
    /// body, so a refusal need not read any of it.
    pub expect_continue: bool,
}

impl BodyChecks {
    fn algorithms(&self) -> Vec<Algorithm> {
        let mut v: Vec<Algorithm> = self.store.into_iter().collect();
        v.extend(self.expected.iter().map(|(a, _)| *a));
        v.extend(self.trailing.iter().copied());
        if self.payload_sha256.is_some() {
            v.push(Algorithm::Sha256);
        }
        v.sort_by_key(|a| a.name());
        v.dedup();
        v
    }
}

/// Options stored with a new object or upload.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub headers: ObjectHeaders,
    pub acl: ObjectAcl,
    pub storage_class: String,
    pub condition: WriteCondition,
    pub checks: BodyChecks,
    /// For a multipart upload: the S3 checksum algorithm and whether it is FULL_OBJECT.
    pub multipart_checksum: Option<(Algorithm, bool)>,
    /// For a multipart upload: OSS `?sequential`.
    pub sequential: bool,
    /// Object tags (checked with [`check_object_tags`]).
    pub tags: Vec<(String, String)>,
}

/// What a CopyObject asks for besides its source and destination.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// New headers (metadata directive REPLACE); None keeps the source's.
    pub headers: Option<ObjectHeaders>,
    pub acl: ObjectAcl,
    pub condition: WriteCondition,
    /// New tags (tagging directive REPLACE); None keeps the source's.
    pub tags: Option<Vec<(String, String)>>,
    /// The copy's class; None keeps the source's.
    pub storage_class: Option<StorageClass>,
}

/// What a Complete asks for besides the part list.
#[derive(Debug, Clone, Default)]
pub struct CompleteOptions {
    pub condition: WriteCondition,
    /// `x-oss-object-acl` on Complete; None keeps the ACL given at Initiate.
    pub acl: Option<ObjectAcl>,
    /// S3: the object checksum the client expects (raw), checked before the commit.
    pub expected_checksum: Option<(Algorithm, Vec<u8>)>,
}

pub struct ObjectListing {
    pub objects: Vec<(String, ObjectRecord)>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
    /// The last key or common prefix returned, when truncated.
    pub next_marker: Option<String>,
}

pub struct UploadListing {
    pub uploads: Vec<UploadRecord>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
    pub next_key_marker: String,
    pub next_upload_id_marker: String,
}

pub struct PartListing {
    pub upload: UploadRecord,
    pub parts: Vec<(u32, PartRecord)>,
    pub truncated: bool,
    pub next_marker: u32,
}

pub struct Kura {
    meta: Arc<dyn MetaStore>,
    gateway_id: String,
    blobs: Arc<BlobStore>,
    cfg: Config,
    last_upload_stamp: AtomicU64,
    /// The data volume's free bytes and when they were read (ms).
    free_space: std::sync::Mutex<Option<(u64, u64)>>,
}

/// Validates a bucket name: 3..63 of `[a-z0-9-]`, starting and ending with a letter or digit.
pub fn check_bucket_name(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = (3..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    if ok {
        Ok(())
    } else {
        Err(Error::new(Code::InvalidBucketName).with_bucket(name))
    }
}

/// Validates a bucket name by S3's rules, which the S3 dialect follows: 3..63 of
/// `[a-z0-9.-]`, starting and ending with a letter or digit, no `..`, not shaped like an IP
/// address, none of S3's reserved prefixes and suffixes. Every OSS name passes.
pub fn check_s3_bucket_name(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ip_like = name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok());
    let ok = (3..=63).contains(&b.len())
        && b.iter().all(|c| alnum(*c) || *c == b'-' || *c == b'.')
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && !name.contains("..")
        && !ip_like
        && !["xn--", "sthree-", "amzn-s3-demo-"].iter().any(|p| name.starts_with(p))
        && !["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
            .iter()
            .any(|x| name.ends_with(x));
    if ok {
        Ok(())
    } else {
        Err(Error::new(Code::InvalidBucketName).with_bucket(name))
    }
}

/// Validates an object key: 1..1023 bytes, not starting with `/` or `\`. A key is only ever a
/// metadata key, never a path, so `../x` is an ordinary name.
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::msg(
            Code::InvalidObjectName,
            "The length of the object name must be between 1 and 1023 bytes.",
        ));
    }
    if key.contains('\0') {
        // Neither metadata backend's text columns (PostgreSQL) nor the XML of listings can
        // carry it; refused the same way on both backends.
        return Err(Error::msg(
            Code::InvalidObjectName,
            "The object name must not contain a NUL character.",
        ));
    }
    if key.starts_with('/') || key.starts_with('\\') {
        return Err(Error::msg(
            Code::InvalidObjectName,
            "The object name must not start with '/' or '\\'.",
        ));
    }
    Ok(())
}

pub fn check_part_number(n: &str) -> Result<u32> {
    match n.parse::<u32>() {
        Ok(v) if (1..=MAX_PART_NUMBER).contains(&v) => Ok(v),
        _ => Err(Error::invalid_argument(
            "Part number must be an integer between 1 and 10000, inclusive.",
            "partNumber",
            n,
        )),
    }
}

/// The common prefix of `key` under `prefix` and `delimiter`, if the key has one.
fn common_prefix<'a>(key: &'a str, prefix: &str, delimiter: &str) -> Option<&'a str> {
    if delimiter.is_empty() {
        return None;
    }
    let rest = key.get(prefix.len()..)?;
    rest.find(delimiter).map(|i| &key[..prefix.len() + i + delimiter.len()])
}

/// The smallest string greater than every string that starts with `p` (the last character
/// that can be raised, raised), or None when no string can follow (`p` is all U+10FFFF).
/// Listings skip a common prefix by starting there: a fixed padding such as
/// `p + U+10FFFF...` is not past keys that themselves hold U+10FFFF, and the same page would
/// come back forever.
pub fn prefix_successor(p: &str) -> Option<String> {
    let mut chars: Vec<char> = p.chars().collect();
    while let Some(c) = chars.pop() {
        let next = match c as u32 {
            0xD7FF => Some('\u{E000}'),
            n => char::from_u32(n + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// How much of a refused body is read and dropped so that the client, which is still
/// sending, gets the answer instead of a reset connection. Past this the connection closes.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

async fn drain(body: &mut impl BodySource, limit: u64) {
    let mut read = 0u64;
    while read <= limit {
        match body.next_chunk().await {
            Some(Ok(chunk)) => read += chunk.len() as u64,
            _ => break,
        }
    }
}

/// How many body bytes pass between two looks at the free space.
const SPACE_CHECK_EVERY: u64 = 8 * 1024 * 1024;

/// A blob I/O error as the client sees it: a full volume is InsufficientStorage (nothing was
/// stored, retry later), anything else an internal error.
fn storage_error(e: std::io::Error) -> Error {
    let full = e.kind() == std::io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT));
    if full {
        Error::new(Code::InsufficientStorage)
    } else {
        Error::internal(e)
    }
}

impl Kura {
    /// Refuses a write of `incoming` bytes that would leave less than the reserve free. The
    /// free space is read at most every 50 ms (a statvfs on the blocking pool); what other
    /// writes add within that window is far below any sensible reserve.
    async fn space_for(&self, incoming: u64) -> Result<()> {
        let now_ms = now_millis();
        let free = match *self.free_space.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((at, free)) if now_ms.saturating_sub(at) < 50 => Some(free),
            _ => None,
        };
        let free = match free {
            Some(f) => f,
            None => {
                let blobs = self.blobs.clone();
                let f = tokio::task::spawn_blocking(move || blobs.free_bytes())
                    .await
                    .map_err(Error::internal)?
                    .map_err(Error::internal)?;
                *self.free_space.lock().unwrap_or_else(|p| p.into_inner()) = Some((now_ms, f));
                f
            }
        };
        if free < self.cfg.min_free_bytes.saturating_add(incoming) {
            tracing::warn!(
                free,
                incoming,
                reserve = self.cfg.min_free_bytes,
                "refusing a write: the data volume is full"
            );
            return Err(Error::new(Code::InsufficientStorage));
        }
        Ok(())
    }

    /// Opens the embedded default: redb metadata and blob files under `data_dir`.
    pub fn open_local(data_dir: &Path, cfg: Config) -> Result<Arc<Self>> {
        std::fs::create_dir_all(data_dir).map_err(Error::internal)?;
        let meta = RedbStore::open_with_cache(&data_dir.join("meta.redb"), cfg.meta_cache_bytes)?;
        Self::open(Arc::new(Blocking(Arc::new(meta))), data_dir, cfg)
    }

    /// Opens a Kura over any metadata store, with blob files under `data_dir`.
    pub fn open(meta: Arc<dyn MetaStore>, data_dir: &Path, cfg: Config) -> Result<Arc<Self>> {
        std::fs::create_dir_all(data_dir).map_err(Error::internal)?;
        let gateway_id = hex::encode(rand::random::<[u8; 8]>());
        let blobs = BlobStore::open(data_dir, &gateway_id).map_err(Error::internal)?;
        Ok(Arc::new(Kura {
            gateway_id,
            meta,
            blobs: Arc::new(blobs),
            cfg,
            last_upload_stamp: AtomicU64::new(0),
            free_space: std::sync::Mutex::new(None),
        }))
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Runs a metadata write that commits a new blob in a task of its own, holding the blob's
    /// in-flight registration until the store has answered: a request dropped mid-commit
    /// (the client went away) neither abandons the transaction nor hands the blob to the
    /// orphan sweep before its fate is settled.
    async fn commit_blob<T, F>(&self, in_flight: InFlight, write: impl FnOnce(Arc<dyn MetaStore>) -> F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let pending = write(self.meta.clone());
        tokio::spawn(async move {
            let done = pending.await;
            drop(in_flight);
            done
        })
        .await
        .map_err(Error::internal)?
    }

    /// How large a new object may be and still be kept inline (0 when the store cannot).
    fn inline_max(&self) -> usize {
        if self.meta.stores_inline() {
            self.cfg.inline_max
        } else {
            0
        }
    }

    fn delete_due(&self) -> u64 {
        now_millis() + self.cfg.deletion_grace.as_millis() as u64
    }

    /// 32 uppercase hex: 48 bits of milliseconds and a 16-bit sequence (so ids sort by
    /// initiation time, strictly, within this process), then 64 random bits.
    fn new_upload_id(&self) -> String {
        let now = now_millis() << 16;
        let mut prev = self.last_upload_stamp.load(Ordering::Relaxed);
        let stamp = loop {
            let next = now.max(prev + 1);
            match self
                .last_upload_stamp
                .compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => break next,
                Err(p) => prev = p,
            }
        };
        format!("{:016X}{:016X}", stamp, rand::random::<u64>())
    }

    // ---- buckets ----

    /// Creates a bucket; the dialect has checked the name by its own rules (OSS's are the
    /// stricter), so only S3's wider rules are enforced here.
    /// Creates a bucket; `class` is the default storage class of its objects (Standard).
    pub async fn create_bucket(&self, name: &str, acl: Option<Acl>, class: Option<StorageClass>) -> Result<()> {
        check_s3_bucket_name(name)?;
        let rec = BucketRecord {
            name: name.to_string(),
            created_ms: now_millis(),
            acl: acl.unwrap_or_default(),
            storage_class: class.unwrap_or(StorageClass::Standard).as_str().into(),
            tags: Vec::new(),
        };
        let max = self.cfg.max_buckets;
        self.meta.create_bucket(&rec, acl.is_some(), max).await?;
        Ok(())
    }

    pub async fn bucket(&self, name: &str) -> Result<BucketRecord> {
        let n = name.to_string();
        self.meta
            .get_bucket(&n)
            .await?
            .ok_or_else(|| Error::new(Code::NoSuchBucket).with_bucket(name))
    }

    /// The bucket's usage per storage class, as its writes keep it (O(1) in the bucket's size).
    pub async fn bucket_usage(&self, name: &str) -> Result<Vec<(StorageClass, Usage)>> {
        self.bucket(name).await?;
        let mut by_class: Vec<(StorageClass, Usage)> =
            StorageClass::ALL.iter().map(|c| (*c, Usage::default())).collect();
        for (class, usage) in self.meta.bucket_usage(name).await? {
            let class = StorageClass::of(&class);
            if let Some((_, u)) = by_class.iter_mut().find(|(c, _)| *c == class) {
                u.add(&usage);
            }
        }
        Ok(by_class)
    }

    pub async fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        self.meta.list_buckets().await
    }

    pub async fn delete_bucket(&self, name: &str) -> Result<()> {
        let n = name.to_string();
        self.meta.delete_bucket(&n).await
    }

    pub async fn set_bucket_acl(&self, name: &str, acl: Acl) -> Result<()> {
        self.meta.update_bucket(name, &BucketChange::Acl(acl)).await
    }

    /// Replaces the bucket's tags (checked against the bucket limits).
    pub async fn set_bucket_tags(&self, name: &str, tags: Vec<(String, String)>) -> Result<()> {
        crate::tags::check_bucket_tags(&tags)?;
        self.meta.update_bucket(name, &BucketChange::Tags(tags)).await
    }

    /// Removes the bucket's tags with these keys (every tag when None).
    pub async fn delete_bucket_tags(&self, name: &str, keys: Option<Vec<String>>) -> Result<()> {
        let change = match keys {
            Some(keys) => BucketChange::DeleteTags(keys),
            None => BucketChange::Tags(Vec::new()),
        };
        self.meta.update_bucket(name, &change).await
    }

    // ---- objects ----

    /// Streams a body into a new blob, enforcing the size limit, Content-MD5 and the S3
    /// checks. On any error the blob is gone. Returns the blob and the checksum to keep.
    async fn receive(
        &self,
        body: &mut impl BodySource,
        checks: &BodyChecks,
        inline_max: usize,
    ) -> Result<(BlobInfo, Option<(Algorithm, String)>)> {
        if let Err(e) = self.space_for(checks.declared_len.unwrap_or(0)).await {
            if !checks.expect_continue {
                drain(body, DRAIN_LIMIT).await;
            }
            return Err(e);
        }
        let mut w = self.blobs.writer_with(&checks.algorithms()).inline_up_to(inline_max);
        let mut size = 0u64;
        let mut checked_at = 0u64;
        while let Some(chunk) = body.next_chunk().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            if size > self.cfg.max_body_size {
                return Err(Error::msg(
                    Code::EntityTooLarge,
                    format!("The body exceeds the limit of {} bytes.", self.cfg.max_body_size),
                ));
            }
            // A body of unknown length may still run into the reserve: look again as it grows.
            if size - checked_at >= SPACE_CHECK_EVERY {
                checked_at = size;
                if let Err(e) = self.space_for(0).await {
                    drop(w);
                    drain(body, DRAIN_LIMIT).await;
                    return Err(e);
                }
            }
            w.write(chunk).await.map_err(storage_error)?;
        }
        let info = w.finish().await.map_err(storage_error)?;
        let digest = |a: Algorithm| info.extra.iter().find(|(x, _)| *x == a).map(|(_, v)| v.as_slice());
        let mut failure = None;
        if checks.content_md5.is_some_and(|m| m != info.md5) {
            failure = Some(Error::new(Code::InvalidDigest));
        } else if checks
            .payload_sha256
            .as_deref()
            .is_some_and(|h| Some(h) != digest(Algorithm::Sha256))
        {
            failure = Some(Error::new(Code::XAmzContentSHA256Mismatch));
        } else {
            let trailing = body.trailing_checksums();
            for (a, expected) in checks.expected.iter().chain(trailing.iter()) {
                if Some(expected.as_slice()) != digest(*a) {
                    failure = Some(Error::msg(
                        Code::BadDigest,
                        format!("The {} you specified did not match the calculated checksum.", a.name()),
                    ));
                    break;
                }
            }
            if failure.is_none() && checks.trailing.iter().any(|a| !trailing.iter().any(|(t, _)| t == a)) {
                failure = Some(Error::msg(
                    Code::InvalidRequest,
                    "A declared trailing checksum did not arrive.",
                ));
            }
        }
        if let Some(e) = failure {
            let _ = self.blobs.delete(&info.id);
            return Err(e);
        }
        let stored = checks
            .store
            .and_then(|a| digest(a).map(|v| (a, checksum::to_base64(v))));
        Ok((info, stored))
    }

    pub async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: &mut impl BodySource,
        mut opts: WriteOptions,
    ) -> Result<ObjectRecord> {
        check_key(key)?;
        crate::tags::check_object_tags(&opts.tags)?;
        let b = self.bucket(bucket).await?;
        if opts.storage_class.is_empty() {
            opts.storage_class = b.storage_class.clone();
        }
        // Early, so a doomed body is not stored; checked again in the transaction.
        if opts.condition != WriteCondition::default() {
            opts.condition
                .check(key, self.find_object(&b.name, key).await?.as_ref())?;
        }
        let (info, stored) = self.receive(body, &opts.checks, self.inline_max()).await?;
        let condition = opts.condition.clone();
        let mut rec = object_record(&info, opts);
        rec.checksum = stored.map(|(algorithm, value)| ObjectChecksum {
            algorithm,
            value,
            full_object: true,
            parts: 1,
        });
        self.store_object(bucket, key, rec, &info, condition).await
    }

    /// Records a new object; the condition is checked again inside the transaction.
    async fn store_object(
        &self,
        bucket: &str,
        key: &str,
        rec: ObjectRecord,
        info: &BlobInfo,
        condition: WriteCondition,
    ) -> Result<ObjectRecord> {
        let (b, k, r) = (bucket.to_string(), key.to_string(), rec.clone());
        let due = self.delete_due();
        // The registration rides with the commit: if the request is dropped (client gone)
        // while the blocking commit runs, the blob stays in flight until the commit is done.
        let in_flight = info.in_flight.clone();
        let res = self
            .commit_blob(in_flight, move |m| async move {
                m.put_object(&b, &k, &r, &condition, due).await
            })
            .await;
        if let Err(e) = res {
            self.discard_uncommitted(&info.id, &e);
            return Err(e);
        }
        Ok(rec)
    }

    /// After a failed metadata write: a blob whose write was refused (a check failed, nothing
    /// committed) is removed now. When the outcome is unknown (an I/O error at commit, a
    /// panicked task) the blob may be referenced after all, so it stays and the orphan sweep
    /// decides from what the metadata says.
    fn discard_uncommitted(&self, blob: &str, e: &Error) {
        if matches!(e.code, Code::InternalError | Code::ServiceUnavailable) {
            tracing::warn!(blob, "metadata outcome unknown; the blob is left for the orphan sweep");
        } else {
            let _ = self.blobs.delete(blob);
        }
    }

    async fn find_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>> {
        let (b, k) = (bucket.to_string(), key.to_string());
        self.meta.get_object(&b, &k).await
    }

    /// The object's record (NoSuchBucket / NoSuchKey).
    pub async fn head_object(&self, bucket: &str, key: &str) -> Result<(BucketRecord, ObjectRecord)> {
        let b = self.bucket(bucket).await?;
        let rec = self
            .find_object(bucket, key)
            .await?
            .ok_or_else(|| Error::new(Code::NoSuchKey).with_key(key))?;
        Ok((b, rec))
    }

    /// Streams `[start, end)` of an object read earlier with [`Kura::head_object`].
    pub fn read_object(&self, rec: &ObjectRecord, start: u64, end: u64) -> mpsc::Receiver<std::io::Result<Bytes>> {
        self.blobs.read(rec.extents.clone(), start, end, &self.meta)
    }

    pub async fn delete_object(&self, bucket: &str, key: &str) -> Result<()> {
        self.delete_object_if(bucket, key, DeleteCondition::default()).await
    }

    /// Deletes the object if `condition` holds, checked in the delete's transaction.
    pub async fn delete_object_if(&self, bucket: &str, key: &str, condition: DeleteCondition) -> Result<()> {
        let (b, k) = (bucket.to_string(), key.to_string());
        let due = self.delete_due();
        self.meta.delete_object(&b, &k, &condition, due).await
    }

    pub async fn set_object_acl(&self, bucket: &str, key: &str, acl: ObjectAcl) -> Result<()> {
        self.bucket(bucket).await?;
        self.meta.update_object(bucket, key, &ObjectChange::Acl(acl)).await?;
        Ok(())
    }

    /// Replaces the object's tags (checked against the object limits); Last-Modified stays.
    pub async fn set_object_tags(&self, bucket: &str, key: &str, tags: Vec<(String, String)>) -> Result<()> {
        crate::tags::check_object_tags(&tags)?;
        self.bucket(bucket).await?;
        self.meta.update_object(bucket, key, &ObjectChange::Tags(tags)).await?;
        Ok(())
    }

    /// RestoreObject: true when a restore started (202), false when a finished one was
    /// extended (200). OperationNotSupported for a class that is not archived,
    /// RestoreAlreadyInProgress while one runs.
    pub async fn restore_object(&self, bucket: &str, key: &str, days: u32) -> Result<bool> {
        self.bucket(bucket).await?;
        let token = rand::random::<u64>() | 1;
        let change = ObjectChange::Restore {
            now_ms: now_millis(),
            delay_ms: self.cfg.restore_delay.as_millis() as u64,
            days,
            token,
        };
        let rec = self.meta.update_object(bucket, key, &change).await?;
        Ok(rec.restore.is_some_and(|r| r.token == token))
    }

    /// CleanRestoredObject: a restored object goes back to frozen.
    pub async fn clean_restored_object(&self, bucket: &str, key: &str) -> Result<()> {
        self.bucket(bucket).await?;
        let change = ObjectChange::CleanRestore { now_ms: now_millis() };
        self.meta.update_object(bucket, key, &change).await?;
        Ok(())
    }

    /// Copies an object's bytes into a new object, with the source's headers and tags unless
    /// `opts` replaces them.
    pub async fn copy_object(
        &self,
        src: &ObjectRecord,
        bucket: &str,
        key: &str,
        opts: CopyOptions,
    ) -> Result<ObjectRecord> {
        let CopyOptions {
            headers: replace,
            acl,
            condition,
            tags,
            storage_class,
        } = opts;
        check_key(key)?;
        crate::classes::check_readable(src, now_millis())?;
        if let Some(tags) = &tags {
            crate::tags::check_object_tags(tags)?;
        }
        self.bucket(bucket).await?;
        if condition != WriteCondition::default() {
            condition.check(key, self.find_object(bucket, key).await?.as_ref())?;
        }
        self.space_for(src.size).await?;
        let info = self
            .blobs
            .copy(src.extents.clone(), 0, src.size, &self.meta, self.inline_max())
            .await
            .map_err(storage_error)?;
        let opts = WriteOptions {
            headers: replace.unwrap_or_else(|| src.headers.clone()),
            acl,
            storage_class: storage_class.map_or_else(|| src.storage_class.clone(), |c| c.as_str().into()),
            condition: condition.clone(),
            tags: tags.unwrap_or_else(|| src.tags.clone()),
            ..Default::default()
        };
        let rec = object_record(&info, opts);
        self.store_object(bucket, key, rec, &info, condition).await
    }

    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: &str,
        marker: &str,
        max: usize,
    ) -> Result<ObjectListing> {
        self.bucket(bucket).await?;
        let mut out = ObjectListing {
            objects: vec![],
            common_prefixes: vec![],
            truncated: false,
            next_marker: None,
        };
        let mut cursor = match common_prefix(marker, prefix, delimiter) {
            Some(cp) if marker.starts_with(prefix) => match prefix_successor(cp) {
                Some(next) => ScanStart::At(next),
                None => return Ok(out),
            },
            _ => ScanStart::After(marker.to_string()),
        };
        let mut count = 0usize;
        if max == 0 {
            return Ok(out);
        }
        'scan: loop {
            // Enough rows for the rest of the page and one more to tell whether it is truncated.
            let want = max - count + 1;
            let (b, p, c) = (bucket.to_string(), prefix.to_string(), cursor.clone());
            let batch = self.meta.scan_objects(&b, &p, &c, want).await?;
            let exhausted = batch.len() < want;
            for (key, rec) in batch {
                if count == max {
                    out.truncated = true;
                    break 'scan;
                }
                if let Some(cp) = common_prefix(&key, prefix, delimiter) {
                    let cp = cp.to_string();
                    out.next_marker = Some(cp.clone());
                    out.common_prefixes.push(cp.clone());
                    count += 1;
                    match prefix_successor(&cp) {
                        Some(next) => cursor = ScanStart::At(next),
                        None => break 'scan,
                    }
                    continue 'scan;
                }
                cursor = ScanStart::After(key.clone());
                out.next_marker = Some(key.clone());
                out.objects.push((key, rec));
                count += 1;
            }
            if exhausted {
                break;
            }
        }
        if !out.truncated {
            out.next_marker = None;
        }
        Ok(out)
    }

    // ---- multipart ----

    pub async fn initiate_upload(&self, bucket: &str, key: &str, mut opts: WriteOptions) -> Result<String> {
        check_key(key)?;
        crate::tags::check_object_tags(&opts.tags)?;
        let b = self.bucket(bucket).await?;
        if opts.storage_class.is_empty() {
            opts.storage_class = b.storage_class;
        }
        if opts.condition.forbid_overwrite && self.find_object(bucket, key).await?.is_some() {
            return Err(Error::new(Code::FileAlreadyExists).with_key(key));
        }
        let rec = UploadRecord {
            upload_id: self.new_upload_id(),
            key: key.to_string(),
            initiated_ms: now_millis(),
            storage_class: opts.storage_class,
            acl: opts.acl,
            headers: opts.headers,
            forbid_overwrite: opts.condition.forbid_overwrite,
            checksum: opts.multipart_checksum,
            sequential: opts.sequential,
            tags: opts.tags,
        };
        let id = rec.upload_id.clone();
        let b = bucket.to_string();
        self.meta.create_upload(&b, &rec).await?;
        Ok(id)
    }

    /// The upload (NoSuchBucket / NoSuchUpload).
    pub async fn upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<UploadRecord> {
        // An upload implies its bucket: the bucket is looked up only to tell which is missing.
        match self.meta.get_upload(bucket, key, upload_id).await? {
            Some(up) => Ok(up),
            None => {
                self.bucket(bucket).await?;
                Err(Error::new(Code::NoSuchUpload).with_upload(upload_id))
            }
        }
    }

    /// Ok if the upload exists or completed recently (a Complete retry may still be answered);
    /// NoSuchBucket / NoSuchUpload otherwise.
    pub async fn upload_or_completed(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        match self.upload(bucket, key, upload_id).await {
            Err(e) if e.code == Code::NoSuchUpload => {
                let u = upload_id.to_string();
                match self.meta.get_completed(&u).await? {
                    Some(c) if c.bucket == bucket && c.key == key => Ok(()),
                    _ => Err(e),
                }
            }
            other => other.map(drop),
        }
    }

    pub async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        body: &mut impl BodySource,
        mut checks: BodyChecks,
    ) -> Result<PartRecord> {
        let upload = self.upload(bucket, key, upload_id).await?;
        // A part of an upload with a checksum algorithm always carries that checksum.
        if let Some((a, _)) = upload.checksum {
            checks.store = Some(a);
        }
        // Parts stay in files: a big object made of inline parts would be read piece by
        // piece out of the metadata store.
        let (info, stored) = self.receive(body, &checks, 0).await?;
        self.record_part(bucket, key, upload_id, part_number, info, stored)
            .await
    }

    async fn record_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        info: BlobInfo,
        checksum: Option<(Algorithm, String)>,
    ) -> Result<PartRecord> {
        let rec = PartRecord {
            etag: kura_proto::etag::md5_hex(&info.md5),
            checksum,
            size: info.size,
            crc64: info.crc64,
            last_modified_ms: now_millis(),
            blob: info.id.clone(),
        };
        let (b, k, u, r) = (bucket.to_string(), key.to_string(), upload_id.to_string(), rec.clone());
        let due = self.delete_due();
        // The upload may have been completed or aborted while the body streamed: the
        // transaction decides, and a losing part's blob is removed.
        let in_flight = info.in_flight.clone();
        let committed = self
            .commit_blob(in_flight, move |m| async move {
                m.put_part(&b, &k, &u, part_number, &r, due).await
            })
            .await;
        if let Err(e) = committed {
            self.discard_uncommitted(&info.id, &e);
            return Err(e);
        }
        Ok(rec)
    }

    /// UploadPartCopy: bytes `range` of `src` become part `part_number`.
    pub async fn upload_part_copy(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        src: &ObjectRecord,
        range: std::ops::Range<u64>,
    ) -> Result<PartRecord> {
        self.upload(bucket, key, upload_id).await?;
        crate::classes::check_readable(src, now_millis())?;
        if range.end - range.start > self.cfg.max_body_size {
            return Err(Error::new(Code::EntityTooLarge));
        }
        self.space_for(range.end - range.start).await?;
        let info = self
            .blobs
            .copy(src.extents.clone(), range.start, range.end, &self.meta, 0)
            .await
            .map_err(storage_error)?;
        self.record_part(bucket, key, upload_id, part_number, info, None).await
    }

    pub async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        selection: PartSelection,
        opts: CompleteOptions,
    ) -> Result<CompletedUpload> {
        self.bucket(bucket).await?;
        let req = CompleteRequest {
            expected_checksum: opts.expected_checksum,
            bucket: bucket.to_string(),
            key: key.to_string(),
            upload_id: upload_id.to_string(),
            selection,
            condition: opts.condition,
            acl: opts.acl,
            min_part_size: self.cfg.min_part_size,
            now_ms: now_millis(),
            delete_due_ms: self.delete_due(),
        };
        self.meta.complete_upload(&req).await
    }

    pub async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<()> {
        self.bucket(bucket).await?;
        let (b, k, u) = (bucket.to_string(), key.to_string(), upload_id.to_string());
        let due = self.delete_due();
        self.meta.abort_upload(&b, &k, &u, due).await
    }

    pub async fn list_parts(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        marker: u32,
        max: usize,
    ) -> Result<PartListing> {
        let upload = self.upload(bucket, key, upload_id).await?;
        let u = upload_id.to_string();
        let mut parts = if max == 0 {
            Vec::new()
        } else {
            self.meta.scan_parts(&u, marker, max + 1).await?
        };
        let truncated = parts.len() > max;
        parts.truncate(max);
        let next_marker = parts.last().map(|(n, _)| *n).unwrap_or(marker);
        Ok(PartListing {
            upload,
            parts,
            truncated,
            next_marker,
        })
    }

    pub async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: &str,
        key_marker: &str,
        upload_id_marker: &str,
        max: usize,
    ) -> Result<UploadListing> {
        self.bucket(bucket).await?;
        let mut out = UploadListing {
            uploads: vec![],
            common_prefixes: vec![],
            truncated: false,
            next_key_marker: String::new(),
            next_upload_id_marker: String::new(),
        };
        // key-marker alone: keys strictly greater. With upload-id-marker: later uploads of
        // the marker key too.
        let mut cursor: (String, String) = match common_prefix(key_marker, prefix, delimiter) {
            // Upload ids are never empty, so (successor, "") exclusive starts at the successor.
            Some(cp) if key_marker.starts_with(prefix) => match prefix_successor(cp) {
                Some(next) => (next, String::new()),
                None => return Ok(out),
            },
            _ if upload_id_marker.is_empty() => (past_key(key_marker), String::new()),
            _ => (key_marker.to_string(), upload_id_marker.to_string()),
        };
        let mut count = 0usize;
        if max == 0 {
            return Ok(out);
        }
        'scan: loop {
            let want = max - count + 1;
            let (b, p, c) = (bucket.to_string(), prefix.to_string(), cursor.clone());
            let batch = self.meta.scan_uploads(&b, &p, (&c.0, &c.1), want).await?;
            let exhausted = batch.len() < want;
            for up in batch {
                if count == max {
                    out.truncated = true;
                    break 'scan;
                }
                if let Some(cp) = common_prefix(&up.key, prefix, delimiter) {
                    let cp = cp.to_string();
                    cursor = match prefix_successor(&cp) {
                        Some(next) => (next, String::new()),
                        None => {
                            out.next_key_marker = cp.clone();
                            out.next_upload_id_marker = String::new();
                            out.common_prefixes.push(cp);
                            break 'scan;
                        }
                    };
                    out.next_key_marker = cp.clone();
                    out.next_upload_id_marker = String::new();
                    out.common_prefixes.push(cp);
                    count += 1;
                    continue 'scan;
                }
                cursor = (up.key.clone(), up.upload_id.clone());
                out.next_key_marker = up.key.clone();
                out.next_upload_id_marker = up.upload_id.clone();
                out.uploads.push(up);
                count += 1;
            }
            if exhausted {
                break;
            }
        }
        // The markers name the last upload listed on every page, the last page included (OSS
        // does so; the SDKs' paging reads IsTruncated to stop).
        Ok(out)
    }

    // ---- maintenance ----

    /// Deletes blobs whose deletion is due and no reader holds; forgets old Complete answers.
    pub async fn sweep_deletions(&self) -> Result<usize> {
        let now = now_millis();
        let due = self.meta.due_deletions(now, 10_000).await?;
        let mut done = Vec::with_capacity(due.len());
        for id in due {
            if self.blobs.is_leased(&id) {
                continue;
            }
            match self.blobs.delete(&id) {
                Ok(()) => done.push(id),
                Err(e) => tracing::warn!(blob = %id, error = %e, "could not delete blob"),
            }
        }
        let n = done.len();
        if n > 0 {
            self.meta.forget_deletions(&done).await?;
        }
        let before = now.saturating_sub(self.cfg.completed_retention.as_millis() as u64);
        self.meta.expire_completed(before).await?;
        Ok(n)
    }

    /// Removes files left by writers that died: blob files the metadata does not know and no
    /// write in this process is about to commit, and temporary files no writer owns that are
    /// older than `tmp_grace`. Safe while requests are served (see
    /// [`BlobStore::sweep_orphans`]); memory is one batch of ids.
    pub async fn sweep_orphans(&self, tmp_grace: Duration) -> Result<usize> {
        let blobs = self.blobs.clone();
        let meta = self.meta.clone();
        if meta.shared() && blobs.root().join("meta.redb").exists() && !meta.embedded_copy_verified().await? {
            // Every blob of an embedded store not (yet) copied into this database would look
            // like an orphan: sweeping now would delete the store's data.
            tracing::warn!(
                "the data directory holds an embedded store (meta.redb) that `kura meta copy` has not copied into \
                 this database: orphan sweeps are off until it has"
            );
            return Ok(0);
        }
        let sharing = if meta.shared() {
            Some(crate::blob::Sharing {
                live: meta.live_gateways().await?.unwrap_or_default().into_iter().collect(),
                grace: self.cfg.shared_file_grace,
            })
        } else {
            None
        };
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let io = |e: Error| std::io::Error::other(e.to_string());
            blobs.sweep_orphans(
                tmp_grace,
                sharing.as_ref(),
                &|ids| handle.block_on(meta.claim_orphans(ids)).map_err(io),
                &|ids| handle.block_on(meta.forget_orphans(ids)).map_err(io),
            )
        })
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)
    }

    /// With gateways sharing the directory: removes the temporary files of gateways whose
    /// heartbeat has lapsed.
    async fn sweep_dead_gateways(&self) -> Result<usize> {
        let Some(live) = self.meta.live_gateways().await? else {
            return Ok(0);
        };
        let live: std::collections::HashSet<String> = live.into_iter().collect();
        let blobs = self.blobs.clone();
        let min_age = self.cfg.shared_file_grace;
        let n = tokio::task::spawn_blocking(move || blobs.sweep_dead_tmp(&live, min_age))
            .await
            .map_err(Error::internal)?
            .map_err(Error::internal)?;
        if n > 0 {
            tracing::info!(removed = n, "removed files of gateways that are gone");
        }
        Ok(n)
    }

    /// This process's name among the gateways sharing a metadata store (random per start).
    pub fn gateway_id(&self) -> &str {
        &self.gateway_id
    }

    /// Whether other gateways share the metadata store and the data directory.
    pub fn shared(&self) -> bool {
        self.meta.shared()
    }

    /// Runs the background work: the sweepers (deletions every few seconds, orphans hourly)
    /// on whichever gateway holds the leader lease, and, when gateways share the store, the
    /// publication of this gateway's read leases.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let me = self.clone();
        // A new leader, or one back from a database outage, first waits out the read leases'
        // lifetime: a gateway's readers may have gone unpublished meanwhile, and their next
        // publication is at most that far away.
        let quiet = if self.meta.shared() {
            self.lease_ttl()
        } else {
            Duration::ZERO
        };
        tokio::spawn(async move {
            let mut tick = 1u64;
            let mut leading_since: Option<tokio::time::Instant> = None;
            loop {
                // The term outlasts three ticks, so a live leader keeps it; a dead one's
                // lapses within 15 s and the next gateway to ask takes over.
                match me.meta.lead(&me.gateway_id, 15_000).await {
                    Ok(now_leading) => {
                        if now_leading != leading_since.is_some() {
                            tracing::info!(gateway = %me.gateway_id, leading = now_leading, "sweeper leadership");
                        }
                        leading_since = match (now_leading, leading_since) {
                            (true, Some(t)) => Some(t),
                            (true, None) => Some(tokio::time::Instant::now()),
                            (false, _) => None,
                        };
                    }
                    Err(e) => {
                        leading_since = None;
                        tracing::warn!(error = %e, "leader lease not renewed");
                    }
                }
                if leading_since.is_some_and(|t| t.elapsed() >= quiet) {
                    if let Err(e) = me.sweep_dead_gateways().await {
                        tracing::warn!(error = %e, "sweep of dead gateways' files failed");
                    }
                    if let Err(e) = me.sweep_deletions().await {
                        tracing::warn!(error = %e, "deletion sweep failed");
                    }
                    if tick.is_multiple_of(720) {
                        // A temporary file older than a day has no writer: bodies idle for 60 s end.
                        match me.sweep_orphans(Duration::from_secs(24 * 3600)).await {
                            Ok(n) if n > 0 => tracing::info!(removed = n, "orphan sweep"),
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "orphan sweep failed"),
                        }
                    }
                }
                tick += 1;
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        });
        if self.meta.shared() {
            self.spawn_lease_publisher();
        }
    }

    /// How often this gateway's read leases are published: a third of the deletion grace (at
    /// least 200 ms, at most 10 s). A dropped blob is deleted no sooner than the grace after
    /// its metadata went, and a reader that began before that holds its lease in memory from
    /// the start, so the lease is in the database well before the leader could delete the
    /// blob; published leases outlive four periods, so a dead gateway's lapse on their own.
    fn lease_period(&self) -> Duration {
        (self.cfg.deletion_grace / 3).clamp(Duration::from_millis(200), Duration::from_secs(10))
    }

    /// How long a published read lease (and a gateway's heartbeat) lasts: four periods and 2 s.
    fn lease_ttl(&self) -> Duration {
        self.lease_period() * 4 + Duration::from_secs(2)
    }

    fn spawn_lease_publisher(self: &Arc<Self>) {
        let me = self.clone();
        let period = self.lease_period();
        let ttl_ms = self.lease_ttl().as_millis() as u64;
        tokio::spawn(async move {
            loop {
                // Also this gateway's heartbeat: while it lasts, no other gateway's sweep
                // touches this gateway's temporary files.
                let mut ids = me.blobs.leased_ids();
                ids.sort();
                if let Err(e) = me.meta.publish_leases(&me.gateway_id, &ids, ttl_ms).await {
                    tracing::warn!(error = %e, "read leases not published");
                }
                tokio::time::sleep(period).await;
            }
        });
    }
}

/// The smallest key after `k` with any upload id: k followed by nothing sorts first, so the
/// cursor (k, max id) skips all of k's uploads.
fn past_key(k: &str) -> String {
    if k.is_empty() {
        String::new()
    } else {
        format!("{k}\0")
    }
}

fn object_record(info: &BlobInfo, opts: WriteOptions) -> ObjectRecord {
    use base64::Engine;
    ObjectRecord {
        etag: kura_proto::etag::md5_hex(&info.md5),
        s3_etag: None,
        checksum: None,
        size: info.size,
        crc64: info.crc64,
        content_md5: Some(base64::engine::general_purpose::STANDARD.encode(info.md5)),
        last_modified_ms: now_millis(),
        object_type: ObjectType::Normal,
        storage_class: if opts.storage_class.is_empty() {
            "Standard".into()
        } else {
            opts.storage_class
        },
        acl: opts.acl,
        headers: opts.headers,
        extents: vec![Extent {
            blob: info.id.clone(),
            len: info.size,
            checksum: None,
            inline: info.inline.is_some(),
            data: info.inline.clone(),
        }],
        tags: opts.tags,
        restore: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_bucket_name("abc").is_ok());
        assert!(check_bucket_name("a-b-1").is_ok());
        for bad in ["ab", "-ab", "ab-", "aBc", "a_b", "a/b", &"a".repeat(64)] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
        for ok in ["aaa.111", "my.bucket-1", "abc"] {
            assert!(check_s3_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in ["a..b", "192.168.1.1", ".ab", "ab.", "xn--ab", "ab-s3alias", "aB", "a_b"] {
            assert!(check_s3_bucket_name(bad).is_err(), "{bad}");
        }
        assert!(check_bucket_name("aaa.111").is_err(), "OSS names have no dots");
        assert!(check_key("../x").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("/x").is_err());
        assert!(check_key("a\0b").is_err());
        assert!(check_key(&"k".repeat(1024)).is_err());
        assert_eq!(check_part_number("10000").unwrap(), 10000);
        assert!(check_part_number("0").is_err());
        assert!(check_part_number("10001").is_err());
        assert!(check_part_number("x").is_err());
    }

    struct OneChunk(Option<Bytes>);

    impl BodySource for OneChunk {
        async fn next_chunk(&mut self) -> Option<Result<Bytes>> {
            self.0.take().map(Ok)
        }
    }

    fn blob_exists(dir: &Path, id: &str) -> bool {
        dir.join("blobs").join(&id[..2]).join(id).exists()
    }

    /// The race the grace period used to paper over: a blob renamed into place whose commit
    /// has not happened yet must survive a sweep (grace zero, as the tests run), then be
    /// readable once committed; a blob nobody will commit is removed.
    #[tokio::test]
    async fn orphan_sweep_spares_blobs_about_to_be_committed() {
        let dir = tempfile::tempdir().unwrap();
        let kura = Kura::open_local(dir.path(), Config::default()).unwrap();
        kura.create_bucket("bkt", None, None).await.unwrap();
        let (info, _) = kura
            .receive(
                &mut OneChunk(Some(Bytes::from_static(b"acknowledged"))),
                &BodyChecks::default(),
                0,
            )
            .await
            .unwrap();
        assert_eq!(kura.sweep_orphans(Duration::ZERO).await.unwrap(), 0);
        assert!(
            blob_exists(dir.path(), &info.id),
            "an uncommitted blob in flight was swept"
        );
        let rec = object_record(&info, WriteOptions::default());
        kura.store_object("bkt", "k", rec, &info, WriteCondition::default())
            .await
            .unwrap();
        let id = info.id.clone();
        drop(info);
        assert_eq!(kura.sweep_orphans(Duration::ZERO).await.unwrap(), 0);
        assert!(blob_exists(dir.path(), &id), "a committed blob was swept");
        let (_, rec) = kura.head_object("bkt", "k").await.unwrap();
        let mut rx = kura.read_object(&rec, 0, rec.size);
        assert_eq!(&rx.recv().await.unwrap().unwrap()[..], b"acknowledged");

        // A writer that dies after the rename (its registration gone, no row): an orphan.
        let (lost, _) = kura
            .receive(
                &mut OneChunk(Some(Bytes::from_static(b"lost"))),
                &BodyChecks::default(),
                0,
            )
            .await
            .unwrap();
        let lost_id = lost.id.clone();
        drop(lost);
        assert_eq!(kura.sweep_orphans(Duration::ZERO).await.unwrap(), 1);
        assert!(!blob_exists(dir.path(), &lost_id));
        assert!(blob_exists(dir.path(), &id));
    }

    /// A small object lives in the metadata store: no file, read back whole, copied inline,
    /// and its bytes dropped with its deletion-queue entry once replaced.
    #[tokio::test]
    async fn small_objects_are_kept_inline() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            deletion_grace: Duration::ZERO,
            ..Config::default()
        };
        let kura = Kura::open_local(dir.path(), cfg).unwrap();
        kura.create_bucket("bkt", None, None).await.unwrap();
        let body = Bytes::from(vec![7u8; 5000]);
        let rec = kura
            .put_object(
                "bkt",
                "small",
                &mut OneChunk(Some(body.clone())),
                WriteOptions::default(),
            )
            .await
            .unwrap();
        let id = rec.extents[0].blob.clone();
        assert!(rec.extents[0].inline);
        assert!(!blob_exists(dir.path(), &id), "an inline object wrote a file");
        let (_, stored) = kura.head_object("bkt", "small").await.unwrap();
        assert!(stored.extents[0].inline && stored.extents[0].data.is_none());
        let mut rx = kura.read_object(&stored, 100, 4100);
        assert_eq!(rx.recv().await.unwrap().unwrap(), body.slice(100..4100));
        assert!(rx.recv().await.is_none());

        let copy = kura
            .copy_object(&stored, "bkt", "copy", CopyOptions::default())
            .await
            .unwrap();
        assert!(copy.extents[0].inline);
        assert_eq!(copy.etag, stored.etag);

        // Replaced by a big object (a file), the old bytes go with the sweep.
        let big = Bytes::from(vec![9u8; kura.cfg.inline_max + 1]);
        let rec = kura
            .put_object("bkt", "small", &mut OneChunk(Some(big)), WriteOptions::default())
            .await
            .unwrap();
        assert!(!rec.extents[0].inline);
        assert!(blob_exists(dir.path(), &rec.extents[0].blob));
        assert!(kura.meta.inline_blob(&id).await.unwrap().is_some());
        kura.sweep_deletions().await.unwrap();
        assert!(
            kura.meta.inline_blob(&id).await.unwrap().is_none(),
            "replaced inline bytes kept"
        );
    }

    #[test]
    fn prefixes() {
        assert_eq!(common_prefix("a/b/c", "a/", "/"), Some("a/b/"));
        assert_eq!(common_prefix("a/b", "a/", "/"), None);
        assert_eq!(common_prefix("ab", "a/", "/"), None);
        assert_eq!(common_prefix("a/b", "", ""), None);
        assert_eq!(prefix_successor("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_successor("\u{10FFFF}\u{10FFFF}"), None);
    }
}
