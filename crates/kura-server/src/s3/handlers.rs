//! The S3 operations: routing, headers to typed core calls, and S3's responses.

use kura_core::classes;
use kura_core::model::{Acl, BucketRecord, ObjectAcl, ObjectHeaders, ObjectRecord};
use kura_core::service::{check_key, check_part_number, check_s3_bucket_name, CompleteOptions, CopyOptions, MAX_LIST};
use kura_core::{BodyChecks, BodySource, Code, DeleteCondition, Error, Result, WriteCondition, WriteOptions};
use kura_proto::checksum::{self, Algorithm};
use kura_proto::encode::{decode_path, encode_component};
use kura_proto::s3xml::{self as x, NS};
use kura_proto::timefmt::{http_date, iso8601};
use kura_proto::xml::{from_request_xml, xml_safe_opt, CreateBucketConfiguration, Delete};

use crate::auth::chunked::AwsChunked;
use crate::auth::{Authenticated, Payload, Principal};
use crate::authz::readable_object;
use crate::common::{
    check_conditions, check_xml_md5, content_md5, copy_source_range, declared_len, expects_continue, is_true,
    parse_max, parse_range, stored_headers, xml_unsafe,
};
use crate::op::Operation;
use crate::request::{read_xml_body, Ctx, HyperBody};
use crate::response::{self as render, set, Resp};
use crate::State;

fn owner() -> x::Owner {
    x::Owner {
        id: "kura".into(),
        display_name: "kura".into(),
    }
}

/// The request body, plain or aws-chunked.
enum S3Body {
    Plain(HyperBody),
    Chunked(Box<AwsChunked<HyperBody>>),
}

impl BodySource for S3Body {
    async fn next_chunk(&mut self) -> Option<Result<bytes::Bytes>> {
        match self {
            S3Body::Plain(b) => b.next_chunk().await,
            S3Body::Chunked(b) => b.next_chunk().await,
        }
    }
    fn trailing_checksums(&self) -> Vec<(Algorithm, Vec<u8>)> {
        match self {
            S3Body::Plain(_) => Vec::new(),
            S3Body::Chunked(b) => b.trailing_checksums(),
        }
    }
}

fn xml<T: serde::Serialize>(root: &str, value: &T) -> Resp {
    let mut r = render::empty(200);
    *r.body_mut() = render::RespBody::Full(Some(bytes::Bytes::from(x::to_xml_root(root, value))));
    set(&mut r, "content-type", "application/xml");
    r
}

/// S3's ETag: the multipart form, or the lowercase MD5, quoted.
fn s3_etag(rec: &ObjectRecord) -> String {
    format!(
        "\"{}\"",
        rec.s3_etag.clone().unwrap_or_else(|| rec.etag.to_ascii_lowercase())
    )
}

fn s3_part_etag(etag: &str) -> String {
    format!("\"{}\"", etag.to_ascii_lowercase())
}

/// A stored (OSS) class name as S3 names it.
fn storage_class(c: &str) -> String {
    classes::StorageClass::of(c).s3_name().into()
}

/// `x-amz-storage-class`, checked (None: the bucket's class, or the source's on a copy).
fn s3_storage_class(ctx: &Ctx) -> Result<Option<classes::StorageClass>> {
    ctx.header("x-amz-storage-class").map(classes::s3_class).transpose()
}

fn canned_acl(ctx: &Ctx) -> Result<Option<Acl>> {
    match ctx.header("x-amz-acl") {
        None => Ok(None),
        Some(v) => Acl::parse(v.trim()).map(Some).ok_or_else(|| {
            Error::msg(
                Code::NotImplemented,
                format!("The canned ACL {v} is not supported; use private, public-read or public-read-write."),
            )
        }),
    }
}

/// The ACL a Put*Acl asks for: a canned `x-amz-acl`. Grant lists in the body are not
/// supported, and are refused rather than silently replaced by a default.
fn acl_from_request(canned: Option<Acl>, body: &[u8]) -> Result<Acl> {
    match canned {
        Some(a) if body.iter().all(u8::is_ascii_whitespace) => Ok(a),
        _ => Err(Error::msg(
            Code::NotImplemented,
            "Only canned ACLs (x-amz-acl: private, public-read, public-read-write) are supported, not grant lists.",
        )),
    }
}

fn object_headers(ctx: &Ctx) -> ObjectHeaders {
    let mut headers = crate::common::object_headers(ctx, "x-amz-meta-", "binary/octet-stream");
    // aws-chunked is transport framing, not the object's encoding; otherwise the value is
    // kept byte for byte.
    headers.content_encoding = headers
        .content_encoding
        .map(|v| {
            if v.split(',').any(|e| e.trim() == "aws-chunked") {
                v.split(',')
                    .map(str::trim)
                    .filter(|e| *e != "aws-chunked")
                    .collect::<Vec<_>>()
                    .join(",")
            } else {
                v
            }
        })
        .filter(|v| !v.is_empty());
    headers
}

/// The checks S3 asks of a body: signed payload hash, checksum headers and trailers.
fn body_checks(ctx: &Ctx, payload: &Payload) -> Result<BodyChecks> {
    let mut checks = BodyChecks {
        content_md5: content_md5(ctx)?,
        declared_len: declared_len(ctx, true),
        expect_continue: expects_continue(ctx),
        ..Default::default()
    };
    if let Payload::Sha256(h) = payload {
        checks.payload_sha256 = Some(h.clone());
    }
    for (name, value) in &ctx.headers {
        if let Some(a) = Algorithm::from_header(name) {
            let raw = checksum::from_base64(a, value)
                .ok_or_else(|| Error::msg(Code::InvalidRequest, format!("Value for {name} header is invalid.")))?;
            checks.expected.push((a, raw));
        }
    }
    if let Some(t) = ctx.header("x-amz-trailer") {
        for name in t.split(',').map(str::trim) {
            let a = Algorithm::from_header(name)
                .ok_or_else(|| Error::msg(Code::InvalidRequest, format!("The trailer {name} is not supported.")))?;
            checks.trailing.push(a);
        }
    }
    let declared = ctx
        .header("x-amz-sdk-checksum-algorithm")
        .or(ctx.header("x-amz-checksum-algorithm"));
    checks.store = match declared {
        Some(n) => Some(Algorithm::parse(n).ok_or_else(|| {
            Error::msg(
                Code::InvalidRequest,
                format!("Checksum algorithm {n} is not supported."),
            )
        })?),
        None => checks
            .expected
            .first()
            .map(|(a, _)| *a)
            .or(checks.trailing.first().copied()),
    };
    Ok(checks)
}

