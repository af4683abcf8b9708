//! The operations in the OSS dialect: headers into typed core calls, results into OSS headers
//! and XML. Requests arrive here classified ([`crate::op`]) and authorized ([`crate::authz`]).

use base64::Engine;
use kura_core::classes;
use kura_core::model::{Acl, BucketRecord, ObjectAcl, ObjectHeaders, ObjectRecord, PartSelection};
use kura_core::service::{check_bucket_name, check_key, check_part_number};
use kura_core::service::{CompleteOptions, CopyOptions};
use kura_core::{BodyChecks, Code, Error, Result, WriteCondition, WriteOptions};
use kura_proto::encode::{decode_path, encode_component};
use kura_proto::etag;
use kura_proto::timefmt::{http_date, iso8601};
use kura_proto::xml::*;

use super::render::{self, set, Resp};
use crate::auth::{Payload, Principal};
use crate::authz::readable_object;
use crate::common::*;
use crate::op::Operation;
use crate::request::{read_xml_body, Ctx, HyperBody};
use crate::State;

pub(crate) fn owner() -> Owner {
    Owner {
        id: "kura".into(),
        display_name: "kura".into(),
    }
}

fn header_acl(ctx: &Ctx, name: &str) -> Result<Option<ObjectAcl>> {
    match ctx.header(name) {
        None => Ok(None),
        Some(v) => ObjectAcl::parse(v.trim())
            .map(Some)
            .ok_or_else(|| Error::invalid_argument("no such object access control exists", name, v)),
    }
}

/// The headers stored with a new object or upload.
fn object_headers(ctx: &Ctx) -> ObjectHeaders {
    crate::common::object_headers(ctx, "x-oss-meta-", "application/octet-stream")
}

/// A stored class as OSS names it (older records may hold S3 names).
fn class_name(stored: &str) -> String {
    classes::StorageClass::of(stored).as_str().into()
}

/// `x-oss-storage-class`, checked (None: the bucket's class, or the source's on a copy).
fn oss_storage_class(ctx: &Ctx) -> Result<Option<classes::StorageClass>> {
    ctx.header("x-oss-storage-class").map(classes::oss_class).transpose()
}

fn write_options(ctx: &Ctx) -> Result<WriteOptions> {
    Ok(WriteOptions {
        headers: object_headers(ctx),
        acl: header_acl(ctx, "x-oss-object-acl")?.unwrap_or_default(),
        storage_class: oss_storage_class(ctx)?.map_or_else(String::new, |c| c.as_str().into()),
        condition: forbid_condition(ctx),
        checks: body_checks(ctx)?,
        tags: crate::common::header_tags(ctx, "x-oss-tagging")?,
        ..Default::default()
    })
}

/// What a streamed OSS body is checked against: Content-MD5, and the signed SHA-256 when
/// `x-oss-content-sha256` names one.
fn body_checks(ctx: &Ctx) -> Result<BodyChecks> {
    Ok(BodyChecks {
        content_md5: content_md5(ctx)?,
        payload_sha256: match &ctx.payload {
            Payload::Sha256(h) => Some(h.clone()),
            _ => None,
        },
        declared_len: declared_len(ctx, false),
        expect_continue: expects_continue(ctx),
        ..Default::default()
    })
}

/// `x-oss-forbid-overwrite: true` as a write condition.
fn forbid_condition(ctx: &Ctx) -> WriteCondition {
    WriteCondition {
        forbid_overwrite: is_true(ctx.header("x-oss-forbid-overwrite")),
        if_match: None,
    }
}

fn check_content_length(ctx: &Ctx, st: &State) -> Result<()> {
    if let Some(len) = ctx.header("content-length").and_then(|v| v.trim().parse::<u64>().ok()) {
        if len > st.kura.config().max_body_size {
            return Err(Error::msg(
                Code::EntityTooLarge,
                format!(
                    "The body exceeds the limit of {} bytes.",
                    st.kura.config().max_body_size
                ),
            ));
        }
    }
    Ok(())
}

