//! The metadata store: one trait shaped by the operations, so that each backend runs each
//! operation as one transaction of its own (redb here; PostgreSQL can follow). Rules that
//! must hold inside a transaction (the Complete checks) are pure functions here, shared by
//! every backend.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Code, Error, Result};
use crate::model::*;

/// Preconditions of a write, checked inside its transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteCondition {
    /// No object may exist under the key (`x-oss-forbid-overwrite: true`, S3 `If-None-Match: *`).
    pub forbid_overwrite: bool,
    /// The object must exist with this ETag (S3 `If-Match`); `*` means any.
    pub if_match: Option<String>,
}

impl WriteCondition {
    pub fn check(&self, key: &str, existing: Option<&ObjectRecord>) -> Result<()> {
        if self.forbid_overwrite && existing.is_some() {
            return Err(Error::new(Code::FileAlreadyExists).with_key(key));
        }
        if let Some(wanted) = &self.if_match {
            let Some(obj) = existing else {
                return Err(Error::new(Code::NoSuchKey).with_key(key));
            };
            let w = kura_proto::etag::normalize(wanted);
            let s3 = obj.s3_etag.as_deref().map(str::to_ascii_uppercase);
            if w != "*" && w != obj.etag && Some(&w) != s3.as_ref() {
                return Err(Error::new(Code::PreconditionFailed));
            }
        }
        Ok(())
    }
}

/// Preconditions of a delete (S3 `If-Match`, `x-amz-if-match-last-modified-time`,
/// `x-amz-if-match-size`, or the same per object in DeleteObjects), checked in its
/// transaction. With any of them set, a missing object is NoSuchKey.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteCondition {
    pub if_match: Option<String>,
    /// Seconds since the epoch.
    pub last_modified_secs: Option<u64>,
    pub size: Option<u64>,
}

impl DeleteCondition {
    pub fn is_empty(&self) -> bool {
        self.if_match.is_none() && self.last_modified_secs.is_none() && self.size.is_none()
    }

    pub fn check(&self, key: &str, existing: Option<&ObjectRecord>) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let Some(obj) = existing else {
            return Err(Error::new(Code::NoSuchKey).with_key(key));
        };
        if let Some(wanted) = &self.if_match {
            WriteCondition {
                forbid_overwrite: false,
                if_match: Some(wanted.clone()),
            }
            .check(key, Some(obj))?;
        }
        if self
            .last_modified_secs
            .is_some_and(|t| t != obj.last_modified_ms / 1000)
            || self.size.is_some_and(|n| n != obj.size)
        {
            return Err(Error::new(Code::PreconditionFailed));
        }
        Ok(())
    }
}

/// Where a key scan starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStart {
    /// Keys strictly after this one (a marker, the last key of a page).
    After(String),
    /// Keys from this one on (past a common prefix).
    At(String),
}

/// Everything CompleteMultipartUpload needs, decided before the transaction starts.
#[derive(Debug, Clone)]
pub struct CompleteRequest {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub selection: PartSelection,
    pub condition: WriteCondition,
    /// `x-oss-object-acl` on Complete; None keeps the ACL given at Initiate.
    pub acl: Option<ObjectAcl>,
    pub min_part_size: u64,
    pub now_ms: u64,
    /// When the blobs this transaction drops may be deleted.
    pub delete_due_ms: u64,
    /// S3: the object checksum the client expects (`x-amz-checksum-*` on Complete), raw
    /// value; checked against the completed object's before anything is written.
    pub expected_checksum: Option<(kura_proto::checksum::Algorithm, Vec<u8>)>,
}

impl CompleteRequest {
    /// The answer this Complete gives (and keeps for its retries) once it has made `rec`.
    pub fn outcome(&self, rec: &ObjectRecord) -> CompletedUpload {
        CompletedUpload {
            bucket: self.bucket.clone(),
            key: self.key.clone(),
            request_fingerprint: self.selection.fingerprint(),
            etag: rec.etag.clone(),
            crc64: rec.crc64,
            size: rec.size,
            completed_ms: self.now_ms,
        }
    }
}

