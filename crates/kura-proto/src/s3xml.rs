//! The XML bodies of the S3 dialect: S3's own element names, with
//! `xmlns="http://s3.amazonaws.com/doc/2006-03-01/"` on every root. Request bodies
//! (CompleteMultipartUpload, Delete) share the OSS shapes in [`crate::xml`].

use serde::Serialize;

pub const NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Owner {
    #[serde(rename = "ID")]
    pub id: String,
    pub display_name: String,
}

/// The five optional checksum elements, in S3's order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Checksums {
    #[serde(rename = "ChecksumCRC32", skip_serializing_if = "Option::is_none")]
    pub crc32: Option<String>,
    #[serde(rename = "ChecksumCRC32C", skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    #[serde(rename = "ChecksumCRC64NVME", skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
    #[serde(rename = "ChecksumSHA1", skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(rename = "ChecksumSHA256", skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Checksums {
    pub fn one(algorithm: crate::checksum::Algorithm, value: String) -> Checksums {
        use crate::checksum::Algorithm::*;
        let mut c = Checksums::default();
        let slot = match algorithm {
            Crc32 => &mut c.crc32,
            Crc32c => &mut c.crc32c,
            Crc64Nvme => &mut c.crc64nvme,
            Sha1 => &mut c.sha1,
            Sha256 => &mut c.sha256,
        };
        *slot = Some(value);
        c
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BucketEntry {
    pub name: String,
    pub creation_date: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Buckets {
    #[serde(rename = "Bucket")]
    pub buckets: Vec<BucketEntry>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename = "ListAllMyBucketsResult", rename_all = "PascalCase")]
pub struct ListAllMyBucketsResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    pub owner: Owner,
    pub buckets: Buckets,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continuation_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ObjectEntry {
    pub key: String,
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    pub size: u64,
    pub storage_class: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CommonPrefix {
    pub prefix: String,
}

/// ListObjects V1 and V2.
#[derive(Debug, Clone, Serialize)]
#[serde(rename = "ListBucketResult", rename_all = "PascalCase")]
pub struct ListBucketResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    pub name: String,
    pub prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continuation_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_continuation_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_after: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_count: Option<u32>,
    pub max_keys: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding_type: Option<String>,
    pub is_truncated: bool,
    #[serde(rename = "Contents")]
    pub contents: Vec<ObjectEntry>,
    #[serde(rename = "CommonPrefixes")]
    pub common_prefixes: Vec<CommonPrefix>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VersionEntry {
    pub key: String,
    pub version_id: String,
    pub is_latest: bool,
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    pub size: u64,
    pub storage_class: String,
    pub owner: Owner,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename = "ListVersionsResult", rename_all = "PascalCase")]
pub struct ListVersionsResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    pub name: String,
    pub prefix: String,
    pub key_marker: String,
    pub version_id_marker: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_key_marker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_version_id_marker: Option<String>,
    pub max_keys: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding_type: Option<String>,
    pub is_truncated: bool,
    #[serde(rename = "Version")]
    pub versions: Vec<VersionEntry>,
    #[serde(rename = "CommonPrefixes")]
    pub common_prefixes: Vec<CommonPrefix>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename = "InitiateMultipartUploadResult", rename_all = "PascalCase")]
pub struct InitiateMultipartUploadResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PartEntry {
    pub part_number: u32,
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    pub size: u64,
    #[serde(flatten)]
    pub checksums: Checksums,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename = "ListPartsResult", rename_all = "PascalCase")]
pub struct ListPartsResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub part_number_marker: u32,
    pub next_part_number_marker: u32,
    pub max_parts: u32,
    pub is_truncated: bool,
    #[serde(rename = "Part")]
    pub parts: Vec<PartEntry>,
    pub initiator: Owner,
    pub owner: Owner,
    pub storage_class: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UploadEntry {
    pub key: String,
    pub upload_id: String,
    pub initiator: Owner,
    pub owner: Owner,
    pub storage_class: String,
    pub initiated: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename = "ListMultipartUploadsResult", rename_all = "PascalCase")]
pub struct ListMultipartUploadsResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    pub bucket: String,
    pub key_marker: String,
    pub upload_id_marker: String,
    pub next_key_marker: String,
    pub next_upload_id_marker: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<String>,
    pub prefix: String,
    pub max_uploads: u32,
    pub is_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding_type: Option<String>,
    #[serde(rename = "Upload")]
    pub uploads: Vec<UploadEntry>,
    #[serde(rename = "CommonPrefixes")]
    pub common_prefixes: Vec<CommonPrefix>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename = "CompleteMultipartUploadResult", rename_all = "PascalCase")]
pub struct CompleteMultipartUploadResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    pub location: String,
    pub bucket: String,
    pub key: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    #[serde(flatten)]
    pub checksums: Checksums,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CopyResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    #[serde(flatten)]
    pub checksums: Checksums,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeletedEntry {
    pub key: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteErrorEntry {
    pub key: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename = "DeleteResult", rename_all = "PascalCase")]