/// Executes one classified, authorized operation and renders it in the OSS dialect.
pub async fn execute(
    st: &State,
    ctx: &Ctx,
    op: Operation,
    principal: &Principal,
    mut body: HyperBody,
    host: &str,
) -> Result<Resp> {
    use Operation::*;
    let k = &st.kura;
    let bucket = ctx.bucket();
    let key = ctx.key();
    if ctx.key.is_some() {
        check_key(key)?;
    }
    match op {
        ListBuckets => list_buckets(st, ctx, host).await,
        CreateBucket | PutBucketAcl => {
            let acl =
                match ctx.header("x-oss-acl") {
                    None => None,
                    Some(v) => Some(Acl::parse(v.trim()).ok_or_else(|| {
                        Error::invalid_argument("no such bucket access control exists", "x-oss-acl", v)
                    })?),
                };
            // The optional body is a CreateBucketConfiguration (its storage class is the
            // bucket's default for new objects). Anything else is refused: it may be an object
            // upload aimed at the wrong address.
            let raw = read_xml_body(&mut body, ctx).await?;
            let mut class = None;
            if !raw.iter().all(u8::is_ascii_whitespace) {
                let cfg = from_request_xml::<CreateBucketConfiguration>(&raw, "CreateBucketConfiguration")
                    .map_err(|_| Error::new(Code::MalformedXML))?;
                class = cfg.storage_class.as_deref().map(classes::oss_class).transpose()?;
            }
            if op == PutBucketAcl {
                let acl = acl.ok_or_else(|| Error::invalid_argument("x-oss-acl is required", "x-oss-acl", ""))?;
                k.set_bucket_acl(bucket, acl).await?;
                return Ok(render::empty(200));
            }
            check_bucket_name(bucket)?;
            k.create_bucket(bucket, acl, class).await?;
            let mut r = render::empty(200);
            set(&mut r, "location", format!("/{bucket}"));
            Ok(r)
        }
        DeleteBucket => {
            k.delete_bucket(bucket).await?;
            Ok(render::empty(204))
        }
        GetBucketAcl => {
            let b = k.bucket(bucket).await?;
            Ok(render::xml(&AccessControlPolicy {
                owner: owner(),
                access_control_list: AccessControlList {
                    grant: b.acl.as_str().into(),
                },
            }))
        }
        GetBucketLocation => {
            k.bucket(bucket).await?;
            Ok(render::xml(&LocationConstraint {
                location: format!("oss-{}", k.config().region),
            }))
        }
        GetBucketInfo => {
            let b = k.bucket(bucket).await?;
            Ok(render::xml(&bucket_info(st, &b, host)))
        }
        ListMultipartUploads => list_uploads(st, ctx, bucket).await,
        ListLiveChannels => {
            k.bucket(bucket).await?;
            Ok(render::xml(&ListLiveChannelResult {
                prefix: ctx.query("prefix").unwrap_or("").into(),
                marker: ctx.query("marker").unwrap_or("").into(),
                max_keys: parse_max(ctx, "max-keys", 100)? as u32,
                is_truncated: false,
                next_marker: String::new(),
            }))
        }
        ListObjects | ListObjectVersions => list_objects(st, ctx, bucket).await,
        DeleteObjects => delete_objects(st, ctx, bucket, body).await,
        GetObjectAcl => {
            let (_, rec) = k.head_object(bucket, key).await?;
            Ok(render::xml(&AccessControlPolicy {
                owner: owner(),
                access_control_list: AccessControlList {
                    grant: rec.acl.as_str().into(),
                },
            }))
        }
        ListParts => list_parts(st, ctx, bucket, key, ctx.query_raw("uploadId").unwrap_or("")).await,
        GetObject | HeadObject | GetObjectMeta => get_object(st, ctx, principal, bucket, key).await,
        PutObjectAcl => {
            let acl = header_acl(ctx, "x-oss-object-acl")?
                .ok_or_else(|| Error::invalid_argument("x-oss-object-acl is required", "x-oss-object-acl", ""))?;
            k.set_object_acl(bucket, key, acl).await?;
            Ok(render::empty(200))
        }
        UploadPart | UploadPartCopy => {
            let part = check_part_number(ctx.query_raw("partNumber").unwrap_or(""))?;
            let upload_id = ctx.query_raw("uploadId").unwrap_or("");
            if op == UploadPartCopy {
                return upload_part_copy(st, ctx, bucket, key, upload_id, part).await;
            }
            check_content_length(ctx, st)?;
            let rec = k
                .upload_part(bucket, key, upload_id, part, &mut body, body_checks(ctx)?)
                .await?;
            let mut r = render::empty(200);
            set(&mut r, "etag", etag::quoted(&rec.etag));
            set(&mut r, "x-oss-hash-crc64ecma", rec.crc64.to_string());
            if let Ok(raw) = hex::decode(&rec.etag) {
                set(
                    &mut r,
                    "content-md5",
                    base64::engine::general_purpose::STANDARD.encode(raw),
                );
            }
            Ok(r)
        }
        CopyObject => copy_object(st, ctx, bucket, key).await,
        PutObject => {
            check_content_length(ctx, st)?;
            let rec = k.put_object(bucket, key, &mut body, write_options(ctx)?).await?;
            let mut r = render::empty(200);
            set(&mut r, "etag", etag::quoted(&rec.etag));
            set(&mut r, "x-oss-hash-crc64ecma", rec.crc64.to_string());
            if let Some(md5) = &rec.content_md5 {
                set(&mut r, "content-md5", md5);
            }
            Ok(r)
        }
        InitiateMultipartUpload => {
            let opts = WriteOptions {
                sequential: ctx.has_query("sequential"),
                ..write_options(ctx)?
            };
            let id = k.initiate_upload(bucket, key, opts).await?;
            let url = url_encoding_for(ctx, std::iter::once(key));
            Ok(render::xml(&InitiateMultipartUploadResult {
                bucket: bucket.into(),
                key: enc(key, url),
                upload_id: id,
                encoding_type: url.then(|| "url".into()),
            }))
        }
        CompleteMultipartUpload => {
            let upload_id = ctx.query_raw("uploadId").unwrap_or("");
            complete_upload(st, ctx, bucket, key, upload_id, body, host).await
        }
        AbortMultipartUpload => {
            k.abort_upload(bucket, key, ctx.query_raw("uploadId").unwrap_or(""))
                .await?;
            Ok(render::empty(204))
        }
        DeleteObject => {
            k.delete_object(bucket, key).await?;
            Ok(render::empty(204))
        }
        GetBucketStat => {
            use classes::StorageClass as C;
            let usage = k.bucket_usage(bucket).await?;
            let of = |class: C| {
                usage
                    .iter()
                    .find(|(c, _)| *c == class)
                    .map(|(_, u)| *u)
                    .unwrap_or_default()
            };
            let (std, ia, ar, ca, dca) = (
                of(C::Standard),
                of(C::IA),
                of(C::Archive),
                of(C::ColdArchive),
                of(C::DeepColdArchive),
            );
            let all = usage.iter().fold(kura_core::model::Usage::default(), |mut a, (_, u)| {
                a.add(u);
                a
            });
            // Billable sizes (OSS rounds small IA/archive objects up to 64 KB) are not
            // tracked: the billable figures are the real ones.
            Ok(render::xml(&BucketStat {
                storage: all.bytes,
                object_count: all.objects,
                multipart_upload_count: all.uploads,
                multipart_part_count: all.parts,
                multipart_part_storage: all.part_bytes,
                last_modified_time: (kura_proto::timefmt::now_millis() / 1000) as i64,
                standard_storage: std.bytes,
                standard_object_count: std.objects,
                standard_multipart_part_count: std.parts,
                standard_multipart_part_storage: std.part_bytes,
                infrequent_access_storage: ia.bytes,
                infrequent_access_real_storage: ia.bytes,
                infrequent_access_object_count: ia.objects,
                infrequent_multipart_part_count: ia.parts,
                infrequent_multipart_part_storage: ia.part_bytes,
                archive_storage: ar.bytes,
                archive_real_storage: ar.bytes,
                archive_object_count: ar.objects,
                archive_multipart_part_count: ar.parts,
                archive_multipart_part_storage: ar.part_bytes,
                cold_archive_storage: ca.bytes,
                cold_archive_real_storage: ca.bytes,
                cold_archive_object_count: ca.objects,
                cold_archive_multipart_part_count: ca.parts,
                cold_archive_multipart_part_storage: ca.part_bytes,
                deep_cold_archive_storage: dca.bytes,
                deep_cold_archive_real_storage: dca.bytes,
                deep_cold_archive_object_count: dca.objects,
                deep_cold_archive_multipart_part_count: dca.parts,
                deep_cold_archive_multipart_part_storage: dca.part_bytes,
                ..Default::default()
            }))
        }
        RestoreObject => {
            let done = crate::exec::restore(st, ctx, &mut body, crate::op::Dialect::Oss).await?;
            let mut r = render::empty(if done.started { 202 } else { 200 });
            if let Some(p) = done.priority {
                set(&mut r, "x-oss-object-restore-priority", p);
            }
            Ok(r)
        }
        CleanRestoredObject => {
            k.clean_restored_object(bucket, key).await?;
            Ok(render::empty(200))
        }
        GetObjectTagging | PutObjectTagging | DeleteObjectTagging | GetBucketTagging | PutBucketTagging
        | DeleteBucketTagging => match crate::exec::tagging(st, ctx, op, &mut body).await? {
            Some(tags) => Ok(render::xml(&Tagging::new(&tags, None))),
            None if matches!(op, DeleteObjectTagging | DeleteBucketTagging) => Ok(render::empty(204)),
            None => Ok(render::empty(200)),
        },
        HeadBucket | GetObjectAttributes => Err(Error::new(Code::MethodNotAllowed)),
    }
}