fn condition(ctx: &Ctx) -> Result<WriteCondition> {
    let forbid = match ctx.header("if-none-match") {
        None => false,
        Some(v) if v.trim() == "*" => true,
        Some(_) => {
            return Err(Error::msg(
                Code::NotImplemented,
                "If-None-Match on writes supports only *.",
            ))
        }
    };
    Ok(WriteCondition {
        forbid_overwrite: forbid,
        if_match: ctx.header("if-match").map(str::to_string),
    })
}

fn checksum_headers(r: &mut Resp, rec: &ObjectRecord) {
    if let Some(c) = &rec.checksum {
        set(r, c.algorithm.header(), c.rendered());
        set(
            r,
            "x-amz-checksum-type",
            if c.full_object { "FULL_OBJECT" } else { "COMPOSITE" },
        );
    }
}

/// Executes one classified, authorized operation and renders it in the S3 dialect.
pub async fn execute(
    st: &State,
    ctx: &Ctx,
    op: Operation,
    authn: &Authenticated,
    body: HyperBody,
    host: &str,
) -> Result<Resp> {
    use Operation::*;
    check_expected_owner(ctx)?;
    let (p, payload) = (&authn.principal, &authn.payload);
    let mut body = match payload {
        Payload::Chunked { signing, .. } => {
            let decoded = ctx
                .header("x-amz-decoded-content-length")
                .and_then(|v| v.trim().parse().ok());
            S3Body::Chunked(Box::new(AwsChunked::new(body, signing.clone(), decoded)))
        }
        _ => S3Body::Plain(body),
    };
    let k = &st.kura;
    let bucket = ctx.bucket();
    let key = ctx.key();
    if ctx.key.is_some() {
        check_key(key)?;
    }
    match op {
        ListBuckets => list_buckets(st, ctx).await,
        CreateBucket | PutBucketAcl => {
            let acl = canned_acl(ctx)?;
            // The optional CreateBucketConfiguration (LocationConstraint) is read and not kept.
            let raw = read_xml_body(&mut body, ctx).await?;
            if op == PutBucketAcl {
                let acl = acl_from_request(acl, &raw)?;
                k.set_bucket_acl(bucket, acl).await?;
                return Ok(render::empty(200));
            }
            if !raw.iter().all(u8::is_ascii_whitespace) {
                from_request_xml::<CreateBucketConfiguration>(&raw, "CreateBucketConfiguration")
                    .map_err(|_| Error::new(Code::MalformedXML))?;
            }
            check_s3_bucket_name(bucket)?;
            if k.bucket(bucket).await.is_ok() {
                return Err(Error::new(Code::BucketAlreadyOwnedByYou).with_bucket(bucket));
            }
            k.create_bucket(bucket, acl, None).await?;
            let mut r = render::empty(200);
            set(&mut r, "location", format!("/{bucket}"));
            Ok(r)
        }
        HeadBucket => {
            k.bucket(bucket).await?;
            let mut r = render::empty(200);
            set(&mut r, "x-amz-bucket-region", &k.config().region);
            Ok(r)
        }
        DeleteBucket => {
            k.delete_bucket(bucket).await?;
            Ok(render::empty(204))
        }
        GetBucketLocation => {
            k.bucket(bucket).await?;
            Ok(xml(
                "LocationConstraint",
                &x::LocationConstraint {
                    xmlns: NS,
                    location: k.config().region.clone(),
                },
            ))
        }
        GetBucketAcl => {
            let b = k.bucket(bucket).await?;
            Ok(xml("AccessControlPolicy", &acl_policy(b.acl)))
        }
        ListMultipartUploads => list_uploads(st, ctx, bucket).await,
        ListObjectVersions => list_versions(st, ctx, &k.bucket(bucket).await?).await,
        ListObjects => list_objects(st, ctx, &k.bucket(bucket).await?).await,
        DeleteObjects => delete_objects(st, ctx, bucket, body).await,
        GetObjectAcl => {
            let (b, rec) = k.head_object(bucket, key).await?;
            Ok(xml("AccessControlPolicy", &acl_policy(rec.acl.effective(b.acl))))
        }
        ListParts => list_parts(st, ctx, bucket, key, ctx.query_raw("uploadId").unwrap_or("")).await,
        GetObjectAttributes => attributes(st, ctx, bucket, key).await,
        GetObject | HeadObject => get_object(st, ctx, p, bucket, key).await,
        PutObjectAcl => {
            let raw = read_xml_body(&mut body, ctx).await?;
            let acl = ObjectAcl::Set(acl_from_request(canned_acl(ctx)?, &raw)?);
            k.set_object_acl(bucket, key, acl).await?;
            Ok(render::empty(200))
        }
        UploadPart | UploadPartCopy => {
            let part = check_part_number(ctx.query_raw("partNumber").unwrap_or(""))?;
            let upload_id = ctx.query_raw("uploadId").unwrap_or("");
            if op == UploadPartCopy {
                return upload_part_copy(st, ctx, bucket, key, upload_id, part).await;
            }
            let checks = body_checks(ctx, payload)?;
            let rec = k
                .upload_part(bucket, key, upload_id, part, &mut body, checks)
                .await
                .map_err(s3_digest)?;
            let mut r = render::empty(200);
            set(&mut r, "etag", s3_part_etag(&rec.etag));
            if let Some((a, v)) = &rec.checksum {
                set(&mut r, a.header(), v);
            }
            Ok(r)
        }
        CopyObject => copy_object(st, ctx, bucket, key).await,
        RestoreObject => {
            let mut body = body;
            match crate::exec::restore(st, ctx, &mut body, crate::op::Dialect::S3).await {
                Ok(done) => Ok(render::empty(if done.started { 202 } else { 200 })),
                // S3 refuses a restore of an object that is not archived this way.
                Err(e) if e.code == Code::OperationNotSupported => Err(Error::msg(
                    Code::InvalidObjectState,
                    "Restore is not allowed for the object's current storage class.",
                )),
                Err(e) => Err(e),
            }
        }
        CleanRestoredObject | GetBucketStat => Err(Error::new(Code::NotImplemented)),
        GetObjectTagging | PutObjectTagging | DeleteObjectTagging | GetBucketTagging | PutBucketTagging
        | DeleteBucketTagging => {
            let mut body = body;
            match crate::exec::tagging(st, ctx, op, &mut body).await? {
                Some(tags) if tags.is_empty() && op == GetBucketTagging => {
                    Err(Error::new(Code::NoSuchTagSet).with_bucket(bucket))
                }
                Some(tags) => Ok(xml("Tagging", &kura_proto::xml::Tagging::new(&tags, Some(NS)))),
                None if matches!(op, PutObjectTagging) => Ok(render::empty(200)),
                None => Ok(render::empty(204)),
            }
        }
        PutObject => {
            let opts = WriteOptions {
                headers: object_headers(ctx),
                acl: canned_acl(ctx)?.map(ObjectAcl::Set).unwrap_or_default(),
                storage_class: s3_storage_class(ctx)?.map_or_else(String::new, |c| c.as_str().into()),
                condition: condition(ctx)?,
                checks: body_checks(ctx, payload)?,
                tags: crate::common::header_tags(ctx, "x-amz-tagging")?,
                ..Default::default()
            };
            let rec = k.put_object(bucket, key, &mut body, opts).await.map_err(s3_digest)?;
            let mut r = render::empty(200);
            set(&mut r, "etag", s3_etag(&rec));
            checksum_headers(&mut r, &rec);
            Ok(r)
        }
        InitiateMultipartUpload => initiate(st, ctx, bucket, key).await,
        CompleteMultipartUpload => {
            let upload_id = ctx.query_raw("uploadId").unwrap_or("");
            complete(st, ctx, bucket, key, upload_id, body, host).await
        }
        AbortMultipartUpload => {
            k.abort_upload(bucket, key, ctx.query_raw("uploadId").unwrap_or(""))
                .await?;
            Ok(render::empty(204))
        }
        DeleteObject => {
            k.delete_object_if(bucket, key, delete_condition(ctx)?).await?;
            Ok(render::empty(204))
        }
        GetBucketInfo | GetObjectMeta | ListLiveChannels => Err(Error::new(Code::MethodNotAllowed)),
    }
}

