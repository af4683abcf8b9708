//! The dialect-free part of the operations whose inputs both dialects read alike: the query
//! parameters of the listings, the part list of a Complete and the tagging operations, turned
//! into core calls and typed results. The dialect modules only add their headers, XML and
//! error shapes.

use kura_core::model::PartSelection;
use kura_core::service::{check_part_number, ObjectListing, PartListing, UploadListing, MAX_LIST};
use kura_core::{Code, Error, Result};
use kura_proto::xml::{from_request_xml, CompleteMultipartUpload};

use crate::common::{parse_max, part_number_marker, xml_unsafe};
use crate::request::Ctx;
use crate::State;

/// ListMultipartUploads: what was asked and what was found.
pub struct UploadsPage {
    pub prefix: String,
    pub delimiter: String,
    pub key_marker: String,
    pub upload_id_marker: String,
    pub max: usize,
    pub listing: UploadListing,
    /// Some name cannot travel in XML as it is: the answer must be URL-encoded.
    pub needs_encoding: bool,
}

pub async fn list_uploads(st: &State, ctx: &Ctx, bucket: &str) -> Result<UploadsPage> {
    let q = |n: &str| ctx.query(n).unwrap_or("").to_string();
    let (prefix, delimiter, key_marker, upload_id_marker) =
        (q("prefix"), q("delimiter"), q("key-marker"), q("upload-id-marker"));
    let max = parse_max(ctx, "max-uploads", MAX_LIST)?;
    let listing = st
        .kura
        .list_uploads(bucket, &prefix, &delimiter, &key_marker, &upload_id_marker, max)
        .await?;
    let needs_encoding = {
        let names = listing.uploads.iter().map(|u| u.key.as_str());
        let prefixes = listing.common_prefixes.iter().map(String::as_str);
        let markers = [
            prefix.as_str(),
            delimiter.as_str(),
            key_marker.as_str(),
            listing.next_key_marker.as_str(),
        ];
        names.chain(prefixes).chain(markers).any(xml_unsafe)
    };
    Ok(UploadsPage {
        prefix,
        delimiter,
        key_marker,
        upload_id_marker,
        max,
        listing,
        needs_encoding,
    })
}

/// ListParts: the marker and page size asked for, and the page.
pub struct PartsPage {
    pub marker: u32,
    pub max: usize,
    pub listing: PartListing,
}

pub async fn list_parts(st: &State, ctx: &Ctx, bucket: &str, key: &str, upload_id: &str) -> Result<PartsPage> {
    let max = parse_max(ctx, "max-parts", MAX_LIST)?;
    let marker = part_number_marker(ctx)?;
    let listing = st.kura.list_parts(bucket, key, upload_id, marker, max).await?;
    Ok(PartsPage { marker, max, listing })
}

/// ListObjects V1 or V2: the parameters (V2's continuation token decoded into the cursor)
/// and the page.
pub struct ObjectsPage {
    pub prefix: String,
    pub delimiter: String,
    pub max: usize,
    pub v2: bool,
    /// Where the page starts: V1's marker, V2's decoded token or start-after.
    pub after: String,
    /// V2's continuation token as sent (an empty one is echoed).
    pub token: Option<String>,
    pub start_after: Option<String>,
    pub fetch_owner: bool,
    pub listing: ObjectListing,
    pub needs_encoding: bool,
}

/// `default_max` is the dialect's page size when `max-keys` is absent (OSS 100, S3 1,000).
pub async fn list_objects(st: &State, ctx: &Ctx, bucket: &str, default_max: usize) -> Result<ObjectsPage> {
    let prefix = ctx.query("prefix").unwrap_or("").to_string();
    let delimiter = ctx.query("delimiter").unwrap_or("").to_string();
    let max = parse_max(ctx, "max-keys", default_max)?;
    let v2 = ctx.query("list-type") == Some("2");
    let start_after = ctx.query("start-after").map(str::to_string);
    let after = match (v2, ctx.query("continuation-token")) {
        (true, Some(t)) => hex::decode(t)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                Error::invalid_argument("The continuation token provided is incorrect", "continuation-token", t)
            })?,
        (true, None) => start_after.clone().unwrap_or_default(),
        (false, _) => ctx.query("marker").unwrap_or("").to_string(),
    };
    let listing = st.kura.list_objects(bucket, &prefix, &delimiter, &after, max).await?;
    let needs_encoding = {
        let names = listing.objects.iter().map(|(k, _)| k.as_str());
        let prefixes = listing.common_prefixes.iter().map(String::as_str);
        let params = [
            prefix.as_str(),
            delimiter.as_str(),
            after.as_str(),
            start_after.as_deref().unwrap_or(""),
        ];
        names.chain(prefixes).chain(params).any(xml_unsafe)
    };
    Ok(ObjectsPage {
        prefix,
        delimiter,
        max,
        v2,
        after,
        token: ctx.query_raw("continuation-token").map(str::to_string),
        start_after,
        fetch_owner: crate::common::is_true(ctx.query("fetch-owner")),
        listing,
        needs_encoding,
    })
}