/// The Complete request's expected checksum against the object it would create. A mismatch
/// (or an object without that checksum) is BadDigest, found before the commit, so a failed
/// Complete changes nothing and the upload can be completed again.
pub fn check_expected_checksum(
    rec: &ObjectRecord,
    expected: Option<&(kura_proto::checksum::Algorithm, Vec<u8>)>,
) -> Result<()> {
    let Some((algorithm, raw)) = expected else {
        return Ok(());
    };
    let matches = rec.checksum.as_ref().is_some_and(|c| {
        c.algorithm == *algorithm && kura_proto::checksum::from_base64(*algorithm, &c.value).as_ref() == Some(raw)
    });
    if matches {
        Ok(())
    } else {
        Err(Error::msg(
            Code::BadDigest,
            format!(
                "The {} you specified did not match the calculated checksum.",
                algorithm.name()
            ),
        ))
    }
}

/// The operations of a metadata store that runs them as blocking calls (redb: each is one
/// transaction that fsyncs at commit). [`Blocking`] runs them on tokio's blocking pool and so
/// makes any such store a [`MetaStore`].
pub trait BlockingMetaStore: Send + Sync + 'static {
    /// Creates the bucket; if it exists, updates its ACL when `acl_given`. Returns true if created.
    fn create_bucket(&self, rec: &BucketRecord, acl_given: bool, max_buckets: usize) -> Result<bool>;
    fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>>;
    fn list_buckets(&self) -> Result<Vec<BucketRecord>>;
    /// NoSuchBucket if absent.
    fn update_bucket(&self, name: &str, change: &BucketChange) -> Result<()>;
    /// NoSuchBucket, or BucketNotEmpty while any object or unfinished upload remains.
    fn delete_bucket(&self, name: &str) -> Result<()>;

    /// Writes the object; the blobs of any object it replaces are queued for deletion.
    fn put_object(
        &self,
        bucket: &str,
        key: &str,
        rec: &ObjectRecord,
        condition: &WriteCondition,
        delete_due_ms: u64,
    ) -> Result<()>;
    fn get_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>>;
    /// Removes the object if present (no error if absent, unless `condition` asks for it;
    /// NoSuchBucket if the bucket is gone).
    fn delete_object(&self, bucket: &str, key: &str, condition: &DeleteCondition, delete_due_ms: u64) -> Result<()>;
    /// Returns the updated record (its extents not loaded). NoSuchKey if absent; a change the
    /// object's state refuses changes nothing.
    fn update_object(&self, bucket: &str, key: &str, change: &ObjectChange) -> Result<ObjectRecord>;
    /// Objects whose key starts with `prefix`, from `start` on, in key order.
    fn scan_objects(
        &self,
        bucket: &str,
        prefix: &str,
        start: &ScanStart,
        limit: usize,
    ) -> Result<Vec<(String, ObjectRecord)>>;

    fn create_upload(&self, bucket: &str, rec: &UploadRecord) -> Result<()>;
    fn get_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Option<UploadRecord>>;
    /// The stored answer of a completed upload, while it is kept.
    fn get_completed(&self, upload_id: &str) -> Result<Option<CompletedUpload>>;
    /// Records a part, replacing (and queueing the blob of) an earlier one with the same
    /// number. NoSuchUpload if the upload is gone: the caller then deletes its blob.
    fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        rec: &PartRecord,
        delete_due_ms: u64,
    ) -> Result<()>;
    fn scan_parts(&self, upload_id: &str, after: u32, limit: usize) -> Result<Vec<(u32, PartRecord)>>;
    /// Uploads with key starting with `prefix` and (key, upload id) after `after`.
    fn scan_uploads(&self, bucket: &str, prefix: &str, after: (&str, &str), limit: usize) -> Result<Vec<UploadRecord>>;
    /// Validates and completes in one transaction; a retry with the same selection after
    /// success returns the stored answer.
    fn complete_upload(&self, req: &CompleteRequest) -> Result<CompletedUpload>;
    /// Drops the upload and queues its parts' blobs.
    fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str, delete_due_ms: u64) -> Result<()>;

    /// Blobs whose deletion is due.
    fn due_deletions(&self, now_ms: u64, limit: usize) -> Result<Vec<String>>;
    fn forget_deletions(&self, blobs: &[String]) -> Result<()>;
    /// Of `ids`, those the metadata does not know: no object or part refers to them and no
    /// deletion is queued for them. (Every blob is recorded in an index in the transaction that
    /// first refers to it, and forgotten when the sweeper deletes it.)
    fn unknown_blobs(&self, ids: &[String]) -> Result<Vec<String>>;
    /// Forgets completed-upload answers older than `before_ms`.
    fn expire_completed(&self, before_ms: u64) -> Result<usize>;
    /// Whether new small blobs may be kept in this store ([`Extent::data`] on the extents
    /// given to `put_object`); when false the service writes every blob to a file.
    fn stores_inline(&self) -> bool;
    /// The bucket's usage per storage class (OSS class names), exact as of the last commit.
    fn bucket_usage(&self, bucket: &str) -> Result<Vec<(String, Usage)>>;
    /// The bytes of an inline blob (None once its deletion has been swept). The sweeper's
    /// [`MetaStore::forget_deletions`] removes them with the blob's queue entry.
    fn inline_blob(&self, id: &str) -> Result<Option<bytes::Bytes>>;
}

