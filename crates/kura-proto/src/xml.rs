//! The XML bodies of the OSS API, one definition each, used by the server to render and by
//! clients to parse. Element names and order follow oss-api.md; no xmlns (oss2 breaks on one).

use serde::{Deserialize, Serialize};

pub const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Whether a string can travel as XML 1.0 text: no control characters but tab, newline and
/// carriage return, no U+FFFE/U+FFFF. Client input echoed in an error (a bucket name, an
/// upload id with a NUL byte) that fails this is left out rather than breaking the body.
pub fn xml_safe(s: &str) -> bool {
    s.chars()
        .all(|c| matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{7f}' && c != '\u{fffe}' && c != '\u{ffff}'))
}

/// `s` with every character that cannot travel in XML 1.0 replaced by U+FFFD.
pub fn xml_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if xml_safe(c.encode_utf8(&mut [0; 4])) {
                c
            } else {
                '\u{fffd}'
            }
        })
        .collect()
}

/// `value` if it is [`xml_safe`].
pub fn xml_safe_opt(value: Option<String>) -> Option<String> {
    value.filter(|v| xml_safe(v))
}

/// Serializes a body with the XML declaration in front.
pub fn to_xml<T: Serialize>(value: &T) -> String {
    let mut out = String::from(DECLARATION);
    // Serializing our own plain structs into a String cannot fail.
    out.push_str(&quick_xml::se::to_string(value).unwrap_or_default());
    out
}

/// Parses a body; the error text is for logs, clients get MalformedXML.
pub fn from_xml<'de, T: Deserialize<'de>>(text: &'de str) -> Result<T, String> {
    quick_xml::de::from_str(text).map_err(|e| e.to_string())
}

/// Parses a request body strictly: UTF-8 without NUL bytes, exactly one root element named
/// `root` (a namespace prefix or `xmlns` is allowed), and nothing after it but white space,
/// comments and processing instructions. serde alone ignores the root's name and whatever
/// follows the root, so a body meant for another call, or two bodies glued together, would
/// otherwise be read as this one.
pub fn from_request_xml<T: for<'de> Deserialize<'de>>(raw: &[u8], root: &str) -> Result<T, String> {
    use quick_xml::events::Event;
    let text = std::str::from_utf8(raw).map_err(|_| "the body is not UTF-8".to_string())?;
    if text.contains('\0') {
        return Err("the body holds a NUL byte".into());
    }
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut depth = 0usize;
    let mut roots = 0usize;
    loop {
        let event = reader.read_event().map_err(|e| e.to_string())?;
        match &event {
            Event::Start(e) | Event::Empty(e) if depth == 0 => {
                roots += 1;
                if roots > 1 {
                    return Err("more than one root element".into());
                }
                if e.local_name().into_inner() != root {
                    return Err(format!("the root element is not {root}"));
                }
                // An empty root opens nothing; a start tag opens one level.
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(t) if depth == 0 && !t.clone().into_inner().chars().all(char::is_whitespace) => {
                return Err("text outside the root element".into())
            }
            Event::CData(_) | Event::GeneralRef(_) if depth == 0 => {
                return Err("content outside the root element".into())
            }
            Event::DocType(_) => return Err("a DOCTYPE is not allowed".into()),
            Event::Eof => break,
            _ => {}
        }
    }
    if roots != 1 || depth != 0 {
        return Err("the body is not one complete element".into());
    }
    quick_xml::de::from_str(text).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Owner {
    #[serde(rename = "ID")]
    pub id: String,
    pub display_name: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "Error", rename_all = "PascalCase")]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    pub request_id: String,
    pub host_id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bucket_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub upload_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub argument_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub argument_value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub server_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub string_to_sign: Option<String>,
    #[serde(rename = "OSSAccessKeyId", skip_serializing_if = "Option::is_none", default)]
    pub oss_access_key_id: Option<String>,
    #[serde(rename = "EC", skip_serializing_if = "Option::is_none", default)]
    pub ec: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "InitiateMultipartUploadResult", rename_all = "PascalCase")]
pub struct InitiateMultipartUploadResult {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encoding_type: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct PartEntry {
    pub part_number: u32,
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    pub hash_crc64ecma: String,
    pub size: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "ListPartsResult", rename_all = "PascalCase")]