fn endpoint(st: &State, host: &str) -> (String, String) {
    let ext = if host.is_empty() {
        format!("oss-{}.aliyuncs.com", st.kura.config().region)
    } else {
        host.to_string()
    };
    (ext.clone(), ext)
}

fn bucket_info(st: &State, b: &BucketRecord, host: &str) -> BucketInfo {
    let (ext, int) = endpoint(st, host);
    let region = st.kura.config().region.clone();
    BucketInfo {
        bucket: BucketInfoBucket {
            creation_date: iso8601(b.created_ms),
            extranet_endpoint: ext,
            intranet_endpoint: int,
            location: format!("oss-{region}"),
            name: b.name.clone(),
            region,
            storage_class: class_name(&b.storage_class),
            data_redundancy_type: "LRS".into(),
            owner: owner(),
            access_control_list: AccessControlList {
                grant: b.acl.as_str().into(),
            },
        },
    }
}

async fn list_buckets(st: &State, ctx: &Ctx, host: &str) -> Result<Resp> {
    let prefix = ctx.query("prefix").unwrap_or("");
    let marker = ctx.query("marker").unwrap_or("");
    let max = parse_max(ctx, "max-keys", 100)?;
    let (ext, int) = endpoint(st, host);
    let region = st.kura.config().region.clone();
    // Filtered by a tag: `tag-key`, and `tag-value` with it.
    let (tag_key, tag_value) = (ctx.query("tag-key"), ctx.query("tag-value"));
    if tag_value.is_some() && tag_key.is_none() {
        return Err(Error::invalid_argument(
            "tag-value requires tag-key",
            "tag-value",
            tag_value.unwrap_or(""),
        ));
    }
    let tagged = |b: &BucketRecord| {
        tag_key.is_none_or(|tk| {
            b.tags
                .iter()
                .any(|(k, v)| k == tk && tag_value.is_none_or(|tv| v == tv))
        })
    };
    let mut all: Vec<BucketRecord> = st
        .kura
        .list_buckets()
        .await?
        .into_iter()
        .filter(|b| b.name.starts_with(prefix) && b.name.as_str() > marker && tagged(b))
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let truncated = all.len() > max;
    all.truncate(max);
    let next_marker = if truncated {
        all.last().map(|b| b.name.clone())
    } else {
        None
    };
    Ok(render::xml(&ListAllMyBucketsResult {
        prefix: prefix.into(),
        marker: marker.into(),
        max_keys: max as u32,
        is_truncated: truncated,
        next_marker,
        owner: owner(),
        buckets: BucketList {
            buckets: all
                .iter()
                .map(|b| BucketEntry {
                    creation_date: iso8601(b.created_ms),
                    extranet_endpoint: ext.clone(),
                    intranet_endpoint: int.clone(),
                    location: format!("oss-{region}"),
                    name: b.name.clone(),
                    region: region.clone(),
                    storage_class: class_name(&b.storage_class),
                })
                .collect(),
        },
    }))
}