/// The metadata store, as the service calls it. Each method is one transaction of the
/// backend's own (a redb write transaction, a PostgreSQL transaction with row locks), so the
/// rules that must hold under concurrency are settled by the store, not by the caller.
#[async_trait::async_trait]
pub trait MetaStore: Send + Sync + 'static {
    /// Creates the bucket; if it exists, updates its ACL when `acl_given`. Returns true if created.
    async fn create_bucket(&self, rec: &BucketRecord, acl_given: bool, max_buckets: usize) -> Result<bool>;
    async fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>>;
    async fn list_buckets(&self) -> Result<Vec<BucketRecord>>;
    /// NoSuchBucket if absent.
    async fn update_bucket(&self, name: &str, change: &BucketChange) -> Result<()>;
    /// NoSuchBucket, or BucketNotEmpty while any object or unfinished upload remains.
    async fn delete_bucket(&self, name: &str) -> Result<()>;
    /// Writes the object; the blobs of any object it replaces are queued for deletion.
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        rec: &ObjectRecord,
        condition: &WriteCondition,
        delete_due_ms: u64,
    ) -> Result<()>;
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>>;
    /// Removes the object if present (no error if absent, unless `condition` asks for it;
    /// NoSuchBucket if the bucket is gone).
    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        condition: &DeleteCondition,
        delete_due_ms: u64,
    ) -> Result<()>;
    /// Returns the updated record (its extents not loaded). NoSuchKey if absent; a change the
    /// object's state refuses changes nothing.
    async fn update_object(&self, bucket: &str, key: &str, change: &ObjectChange) -> Result<ObjectRecord>;
    /// Objects whose key starts with `prefix`, from `start` on, in key order.
    async fn scan_objects(
        &self,
        bucket: &str,
        prefix: &str,
        start: &ScanStart,
        limit: usize,
    ) -> Result<Vec<(String, ObjectRecord)>>;
    async fn create_upload(&self, bucket: &str, rec: &UploadRecord) -> Result<()>;
    async fn get_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Option<UploadRecord>>;
    /// The stored answer of a completed upload, while it is kept.
    async fn get_completed(&self, upload_id: &str) -> Result<Option<CompletedUpload>>;
    /// Records a part, replacing (and queueing the blob of) an earlier one with the same
    /// number. NoSuchUpload if the upload is gone: the caller then deletes its blob.
    async fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        rec: &PartRecord,
        delete_due_ms: u64,
    ) -> Result<()>;
    async fn scan_parts(&self, upload_id: &str, after: u32, limit: usize) -> Result<Vec<(u32, PartRecord)>>;
    /// Uploads with key starting with `prefix` and (key, upload id) after `after`.
    async fn scan_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        after: (&str, &str),
        limit: usize,
    ) -> Result<Vec<UploadRecord>>;
    /// Validates and completes in one transaction; a retry with the same selection after
    /// success returns the stored answer.
    async fn complete_upload(&self, req: &CompleteRequest) -> Result<CompletedUpload>;
    /// Drops the upload and queues its parts' blobs.
    async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str, delete_due_ms: u64) -> Result<()>;
    /// Blobs whose deletion is due.
    async fn due_deletions(&self, now_ms: u64, limit: usize) -> Result<Vec<String>>;
    async fn forget_deletions(&self, blobs: &[String]) -> Result<()>;
    /// Of `ids`, those the metadata does not know: no object or part refers to them and no
    /// deletion is queued for them. (Every blob is recorded in an index in the transaction that
    /// first refers to it, and forgotten when the sweeper deletes it.)
    async fn unknown_blobs(&self, ids: &[String]) -> Result<Vec<String>>;
    /// Forgets completed-upload answers older than `before_ms`.
    async fn expire_completed(&self, before_ms: u64) -> Result<usize>;
    /// Whether new small blobs may be kept in this store ([`Extent::data`] on the extents
    /// given to `put_object`); when false the service writes every blob to a file.
    fn stores_inline(&self) -> bool;
    /// The bucket's usage per storage class (OSS class names), exact as of the last commit.
    async fn bucket_usage(&self, bucket: &str) -> Result<Vec<(String, Usage)>>;
    /// The bytes of an inline blob (None once its deletion has been swept). The sweeper's
    /// [`MetaStore::forget_deletions`] removes them with the blob's queue entry.
    async fn inline_blob(&self, id: &str) -> Result<Option<bytes::Bytes>>;

    /// Takes or renews the lease of the background work (sweepers) for `holder` for
    /// `ttl_ms`; true while `holder` holds it. A single-process store always leads.
    async fn lead(&self, _holder: &str, _ttl_ms: u64) -> Result<bool> {
        Ok(true)
    }
    /// Publishes the blobs `gateway` is reading (replacing what it published before), valid
    /// for `ttl_ms`, and that the gateway is alive for as long; [`MetaStore::due_deletions`]
    /// skips blobs leased by any live gateway. A single-process store needs none: its sweeper
    /// sees the readers' leases in memory.
    async fn publish_leases(&self, _gateway: &str, _blobs: &[String], _ttl_ms: u64) -> Result<()> {
        Ok(())
    }
    /// Whether other processes share this store (and the data directory): the orphan sweep
    /// then cannot see their writes in flight and leaves young files alone.
    fn shared(&self) -> bool {
        false
    }
    /// Of `ids` (blob files the orphan sweep would delete), those the metadata does not know,
    /// claimed so that no commit can refer to them any more. A single-process store needs no
    /// claim: its sweep sees the process's writes in flight.
    async fn claim_orphans(&self, ids: &[String]) -> Result<Vec<String>> {
        self.unknown_blobs(ids).await
    }
    /// Drops the claims of orphans whose files are gone.
    async fn forget_orphans(&self, _ids: &[String]) -> Result<()> {
        Ok(())
    }
    /// Whether `kura meta copy` has verified a copy of an embedded store into this one.
    async fn embedded_copy_verified(&self) -> Result<bool> {
        Ok(true)
    }
    /// The gateways alive now (those that published within their lease time); None for a
    /// single-process store.
    async fn live_gateways(&self) -> Result<Option<Vec<String>>> {
        Ok(None)
    }
}

