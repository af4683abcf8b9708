//! Storage classes and the archive restore state (oss-api-features.md §3). Objects keep their
//! class's OSS name; the S3 dialect maps names both ways. Archive classes are "frozen": their
//! bytes cannot be read until a restore has finished, and are readable until it expires.

use crate::error::{Code, Error, Result};
use crate::model::ObjectRecord;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageClass {
    Standard,
    IA,
    Archive,
    ColdArchive,
    DeepColdArchive,
}

impl StorageClass {
    pub const ALL: [StorageClass; 5] = [
        StorageClass::Standard,
        StorageClass::IA,
        StorageClass::Archive,
        StorageClass::ColdArchive,
        StorageClass::DeepColdArchive,
    ];

    /// The OSS name (what records keep).
    pub fn as_str(self) -> &'static str {
        match self {
            StorageClass::Standard => "Standard",
            StorageClass::IA => "IA",
            StorageClass::Archive => "Archive",
            StorageClass::ColdArchive => "ColdArchive",
            StorageClass::DeepColdArchive => "DeepColdArchive",
        }
    }

    /// The S3 name: the nearest S3 class (S3 has no cold archive between Glacier and Deep
    /// Archive, so ColdArchive is shown as GLACIER).
    pub fn s3_name(self) -> &'static str {
        match self {
            StorageClass::Standard => "STANDARD",
            StorageClass::IA => "STANDARD_IA",
            StorageClass::Archive | StorageClass::ColdArchive => "GLACIER",
            StorageClass::DeepColdArchive => "DEEP_ARCHIVE",
        }
    }

    /// An OSS class name (any case), or None.
    pub fn parse_oss(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// An S3 class name, or None for classes Kura does not offer.
    pub fn parse_s3(s: &str) -> Option<Self> {
        match s.trim() {
            "STANDARD" => Some(StorageClass::Standard),
            "STANDARD_IA" => Some(StorageClass::IA),
            "GLACIER" => Some(StorageClass::Archive),
            "DEEP_ARCHIVE" => Some(StorageClass::DeepColdArchive),
            _ => None,
        }
    }

    /// A stored name. Records from before classes were checked may hold S3 names in any case
    /// (written through the S3 dialect) or anything else (read as Standard).
    pub fn of(stored: &str) -> Self {
        let upper = stored.trim().to_ascii_uppercase();
        Self::parse_oss(stored)
            .or_else(|| Self::parse_s3(&upper))
            .or(match upper.as_str() {
                "ONEZONE_IA" | "INTELLIGENT_TIERING" | "GLACIER_IR" => Some(StorageClass::IA),
                _ => None,
            })
            .unwrap_or(StorageClass::Standard)
    }

    /// Archive classes need a restore before their bytes can be read.
    pub fn is_frozen(self) -> bool {
        matches!(
            self,
            StorageClass::Archive | StorageClass::ColdArchive | StorageClass::DeepColdArchive
        )
    }

    /// The longest restore, in days.
    pub fn max_restore_days(self) -> u32 {
        match self {
            StorageClass::Archive => 7,
            _ => 365,
        }
    }
}

/// An OSS class header value: a known class or 400 InvalidArgument.
pub fn oss_class(v: &str) -> Result<StorageClass> {
    StorageClass::parse_oss(v)
        .ok_or_else(|| Error::invalid_argument("Unsupported storage class", "x-oss-storage-class", v))
}

/// An S3 class header value: a known class or 400 InvalidStorageClass.
pub fn s3_class(v: &str) -> Result<StorageClass> {
    StorageClass::parse_s3(v).ok_or_else(|| {
        Error::msg(
            Code::InvalidStorageClass,
            format!("The storage class {v} is not supported; use STANDARD, STANDARD_IA, GLACIER or DEEP_ARCHIVE."),
        )
    })
}

/// Where a frozen object's restore stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Thaw {
    /// Not frozen: readable.
    NotFrozen,
    /// Frozen, no restore (or it expired).
    Frozen,
    /// A restore is under way.
    Restoring,
    /// Restored until `expiry_ms`.
    Restored { expiry_ms: u64 },
}

pub fn thaw(rec: &ObjectRecord, now_ms: u64) -> Thaw {
    if !StorageClass::of(&rec.storage_class).is_frozen() {
        return Thaw::NotFrozen;
    }
    match &rec.restore {
        Some(r) if now_ms < r.ready_ms => Thaw::Restoring,
        Some(r) if now_ms < r.expiry_ms => Thaw::Restored { expiry_ms: r.expiry_ms },
        _ => Thaw::Frozen,
    }
}

/// The object's bytes may be read (GET, copy source): 403 InvalidObjectState otherwise.
pub fn check_readable(rec: &ObjectRecord, now_ms: u64) -> Result<()> {
    match thaw(rec, now_ms) {
        Thaw::NotFrozen | Thaw::Restored { .. } => Ok(()),
        Thaw::Frozen | Thaw::Restoring => Err(Error::msg(
            Code::InvalidObjectState,
            "The operation is not valid for the object's state.",
        )),
    }
}

/// The `x-oss-restore` / `x-amz-restore` value, when there is a restore to report.
pub fn restore_header(rec: &ObjectRecord, now_ms: u64) -> Option<String> {
    match thaw(rec, now_ms) {
        Thaw::Restoring => Some("ongoing-request=\"true\"".into()),
        Thaw::Restored { expiry_ms } => Some(format!(
            "ongoing-request=\"false\", expiry-date=\"{}\"",
            kura_proto::timefmt::http_date(expiry_ms)
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_both_ways() {
        for c in StorageClass::ALL {
            assert_eq!(StorageClass::parse_oss(c.as_str()), Some(c));
            assert_eq!(StorageClass::parse_oss(&c.as_str().to_uppercase()), Some(c));
        }
        assert_eq!(
            StorageClass::parse_s3("DEEP_ARCHIVE"),
            Some(StorageClass::DeepColdArchive)
        );
        assert_eq!(
            StorageClass::parse_s3("GLACIER").map(StorageClass::s3_name),
            Some("GLACIER")
        );
        assert!(StorageClass::parse_oss("Cold").is_none());
        assert!(StorageClass::parse_s3("INTELLIGENT_TIERING").is_none());
        assert_eq!(oss_class("nope").unwrap_err().code, Code::InvalidArgument);
        assert_eq!(s3_class("nope").unwrap_err().code, Code::InvalidStorageClass);
    }
}