fn object_entry(key: &str, rec: &ObjectRecord, url: bool, with_owner: bool) -> ObjectEntry {
    ObjectEntry {
        key: enc(key, url),
        last_modified: iso8601(rec.last_modified_ms),
        etag: etag::quoted(&rec.etag),
        object_type: rec.object_type.as_str().into(),
        size: rec.size,
        storage_class: class_name(&rec.storage_class),
        owner: with_owner.then(owner),
        restore_info: classes::restore_header(rec, kura_proto::timefmt::now_millis()),
    }
}

async fn list_objects(st: &State, ctx: &Ctx, bucket: &str) -> Result<Resp> {
    let page = crate::exec::list_objects(st, ctx, bucket, 100).await?;
    let url = url_encoding(ctx) || page.needs_encoding;
    let (prefix, delimiter, max, v2) = (page.prefix.as_str(), page.delimiter.as_str(), page.max, page.v2);
    let (marker, listing) = (page.after.clone(), &page.listing);
    let token = page.token.as_deref().filter(|t| !t.is_empty());
    let with_owner = !v2 || page.fetch_owner;
    let contents: Vec<ObjectEntry> = listing
        .objects
        .iter()
        .map(|(k, r)| object_entry(k, r, url, with_owner))
        .collect();
    let common_prefixes: Vec<CommonPrefix> = listing
        .common_prefixes
        .iter()
        .map(|p| CommonPrefix { prefix: enc(p, url) })
        .collect();
    let key_count = (contents.len() + common_prefixes.len()) as u32;
    let result = ListBucketResult {
        name: bucket.into(),
        prefix: enc(prefix, url),
        marker: (!v2).then(|| enc(&marker, url)),
        continuation_token: token.map(|t| t.to_string()),
        start_after: if v2 {
            ctx.query("start-after").map(|s| enc(s, url))
        } else {
            None
        },
        max_keys: max as u32,
        delimiter: enc(delimiter, url),
        encoding_type: url.then(|| "url".into()),
        is_truncated: listing.truncated,
        next_marker: if v2 {
            None
        } else {
            listing.next_marker.as_deref().map(|m| enc(m, url))
        },
        next_continuation_token: if v2 {
            listing.next_marker.as_deref().map(|m| hex::encode(m.as_bytes()))
        } else {
            None
        },
        contents,
        common_prefixes,
        key_count: v2.then_some(key_count),
    };
    Ok(render::xml(&result))
}