/// A [`BlockingMetaStore`] run on tokio's blocking pool: each call moves owned copies of its
/// arguments to a blocking thread, so a commit's fsync never stalls an async worker.
pub struct Blocking<S>(pub Arc<S>);

impl<S: BlockingMetaStore> Blocking<S> {
    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&S) -> Result<T> + Send + 'static) -> Result<T> {
        let store = self.0.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(Error::internal)?
    }
}

fn owned(s: &str) -> String {
    s.to_string()
}

#[async_trait::async_trait]
impl<S: BlockingMetaStore> MetaStore for Blocking<S> {
    async fn create_bucket(&self, rec: &BucketRecord, acl_given: bool, max_buckets: usize) -> Result<bool> {
        let rec = rec.clone();
        self.run(move |s| s.create_bucket(&rec, acl_given, max_buckets)).await
    }
    async fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>> {
        let name = owned(name);
        self.run(move |s| s.get_bucket(&name)).await
    }
    async fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        self.run(|s| s.list_buckets()).await
    }
    async fn update_bucket(&self, name: &str, change: &BucketChange) -> Result<()> {
        let (name, change) = (owned(name), change.clone());
        self.run(move |s| s.update_bucket(&name, &change)).await
    }
    async fn delete_bucket(&self, name: &str) -> Result<()> {
        let name = owned(name);
        self.run(move |s| s.delete_bucket(&name)).await
    }
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        rec: &ObjectRecord,
        condition: &WriteCondition,
        delete_due_ms: u64,
    ) -> Result<()> {
        let (b, k, r, c) = (owned(bucket), owned(key), rec.clone(), condition.clone());
        self.run(move |s| s.put_object(&b, &k, &r, &c, delete_due_ms)).await
    }
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>> {
        let (b, k) = (owned(bucket), owned(key));
        self.run(move |s| s.get_object(&b, &k)).await
    }
    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        condition: &DeleteCondition,
        delete_due_ms: u64,
    ) -> Result<()> {
        let (b, k, c) = (owned(bucket), owned(key), condition.clone());
        self.run(move |s| s.delete_object(&b, &k, &c, delete_due_ms)).await
    }
    async fn update_object(&self, bucket: &str, key: &str, change: &ObjectChange) -> Result<ObjectRecord> {
        let (b, k, c) = (owned(bucket), owned(key), change.clone());
        self.run(move |s| s.update_object(&b, &k, &c)).await
    }
    async fn scan_objects(
        &self,
        bucket: &str,
        prefix: &str,
        start: &ScanStart,
        limit: usize,
    ) -> Result<Vec<(String, ObjectRecord)>> {
        let (b, p, st) = (owned(bucket), owned(prefix), start.clone());
        self.run(move |s| s.scan_objects(&b, &p, &st, limit)).await
    }
    async fn create_upload(&self, bucket: &str, rec: &UploadRecord) -> Result<()> {
        let (b, r) = (owned(bucket), rec.clone());
        self.run(move |s| s.create_upload(&b, &r)).await
    }
    async fn get_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Option<UploadRecord>> {
        let (b, k, u) = (owned(bucket), owned(key), owned(upload_id));
        self.run(move |s| s.get_upload(&b, &k, &u)).await
    }
    async fn get_completed(&self, upload_id: &str) -> Result<Option<CompletedUpload>> {
        let u = owned(upload_id);
        self.run(move |s| s.get_completed(&u)).await
    }
    async fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        rec: &PartRecord,
        delete_due_ms: u64,
    ) -> Result<()> {
        let (b, k, u, r) = (owned(bucket), owned(key), owned(upload_id), rec.clone());
        self.run(move |s| s.put_part(&b, &k, &u, part_number, &r, delete_due_ms))
            .await
    }
    async fn scan_parts(&self, upload_id: &str, after: u32, limit: usize) -> Result<Vec<(u32, PartRecord)>> {
        let u = owned(upload_id);
        self.run(move |s| s.scan_parts(&u, after, limit)).await
    }
    async fn scan_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        after: (&str, &str),
        limit: usize,
    ) -> Result<Vec<UploadRecord>> {
        let (b, p, a0, a1) = (owned(bucket), owned(prefix), owned(after.0), owned(after.1));
        self.run(move |s| s.scan_uploads(&b, &p, (&a0, &a1), limit)).await
    }
    async fn complete_upload(&self, req: &CompleteRequest) -> Result<CompletedUpload> {
        let req = req.clone();
        self.run(move |s| s.complete_upload(&req)).await
    }
    async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str, delete_due_ms: u64) -> Result<()> {
        let (b, k, u) = (owned(bucket), owned(key), owned(upload_id));
        self.run(move |s| s.abort_upload(&b, &k, &u, delete_due_ms)).await
    }
    async fn due_deletions(&self, now_ms: u64, limit: usize) -> Result<Vec<String>> {
        self.run(move |s| s.due_deletions(now_ms, limit)).await
    }
    async fn forget_deletions(&self, blobs: &[String]) -> Result<()> {
        let blobs = blobs.to_vec();
        self.run(move |s| s.forget_deletions(&blobs)).await
    }
    async fn unknown_blobs(&self, ids: &[String]) -> Result<Vec<String>> {
        let ids = ids.to_vec();
        self.run(move |s| s.unknown_blobs(&ids)).await
    }
    async fn expire_completed(&self, before_ms: u64) -> Result<usize> {
        self.run(move |s| s.expire_completed(before_ms)).await
    }
    fn stores_inline(&self) -> bool {
        self.0.stores_inline()
    }
    async fn bucket_usage(&self, bucket: &str) -> Result<Vec<(String, Usage)>> {
        let b = owned(bucket);
        self.run(move |s| s.bucket_usage(&b)).await
    }
    async fn inline_blob(&self, id: &str) -> Result<Option<bytes::Bytes>> {
        let id = owned(id);
        self.run(move |s| s.inline_blob(&id)).await
    }
}