/// `x-amz-expected-bucket-owner` (and the copy source's): every bucket here belongs to the one
/// owner, so any other account id is refused as S3 refuses it.
fn check_expected_owner(ctx: &Ctx) -> Result<()> {
    for name in ["x-amz-expected-bucket-owner", "x-amz-source-expected-bucket-owner"] {
        if ctx.header(name).is_some_and(|v| v.trim() != owner().id) {
            return Err(Error::new(Code::AccessDenied));
        }
    }
    Ok(())
}

/// ListBuckets, paged by `max-buckets` (1..10000) with an opaque continuation token (the
/// last name listed, hex), and filtered by `prefix`.
async fn list_buckets(st: &State, ctx: &Ctx) -> Result<Resp> {
    let prefix = ctx.query("prefix").unwrap_or("");
    let max = match ctx.query("max-buckets") {
        None => None,
        Some(v) => Some(
            v.parse::<usize>()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .ok_or_else(|| Error::invalid_argument("max-buckets must be between 1 and 10000.", "max-buckets", v))?,
        ),
    };
    let after = match ctx.query("continuation-token") {
        None => String::new(),
        Some(t) => hex::decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                Error::invalid_argument("The continuation token provided is incorrect", "continuation-token", t)
            })?,
    };
    let mut all: Vec<BucketRecord> = st
        .kura
        .list_buckets()
        .await?
        .into_iter()
        .filter(|b| b.name.starts_with(prefix) && b.name > after)
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let truncated = max.is_some_and(|m| all.len() > m);
    if let Some(m) = max {
        all.truncate(m);
    }
    Ok(xml(
        "ListAllMyBucketsResult",
        &x::ListAllMyBucketsResult {
            xmlns: NS,
            owner: owner(),
            buckets: x::Buckets {
                buckets: all
                    .iter()
                    .map(|b| x::BucketEntry {
                        name: b.name.clone(),
                        creation_date: iso8601(b.created_ms),
                    })
                    .collect(),
            },
            continuation_token: truncated
                .then(|| all.last().map(|b| hex::encode(b.name.as_bytes())))
                .flatten(),
            prefix: ctx.query_raw("prefix").map(str::to_string),
        },
    ))
}

/// A canned ACL as S3 lists it: the AllUsers grants first, the owner's FULL_CONTROL last.
fn acl_policy(acl: Acl) -> x::AccessControlPolicy {
    let xsi = "http://www.w3.org/2001/XMLSchema-instance";
    let all_users = |perm: &str| x::Grant {
        grantee: x::Grantee {
            xmlns_xsi: xsi,
            kind: "Group",
            id: None,
            display_name: None,
            uri: Some("http://acs.amazonaws.com/groups/global/AllUsers".into()),
        },
        permission: perm.into(),
    };
    let mut grants = match acl {
        Acl::Private => vec![],
        Acl::PublicRead => vec![all_users("READ")],
        Acl::PublicReadWrite => vec![all_users("READ"), all_users("WRITE")],
    };
    grants.push(x::Grant {
        grantee: x::Grantee {
            xmlns_xsi: xsi,
            kind: "CanonicalUser",
            id: Some("kura".into()),
            display_name: Some("kura".into()),
            uri: None,
        },
        permission: "FULL_CONTROL".into(),
    });
    x::AccessControlPolicy {
        xmlns: NS,
        owner: owner(),
        access_control_list: x::AccessControlList { grants },
    }
}

