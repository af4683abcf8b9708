//! The records the metadata store keeps. Times are epoch milliseconds; ETags are stored
//! unquoted, uppercase.

use kura_proto::checksum::Algorithm;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Acl {
    #[default]
    Private,
    PublicRead,
    PublicReadWrite,
}

impl Acl {
    pub fn as_str(self) -> &'static str {
        match self {
            Acl::Private => "private",
            Acl::PublicRead => "public-read",
            Acl::PublicReadWrite => "public-read-write",
        }
    }
    pub fn parse(s: &str) -> Option<Acl> {
        match s {
            "private" => Some(Acl::Private),
            "public-read" => Some(Acl::PublicRead),
            "public-read-write" => Some(Acl::PublicReadWrite),
            _ => None,
        }
    }
}

/// An object's ACL: `default` follows the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ObjectAcl {
    #[default]
    Default,
    Set(Acl),
}

impl ObjectAcl {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectAcl::Default => "default",
            ObjectAcl::Set(a) => a.as_str(),
        }
    }
    pub fn parse(s: &str) -> Option<ObjectAcl> {
        if s == "default" {
            Some(ObjectAcl::Default)
        } else {
            Acl::parse(s).map(ObjectAcl::Set)
        }
    }
    /// The ACL in force given the bucket's.
    pub fn effective(self, bucket: Acl) -> Acl {
        match self {
            ObjectAcl::Default => bucket,
            ObjectAcl::Set(a) => a,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketRecord {
    pub name: String,
    pub created_ms: u64,
    pub acl: Acl,
    pub storage_class: String,
    /// Tags (key, value), in the order given: at most 10 per object, 20 per bucket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
}

/// A change to a bucket's settings, made in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketChange {
    Acl(Acl),
    /// Replaces every tag.
    Tags(Vec<(String, String)>),
    /// Removes the tags with these keys.
    DeleteTags(Vec<String>),
}

impl BucketChange {
    pub fn apply(&self, b: &mut BucketRecord) {
        match self {
            BucketChange::Acl(acl) => b.acl = *acl,
            BucketChange::Tags(tags) => b.tags = tags.clone(),
            BucketChange::DeleteTags(keys) => b.tags.retain(|(k, _)| !keys.contains(k)),
        }
    }
}

/// A change to an object's settings that leaves its bytes (and Last-Modified) alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectChange {
    Acl(ObjectAcl),
    /// Replaces every tag.
    Tags(Vec<(String, String)>),
    /// RestoreObject at `now_ms`: readable from `now_ms + delay_ms` for `days` days (checked
    /// by the dialect); a finished restore is extended instead, never shortened. `token`
    /// names this call in the record when it starts the restore.
    Restore {
        now_ms: u64,
        delay_ms: u64,
        days: u32,
        token: u64,
    },
    /// CleanRestoredObject: back to frozen.
    CleanRestore {
        now_ms: u64,
    },
}

impl ObjectChange {
    /// Applies the change, or refuses it (before anything is changed) when the object's state
    /// does not allow it: the store runs this inside the transaction that writes the record.
    pub fn apply(&self, rec: &mut ObjectRecord) -> crate::Result<()> {
        use crate::classes::{thaw, Thaw};
        use crate::error::{Code, Error};
        match self {
            ObjectChange::Acl(acl) => rec.acl = *acl,
            ObjectChange::Tags(tags) => rec.tags = tags.clone(),
            ObjectChange::Restore {
                now_ms,
                delay_ms,
                days,
                token,
            } => {
                let day_ms = u64::from((*days).max(1)) * 86_400_000;
                match thaw(rec, *now_ms) {
                    Thaw::NotFrozen => return Err(Error::new(Code::OperationNotSupported)),
                    Thaw::Restoring => return Err(Error::new(Code::RestoreAlreadyInProgress)),
                    Thaw::Restored { .. } => {
                        if let Some(r) = &mut rec.restore {
                            r.expiry_ms = r.expiry_ms.max(now_ms + day_ms);
                        }
                    }
                    Thaw::Frozen => {
                        let ready_ms = now_ms + delay_ms;
                        rec.restore = Some(Restore {
                            started_ms: *now_ms,
                            ready_ms,
                            expiry_ms: ready_ms + day_ms,
                            token: *token,
                        });
                    }
                }
            }
            ObjectChange::CleanRestore { now_ms } => match thaw(rec, *now_ms) {
                Thaw::NotFrozen => return Err(Error::new(Code::OperationNotSupported)),
                Thaw::Restoring => return Err(Error::new(Code::ArchiveRestoreNotFinished)),
                Thaw::Frozen => return Err(Error::new(Code::ArchiveRestoreFileStale)),
                Thaw::Restored { .. } => rec.restore = None,
            },
        }
        Ok(())
    }
}

/// HTTP headers stored with an object and replayed on GET/HEAD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHeaders {
    pub content_type: String,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub expires: Option<String>,
    /// `x-oss-meta-*` with the prefix removed, names lowercase.
    pub user_meta: Vec<(String, String)>,
}

/// A piece of an object: a whole blob, kept in a file or (small objects) in the metadata
/// store itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extent {
    pub blob: String,
    pub len: u64,
    /// For a part of a multipart object: its S3 checksum (base64) when the upload had an
    /// algorithm, so GetObjectAttributes and `partNumber` reads can report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// The blob's bytes live in the metadata store (its inline table), not in a file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inline: bool,
    /// The bytes of a new inline blob, on their way to the store: written in the transaction
    /// that records the extent, never serialized with it.
    #[serde(skip)]
    pub data: Option<bytes::Bytes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectType {
    Normal,
    Multipart,
}