/// The Complete checks, in the order oss-api.md §5.4 gives: ascending part numbers, each part
/// present with a matching ETag, every part but the last at least `min_part_size`. Returns
/// the chosen parts in order.
pub fn choose_parts(
    selection: &PartSelection,
    stored: &BTreeMap<u32, PartRecord>,
    min_part_size: u64,
) -> Result<Vec<(u32, PartRecord)>> {
    let chosen: Vec<(u32, PartRecord)> = match selection {
        PartSelection::All => stored.iter().map(|(n, p)| (*n, p.clone())).collect(),
        PartSelection::Listed(list) => {
            let mut prev = 0u32;
            for (n, _) in list {
                if *n <= prev {
                    return Err(Error::new(Code::InvalidPartOrder));
                }
                prev = *n;
            }
            let mut out = Vec::with_capacity(list.len());
            for (n, etag) in list {
                match stored.get(n) {
                    Some(p) if p.etag.eq_ignore_ascii_case(etag) => out.push((*n, p.clone())),
                    _ => {
                        return Err(Error::msg(
                            Code::InvalidPart,
                            format!("Part {n} was not uploaded or its ETag does not match."),
                        ))
                    }
                }
            }
            out
        }
    };
    if chosen.is_empty() {
        return Err(Error::msg(Code::MalformedXML, "The part list is empty."));
    }
    if let Some(pos) = chosen[..chosen.len() - 1]
        .iter()
        .position(|(_, p)| p.size < min_part_size)
    {
        let (n, p) = &chosen[pos];
        return Err(Error::msg(
            Code::EntityTooSmall,
            format!(
                "Part {n} is {} bytes; every part but the last must be at least {min_part_size} bytes.",
                p.size
            ),
        ));
    }
    Ok(chosen)
}