/// The part list of a CompleteMultipartUpload body: 1 to 10,000 parts, numbers that are
/// numbers (else MalformedXML), in range (else InvalidPartOrder), ETags normalized.
pub fn complete_parts(raw: &[u8]) -> Result<PartSelection> {
    let req: CompleteMultipartUpload =
        from_request_xml(raw, "CompleteMultipartUpload").map_err(|_| Error::new(Code::MalformedXML))?;
    if req.parts.is_empty() || req.parts.len() > 10_000 {
        return Err(Error::msg(Code::MalformedXML, "A Complete lists 1 to 10000 parts."));
    }
    let mut parts = Vec::with_capacity(req.parts.len());
    for p in &req.parts {
        let n = p.part_number.trim();
        if n.parse::<i64>().is_err() {
            return Err(Error::msg(Code::MalformedXML, "PartNumber must be an integer."));
        }
        let number = check_part_number(n).map_err(|_| {
            Error::msg(
                Code::InvalidPartOrder,
                format!("Part number {n} is not between 1 and 10000."),
            )
        })?;
        parts.push((number, kura_proto::etag::normalize(&p.etag)));
    }
    Ok(PartSelection::Listed(parts))
}

/// The tagging operations (object and bucket): the change is made here; a Get returns the
/// tags for the dialect to render (None for the others).
pub async fn tagging(
    st: &State,
    ctx: &Ctx,
    op: crate::op::Operation,
    body: &mut impl kura_core::BodySource,
) -> Result<Option<Vec<(String, String)>>> {
    use crate::op::Operation::*;
    let (k, bucket, key) = (&st.kura, ctx.bucket(), ctx.key());
    let read_tags = |raw: bytes::Bytes| {
        crate::common::check_xml_md5(ctx, &raw)?;
        from_request_xml::<kura_proto::xml::Tagging>(&raw, "Tagging")
            .map(kura_proto::xml::Tagging::pairs)
            .map_err(|_| Error::new(Code::MalformedXML))
    };
    match op {
        GetObjectTagging => Ok(Some(k.head_object(bucket, key).await?.1.tags)),
        PutObjectTagging => {
            let tags = read_tags(crate::request::read_xml_body(body, ctx).await?)?;
            k.set_object_tags(bucket, key, tags).await?;
            Ok(None)
        }
        DeleteObjectTagging => {
            k.set_object_tags(bucket, key, Vec::new()).await?;
            Ok(None)
        }
        GetBucketTagging => Ok(Some(k.bucket(bucket).await?.tags)),
        PutBucketTagging => {
            let tags = read_tags(crate::request::read_xml_body(body, ctx).await?)?;
            k.set_bucket_tags(bucket, tags).await?;
            Ok(None)
        }
        DeleteBucketTagging => {
            // OSS: `?tagging=k1,k2` deletes only those keys.
            let keys = ctx
                .query("tagging")
                .filter(|v| !v.is_empty())
                .map(|v| v.split(',').map(str::to_string).collect());
            k.delete_bucket_tags(bucket, keys).await?;
            Ok(None)
        }
        _ => Err(Error::internal("not a tagging operation")),
    }
}

/// What a RestoreObject did.
pub struct Restored {
    /// A restore started (202); false: a finished one was extended (200).
    pub started: bool,
    /// ColdArchive / DeepColdArchive: the tier, for `x-oss-object-restore-priority`.
    pub priority: Option<String>,
}

/// RestoreObject, both dialects: the optional RestoreRequest body checked against the
/// object's class (days in range, a known tier, no JobParameters for Archive), then the
/// restore recorded in one store call.
pub async fn restore(
    st: &State,
    ctx: &Ctx,
    body: &mut impl kura_core::BodySource,
    dialect: crate::op::Dialect,
) -> Result<Restored> {
    use kura_core::classes::StorageClass;
    let raw = crate::request::read_xml_body(body, ctx).await?;
    crate::common::check_xml_md5(ctx, &raw)?;
    let req = if raw.iter().all(u8::is_ascii_whitespace) {
        kura_proto::xml::RestoreRequest::default()
    } else {
        from_request_xml::<kura_proto::xml::RestoreRequest>(&raw, "RestoreRequest")
            .map_err(|_| Error::new(Code::MalformedXML))?
    };
    let (bucket, key) = (ctx.bucket(), ctx.key());
    let (_, rec) = st.kura.head_object(bucket, key).await?;
    let class = StorageClass::of(&rec.storage_class);
    let job = req.job_parameters.or(req.glacier_job_parameters);
    if dialect == crate::op::Dialect::Oss && class == StorageClass::Archive && job.is_some() {
        // OSS: an Archive restore has no tiers (S3's Glacier does).
        return Err(Error::msg(
            Code::MalformedXML,
            "JobParameters is not allowed for Archive objects.",
        ));
    }
    let tier = job.and_then(|j| j.tier);
    let s3 = dialect == crate::op::Dialect::S3;
    if let Some(t) = &tier {
        let allowed: &[&str] = match (s3, class) {
            // S3 Deep Archive has no expedited retrieval; OSS DeepColdArchive has no bulk.
            (true, StorageClass::DeepColdArchive) => &["Standard", "Bulk"],
            (false, StorageClass::DeepColdArchive) => &["Expedited", "Standard"],
            _ => &["Expedited", "Standard", "Bulk"],
        };
        if !allowed.contains(&t.as_str()) {
            return Err(Error::invalid_argument("Unsupported restore tier", "Tier", t));
        }
    }
    let days = req.days.unwrap_or(1);
    // OSS bounds the days per class; S3 only asks for at least one (its limit is far away).
    let max_days = if s3 { 36_500 } else { class.max_restore_days() };
    if class.is_frozen() && !(1..=max_days).contains(&days) {
        return Err(Error::invalid_argument(
            format!("Days must be 1 to {max_days} for this storage class"),
            "Days",
            &days.to_string(),
        ));
    }
    let started = st.kura.restore_object(bucket, key, days).await?;
    let priority = matches!(class, StorageClass::ColdArchive | StorageClass::DeepColdArchive)
        .then(|| tier.unwrap_or_else(|| "Standard".into()));
    Ok(Restored { started, priority })
}