impl ObjectType {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Normal => "Normal",
            ObjectType::Multipart => "Multipart",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// OSS ETag (uppercase; multipart: MD5 of the hex part ETags, `-N`).
    pub etag: String,
    /// S3's multipart ETag (lowercase; MD5 of the binary part digests, `-N`). None for a
    /// single-part object, whose S3 ETag is the lowercase `etag`.
    #[serde(default)]
    pub s3_etag: Option<String>,
    /// The S3 additional checksum, when one was asked for.
    #[serde(default)]
    pub checksum: Option<ObjectChecksum>,
    pub size: u64,
    pub crc64: u64,
    /// base64 MD5 of the bytes, for Normal objects.
    pub content_md5: Option<String>,
    pub last_modified_ms: u64,
    pub object_type: ObjectType,
    pub storage_class: String,
    pub acl: ObjectAcl,
    pub headers: ObjectHeaders,
    pub extents: Vec<Extent>,
    /// Tags (key, value), in the order given: at most 10 per object, 20 per bucket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// An archived object's restore: readable from `ready_ms` until `expiry_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<Restore>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    pub started_ms: u64,
    pub ready_ms: u64,
    pub expiry_ms: u64,
    /// Names the RestoreObject call that started it, so that call alone answers 202.
    #[serde(default)]
    pub token: u64,
}

/// An S3 additional checksum of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectChecksum {
    pub algorithm: Algorithm,
    /// base64 of the raw value.
    pub value: String,
    /// FULL_OBJECT (the checksum of all the bytes) or COMPOSITE (of the part checksums).
    pub full_object: bool,
    /// Parts of a COMPOSITE value (rendered `value-N`).
    pub parts: u32,
}

impl ObjectChecksum {
    /// The value as S3 returns it: `-N` appended for COMPOSITE.
    pub fn rendered(&self) -> String {
        if self.full_object {
            self.value.clone()
        } else {
            format!("{}-{}", self.value, self.parts)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub upload_id: String,
    pub key: String,
    pub initiated_ms: u64,
    pub storage_class: String,
    pub acl: ObjectAcl,
    pub headers: ObjectHeaders,
    /// `x-oss-forbid-overwrite: true` at Initiate: checked again at Complete, whatever the
    /// Complete request says (oss2's resumable Complete does not repeat the header).
    #[serde(default)]
    pub forbid_overwrite: bool,
    /// `x-amz-checksum-algorithm` at CreateMultipartUpload, and whether the object's
    /// checksum is FULL_OBJECT (else COMPOSITE).
    #[serde(default)]
    pub checksum: Option<(Algorithm, bool)>,
    /// OSS `?sequential` at Initiate: parts are uploaded and completed in part-number order
    /// (each new number is the next one; Complete lists 1..N).
    #[serde(default)]
    pub sequential: bool,
    /// `x-oss-tagging` / `x-amz-tagging` at Initiate, given to the object at Complete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRecord {
    pub etag: String,
    /// The S3 checksum of the part (algorithm, base64), when the upload has an algorithm.
    #[serde(default)]
    pub checksum: Option<(Algorithm, String)>,
    pub size: u64,
    pub crc64: u64,
    pub last_modified_ms: u64,
    pub blob: String,
}

/// What CompleteMultipartUpload answered, kept so that a retry gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedUpload {
    pub bucket: String,
    pub key: String,
    /// Identifies the requested part list (or "all"); a retry must match it.
    pub request_fingerprint: String,
    pub etag: String,
    pub crc64: u64,
    pub size: u64,
    pub completed_ms: u64,
}

/// Which parts a Complete asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartSelection {
    /// `x-oss-complete-all: yes`: every uploaded part, by number.
    All,
    /// (part number, normalized ETag) as listed in the request body.
    Listed(Vec<(u32, String)>),
}

impl PartSelection {
    pub fn fingerprint(&self) -> String {
        match self {
            PartSelection::All => "all".to_string(),
            PartSelection::Listed(v) => {
                let mut s = String::with_capacity(v.len() * 40);
                for (n, e) in v {
                    s.push_str(&n.to_string());
                    s.push(':');
                    s.push_str(e);
                    s.push(',');
                }
                s
            }
        }
    }
}

/// A bucket's usage in one storage class, kept exact by the writes themselves (each write
/// changes it in its own transaction), so GetBucketStat costs the same at any bucket size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub objects: i64,
    pub bytes: i64,
    /// Multipart uploads initiated and not yet completed or aborted.
    pub uploads: i64,
    pub parts: i64,
    pub part_bytes: i64,
}

impl Usage {
    pub fn add(&mut self, d: &Usage) {
        self.objects += d.objects;
        self.bytes += d.bytes;
        self.uploads += d.uploads;
        self.parts += d.parts;
        self.part_bytes += d.part_bytes;
    }

    pub fn object(size: u64, sign: i64) -> Usage {
        Usage {
            objects: sign,
            bytes: sign * size as i64,
            ..Usage::default()
        }
    }

    pub fn part(size: u64, sign: i64) -> Usage {
        Usage {
            parts: sign,
            part_bytes: sign * size as i64,
            ..Usage::default()
        }
    }
}