/// Builds the object record of a completed upload from its chosen parts: extents in order,
/// multipart ETag, combined CRC-64. No byte is read.
/// S3's multipart ETag: MD5 of the concatenated binary part digests, lowercase hex, `-N`.
pub fn s3_multipart_etag(parts: &[(u32, PartRecord)]) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    for (_, p) in parts {
        h.update(hex::decode(&p.etag).unwrap_or_default());
    }
    format!("{}-{}", hex::encode(h.finalize()), parts.len())
}

/// The object checksum of a completed upload whose every part carries the upload's
/// algorithm: FULL_OBJECT combines CRCs, COMPOSITE checksums the part checksums.
fn multipart_checksum(upload: &UploadRecord, parts: &[(u32, PartRecord)]) -> Option<ObjectChecksum> {
    use kura_proto::checksum;
    let (algorithm, full_object) = upload.checksum?;
    let mut raws = Vec::with_capacity(parts.len());
    for (_, p) in parts {
        match &p.checksum {
            Some((a, v)) if *a == algorithm => raws.push((checksum::from_base64(algorithm, v)?, p.size)),
            _ => return None,
        }
    }
    let raw = if full_object {
        checksum::combine(algorithm, &raws)?
    } else {
        checksum::composite(algorithm, &raws.into_iter().map(|(r, _)| r).collect::<Vec<_>>())
    };
    Some(ObjectChecksum {
        algorithm,
        value: checksum::to_base64(&raw),
        full_object,
        parts: parts.len() as u32,
    })
}