async fn delete_objects(st: &State, ctx: &Ctx, bucket: &str, mut body: HyperBody) -> Result<Resp> {
    let raw = read_xml_body(&mut body, ctx).await?;
    check_xml_md5(ctx, &raw)?;
    let req: Delete = from_request_xml(&raw, "Delete").map_err(|_| Error::new(Code::MalformedXML))?;
    if req.objects.is_empty() || req.objects.len() > 1000 {
        return Err(Error::msg(
            Code::MalformedXML,
            "A Delete request lists 1 to 1000 objects.",
        ));
    }
    st.kura.bucket(bucket).await?;
    let quiet = is_true(req.quiet.as_deref());
    let url = url_encoding_for(ctx, req.objects.iter().map(|o| o.key.as_str()));
    // Every key is checked before anything is deleted.
    for o in &req.objects {
        check_key(&o.key)?;
    }
    let mut deleted = Vec::new();
    for o in &req.objects {
        st.kura.delete_object(bucket, &o.key).await?;
        if !quiet {
            deleted.push(DeletedEntry { key: enc(&o.key, url) });
        }
    }
    Ok(render::xml(&DeleteResult {
        encoding_type: url.then(|| "url".into()),
        deleted,
    }))
}

fn object_meta_headers(r: &mut Resp, rec: &ObjectRecord) {
    set(r, "etag", etag::quoted(&rec.etag));
    set(r, "last-modified", http_date(rec.last_modified_ms));
    set(r, "x-oss-hash-crc64ecma", rec.crc64.to_string());
    set(r, "x-oss-object-type", rec.object_type.as_str());
    set(r, "x-oss-storage-class", class_name(&rec.storage_class));
    if !rec.tags.is_empty() {
        set(r, "x-oss-tagging-count", rec.tags.len().to_string());
    }
    if let Some(restore) = classes::restore_header(rec, kura_proto::timefmt::now_millis()) {
        set(r, "x-oss-restore", restore);
    }
}