fn url_enc(ctx: &Ctx) -> bool {
    ctx.query("encoding-type") == Some("url")
}

fn enc(s: &str, url: bool) -> String {
    if url {
        encode_component(s)
    } else {
        s.to_string()
    }
}

fn entry(key: &str, rec: &ObjectRecord, url: bool, with_owner: bool) -> x::ObjectEntry {
    x::ObjectEntry {
        key: enc(key, url),
        last_modified: iso8601(rec.last_modified_ms),
        etag: s3_etag(rec),
        size: rec.size,
        storage_class: storage_class(&rec.storage_class),
        owner: with_owner.then(owner),
        checksum_algorithm: rec.checksum.as_ref().map(|c| c.algorithm.name().to_string()),
    }
}

async fn list_objects(st: &State, ctx: &Ctx, b: &BucketRecord) -> Result<Resp> {
    let page = crate::exec::list_objects(st, ctx, &b.name, MAX_LIST).await?;
    let url = url_enc(ctx);
    // Names that cannot travel in XML force URL-encoding of everything (said in EncodingType);
    // asked for, it follows S3's rules (prefix only in V2, never the delimiter).
    let forced = !url && page.needs_encoding;
    let url = url || forced;
    let (prefix, delimiter, max, v2) = (page.prefix.as_str(), page.delimiter.as_str(), page.max, page.v2);
    let (after, l) = (page.after.as_str(), &page.listing);
    let with_owner = !v2 || page.fetch_owner;
    let contents: Vec<x::ObjectEntry> = l.objects.iter().map(|(k, r)| entry(k, r, url, with_owner)).collect();
    let common_prefixes: Vec<x::CommonPrefix> = l
        .common_prefixes
        .iter()
        .map(|p| x::CommonPrefix { prefix: enc(p, url) })
        .collect();
    let key_count = (contents.len() + common_prefixes.len()) as u32;
    let next = l.next_marker.clone();
    Ok(xml(
        "ListBucketResult",
        &x::ListBucketResult {
            xmlns: NS,
            name: b.name.clone(),
            // S3 URL-encodes the prefix of a V2 listing only; the delimiter never.
            prefix: enc(prefix, url && (v2 || forced)),
            marker: (!v2).then(|| enc(after, url)),
            next_marker: if v2 || delimiter.is_empty() {
                None
            } else {
                next.as_deref().map(|m| enc(m, url))
            },
            continuation_token: if v2 { page.token.clone() } else { None },
            next_continuation_token: if v2 {
                next.as_deref().map(|m| hex::encode(m.as_bytes()))
            } else {
                None
            },
            start_after: if v2 {
                page.start_after.as_deref().map(|s| enc(s, url))
            } else {
                None
            },
            key_count: v2.then_some(key_count),
            max_keys: max as u32,
            delimiter: (!delimiter.is_empty()).then(|| enc(delimiter, forced)),
            encoding_type: url.then(|| "url".into()),
            is_truncated: l.truncated,
            contents,
            common_prefixes,
        },
    ))
}

/// ListObjectVersions of an unversioned bucket: every object is its one `null` version.
async fn list_versions(st: &State, ctx: &Ctx, b: &BucketRecord) -> Result<Resp> {
    let url = url_enc(ctx);
    let prefix = ctx.query("prefix").unwrap_or("");
    let delimiter = ctx.query("delimiter").unwrap_or("");
    let key_marker = ctx.query("key-marker").unwrap_or("");
    let max = parse_max(ctx, "max-keys", MAX_LIST)?;
    let l = st
        .kura
        .list_objects(&b.name, prefix, delimiter, key_marker, max)
        .await?;
    let url = url || {
        let names = l.objects.iter().map(|(k, _)| k.as_str());
        let prefixes = l.common_prefixes.iter().map(String::as_str);
        let mut all = names.chain(prefixes).chain([prefix, delimiter, key_marker]);
        all.any(xml_unsafe)
    };
    Ok(xml(
        "ListVersionsResult",
        &x::ListVersionsResult {
            xmlns: NS,
            name: b.name.clone(),
            prefix: enc(prefix, url),
            key_marker: enc(key_marker, url),
            version_id_marker: ctx.query("version-id-marker").unwrap_or("").to_string(),
            next_key_marker: l.next_marker.as_deref().map(|m| enc(m, url)),
            next_version_id_marker: l.next_marker.as_ref().map(|_| "null".to_string()),
            max_keys: max as u32,
            delimiter: (!delimiter.is_empty()).then(|| enc(delimiter, url)),
            encoding_type: url.then(|| "url".into()),
            is_truncated: l.truncated,
            versions: l
                .objects
                .iter()
                .map(|(k, r)| x::VersionEntry {
                    key: enc(k, url),
                    version_id: "null".into(),
                    is_latest: true,
                    last_modified: iso8601(r.last_modified_ms),
                    etag: s3_etag(r),
                    size: r.size,
                    storage_class: storage_class(&r.storage_class),
                    owner: owner(),
                })
                .collect(),
            common_prefixes: l
                .common_prefixes
                .iter()
                .map(|p| x::CommonPrefix { prefix: enc(p, url) })
                .collect(),
        },
    ))
}

