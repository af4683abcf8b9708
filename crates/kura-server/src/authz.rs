//! Authorization: one table from operation to the access it needs, checked against who is
//! asking and the bucket's ACL. Object reads are settled per object (its ACL may differ from
//! the bucket's), once the handler has the object's record: [`object_readable`].

use kura_core::model::{Acl, BucketRecord, ObjectRecord};
use kura_core::{Code, Error, Kura, Result};

use crate::auth::Principal;
use crate::op::Operation;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only the owner (the root key): bucket management, ACLs, copies, listings of uploads.
    Owner,
    /// Listing the bucket's objects: public-read or public-read-write buckets.
    BucketRead,
    /// Writing objects and uploads: public-read-write buckets.
    BucketWrite,
    /// Reading one object: decided by the object's effective ACL.
    ObjectRead,
}

/// What each operation needs.
pub fn required(op: Operation) -> Access {
    use Operation::*;
    match op {
        ListObjects | ListObjectVersions | HeadBucket => Access::BucketRead,
        PutObject
        | DeleteObject
        | InitiateMultipartUpload
        | UploadPart
        | CompleteMultipartUpload
        | AbortMultipartUpload => Access::BucketWrite,
        GetObject | HeadObject | GetObjectMeta => Access::ObjectRead,
        // Copies read another object whose ACL is not checked here, so they stay the owner's.
        ListBuckets | CreateBucket | DeleteBucket | GetBucketAcl | PutBucketAcl | GetBucketLocation | GetBucketInfo
        | ListMultipartUploads | DeleteObjects | ListLiveChannels | GetObjectAttributes | GetObjectAcl
        | PutObjectAcl | CopyObject | UploadPartCopy | ListParts | GetObjectTagging | PutObjectTagging
        | DeleteObjectTagging | GetBucketTagging | PutBucketTagging | DeleteBucketTagging | RestoreObject
        | CleanRestoredObject | GetBucketStat => Access::Owner,
    }
}

pub fn deny() -> Error {
    Error::new(Code::AccessDenied)
}

/// Checks the access `op` needs before anything is read or changed.
pub async fn authorize(kura: &Kura, principal: &Principal, op: Operation, bucket: Option<&str>) -> Result<()> {
    if *principal == Principal::Root {
        return Ok(());
    }
    let acl = || async {
        match bucket {
            Some(b) => Ok(kura.bucket(b).await?.acl),
            None => Err(deny()),
        }
    };
    match required(op) {
        Access::Owner => Err(deny()),
        Access::ObjectRead => Ok(()),
        Access::BucketRead if acl().await? != Acl::Private => Ok(()),
        Access::BucketWrite if acl().await? == Acl::PublicReadWrite => Ok(()),
        _ => Err(deny()),
    }
}

/// The object a GetObject / HeadObject / GetObjectMeta reads, if `principal` may read it. An
/// anonymous reader of a bucket it may not list learns nothing from a missing key: the
/// answer is AccessDenied, as for a private object, not NoSuchKey.
pub async fn readable_object(
    kura: &Kura,
    principal: &Principal,
    bucket: &str,
    key: &str,
) -> Result<(BucketRecord, ObjectRecord)> {
    match kura.head_object(bucket, key).await {
        Ok((b, rec)) => {
            object_readable(principal, &b, &rec)?;
            Ok((b, rec))
        }
        Err(e) if e.code == Code::NoSuchKey && *principal == Principal::Anonymous => {
            match kura.bucket(bucket).await?.acl {
                Acl::Private => Err(deny()),
                _ => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Whether `principal` may read this object (GetObject, HeadObject, GetObjectMeta).
fn object_readable(principal: &Principal, bucket: &BucketRecord, rec: &ObjectRecord) -> Result<()> {
    match principal {
        Principal::Anonymous if rec.acl.effective(bucket.acl) == Acl::Private => Err(deny()),
        _ => Ok(()),
    }
}