async fn get_object(st: &State, ctx: &Ctx, p: &Principal, bucket: &str, key: &str) -> Result<Resp> {
    let (_, rec) = readable_object(&st.kura, p, bucket, key).await?;
    check_conditions(ctx, &rec, "", false)?;
    let is_head = ctx.method == "HEAD";
    if is_head && ctx.has_query("objectMeta") {
        let mut r = render::empty(200);
        object_meta_headers(&mut r, &rec);
        set(&mut r, "content-length", rec.size.to_string());
        return Ok(r);
    }
    if !is_head {
        // An archived object's bytes wait for a restore (HEAD shows its state).
        classes::check_readable(&rec, kura_proto::timefmt::now_millis())?;
    }
    let standard = ctx
        .header("x-oss-range-behavior")
        .is_some_and(|v| v.eq_ignore_ascii_case("standard"));
    let range = match ctx.header("range") {
        Some(v) => parse_range(v, rec.size, standard)?,
        None => None,
    };
    let (start, end) = range.unwrap_or((0, rec.size));
    let mut r = if is_head {
        render::empty(200)
    } else {
        let mut r = render::empty(200);
        *r.body_mut() = render::RespBody::Stream(st.kura.read_object(&rec, start, end));
        r
    };
    if let Some((s, e)) = range {
        *r.status_mut() = http::StatusCode::PARTIAL_CONTENT;
        set(&mut r, "content-range", format!("bytes {}-{}/{}", s, e - 1, rec.size));
    }
    set(&mut r, "content-length", (end - start).to_string());
    set(&mut r, "accept-ranges", "bytes");
    object_meta_headers(&mut r, &rec);
    stored_headers(&mut r, &rec.headers, ctx, "x-oss-meta-");
    if let Some(md5) = &rec.content_md5 {
        set(&mut r, "content-md5", md5);
    }
    Ok(r)
}

/// Parses `x-oss-copy-source: /bucket/urlencoded-key[?versionId=..]`.
fn copy_source(ctx: &Ctx) -> Result<(String, String)> {
    let raw = ctx.header("x-oss-copy-source").unwrap_or("");
    let bad = || Error::invalid_argument("x-oss-copy-source is not valid.", "x-oss-copy-source", raw);
    let path = raw.split_once('?').map_or(raw, |(p, _)| p);
    let path = path.strip_prefix('/').unwrap_or(path);
    let (b, k) = path.split_once('/').ok_or_else(bad)?;
    let k = decode_path(k).ok_or_else(bad)?;
    let b = decode_path(b).ok_or_else(bad)?;
    check_key(&k)?;
    Ok((b, k))
}