async fn delete_objects(st: &State, ctx: &Ctx, bucket: &str, mut body: S3Body) -> Result<Resp> {
    let raw = read_xml_body(&mut body, ctx).await?;
    check_xml_md5(ctx, &raw).map_err(s3_digest)?;
    for (name, value) in &ctx.headers {
        if let Some(a) = Algorithm::from_header(name) {
            if checksum::from_base64(a, value).as_deref() != Some(checksum::digest(a, &raw).as_slice()) {
                return Err(Error::new(Code::BadDigest));
            }
        }
    }
    let req: Delete = from_request_xml(&raw, "Delete").map_err(|_| Error::new(Code::MalformedXML))?;
    if req.objects.is_empty() || req.objects.len() > 1000 {
        return Err(Error::msg(
            Code::MalformedXML,
            "A Delete request lists 1 to 1000 objects.",
        ));
    }
    st.kura.bucket(bucket).await?;
    let quiet = is_true(req.quiet.as_deref());
    let (mut deleted, mut errors) = (Vec::new(), Vec::new());
    for o in &req.objects {
        let result = match check_key(&o.key).and_then(|()| entry_delete_condition(o)) {
            Ok(condition) => st.kura.delete_object_if(bucket, &o.key, condition).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) if !quiet => deleted.push(x::DeletedEntry { key: o.key.clone() }),
            Ok(()) => {}
            Err(e) => errors.push(x::DeleteErrorEntry {
                key: o.key.clone(),
                code: e.code.as_str().into(),
                message: e.message,
            }),
        }
    }
    Ok(xml(
        "DeleteResult",
        &x::DeleteResult {
            xmlns: NS,
            deleted,
            errors,
        },
    ))
}

/// A DeleteObject's conditions: `If-Match`, `x-amz-if-match-last-modified-time` (an HTTP
/// date), `x-amz-if-match-size`.
fn delete_condition(ctx: &Ctx) -> Result<DeleteCondition> {
    let bad = |name: &str, v: &str| Error::invalid_argument(format!("{name} is not valid."), name, v);
    Ok(DeleteCondition {
        if_match: ctx.header("if-match").map(str::to_string),
        last_modified_secs: match ctx.header("x-amz-if-match-last-modified-time") {
            None => None,
            Some(v) => Some(
                kura_proto::timefmt::parse_http_date(v).ok_or_else(|| bad("x-amz-if-match-last-modified-time", v))?,
            ),
        },
        size: match ctx.header("x-amz-if-match-size") {
            None => None,
            Some(v) => Some(v.trim().parse().map_err(|_| bad("x-amz-if-match-size", v))?),
        },
    })
}

/// The same conditions for one object of a DeleteObjects body (`LastModifiedTime` in ISO 8601).
fn entry_delete_condition(o: &kura_proto::xml::DeleteObjectEntry) -> Result<DeleteCondition> {
    let bad = |name: &str, v: &str| Error::invalid_argument(format!("{name} is not valid."), name, v);
    Ok(DeleteCondition {
        if_match: o.etag.clone(),
        last_modified_secs: match &o.last_modified_time {
            None => None,
            Some(v) => Some(
                time::OffsetDateTime::parse(v.trim(), &time::format_description::well_known::Rfc3339)
                    .map(|t| t.unix_timestamp().max(0) as u64)
                    .map_err(|_| bad("LastModifiedTime", v))?,
            ),
        },
        size: match &o.size {
            None => None,
            Some(v) => Some(v.trim().parse().map_err(|_| bad("Size", v))?),
        },
    })
}

/// Core reports a Content-MD5 mismatch as InvalidDigest; S3 calls it BadDigest.
fn s3_digest(e: Error) -> Error {
    if e.code == Code::InvalidDigest {
        Error::msg(
            Code::BadDigest,
            "The Content-MD5 you specified did not match what we received.",
        )
    } else {
        e
    }
}

async fn initiate(st: &State, ctx: &Ctx, bucket: &str, key: &str) -> Result<Resp> {
    let k = &st.kura;
    let algorithm = match ctx.header("x-amz-checksum-algorithm") {
        None => None,
        Some(n) => Some(Algorithm::parse(n).ok_or_else(|| {
            Error::msg(
                Code::InvalidRequest,
                format!("Checksum algorithm {n} is not supported."),
            )
        })?),
    };
    let full_object = match ctx.header("x-amz-checksum-type") {
        Some(t) if t.eq_ignore_ascii_case("FULL_OBJECT") => true,
        Some(t) if t.eq_ignore_ascii_case("COMPOSITE") => false,
        Some(t) => {
            return Err(Error::msg(
                Code::InvalidRequest,
                format!("Checksum type {t} is not valid."),
            ))
        }
        // S3's default: COMPOSITE, except the CRC64NVME is always FULL_OBJECT.
        None => algorithm == Some(Algorithm::Crc64Nvme),
    };
    if full_object && algorithm.is_some_and(|a| !a.combinable()) {
        return Err(Error::msg(
            Code::InvalidRequest,
            "FULL_OBJECT checksums need a CRC algorithm.",
        ));
    }
    let opts = WriteOptions {
        headers: object_headers(ctx),
        acl: canned_acl(ctx)?.map(ObjectAcl::Set).unwrap_or_default(),
        storage_class: s3_storage_class(ctx)?.map_or_else(String::new, |c| c.as_str().into()),
        multipart_checksum: algorithm.map(|a| (a, full_object)),
        tags: crate::common::header_tags(ctx, "x-amz-tagging")?,
        ..Default::default()
    };
    let id = k.initiate_upload(bucket, key, opts).await?;
    let mut r = xml(
        "InitiateMultipartUploadResult",
        &x::InitiateMultipartUploadResult {
            xmlns: NS,
            bucket: bucket.into(),
            key: kura_proto::xml::xml_text(key),
            upload_id: id,
        },
    );
    if let Some(a) = algorithm {
        set(&mut r, "x-amz-checksum-algorithm", a.name());
        set(
            &mut r,
            "x-amz-checksum-type",
            if full_object { "FULL_OBJECT" } else { "COMPOSITE" },
        );
    }
    Ok(r)
}