pub struct ListPartsResult {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encoding_type: Option<String>,
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub storage_class: String,
    pub part_number_marker: u32,
    pub next_part_number_marker: u32,
    pub max_parts: u32,
    pub is_truncated: bool,
    #[serde(rename = "Part", default)]
    pub parts: Vec<PartEntry>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct UploadEntry {
    pub key: String,
    pub upload_id: String,
    pub storage_class: String,
    pub initiated: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct CommonPrefix {
    pub prefix: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "ListMultipartUploadsResult", rename_all = "PascalCase")]
pub struct ListMultipartUploadsResult {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encoding_type: Option<String>,
    pub bucket: String,
    #[serde(default)]
    pub key_marker: String,
    #[serde(default)]
    pub upload_id_marker: String,
    #[serde(default)]
    pub next_key_marker: String,
    #[serde(default)]
    pub next_upload_id_marker: String,
    #[serde(default)]
    pub delimiter: String,
    #[serde(default)]
    pub prefix: String,
    pub max_uploads: u32,
    pub is_truncated: bool,
    #[serde(rename = "Upload", default)]
    pub uploads: Vec<UploadEntry>,
    #[serde(rename = "CommonPrefixes", default)]
    pub common_prefixes: Vec<CommonPrefix>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct CompletePart {
    pub part_number: String,
    #[serde(rename = "ETag")]
    pub etag: String,
}

/// The CompleteMultipartUpload request body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "CompleteMultipartUpload")]
pub struct CompleteMultipartUpload {
    #[serde(rename = "Part", default)]
    pub parts: Vec<CompletePart>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "CompleteMultipartUploadResult", rename_all = "PascalCase")]
pub struct CompleteMultipartUploadResult {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encoding_type: Option<String>,
    pub location: String,
    pub bucket: String,
    pub key: String,
    #[serde(rename = "ETag")]
    pub etag: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "CopyPartResult", rename_all = "PascalCase")]