async fn copy_object(st: &State, ctx: &Ctx, bucket: &str, key: &str) -> Result<Resp> {
    let (sb, sk) = copy_source(ctx)?;
    let (_, src) = st.kura.head_object(&sb, &sk).await?;
    // Current OSS answers a matching if-none-match / an unmodified if-modified-since on the
    // copy source with 304 and no body, not 412.
    check_conditions(ctx, &src, "x-oss-copy-source-", false)?;
    let replace = ctx
        .header("x-oss-metadata-directive")
        .is_some_and(|v| v.eq_ignore_ascii_case("REPLACE"))
        .then(|| object_headers(ctx));
    let opts = CopyOptions {
        headers: replace,
        acl: header_acl(ctx, "x-oss-object-acl")?.unwrap_or_default(),
        condition: forbid_condition(ctx),
        tags: crate::common::copy_tags(ctx, "x-oss-tagging-directive", "x-oss-tagging")?,
        storage_class: oss_storage_class(ctx)?,
    };
    let rec = st.kura.copy_object(&src, bucket, key, opts).await?;
    let mut r = render::xml(&CopyObjectResult {
        last_modified: iso8601(rec.last_modified_ms),
        etag: etag::quoted(&rec.etag),
    });
    set(&mut r, "etag", etag::quoted(&rec.etag));
    set(&mut r, "x-oss-hash-crc64ecma", rec.crc64.to_string());
    Ok(r)
}

async fn upload_part_copy(st: &State, ctx: &Ctx, bucket: &str, key: &str, upload_id: &str, part: u32) -> Result<Resp> {
    let (sb, sk) = copy_source(ctx)?;
    let (_, src) = st.kura.head_object(&sb, &sk).await?;
    // Current OSS answers a matching if-none-match / an unmodified if-modified-since on the
    // copy source with 304 and no body, not 412.
    check_conditions(ctx, &src, "x-oss-copy-source-", false)?;
    let (start, end) = copy_source_range(ctx, "x-oss-copy-source-range", src.size)?;
    let rec = st
        .kura
        .upload_part_copy(bucket, key, upload_id, part, &src, start..end)
        .await?;
    let mut r = render::xml(&CopyPartResult {
        last_modified: iso8601(rec.last_modified_ms),
        etag: etag::quoted(&rec.etag),
    });
    set(&mut r, "etag", etag::quoted(&rec.etag));
    set(&mut r, "x-oss-hash-crc64ecma", rec.crc64.to_string());
    set(
        &mut r,
        "content-range",
        format!("bytes {}-{}/{}", start, end.saturating_sub(1), src.size),
    );
    Ok(r)
}

async fn complete_upload(
    st: &State,
    ctx: &Ctx,
    bucket: &str,
    key: &str,
    upload_id: &str,
    mut body: HyperBody,
    host: &str,
) -> Result<Resp> {
    let raw = read_xml_body(&mut body, ctx).await?;
    let complete_all = ctx
        .header("x-oss-complete-all")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("yes"));
    let selection = match complete_selection(ctx, &raw, complete_all) {
        Ok(s) => s,
        // An unknown upload id is reported as such before any complaint about the body.
        Err(e) => {
            return Err(st
                .kura
                .upload_or_completed(bucket, key, upload_id)
                .await
                .err()
                .unwrap_or(e))
        }
    };
    let acl = header_acl(ctx, "x-oss-object-acl")?;
    let done = st
        .kura
        .complete_upload(
            bucket,
            key,
            upload_id,
            selection,
            CompleteOptions {
                condition: forbid_condition(ctx),
                acl,
                expected_checksum: None,
            },
        )
        .await?;
    let url = url_encoding_for(ctx, std::iter::once(key));
    let host = if host.is_empty() { "localhost" } else { host };
    // With encoding-type=url the whole Location is URL-encoded once (the SDKs decode it);
    // without, the key is path-encoded so the URL is usable as it stands.
    let location = if url {
        encode_component(&format!("http://{host}/{bucket}/{key}"))
    } else {
        format!("http://{host}/{bucket}/{}", kura_proto::encode::encode_path(key))
    };
    let mut r = render::xml(&CompleteMultipartUploadResult {
        encoding_type: url.then(|| "url".into()),
        location,
        bucket: bucket.into(),
        key: enc(key, url),
        etag: etag::quoted(&done.etag),
    });
    set(&mut r, "etag", etag::quoted(&done.etag));
    set(&mut r, "x-oss-hash-crc64ecma", done.crc64.to_string());
    Ok(r)
}