/// The byte range of part `n` (1-based) of an object: its n-th extent.
fn part_range(rec: &ObjectRecord, n: u32) -> Result<(u64, u64)> {
    let mut offset = 0;
    for (i, e) in rec.extents.iter().enumerate() {
        if i as u32 + 1 == n {
            return Ok((offset, offset + e.len));
        }
        offset += e.len;
    }
    if n == 1 && rec.extents.is_empty() {
        return Ok((0, 0));
    }
    Err(Error::new(Code::InvalidPartNumber))
}

async fn get_object(st: &State, ctx: &Ctx, p: &Principal, bucket: &str, key: &str) -> Result<Resp> {
    let (_, rec) = readable_object(&st.kura, p, bucket, key).await?;
    check_conditions(ctx, &rec, "", false)?;
    let part = match ctx.query("partNumber") {
        Some(n) => Some(check_part_number(n)?),
        None => None,
    };
    let range = match (part, ctx.header("range")) {
        (Some(n), _) => Some(part_range(&rec, n)?),
        (None, Some(v)) => parse_range(v, rec.size, true)?,
        (None, None) => None,
    };
    let (start, end) = range.unwrap_or((0, rec.size));
    let mut r = render::empty(200);
    if ctx.method != "HEAD" {
        // An archived object's bytes wait for a restore (HEAD shows its state).
        classes::check_readable(&rec, kura_proto::timefmt::now_millis())?;
        *r.body_mut() = render::RespBody::Stream(st.kura.read_object(&rec, start, end));
    }
    if let Some(restore) = classes::restore_header(&rec, kura_proto::timefmt::now_millis()) {
        set(&mut r, "x-amz-restore", restore);
    }
    // A part of a multipart object (even a one-part one) is a partial answer with the part
    // count; partNumber=1 of a plain object is the whole object.
    let multipart = rec.s3_etag.is_some();
    if let Some((s, e)) = range {
        if part.is_none() || multipart {
            *r.status_mut() = http::StatusCode::PARTIAL_CONTENT;
            set(
                &mut r,
                "content-range",
                format!("bytes {}-{}/{}", s, e.saturating_sub(1), rec.size),
            );
        }
    }
    if part.is_some() && multipart {
        set(&mut r, "x-amz-mp-parts-count", rec.extents.len().to_string());
    }
    set(&mut r, "content-length", (end - start).to_string());
    set(&mut r, "accept-ranges", "bytes");
    set(&mut r, "etag", s3_etag(&rec));
    set(&mut r, "last-modified", http_date(rec.last_modified_ms));
    if classes::StorageClass::of(&rec.storage_class) != classes::StorageClass::Standard {
        set(&mut r, "x-amz-storage-class", storage_class(&rec.storage_class));
    }
    if !rec.tags.is_empty() {
        set(&mut r, "x-amz-tagging-count", rec.tags.len().to_string());
    }
    stored_headers(&mut r, &rec.headers, ctx, "x-amz-meta-");
    // The object's checksum describes the whole object: only sent for a whole-object read.
    let checksum_mode = ctx
        .header("x-amz-checksum-mode")
        .is_some_and(|v| v.eq_ignore_ascii_case("ENABLED"));
    if checksum_mode && range.is_none() {
        checksum_headers(&mut r, &rec);
    }
    // One part of a COMPOSITE object: that part's own checksum.
    if let (true, Some(n), Some(c)) = (checksum_mode, part, rec.checksum.as_ref()) {
        let part_checksum = rec.extents.get(n as usize - 1).and_then(|e| e.checksum.as_ref());
        if let (false, Some(v)) = (c.full_object, part_checksum) {
            set(&mut r, c.algorithm.header(), v);
            set(&mut r, "x-amz-checksum-type", "COMPOSITE");
        }
    }
    Ok(r)
}

async fn attributes(st: &State, ctx: &Ctx, bucket: &str, key: &str) -> Result<Resp> {
    let (_, rec) = st.kura.head_object(bucket, key).await?;
    let wanted: Vec<String> = ctx
        .header("x-amz-object-attributes")
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let has = |n: &str| wanted.iter().any(|w| w == n);
    let mut r = xml(
        "GetObjectAttributesResponse",
        &x::GetObjectAttributesResponse {
            xmlns: NS,
            etag: has("etag").then(|| s3_etag(&rec).trim_matches('"').to_string()),
            checksum: if has("checksum") {
                rec.checksum.as_ref().map(|c| x::AttributesChecksum {
                    checksums: x::Checksums::one(c.algorithm, c.rendered()),
                    checksum_type: if c.full_object {
                        "FULL_OBJECT".into()
                    } else {
                        "COMPOSITE".into()
                    },
                })
            } else {
                None
            },
            object_parts: if has("objectparts") && rec.s3_etag.is_some() {
                Some(object_parts(ctx, &rec)?)
            } else {
                None
            },
            storage_class: has("storageclass").then(|| storage_class(&rec.storage_class)),
            object_size: has("objectsize").then_some(rec.size),
        },
    );
    set(&mut r, "last-modified", http_date(rec.last_modified_ms));
    Ok(r)
}

/// GetObjectAttributes' parts of a multipart object, paged by `x-amz-max-parts` and
/// `x-amz-part-number-marker`; parts are numbered 1..N in object order, each with its
/// checksum when the upload had an algorithm.
fn object_parts(ctx: &Ctx, rec: &ObjectRecord) -> Result<x::ObjectParts> {
    let number = |name: &str, default: u32| -> Result<u32> {
        match ctx.header(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u32>()
                .map_err(|_| Error::invalid_argument(format!("{name} must be a non-negative integer."), name, v)),
        }
    };
    let max = number("x-amz-max-parts", MAX_LIST as u32)?.min(MAX_LIST as u32);
    let marker = number("x-amz-part-number-marker", 0)?;
    let algorithm = rec.checksum.as_ref().map(|c| c.algorithm);
    let parts: Vec<x::ObjectPart> = rec
        .extents
        .iter()
        .enumerate()
        .map(|(i, e)| (i as u32 + 1, e))
        .filter(|(n, _)| *n > marker)
        .take(max as usize)
        .map(|(n, e)| x::ObjectPart {
            part_number: n,
            size: e.len,
            checksums: match (algorithm, &e.checksum) {
                (Some(a), Some(v)) => x::Checksums::one(a, v.clone()),
                _ => x::Checksums::default(),
            },
        })
        .collect();
    let last = parts.last().map_or(marker, |p| p.part_number);
    Ok(x::ObjectParts {
        is_truncated: (last as usize) < rec.extents.len(),
        max_parts: max,
        next_part_number_marker: last,
        part_number_marker: marker,
        parts,
        total_parts_count: rec.extents.len() as u32,
    })
}

