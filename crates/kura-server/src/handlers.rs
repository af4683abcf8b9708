//! Routing and the operations: (method, bucket?, key?, sub-resources) picks one handler; each
//! handler turns headers into typed core calls and the result into an OSS response.

use std::sync::Arc;

use base64::Engine;
use kura_core::model::{Acl, BucketRecord, ObjectAcl, ObjectHeaders, ObjectRecord, PartSelection};
use kura_core::service::{check_bucket_name, check_key, check_part_number, MAX_LIST};
use kura_core::{BodyChecks, Code, Error, Kura, Result, WriteCondition, WriteOptions};
use kura_proto::encode::{decode_path, encode_component};
use kura_proto::etag;
use kura_proto::timefmt::{http_date, iso8601, parse_http_date};
use kura_proto::xml::*;

use crate::auth::{Authenticated, Credentials, Payload, Principal};
use crate::render::{self, set, set_dynamic, Resp};
use crate::request::{read_xml_body, Ctx, HyperBody};

pub struct State {
    pub kura: Arc<Kura>,
    pub creds: Credentials,
    /// Virtual-host addressing for `<bucket>.<domain>`.
    pub domain: Option<String>,
}

pub(crate) fn owner() -> Owner {
    Owner {
        id: "kura".into(),
        display_name: "kura".into(),
    }
}

pub(crate) fn deny() -> Error {
    Error::new(Code::AccessDenied)
}

pub(crate) fn require_root(p: &Principal) -> Result<()> {
    match p {
        Principal::Root => Ok(()),
        Principal::Anonymous => Err(deny()),
    }
}

/// `encoding-type=url` asks for keys and prefixes URL-encoded in listings.
pub(crate) fn url_encoding(ctx: &Ctx) -> bool {
    ctx.query("encoding-type") == Some("url")
}

/// Control characters cannot travel in XML 1.0 (not even as character references), yet OSS
/// keys may hold them. A response that must carry such a key is URL-encoded and says so with
/// `<EncodingType>url</EncodingType>`, which the SDKs honour, instead of being unparseable.
pub(crate) fn xml_unsafe(s: &str) -> bool {
    s.chars().any(|c| (c as u32) < 0x20 || c == '\u{7f}')
}

pub(crate) fn url_encoding_for<'a>(ctx: &Ctx, mut names: impl Iterator<Item = &'a str>) -> bool {
    url_encoding(ctx) || names.any(xml_unsafe)
}

pub(crate) fn enc(s: &str, url: bool) -> String {
    if url {
        encode_component(s)
    } else {
        s.to_string()
    }
}

pub(crate) fn parse_max(ctx: &Ctx, name: &str, default: usize) -> Result<usize> {
    match ctx.query(name) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 1 => Ok((n as usize).min(MAX_LIST)),
            Ok(0) => Ok(0),
            _ => Err(Error::invalid_argument(
                format!("{name} must be an integer between 0 and 1000."),
                name,
                v,
            )),
        },
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

pub(crate) fn content_md5(ctx: &Ctx) -> Result<Option<[u8; 16]>> {
    match ctx.header("content-md5") {
        None => Ok(None),
        Some(v) => base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .ok()
            .and_then(|d| <[u8; 16]>::try_from(d.as_slice()).ok())
            .map(Some)
            .ok_or_else(|| Error::new(Code::InvalidDigest)),
    }
}

pub(crate) fn check_xml_md5(ctx: &Ctx, body: &[u8]) -> Result<()> {
    use md5::{Digest, Md5};
    if let Some(expected) = content_md5(ctx)? {
        let got: [u8; 16] = Md5::digest(body).into();
        if got != expected {
            return Err(Error::new(Code::InvalidDigest));
        }
    }
    Ok(())
}