pub fn object_from_parts(
    upload: &UploadRecord,
    parts: &[(u32, PartRecord)],
    acl: Option<ObjectAcl>,
    now_ms: u64,
) -> ObjectRecord {
    let etag = kura_proto::etag::multipart(parts.iter().map(|(_, p)| p.etag.as_str()));
    let crc64 = kura_proto::crc64::combine_all(parts.iter().map(|(_, p)| (p.crc64, p.size)));
    ObjectRecord {
        etag,
        s3_etag: Some(s3_multipart_etag(parts)),
        checksum: multipart_checksum(upload, parts),
        size: parts.iter().map(|(_, p)| p.size).sum(),
        crc64,
        content_md5: None,
        last_modified_ms: now_ms,
        object_type: ObjectType::Multipart,
        storage_class: upload.storage_class.clone(),
        acl: acl.unwrap_or(upload.acl),
        headers: upload.headers.clone(),
        extents: parts
            .iter()
            .map(|(_, p)| Extent {
                blob: p.blob.clone(),
                len: p.size,
                checksum: p.checksum.as_ref().map(|(_, v)| v.clone()),
                ..Default::default()
            })
            .collect(),
        tags: upload.tags.clone(),
        restore: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(etag: &str, size: u64) -> PartRecord {
        PartRecord {
            etag: etag.into(),
            checksum: None,
            size,
            crc64: 0,
            last_modified_ms: 0,
            blob: format!("b{etag}"),
        }
    }

    fn stored() -> BTreeMap<u32, PartRecord> {
        BTreeMap::from([(1, part("A", 200)), (2, part("B", 200)), (5, part("C", 10))])
    }

    fn listed(v: &[(u32, &str)]) -> PartSelection {
        PartSelection::Listed(v.iter().map(|(n, e)| (*n, e.to_string())).collect())
    }

    #[test]
    fn complete_rules() {
        let s = stored();
        assert_eq!(choose_parts(&listed(&[(1, "a"), (5, "C")]), &s, 100).unwrap().len(), 2);
        assert_eq!(choose_parts(&PartSelection::All, &s, 100).unwrap().len(), 3);
        let code = |sel: PartSelection, min| choose_parts(&sel, &s, min).unwrap_err().code;
        assert_eq!(code(listed(&[(2, "B"), (1, "A")]), 100), Code::InvalidPartOrder);
        assert_eq!(code(listed(&[(1, "A"), (1, "A")]), 100), Code::InvalidPartOrder);
        assert_eq!(code(listed(&[(1, "A"), (3, "B")]), 100), Code::InvalidPart);
        assert_eq!(code(listed(&[(1, "X")]), 100), Code::InvalidPart);
        assert_eq!(code(listed(&[(5, "C"), (6, "D")]), 100), Code::InvalidPart);
        assert_eq!(code(listed(&[(1, "A"), (2, "B")]), 201), Code::EntityTooSmall);
        assert_eq!(code(listed(&[]), 1), Code::MalformedXML);
    }
}