/// The part list a Complete asks for: every part (`x-oss-complete-all: yes`, no body), or the
/// listed ones with normalized ETags.
fn complete_selection(ctx: &Ctx, raw: &[u8], complete_all: bool) -> Result<PartSelection> {
    if complete_all {
        if !raw.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::msg(
                Code::InvalidArgument,
                "Should not speficy both complete all header and http body.",
            ));
        }
        return Ok(PartSelection::All);
    }
    check_xml_md5(ctx, raw)?;
    crate::exec::complete_parts(raw)
}

async fn list_parts(st: &State, ctx: &Ctx, bucket: &str, key: &str, upload_id: &str) -> Result<Resp> {
    let url = url_encoding_for(ctx, std::iter::once(key));
    let page = crate::exec::list_parts(st, ctx, bucket, key, upload_id).await?;
    let (marker, max, l) = (page.marker, page.max, page.listing);
    Ok(render::xml(&ListPartsResult {
        encoding_type: url.then(|| "url".into()),
        bucket: bucket.into(),
        key: enc(key, url),
        upload_id: upload_id.into(),
        storage_class: class_name(&l.upload.storage_class),
        part_number_marker: marker,
        next_part_number_marker: l.next_marker,
        max_parts: max as u32,
        is_truncated: l.truncated,
        parts: l
            .parts
            .iter()
            .map(|(n, p)| PartEntry {
                part_number: *n,
                last_modified: iso8601(p.last_modified_ms),
                etag: etag::quoted(&p.etag),
                hash_crc64ecma: p.crc64.to_string(),
                size: p.size,
            })
            .collect(),
    }))
}

async fn list_uploads(st: &State, ctx: &Ctx, bucket: &str) -> Result<Resp> {
    let page = crate::exec::list_uploads(st, ctx, bucket).await?;
    let url = url_encoding(ctx) || page.needs_encoding;
    let (prefix, delimiter) = (page.prefix.as_str(), page.delimiter.as_str());
    let (key_marker, upload_id_marker, max) = (page.key_marker.as_str(), page.upload_id_marker.as_str(), page.max);
    let l = &page.listing;
    Ok(render::xml(&ListMultipartUploadsResult {
        encoding_type: url.then(|| "url".into()),
        bucket: bucket.into(),
        key_marker: enc(key_marker, url),
        upload_id_marker: upload_id_marker.into(),
        next_key_marker: enc(&l.next_key_marker, url),
        next_upload_id_marker: l.next_upload_id_marker.clone(),
        delimiter: enc(delimiter, url),
        prefix: enc(prefix, url),
        max_uploads: max as u32,
        is_truncated: l.truncated,
        uploads: l
            .uploads
            .iter()
            .map(|u| UploadEntry {
                key: enc(&u.key, url),
                upload_id: u.upload_id.clone(),
                storage_class: class_name(&u.storage_class),
                initiated: iso8601(u.initiated_ms),
            })
            .collect(),
        common_prefixes: l
            .common_prefixes
            .iter()
            .map(|p| CommonPrefix { prefix: enc(p, url) })
            .collect(),
    }))
}