pub(crate) fn is_true(v: Option<&str>) -> bool {
    v.is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The headers stored with a new object or upload.
fn object_headers(ctx: &Ctx) -> ObjectHeaders {
    let opt = |n: &str| ctx.header(n).map(|s| s.to_string());
    let mut user_meta: Vec<(String, String)> = ctx
        .headers
        .iter()
        .filter_map(|(n, v)| n.strip_prefix("x-oss-meta-").map(|m| (m.to_string(), v.clone())))
        .collect();
    user_meta.sort();
    ObjectHeaders {
        content_type: ctx
            .header("content-type")
            .filter(|v| !v.is_empty())
            .unwrap_or("application/octet-stream")
            .to_string(),
        cache_control: opt("cache-control"),
        content_disposition: opt("content-disposition"),
        content_encoding: opt("content-encoding"),
        content_language: opt("content-language"),
        expires: opt("expires"),
        user_meta,
    }
}

fn write_options(ctx: &Ctx) -> Result<WriteOptions> {
    Ok(WriteOptions {
        headers: object_headers(ctx),
        acl: header_acl(ctx, "x-oss-object-acl")?.unwrap_or_default(),
        storage_class: ctx.header("x-oss-storage-class").unwrap_or("Standard").to_string(),
        condition: forbid_condition(ctx),
        checks: body_checks(ctx)?,
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

/// Sub-resources this server implements. Any other OSS sub-resource (tagging, cors, symlink,
/// append, lifecycle, ...) is refused with NotImplemented before anything is read or changed:
/// routing it to the plain object or bucket call would overwrite or delete data.
const SUPPORTED_SUB_RESOURCES: &[&str] = &[
    "acl",
    "uploads",
    "uploadId",
    "partNumber",
    "location",
    "bucketInfo",
    "delete",
    "objectMeta",
    "continuation-token",
    "security-token",
    "sequential",
    "response-content-type",
    "response-content-language",
    "response-expires",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
];

fn check_sub_resources(ctx: &Ctx) -> Result<()> {
    for (name, _) in &ctx.query {
        let known = kura_proto::sign::V1_SUB_RESOURCES.contains(&name.as_str()) || name == "x-oss-process";
        if known && !SUPPORTED_SUB_RESOURCES.contains(&name.as_str()) {
            return Err(Error::msg(
                Code::NotImplemented,
                format!("The {name} sub-resource is not supported by this server."),
            ));
        }
    }
    if ctx.header("x-oss-callback").is_some() {
        return Err(Error::msg(
            Code::NotImplemented,
            "Upload callbacks (x-oss-callback) are not supported by this server.",
        ));
    }
    Ok(())
}

pub async fn route(st: &State, ctx: &Ctx, authn: &Authenticated, body: HyperBody, host: &str) -> Result<Resp> {
    let principal = authn.principal.clone();
    check_sub_resources(ctx)?;
    let m = ctx.method.as_str();
    let Some(bucket) = ctx.bucket.as_deref() else {
        return match m {
            "GET" => {
                require_root(&principal)?;
                list_buckets(st, ctx, host).await
            }
            _ => Err(Error::new(Code::MethodNotAllowed)),
        };
    };
    match ctx.key.as_deref() {
        None => bucket_op(st, ctx, &principal, bucket, body, host).await,
        Some(key) => {
            check_key(key)?;
            object_op(st, ctx, &principal, bucket, key, body, host).await
        }
    }
}

async fn bucket_op(
    st: &State,
    ctx: &Ctx,
    p: &Principal,
    bucket: &str,
    mut body: HyperBody,
    host: &str,
) -> Result<Resp> {
    let k = &st.kura;
    match ctx.method.as_str() {
        "PUT" => {
            require_root(p)?;
            let acl =
                match ctx.header("x-oss-acl") {
                    None => None,
                    Some(v) => Some(Acl::parse(v.trim()).ok_or_else(|| {
                        Error::invalid_argument("no such bucket access control exists", "x-oss-acl", v)
                    })?),
                };
            // The optional body is a CreateBucketConfiguration (its storage class is not kept).
            // Anything else is refused: it may be an object upload aimed at the wrong address.
            let raw = read_xml_body(&mut body, ctx).await?;
            if !raw.iter().all(u8::is_ascii_whitespace) {
                from_request_xml::<CreateBucketConfiguration>(&raw, "CreateBucketConfiguration")
                    .map_err(|_| Error::new(Code::MalformedXML))?;
            }
            if ctx.has_query("acl") {
                let acl = acl.ok_or_else(|| Error::invalid_argument("x-oss-acl is required", "x-oss-acl", ""))?;
                k.set_bucket_acl(bucket, acl).await?;
                return Ok(render::empty(200));
            }
            check_bucket_name(bucket)?;
            k.create_bucket(bucket, acl).await?;
            let mut r = render::empty(200);
            set(&mut r, "location", format!("/{bucket}"));
            Ok(r)
        }
        "DELETE" => {
            require_root(p)?;
            k.delete_bucket(bucket).await?;
            Ok(render::empty(204))
        }
        "GET" => {
            if ctx.has_query("acl") {
                require_root(p)?;
                let b = k.bucket(bucket).await?;
                return Ok(render::xml(&AccessControlPolicy {
                    owner: owner(),
                    access_control_list: AccessControlList {
                        grant: b.acl.as_str().into(),
                    },
                }));
            }
            if ctx.has_query("location") {
                require_root(p)?;
                k.bucket(bucket).await?;
                return Ok(render::xml(&LocationConstraint {
                    location: format!("oss-{}", k.config().region),
                }));
            }
            if ctx.has_query("bucketInfo") {
                require_root(p)?;
                let b = k.bucket(bucket).await?;
                return Ok(render::xml(&bucket_info(st, &b, host)));
            }
            if ctx.has_query("uploads") {
                require_root(p)?;
                return list_uploads(st, ctx, bucket).await;
            }
            let b = k.bucket(bucket).await?;
            if *p == Principal::Anonymous && b.acl == Acl::Private {
                return Err(deny());
            }
            list_objects(st, ctx, bucket).await
        }
        "POST" if ctx.has_query("delete") => {
            require_root(p)?;
            delete_objects(st, ctx, bucket, body).await
        }
        _ => Err(Error::new(Code::MethodNotAllowed)),
    }
}

#[allow(clippy::too_many_arguments)]
async fn object_op(
    st: &State,
    ctx: &Ctx,
    p: &Principal,
    bucket: &str,
    key: &str,
    mut body: HyperBody,
    host: &str,
) -> Result<Resp> {
    let k = &st.kura;
    // Writes by anonymous users need a public-read-write bucket; reads are checked per object.
    let anonymous_write_ok = || async {
        match p {
            Principal::Root => Ok(()),
            Principal::Anonymous => {
                let b = k.bucket(bucket).await?;
                if b.acl == Acl::PublicReadWrite {
                    Ok(())
                } else {
                    Err(deny())
                }
            }
        }
    };
    match ctx.method.as_str() {
        "GET" | "HEAD" => {
            if ctx.has_query("acl") {
                require_root(p)?;
                let (_, rec) = k.head_object(bucket, key).await?;
                return Ok(render::xml(&AccessControlPolicy {
                    owner: owner(),
                    access_control_list: AccessControlList {
                        grant: rec.acl.as_str().into(),
                    },
                }));
            }
            if let Some(upload_id) = ctx.query_raw("uploadId") {
                require_root(p)?;
                return list_parts(st, ctx, bucket, key, upload_id).await;
            }
            get_object(st, ctx, p, bucket, key).await
        }
        "PUT" => {
            if ctx.has_query("acl") {
                require_root(p)?;
                let acl = header_acl(ctx, "x-oss-object-acl")?
                    .ok_or_else(|| Error::invalid_argument("x-oss-object-acl is required", "x-oss-object-acl", ""))?;
                k.set_object_acl(bucket, key, acl).await?;
                return Ok(render::empty(200));
            }
            if ctx.has_query("uploadId") || ctx.has_query("partNumber") {
                anonymous_write_ok().await?;
                let part = check_part_number(ctx.query_raw("partNumber").unwrap_or(""))?;
                let upload_id = ctx.query_raw("uploadId").unwrap_or("");
                if ctx.header("x-oss-copy-source").is_some() {
                    require_root(p)?;
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
                return Ok(r);
            }
            if ctx.header("x-oss-copy-source").is_some() {
                require_root(p)?;
                return copy_object(st, ctx, bucket, key).await;
            }
            anonymous_write_ok().await?;
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
        "POST" => {
            if ctx.has_query("uploads") {
                anonymous_write_ok().await?;
                let id = k.initiate_upload(bucket, key, write_options(ctx)?).await?;
                let url = url_encoding_for(ctx, std::iter::once(key));
                return Ok(render::xml(&InitiateMultipartUploadResult {
                    bucket: bucket.into(),
                    key: enc(key, url),
                    upload_id: id,
                    encoding_type: url.then(|| "url".into()),
                }));
            }
            if let Some(upload_id) = ctx.query_raw("uploadId") {
                anonymous_write_ok().await?;
                return complete_upload(st, ctx, bucket, key, upload_id, body, host).await;
            }
            Err(Error::new(Code::MethodNotAllowed))
        }
        "DELETE" => {
            anonymous_write_ok().await?;
            if let Some(upload_id) = ctx.query_raw("uploadId") {
                k.abort_upload(bucket, key, upload_id).await?;
                return Ok(render::empty(204));
            }
            k.delete_object(bucket, key).await?;
            Ok(render::empty(204))
        }
        _ => Err(Error::new(Code::MethodNotAllowed)),
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
            storage_class: b.storage_class.clone(),
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
    let mut all: Vec<BucketRecord> = st
        .kura
        .list_buckets()
        .await?
        .into_iter()
        .filter(|b| b.name.starts_with(prefix) && b.name.as_str() > marker)
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
                    storage_class: b.storage_class.clone(),
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
        storage_class: rec.storage_class.clone(),
        owner: with_owner.then(owner),
    }
}

async fn list_objects(st: &State, ctx: &Ctx, bucket: &str) -> Result<Resp> {
    let url = url_encoding(ctx);
    let prefix = ctx.query("prefix").unwrap_or("");
    let delimiter = ctx.query("delimiter").unwrap_or("");
    let max = parse_max(ctx, "max-keys", 100)?;
    let v2 = ctx.query("list-type") == Some("2");
    let (marker, token) = if v2 {
        let token = ctx.query("continuation-token");
        let after = match token {
            Some(t) => hex::decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    Error::invalid_argument("The continuation token is not valid.", "continuation-token", t)
                })?,
            None => ctx.query("start-after").unwrap_or("").to_string(),
        };
        (after, token)
    } else {
        (ctx.query("marker").unwrap_or("").to_string(), None)
    };
    let listing = st.kura.list_objects(bucket, prefix, delimiter, &marker, max).await?;
    let url = url || {
        let names = listing.objects.iter().map(|(k, _)| k.as_str());
        let prefixes = listing.common_prefixes.iter().map(String::as_str);
        url_encoding_for(ctx, names.chain(prefixes).chain([prefix, delimiter, marker.as_str()]))
    };
    let with_owner = !v2 || is_true(ctx.query("fetch-owner"));
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

/// Evaluates If-Match / If-None-Match / If-(Un)Modified-Since against an object. The
/// `prefix` is "" for GET and "x-oss-copy-source-" for copy sources.
pub(crate) fn check_conditions(ctx: &Ctx, rec: &ObjectRecord, prefix: &str, not_modified_is_error: bool) -> Result<()> {
    let h = |n: &str| ctx.header(&format!("{prefix}{n}"));
    let s3_etag = rec.s3_etag.as_deref().map(str::to_ascii_uppercase);
    let matches = |list: &str| {
        list.split(',').any(|e| {
            let e = etag::normalize(e);
            e == "*" || e == rec.etag || Some(&e) == s3_etag.as_ref()
        })
    };
    let modified = rec.last_modified_ms / 1000;
    if let Some(v) = h("if-match") {
        if !matches(v) {
            return Err(Error::new(Code::PreconditionFailed));
        }
    } else if let Some(t) = h("if-unmodified-since").and_then(parse_http_date) {
        if modified > t {
            return Err(Error::new(Code::PreconditionFailed));
        }
    }
    let not_modified = if not_modified_is_error {
        Code::PreconditionFailed
    } else {
        Code::NotModified
    };
    if let Some(v) = h("if-none-match") {
        if matches(v) {
            return Err(Error::new(not_modified));
        }
    } else if let Some(t) = h("if-modified-since").and_then(parse_http_date) {
        if modified <= t {
            return Err(Error::new(not_modified));
        }
    }
    Ok(())
}

/// `bytes=a-b` / `bytes=a-` / `bytes=-n`, first range only. OSS ignores an unsatisfiable
/// range (200, whole object) unless `x-oss-range-behavior: standard` asks for 416 and for
/// ends past the size to be truncated.
pub(crate) fn parse_range(value: &str, size: u64, standard: bool) -> Result<Option<(u64, u64)>> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    let first = spec.split(',').next().unwrap_or("").trim();
    let Some((a, b)) = first.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else { return Ok(None) };
        if n == 0 || size == 0 {
            return if standard {
                Err(Error::new(Code::InvalidRange))
            } else {
                Ok(None)
            };
        }
        return Ok(Some((size.saturating_sub(n), size)));
    }
    let Ok(start) = a.parse::<u64>() else { return Ok(None) };
    let end_incl = if b.is_empty() {
        size.saturating_sub(1)
    } else {
        match b.parse::<u64>() {
            Ok(e) if e >= start => e,
            _ => return Ok(None),
        }
    };
    if start >= size {
        return if standard {
            Err(Error::new(Code::InvalidRange))
        } else {
            Ok(None)
        };
    }
    if end_incl >= size {
        return if standard { Ok(Some((start, size))) } else { Ok(None) };
    }
    Ok(Some((start, end_incl + 1)))
}

fn object_meta_headers(r: &mut Resp, rec: &ObjectRecord) {
    set(r, "etag", etag::quoted(&rec.etag));
    set(r, "last-modified", http_date(rec.last_modified_ms));
    set(r, "x-oss-hash-crc64ecma", rec.crc64.to_string());
    set(r, "x-oss-object-type", rec.object_type.as_str());
    set(r, "x-oss-storage-class", &rec.storage_class);
}

async fn get_object(st: &State, ctx: &Ctx, p: &Principal, bucket: &str, key: &str) -> Result<Resp> {
    let (b, rec) = st.kura.head_object(bucket, key).await?;
    if *p == Principal::Anonymous && rec.acl.effective(b.acl) == Acl::Private {
        return Err(deny());
    }
    check_conditions(ctx, &rec, "", false)?;
    let is_head = ctx.method == "HEAD";
    if is_head && ctx.has_query("objectMeta") {
        let mut r = render::empty(200);
        object_meta_headers(&mut r, &rec);
        set(&mut r, "content-length", rec.size.to_string());
        return Ok(r);
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

/// The headers stored with an object, user metadata under `meta_prefix`, then the
/// `response-*` overrides of the query (both dialects).
pub(crate) fn stored_headers(r: &mut Resp, hd: &ObjectHeaders, ctx: &Ctx, meta_prefix: &str) {
    set(r, "content-type", &hd.content_type);
    for (name, value) in [
        ("cache-control", &hd.cache_control),
        ("content-disposition", &hd.content_disposition),
        ("content-encoding", &hd.content_encoding),
        ("content-language", &hd.content_language),
        ("expires", &hd.expires),
    ] {
        if let Some(v) = value {
            set(r, name, v);
        }
    }
    for (n, v) in &hd.user_meta {
        set_dynamic(r, &format!("{meta_prefix}{n}"), v);
    }
    for (param, header) in [
        ("response-content-type", "content-type"),
        ("response-content-language", "content-language"),
        ("response-expires", "expires"),
        ("response-cache-control", "cache-control"),
        ("response-content-disposition", "content-disposition"),
        ("response-content-encoding", "content-encoding"),
    ] {
        if let Some(v) = ctx.query(param) {
            set(r, header, v);
        }
    }
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
    check_conditions(ctx, &src, "x-oss-copy-source-", true)?;
    let replace = ctx
        .header("x-oss-metadata-directive")
        .is_some_and(|v| v.eq_ignore_ascii_case("REPLACE"))
        .then(|| object_headers(ctx));
    let acl = header_acl(ctx, "x-oss-object-acl")?.unwrap_or_default();
    let rec = st
        .kura
        .copy_object(&src, bucket, key, replace, acl, forbid_condition(ctx))
        .await?;
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
    check_conditions(ctx, &src, "x-oss-copy-source-", true)?;
    let (start, end) = match ctx.header("x-oss-copy-source-range") {
        None => (0, src.size),
        Some(v) => {
            let bad = || Error::invalid_argument("x-oss-copy-source-range is not valid.", "x-oss-copy-source-range", v);
            let spec = v.trim().strip_prefix("bytes=").ok_or_else(bad)?;
            let (a, b) = spec.split_once('-').ok_or_else(bad)?;
            let a: u64 = a.trim().parse().map_err(|_| bad())?;
            let end = if b.trim().is_empty() {
                src.size
            } else {
                b.trim()
                    .parse::<u64>()
                    .ok()
                    .and_then(|e| e.checked_add(1))
                    .ok_or_else(bad)?
            };
            if a >= end || end > src.size {
                return Err(Error::new(Code::InvalidRange));
            }
            (a, end)
        }
    };
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
        .complete_upload(bucket, key, upload_id, selection, forbid_condition(ctx), acl)
        .await?;
    let url = url_encoding_for(ctx, std::iter::once(key));
    let location = format!(
        "http://{}/{}/{}",
        if host.is_empty() { "localhost" } else { host },
        bucket,
        enc(key, true)
    );
    let mut r = render::xml(&CompleteMultipartUploadResult {
        encoding_type: url.then(|| "url".into()),
        location: if url { encode_component(&location) } else { location },
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
    let req: CompleteMultipartUpload =
        from_request_xml(raw, "CompleteMultipartUpload").map_err(|_| Error::new(Code::MalformedXML))?;
    if req.parts.len() > 10_000 {
        return Err(Error::msg(Code::MalformedXML, "A Complete lists at most 10000 parts."));
    }
    let mut parts = Vec::with_capacity(req.parts.len());
    for p in &req.parts {
        if p.part_number.trim().parse::<i64>().is_err() {
            return Err(Error::msg(Code::MalformedXML, "PartNumber must be an integer."));
        }
        let number = check_part_number(p.part_number.trim()).map_err(|_| {
            Error::msg(
                Code::InvalidPartOrder,
                format!("Part number {} is not between 1 and 10000.", p.part_number.trim()),
            )
        })?;
        parts.push((number, etag::normalize(&p.etag)));
    }
    Ok(PartSelection::Listed(parts))
}

async fn list_parts(st: &State, ctx: &Ctx, bucket: &str, key: &str, upload_id: &str) -> Result<Resp> {
    let url = url_encoding_for(ctx, std::iter::once(key));
    let max = parse_max(ctx, "max-parts", MAX_LIST)?;
    let marker = match ctx.query("part-number-marker") {
        None => 0,
        Some(v) => v
            .parse::<u32>()
            .map_err(|_| Error::invalid_argument("part-number-marker must be an integer.", "part-number-marker", v))?,
    };
    let l = st.kura.list_parts(bucket, key, upload_id, marker, max).await?;
    Ok(render::xml(&ListPartsResult {
        encoding_type: url.then(|| "url".into()),
        bucket: bucket.into(),
        key: enc(key, url),
        upload_id: upload_id.into(),
        storage_class: l.upload.storage_class.clone(),
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
    let url = url_encoding(ctx);
    let prefix = ctx.query("prefix").unwrap_or("");
    let delimiter = ctx.query("delimiter").unwrap_or("");
    let key_marker = ctx.query("key-marker").unwrap_or("");
    let upload_id_marker = ctx.query("upload-id-marker").unwrap_or("");
    let max = parse_max(ctx, "max-uploads", MAX_LIST)?;
    let l = st
        .kura
        .list_uploads(bucket, prefix, delimiter, key_marker, upload_id_marker, max)
        .await?;
    let url = url || {
        let names = l.uploads.iter().map(|u| u.key.as_str());
        let prefixes = l.common_prefixes.iter().map(String::as_str);
        let markers = [prefix, delimiter, key_marker, l.next_key_marker.as_str()];
        url_encoding_for(ctx, names.chain(prefixes).chain(markers))
    };
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
                storage_class: u.storage_class.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100, false).unwrap(), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100, false).unwrap(), Some((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100, false).unwrap(), Some((90, 100)));
        assert_eq!(parse_range("bytes=0-1000", 1000, false).unwrap(), None);
        assert_eq!(parse_range("bytes=0-1000", 1000, true).unwrap(), Some((0, 1000)));
        assert_eq!(parse_range("bytes=1000-", 1000, false).unwrap(), None);
        assert_eq!(
            parse_range("bytes=1000-", 1000, true).unwrap_err().code,
            Code::InvalidRange
        );
        assert_eq!(parse_range("bytes=5-2", 100, false).unwrap(), None);
        assert_eq!(parse_range("items=0-1", 100, false).unwrap(), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100, false).unwrap(), Some((0, 2)));
    }
}