/// `x-amz-copy-source: [/]bucket/key[?versionId=null]`, URL-encoded.
fn copy_source(ctx: &Ctx) -> Result<(String, String)> {
    let raw = ctx.header("x-amz-copy-source").unwrap_or("");
    let bad = || Error::invalid_argument("Invalid copy source.", "x-amz-copy-source", raw);
    let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
    if !query.is_empty() && query != "versionId=null" {
        return Err(Error::msg(
            Code::NotImplemented,
            "Copying a specific version is not supported.",
        ));
    }
    let path = decode_path(path.strip_prefix('/').unwrap_or(path)).ok_or_else(bad)?;
    let (b, k) = path.split_once('/').ok_or_else(bad)?;
    check_key(k)?;
    Ok((b.to_string(), k.to_string()))
}

async fn copy_object(st: &State, ctx: &Ctx, bucket: &str, key: &str) -> Result<Resp> {
    let (sb, sk) = copy_source(ctx)?;
    let (_, src) = st.kura.head_object(&sb, &sk).await?;
    check_conditions(ctx, &src, "x-amz-copy-source-", true)?;
    let replace = ctx
        .header("x-amz-metadata-directive")
        .is_some_and(|v| v.eq_ignore_ascii_case("REPLACE"));
    let class_change = s3_storage_class(ctx)?.is_some_and(|c| c != classes::StorageClass::of(&src.storage_class));
    if !replace && !class_change && sb == bucket && sk == key {
        return Err(Error::msg(
            Code::InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    let opts = CopyOptions {
        headers: replace.then(|| object_headers(ctx)),
        acl: canned_acl(ctx)?.map(ObjectAcl::Set).unwrap_or_default(),
        condition: condition(ctx)?,
        tags: crate::common::copy_tags(ctx, "x-amz-tagging-directive", "x-amz-tagging")?,
        storage_class: s3_storage_class(ctx)?,
    };
    let rec = st.kura.copy_object(&src, bucket, key, opts).await?;
    Ok(xml(
        "CopyObjectResult",
        &x::CopyResult {
            xmlns: NS,
            last_modified: iso8601(rec.last_modified_ms),
            etag: s3_etag(&rec),
            checksums: x::Checksums::default(),
        },
    ))
}

async fn upload_part_copy(st: &State, ctx: &Ctx, bucket: &str, key: &str, upload_id: &str, part: u32) -> Result<Resp> {
    let (sb, sk) = copy_source(ctx)?;
    let (_, src) = st.kura.head_object(&sb, &sk).await?;
    check_conditions(ctx, &src, "x-amz-copy-source-", true)?;
    let (start, end) = copy_source_range(ctx, "x-amz-copy-source-range", src.size)?;
    let rec = st
        .kura
        .upload_part_copy(bucket, key, upload_id, part, &src, start..end)
        .await?;
    Ok(xml(
        "CopyPartResult",
        &x::CopyResult {
            xmlns: NS,
            last_modified: iso8601(rec.last_modified_ms),
            etag: s3_part_etag(&rec.etag),
            checksums: x::Checksums::default(),
        },
    ))
}

async fn complete(
    st: &State,
    ctx: &Ctx,
    bucket: &str,
    key: &str,
    upload_id: &str,
    mut body: S3Body,
    host: &str,
) -> Result<Resp> {
    let raw = read_xml_body(&mut body, ctx).await?;
    let parsed = crate::exec::complete_parts(&raw);
    let selection = match parsed {
        Ok(s) => s,
        Err(e) => {
            return Err(st
                .kura
                .upload_or_completed(bucket, key, upload_id)
                .await
                .err()
                .unwrap_or(e))
        }
    };
    // The object checksum the client expects, checked in the transaction before the commit.
    let mut expected = None;
    for (name, value) in &ctx.headers {
        if let Some(a) = Algorithm::from_header(name) {
            // A COMPOSITE value comes as `base64-N`; the part count is checked with the parts.
            let b64 = value.trim().rsplit_once('-').map_or(value.trim(), |(v, _)| v);
            let raw = checksum::from_base64(a, b64)
                .ok_or_else(|| Error::msg(Code::InvalidRequest, format!("Value for {name} header is invalid.")))?;
            expected = Some((a, raw));
        }
    }
    let done = st
        .kura
        .complete_upload(
            bucket,
            key,
            upload_id,
            selection,
            CompleteOptions {
                condition: condition(ctx)?,
                acl: None,
                expected_checksum: expected,
            },
        )
        .await?;
    let (_, rec) = st.kura.head_object(bucket, key).await?;
    let etag = rec.s3_etag.clone().unwrap_or_else(|| done.etag.to_ascii_lowercase());
    let mut r = xml(
        "CompleteMultipartUploadResult",
        &x::CompleteMultipartUploadResult {
            xmlns: NS,
            location: format!(
                "http://{}/{}/{}",
                if host.is_empty() { "localhost" } else { host },
                bucket,
                kura_proto::encode::encode_path(key)
            ),
            bucket: bucket.into(),
            key: kura_proto::xml::xml_text(key),
            etag: format!("\"{etag}\""),
            checksums: rec
                .checksum
                .as_ref()
                .map(|c| x::Checksums::one(c.algorithm, c.rendered()))
                .unwrap_or_default(),
            checksum_type: rec.checksum.as_ref().map(|c| {
                if c.full_object {
                    "FULL_OBJECT".into()
                } else {
                    "COMPOSITE".into()
                }
            }),
        },
    );
    set(&mut r, "etag", format!("\"{etag}\""));
    Ok(r)
}

async fn list_parts(st: &State, ctx: &Ctx, bucket: &str, key: &str, upload_id: &str) -> Result<Resp> {
    let page = crate::exec::list_parts(st, ctx, bucket, key, upload_id).await?;
    let (marker, max, l) = (page.marker, page.max, page.listing);
    let algorithm = l.upload.checksum.map(|(a, _)| a);
    Ok(xml(
        "ListPartsResult",
        &x::ListPartsResult {
            xmlns: NS,
            bucket: bucket.into(),
            key: kura_proto::xml::xml_text(key),
            upload_id: upload_id.into(),
            part_number_marker: marker,
            next_part_number_marker: l.next_marker,
            max_parts: max as u32,
            is_truncated: l.truncated,
            parts: l
                .parts
                .iter()
                .map(|(n, p)| x::PartEntry {
                    part_number: *n,
                    last_modified: iso8601(p.last_modified_ms),
                    etag: s3_part_etag(&p.etag),
                    size: p.size,
                    checksums: p
                        .checksum
                        .as_ref()
                        .map(|(a, v)| x::Checksums::one(*a, v.clone()))
                        .unwrap_or_default(),
                })
                .collect(),
            initiator: owner(),
            owner: owner(),
            storage_class: storage_class(&l.upload.storage_class),
            checksum_algorithm: algorithm.map(|a| a.name().to_string()),
            checksum_type: l
                .upload
                .checksum
                .map(|(_, full)| if full { "FULL_OBJECT".into() } else { "COMPOSITE".into() }),
        },
    ))
}

async fn list_uploads(st: &State, ctx: &Ctx, bucket: &str) -> Result<Resp> {
    let page = crate::exec::list_uploads(st, ctx, bucket).await?;
    let url = url_enc(ctx) || page.needs_encoding;
    let (prefix, delimiter) = (page.prefix.as_str(), page.delimiter.as_str());
    let (key_marker, upload_id_marker, max) = (page.key_marker.as_str(), page.upload_id_marker.as_str(), page.max);
    let l = &page.listing;
    Ok(xml(
        "ListMultipartUploadsResult",
        &x::ListMultipartUploadsResult {
            xmlns: NS,
            bucket: bucket.into(),
            key_marker: enc(key_marker, url),
            upload_id_marker: upload_id_marker.into(),
            next_key_marker: enc(&l.next_key_marker, url),
            next_upload_id_marker: l.next_upload_id_marker.clone(),
            delimiter: (!delimiter.is_empty()).then(|| enc(delimiter, url)),
            prefix: enc(prefix, url),
            max_uploads: max as u32,
            is_truncated: l.truncated,
            encoding_type: url.then(|| "url".into()),
            uploads: l
                .uploads
                .iter()
                .map(|u| x::UploadEntry {
                    key: enc(&u.key, url),
                    upload_id: u.upload_id.clone(),
                    initiator: owner(),
                    owner: owner(),
                    storage_class: storage_class(&u.storage_class),
                    initiated: iso8601(u.initiated_ms),
                    checksum_algorithm: u.checksum.map(|(a, _)| a.name().to_string()),
                })
                .collect(),
            common_prefixes: l
                .common_prefixes
                .iter()
                .map(|p| x::CommonPrefix { prefix: enc(p, url) })
                .collect(),
        },
    ))
}

/// Renders an error in S3's form: S3 names for the few codes that differ, `x-amz-*` ids.
pub fn error(e: &Error, request_id: &str, ctx: Option<&Ctx>, is_head: bool) -> Resp {
    let (code, status, message) = match e.code {
        // If-None-Match: * on a write that found an object.
        Code::FileAlreadyExists => (
            "PreconditionFailed",
            412,
            "At least one of the pre-conditions you specified did not hold".to_string(),
        ),
        c => (c.as_str(), c.status(), kura_proto::xml::xml_text(&e.message)),
    };
    if e.code == Code::NotModified {
        let mut r = render::empty(304);
        if let Some((_, etag, modified)) = e.detail.as_ref().and_then(|d| d.not_modified.as_ref()) {
            set(&mut r, "etag", etag);
            set(&mut r, "last-modified", modified);
        }
        return r;
    }
    if is_head {
        return render::empty(status);
    }
    let d = e.detail();
    let body = x::ErrorBody {
        code: code.into(),
        message,
        bucket_name: xml_safe_opt(d.bucket.clone().or_else(|| {
            matches!(
                e.code,
                Code::NoSuchBucket | Code::BucketNotEmpty | Code::BucketAlreadyOwnedByYou
            )
            .then(|| ctx.and_then(|c| c.bucket.clone()))
            .flatten()
        })),
        key: d
            .key
            .clone()
            .or_else(|| {
                matches!(e.code, Code::NoSuchKey)
                    .then(|| ctx.and_then(|c| c.key.clone()))
                    .flatten()
            })
            .filter(|k| kura_proto::xml::xml_safe(k) && !k.chars().any(char::is_control)),
        upload_id: xml_safe_opt(d.upload_id.clone()),
        argument_name: xml_safe_opt(d.argument.as_ref().map(|a| a.0.clone())),
        argument_value: xml_safe_opt(d.argument.as_ref().map(|a| a.1.clone())),
        server_time: d.server_time.clone(),
        string_to_sign: xml_safe_opt(d.string_to_sign.clone()),
        access_key_id: xml_safe_opt(d.access_key_id.clone()),
        headers_not_signed: d.headers_not_signed.clone(),
        resource: kura_proto::xml::xml_text(&ctx.map(|c| c.path.clone()).unwrap_or_default()),
        request_id: request_id.into(),
        host_id: request_id.into(),
    };
    let mut r = xml("Error", &body);
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r
}