pub struct CopyPartResult {
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "CopyObjectResult", rename_all = "PascalCase")]
pub struct CopyObjectResult {
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct BucketEntry {
    pub creation_date: String,
    pub extranet_endpoint: String,
    pub intranet_endpoint: String,
    pub location: String,
    pub name: String,
    pub region: String,
    pub storage_class: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BucketList {
    #[serde(rename = "Bucket", default)]
    pub buckets: Vec<BucketEntry>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "ListAllMyBucketsResult", rename_all = "PascalCase")]
pub struct ListAllMyBucketsResult {
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub marker: String,
    pub max_keys: u32,
    pub is_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_marker: Option<String>,
    pub owner: Owner,
    pub buckets: BucketList,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessControlList {
    #[serde(rename = "Grant")]
    pub grant: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct BucketInfoBucket {
    pub creation_date: String,
    pub extranet_endpoint: String,
    pub intranet_endpoint: String,
    pub location: String,
    pub name: String,
    pub region: String,
    pub storage_class: String,
    pub data_redundancy_type: String,
    pub owner: Owner,
    pub access_control_list: AccessControlList,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "BucketInfo")]
pub struct BucketInfo {
    #[serde(rename = "Bucket")]
    pub bucket: BucketInfoBucket,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "AccessControlPolicy", rename_all = "PascalCase")]
pub struct AccessControlPolicy {
    pub owner: Owner,
    pub access_control_list: AccessControlList,
}

/// OSS GetBucketStat. Every element is always sent (gov2 parses each as an integer).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "BucketStat", rename_all = "PascalCase")]
pub struct BucketStat {
    pub storage: i64,
    pub object_count: i64,
    pub multipart_upload_count: i64,
    pub live_channel_count: i64,
    pub multipart_part_count: i64,
    pub multipart_part_storage: i64,
    pub delete_marker_count: i64,
    pub last_modified_time: i64,
    pub standard_storage: i64,
    pub standard_object_count: i64,
    pub standard_multipart_part_count: i64,
    pub standard_multipart_part_storage: i64,
    pub infrequent_access_storage: i64,
    pub infrequent_access_real_storage: i64,
    pub infrequent_access_object_count: i64,
    pub infrequent_multipart_part_count: i64,
    pub infrequent_multipart_part_storage: i64,
    pub archive_storage: i64,
    pub archive_real_storage: i64,
    pub archive_object_count: i64,
    pub archive_multipart_part_count: i64,
    pub archive_multipart_part_storage: i64,
    pub cold_archive_storage: i64,
    pub cold_archive_real_storage: i64,
    pub cold_archive_object_count: i64,
    pub cold_archive_multipart_part_count: i64,
    pub cold_archive_multipart_part_storage: i64,
    pub deep_cold_archive_storage: i64,
    pub deep_cold_archive_real_storage: i64,
    pub deep_cold_archive_object_count: i64,
    pub deep_cold_archive_multipart_part_count: i64,
    pub deep_cold_archive_multipart_part_storage: i64,
}

/// RestoreObject's optional body (OSS `JobParameters`, S3 `GlacierJobParameters`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "RestoreRequest", rename_all = "PascalCase")]
pub struct RestoreRequest {
    #[serde(default)]
    pub days: Option<u32>,
    #[serde(default)]
    pub job_parameters: Option<JobParameters>,
    #[serde(default)]
    pub glacier_job_parameters: Option<JobParameters>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct JobParameters {
    #[serde(default)]
    pub tier: Option<String>,
}

/// Object and bucket tags, both dialects (S3 adds its namespace).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "Tagging", rename_all = "PascalCase")]
pub struct Tagging {
    #[serde(rename = "@xmlns", skip_serializing_if = "Option::is_none", default)]
    pub xmlns: Option<String>,
    #[serde(default)]
    pub tag_set: TagSet,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TagSet {
    #[serde(rename = "Tag", default)]
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    pub key: String,
    #[serde(default)]
    pub value: String,
}

impl Tagging {
    pub fn new(tags: &[(String, String)], xmlns: Option<&str>) -> Self {
        Tagging {
            xmlns: xmlns.map(str::to_string),
            tag_set: TagSet {
                tags: tags
                    .iter()
                    .map(|(k, v)| Tag {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
            },
        }
    }

    pub fn pairs(self) -> Vec<(String, String)> {
        self.tag_set.tags.into_iter().map(|t| (t.key, t.value)).collect()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "LocationConstraint")]
pub struct LocationConstraint {
    #[serde(rename = "$text")]
    pub location: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ObjectEntry {
    pub key: String,
    pub last_modified: String,
    #[serde(rename = "ETag")]
    pub etag: String,
    #[serde(rename = "Type")]
    pub object_type: String,
    pub size: u64,
    pub storage_class: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub owner: Option<Owner>,
    /// An archived object's restore, as `x-oss-restore` says it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub restore_info: Option<String>,
}

/// ListObjects (V1) and ListObjectsV2 share the root `ListBucketResult`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "ListBucketResult", rename_all = "PascalCase")]
pub struct ListBucketResult {
    pub name: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub marker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub continuation_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub start_after: Option<String>,
    pub max_keys: u32,
    #[serde(default)]
    pub delimiter: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encoding_type: Option<String>,
    pub is_truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_marker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_continuation_token: Option<String>,
    #[serde(rename = "Contents", default)]
    pub contents: Vec<ObjectEntry>,
    #[serde(rename = "CommonPrefixes", default)]
    pub common_prefixes: Vec<CommonPrefix>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key_count: Option<u32>,
}

/// ListLiveChannel's answer; Kura has no live channels, so it is always an empty page.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "ListLiveChannelResult", rename_all = "PascalCase")]
pub struct ListLiveChannelResult {
    pub prefix: String,
    pub marker: String,
    pub max_keys: u32,
    pub is_truncated: bool,
    pub next_marker: String,
}

/// The PutBucket request body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "CreateBucketConfiguration", rename_all = "PascalCase")]
pub struct CreateBucketConfiguration {
    #[serde(default)]
    pub storage_class: Option<String>,
    #[serde(default)]
    pub data_redundancy_type: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteObjectEntry {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub version_id: Option<String>,
    /// S3 conditional deletes: the object's ETag, last-modified time and size must match.
    #[serde(rename = "ETag", skip_serializing_if = "Option::is_none", default)]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_modified_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub size: Option<String>,
}

/// The DeleteMultipleObjects request body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "Delete", rename_all = "PascalCase")]
pub struct Delete {
    #[serde(default)]
    pub quiet: Option<String>,
    #[serde(rename = "Object", default)]
    pub objects: Vec<DeleteObjectEntry>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DeletedEntry {
    pub key: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename = "DeleteResult", rename_all = "PascalCase")]
pub struct DeleteResult {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encoding_type: Option<String>,
    #[serde(rename = "Deleted", default)]
    pub deleted: Vec<DeletedEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_request_bodies() {
        let ok = b"<?xml version=\"1.0\"?>\n<Delete><Quiet>true</Quiet><Object><Key>a</Key></Object></Delete>\n";
        let d: Delete = from_request_xml(ok, "Delete").unwrap();
        assert_eq!(d.objects.len(), 1);
        let ns = b"<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Object><Key>a</Key></Object></Delete>";
        assert!(from_request_xml::<Delete>(ns, "Delete").is_ok());
        for bad in [
            &b"<Other><Object><Key>a</Key></Object></Other>"[..],
            b"<Delete><Object><Key>a</Key></Object></Delete>trailing",
            b"<Delete><Object><Key>a</Key></Object></Delete><Delete></Delete>",
            b"<Delete><Object><Key>a\0</Key></Object></Delete>",
            b"<Delete><Object><Key>a</Key></Object>",
            b"<Delete><Object><Key>a</Key></Wrong></Delete>",
            b"",
            b"   ",
            b"<!DOCTYPE x [<!ENTITY e \"x\">]><Delete/>",
            b"\xff<Delete/>",
        ] {
            assert!(
                from_request_xml::<Delete>(bad, "Delete").is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn list_parts_shape() {
        let r = ListPartsResult {
            encoding_type: None,
            bucket: "b".into(),
            key: "k".into(),
            upload_id: "U".into(),
            storage_class: "Standard".into(),
            part_number_marker: 0,
            next_part_number_marker: 1,
            max_parts: 1000,
            is_truncated: false,
            parts: vec![PartEntry {
                part_number: 1,
                last_modified: "2023-11-22T05:42:34.000Z".into(),
                etag: "\"CF3F\"".into(),
                hash_crc64ecma: "12066172435287683848".into(),
                size: 96316,
            }],
        };
        let x = to_xml(&r);
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListPartsResult><Bucket>b</Bucket>"));
        assert!(!x.contains("xmlns"));
        assert!(x.contains("<IsTruncated>false</IsTruncated><Part><PartNumber>1</PartNumber><LastModified>2023-11-22T05:42:34.000Z</LastModified><ETag>\"CF3F\"</ETag><HashCrc64ecma>12066172435287683848</HashCrc64ecma><Size>96316</Size></Part></ListPartsResult>"), "{x}");
        let back: ListPartsResult = from_xml(&x).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn complete_body_variants() {
        // oss2 (quoted), cpp (bare, whitespace), Go v1 (&#34; entities).
        for body in [
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"AB\"</ETag></Part><Part><PartNumber>2</PartNumber><ETag>\"CD\"</ETag></Part></CompleteMultipartUpload>",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUpload>\n<Part>\n  <PartNumber>1</PartNumber>\n  <ETag>AB</ETag>\n</Part>\n<Part>\n  <PartNumber>2</PartNumber>\n  <ETag>CD</ETag>\n</Part>\n</CompleteMultipartUpload>",
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&#34;AB&#34;</ETag></Part><Part><PartNumber>2</PartNumber><ETag>&#34;CD&#34;</ETag></Part></CompleteMultipartUpload>",
        ] {
            let c: CompleteMultipartUpload = from_xml(body).unwrap();
            assert_eq!(c.parts.len(), 2, "{body}");
            assert_eq!(crate::etag::normalize(&c.parts[0].etag), "AB");
            assert_eq!(c.parts[1].part_number.trim(), "2");
        }
        assert!(from_xml::<CompleteMultipartUpload>("<CompleteMultipartUpload><Part>").is_err());
    }

    #[test]
    fn location_and_empty_elements() {
        let x = to_xml(&LocationConstraint {
            location: "oss-cn-hangzhou".into(),
        });
        assert!(
            x.ends_with("<LocationConstraint>oss-cn-hangzhou</LocationConstraint>"),
            "{x}"
        );
        let u = ListMultipartUploadsResult {
            bucket: "b".into(),
            max_uploads: 1000,
            ..Default::default()
        };
        let x = to_xml(&u);
        assert!(x.contains("<NextKeyMarker") && x.contains("<NextUploadIdMarker"), "{x}");
    }
}