pub struct DeleteResult {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(rename = "Deleted")]
    pub deleted: Vec<DeletedEntry>,
    #[serde(rename = "Error")]
    pub errors: Vec<DeleteErrorEntry>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename = "Error", rename_all = "PascalCase")]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argument_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argument_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub string_to_sign: Option<String>,
    #[serde(rename = "AWSAccessKeyId", skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers_not_signed: Option<String>,
    pub resource: String,
    pub request_id: String,
    pub host_id: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename = "LocationConstraint")]
pub struct LocationConstraint {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(rename = "$text")]
    pub location: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Grantee {
    #[serde(rename = "@xmlns:xsi")]
    pub xmlns_xsi: &'static str,
    #[serde(rename = "@xsi:type")]
    pub kind: &'static str,
    #[serde(rename = "ID", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "DisplayName", skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(rename = "URI", skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Grant {
    pub grantee: Grantee,
    pub permission: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccessControlList {
    #[serde(rename = "Grant")]
    pub grants: Vec<Grant>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename = "AccessControlPolicy", rename_all = "PascalCase")]
pub struct AccessControlPolicy {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    pub owner: Owner,
    pub access_control_list: AccessControlList,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributesChecksum {
    #[serde(flatten)]
    pub checksums: Checksums,
    pub checksum_type: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ObjectParts {
    pub is_truncated: bool,
    pub max_parts: u32,
    pub next_part_number_marker: u32,
    pub part_number_marker: u32,
    #[serde(rename = "Part")]
    pub parts: Vec<ObjectPart>,
    /// `TotalPartsCount` in the API; `PartsCount` on the wire.
    #[serde(rename = "PartsCount")]
    pub total_parts_count: u32,
}

/// One part in GetObjectAttributes' ObjectParts.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ObjectPart {
    pub part_number: u32,
    pub size: u64,
    #[serde(flatten)]
    pub checksums: Checksums,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename = "GetObjectAttributesResponse", rename_all = "PascalCase")]
pub struct GetObjectAttributesResponse {
    #[serde(rename = "@xmlns")]
    pub xmlns: &'static str,
    #[serde(rename = "ETag", skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<AttributesChecksum>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_parts: Option<ObjectParts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_size: Option<u64>,
}

/// Serializes an S3 body under an explicit root element (the shapes with flattened checksum
/// fields serialize as maps, which need one).
pub fn to_xml_root<T: Serialize>(root: &str, value: &T) -> String {
    let mut out = String::from(crate::xml::DECLARATION);
    if let Ok(ser) = quick_xml::se::Serializer::with_root(&mut out, Some(root)) {
        // Serializing our own plain structs into a String cannot fail.
        let _ = value.serialize(ser);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::to_xml;

    #[test]
    fn shapes_carry_the_namespace_and_checksums() {
        let r = CompleteMultipartUploadResult {
            xmlns: NS,
            location: "http://h/b/k".into(),
            bucket: "b".into(),
            key: "k".into(),
            etag: "\"abc-2\"".into(),
            checksums: Checksums::one(crate::checksum::Algorithm::Crc32, "AAAAAA==".into()),
            checksum_type: Some("COMPOSITE".into()),
        };
        let x = to_xml_root("CompleteMultipartUploadResult", &r);
        assert!(
            x.contains("<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>"),
            "{x}"
        );
        assert!(
            x.contains(
                "<ETag>\"abc-2\"</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32><ChecksumType>COMPOSITE</ChecksumType>"
            ),
            "{x}"
        );
        let l = to_xml(&LocationConstraint {
            xmlns: NS,
            location: String::new(),
        });
        assert!(l.contains("<LocationConstraint xmlns="), "{l}");
        let c = to_xml_root(
            "CopyPartResult",
            &CopyResult {
                xmlns: NS,
                last_modified: "t".into(),
                etag: "\"e\"".into(),
                checksums: Checksums::default(),
            },
        );
        assert!(c.contains("<CopyPartResult xmlns="), "{c}");
        let parts = ListPartsResult {
            xmlns: NS,
            bucket: "b".into(),
            key: "k".into(),
            upload_id: "u".into(),
            part_number_marker: 0,
            next_part_number_marker: 1,
            max_parts: 1000,
            is_truncated: false,
            parts: vec![PartEntry {
                part_number: 1,
                last_modified: "t".into(),
                etag: "\"e\"".into(),
                size: 5,
                checksums: Checksums::one(crate::checksum::Algorithm::Sha1, "x".into()),
            }],
            initiator: Owner {
                id: "i".into(),
                display_name: "i".into(),
            },
            owner: Owner {
                id: "i".into(),
                display_name: "i".into(),
            },
            storage_class: "STANDARD".into(),
            checksum_algorithm: None,
            checksum_type: None,
        };
        let p = to_xml_root("ListPartsResult", &parts);
        assert!(p.contains("<Part><PartNumber>1</PartNumber><LastModified>t</LastModified><ETag>\"e\"</ETag><Size>5</Size><ChecksumSHA1>x</ChecksumSHA1></Part>"), "{p}");
    }
}
