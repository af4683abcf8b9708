//! The one error type of the core. Each code carries its OSS name and HTTP status; the server
//! renders it once (XML body, or `x-oss-err` on HEAD).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    AccessDenied,
    InvalidAccessKeyId,
    SignatureDoesNotMatch,
    RequestTimeTooSkewed,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    BucketAlreadyExists,
    BucketNotEmpty,
    FileAlreadyExists,
    InvalidArgument,
    InvalidDigest,
    MalformedXML,
    InvalidPart,
    InvalidPartOrder,
    EntityTooSmall,
    EntityTooLarge,
    InvalidBucketName,
    InvalidObjectName,
    TooManyBuckets,
    MissingContentLength,
    PreconditionFailed,
    NotModified,
    InvalidRange,
    IncompleteBody,
    BadDigest,
    XAmzContentSHA256Mismatch,
    InvalidRequest,
    BucketAlreadyOwnedByYou,
    RequestTimeout,
    RequestHeaderTooLarge,
    MethodNotAllowed,
    NotImplemented,
    InternalError,
    /// S3: a presigned URL's X-Amz-* parameters are malformed or out of range.
    AuthorizationQueryParametersError,
    /// User metadata over the dialect's limit (OSS 8 KiB, S3 2 KiB).
    MetadataTooLarge,
    /// S3: GET/HEAD `partNumber` past the object's last part.
    InvalidPartNumber,
    /// A path or query that cannot be decoded (a stray `%`).
    InvalidURI,
    /// No room left on the data volume (beyond the free-space reserve).
    InsufficientStorage,
    /// OSS: a part of a `?sequential` upload out of order.
    PartNotSequential,
    /// The metadata database cannot be reached (or is restarting): nothing was done unless
    /// the write's outcome is unknown, and the client should retry (503, Retry-After).
    ServiceUnavailable,
    /// A tag set that breaks the limits (count, lengths, characters, duplicate keys).
    InvalidTag,
    /// S3 GetBucketTagging of a bucket without tags.
    NoSuchTagSet,
    /// Reading an archived object that is not restored (403).
    InvalidObjectState,
    /// RestoreObject while a restore is under way (409).
    RestoreAlreadyInProgress,
    /// OSS RestoreObject of a Standard or IA object.
    OperationNotSupported,
    /// S3: a storage class Kura does not offer.
    InvalidStorageClass,
    /// OSS CleanRestoredObject of an object never restored (409).
    ArchiveRestoreFileStale,
    /// OSS CleanRestoredObject while the restore runs (409).
    ArchiveRestoreNotFinished,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::AccessDenied => "AccessDenied",
            Code::InvalidAccessKeyId => "InvalidAccessKeyId",
            Code::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            Code::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            Code::NoSuchBucket => "NoSuchBucket",
            Code::NoSuchKey => "NoSuchKey",
            Code::NoSuchUpload => "NoSuchUpload",
            Code::BucketAlreadyExists => "BucketAlreadyExists",
            Code::BucketNotEmpty => "BucketNotEmpty",
            Code::FileAlreadyExists => "FileAlreadyExists",
            Code::InvalidArgument => "InvalidArgument",
            Code::InvalidDigest => "InvalidDigest",
            Code::MalformedXML => "MalformedXML",
            Code::InvalidPart => "InvalidPart",
            Code::InvalidPartOrder => "InvalidPartOrder",
            Code::EntityTooSmall => "EntityTooSmall",
            Code::EntityTooLarge => "EntityTooLarge",
            Code::InvalidBucketName => "InvalidBucketName",
            Code::InvalidObjectName => "InvalidObjectName",
            Code::TooManyBuckets => "TooManyBuckets",
            Code::MissingContentLength => "MissingContentLength",
            Code::PreconditionFailed => "PreconditionFailed",
            Code::NotModified => "NotModified",
            Code::InvalidRange => "InvalidRange",
            Code::IncompleteBody => "IncompleteBody",
            Code::BadDigest => "BadDigest",
            Code::XAmzContentSHA256Mismatch => "XAmzContentSHA256Mismatch",
            Code::InvalidRequest => "InvalidRequest",
            Code::BucketAlreadyOwnedByYou => "BucketAlreadyOwnedByYou",
            Code::RequestTimeout => "RequestTimeout",
            Code::RequestHeaderTooLarge => "RequestHeaderTooLarge",
            Code::MethodNotAllowed => "MethodNotAllowed",
            Code::NotImplemented => "NotImplemented",
            Code::InternalError => "InternalError",
            Code::AuthorizationQueryParametersError => "AuthorizationQueryParametersError",
            Code::MetadataTooLarge => "MetadataTooLarge",
            Code::InvalidPartNumber => "InvalidPartNumber",
            Code::InvalidURI => "InvalidURI",
            Code::InsufficientStorage => "InsufficientStorage",
            Code::PartNotSequential => "PartNotSequential",
            Code::ServiceUnavailable => "ServiceUnavailable",
            Code::InvalidTag => "InvalidTag",
            Code::NoSuchTagSet => "NoSuchTagSet",
            Code::InvalidObjectState => "InvalidObjectState",
            Code::RestoreAlreadyInProgress => "RestoreAlreadyInProgress",
            Code::OperationNotSupported => "OperationNotSupported",
            Code::InvalidStorageClass => "InvalidStorageClass",
            Code::ArchiveRestoreFileStale => "ArchiveRestoreFileStale",
            Code::ArchiveRestoreNotFinished => "ArchiveRestoreNotFinished",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            Code::AccessDenied
            | Code::InvalidAccessKeyId
            | Code::SignatureDoesNotMatch
            | Code::RequestTimeTooSkewed
            | Code::InvalidObjectState => 403,
            Code::NoSuchBucket | Code::NoSuchKey | Code::NoSuchUpload | Code::NoSuchTagSet => 404,
            Code::BucketAlreadyExists
            | Code::BucketNotEmpty
            | Code::FileAlreadyExists
            | Code::BucketAlreadyOwnedByYou
            | Code::RestoreAlreadyInProgress
            | Code::ArchiveRestoreFileStale
            | Code::ArchiveRestoreNotFinished => 409,
            Code::MissingContentLength => 411,
            Code::PreconditionFailed => 412,
            Code::NotModified => 304,
            Code::InvalidRange | Code::InvalidPartNumber => 416,
            Code::MethodNotAllowed => 405,
            Code::NotImplemented => 501,
            Code::InternalError => 500,
            Code::InsufficientStorage => 507,
            Code::ServiceUnavailable => 503,
            _ => 400,
        }
    }

    fn default_message(self) -> &'static str {
        match self {
            Code::AccessDenied => "You have no right to access this object.",
            Code::InvalidAccessKeyId => "The OSS Access Key Id you provided does not exist in our records.",
            Code::SignatureDoesNotMatch => "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            Code::RequestTimeTooSkewed => "The difference between the request time and the current time is too large.",
            Code::NoSuchBucket => "The specified bucket does not exist.",
            Code::NoSuchKey => "The specified key does not exist.",
            Code::NoSuchUpload => "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
            Code::BucketAlreadyExists => "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.",
            Code::BucketNotEmpty => "The bucket you tried to delete is not empty.",
            Code::FileAlreadyExists => "The object you specified already exists and can not be overwritten.",
            Code::InvalidArgument => "Invalid argument.",
            Code::InvalidDigest => "The Content-MD5 you specified was invalid.",
            Code::MalformedXML => "The XML you provided was not well-formed or did not validate against our published schema.",
            Code::InvalidPart => "One or more of the specified parts could not be found or the specified entity tag might not have matched the part's entity tag.",
            Code::InvalidPartOrder => "The list of parts was not in ascending order. Parts must be ordered by part number.",
            Code::EntityTooSmall => "Your proposed upload is smaller than the minimum allowed size.",
            Code::EntityTooLarge => "Your proposed upload exceeds the maximum allowed size.",
            Code::InvalidBucketName => "The specified bucket is not valid.",
            Code::InvalidObjectName => "The specified object name is not valid.",
            Code::TooManyBuckets => "You have attempted to create more buckets than allowed.",
            Code::MissingContentLength => "You must provide the Content-Length HTTP header.",
            Code::PreconditionFailed => "At least one of the pre-conditions you specified did not hold.",
            Code::NotModified => "Not Modified",
            Code::InvalidRange => "The requested range cannot be satisfied",
            Code::IncompleteBody => "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            Code::RequestHeaderTooLarge => "Your request header is too large.",
            Code::BadDigest => "The checksum you specified did not match the calculated checksum.",
            Code::XAmzContentSHA256Mismatch => "The provided x-amz-content-sha256 header does not match what was computed.",
            Code::InvalidRequest => "Invalid request.",
            Code::BucketAlreadyOwnedByYou => "Your previous request to create the named bucket succeeded and you already own it.",
            Code::RequestTimeout => "Your socket connection to the server was not read from or written to within the timeout period.",
            Code::MethodNotAllowed => "The specified method is not allowed against this resource.",
            Code::NotImplemented => "A header or operation you provided implies functionality that is not implemented.",
            Code::InternalError => "We encountered an internal error. Please try again.",
            Code::AuthorizationQueryParametersError => "The X-Amz-* query parameters of this presigned request are not valid.",
            Code::MetadataTooLarge => "Your metadata headers exceed the maximum allowed metadata size.",
            Code::InvalidPartNumber => "The requested partnumber is not satisfiable",
            Code::InvalidURI => "Couldn't parse the specified URI.",
            Code::PartNotSequential => "For sequential multipart upload, you must upload or complete parts with sequential part number.",
            Code::ServiceUnavailable => "The service is temporarily unavailable (its metadata database cannot be reached). Please retry.",
            Code::InsufficientStorage => "There is not enough free space on the server to store this data. Delete objects or add space, then retry.",
            Code::InvalidTag => "The tag provided was not a valid tag.",
            Code::NoSuchTagSet => "The TagSet does not exist.",
            Code::InvalidObjectState => "The operation is not valid for the object's state.",
            Code::RestoreAlreadyInProgress => "The restore operation is in progress.",
            Code::OperationNotSupported => "The operation is not supported for this resource.",
            Code::InvalidStorageClass => "The storage class you specified is not valid.",
            Code::ArchiveRestoreFileStale => "The archive file is not restored.",
            Code::ArchiveRestoreNotFinished => "The archive file's restore is not finished.",
        }
    }
}

/// The optional detail elements of an error body, boxed so that `Result` stays small.
#[derive(Debug, Clone, Default)]
pub struct Detail {
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub upload_id: Option<String>,
    pub argument: Option<(String, String)>,
    pub server_time: Option<String>,
    pub string_to_sign: Option<String>,
    pub access_key_id: Option<String>,
    /// S3: the `x-amz-*` headers a signature left out (`HeadersNotSigned`).
    pub headers_not_signed: Option<String>,
    /// OSS: the error's EC, when the code that raised it knows it.
    pub ec: Option<&'static str>,
    /// A 304's validators: the object's ETag (OSS form, S3 form, both quoted) and
    /// Last-Modified, which the answer carries.
    pub not_modified: Option<(String, String, String)>,
}

/// An error as the client will see it: code, message and the optional detail elements.
#[derive(Debug, Clone)]
pub struct Error {
    pub code: Code,
    pub message: String,
    pub detail: Option<Box<Detail>>,
}

impl Error {
    pub fn new(code: Code) -> Self {
        Error {
            code,
            message: code.default_message().to_string(),
            detail: None,
        }
    }
    pub fn msg(code: Code, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            detail: None,
        }
    }
    pub fn invalid_argument(message: impl Into<String>, name: &str, value: &str) -> Self {
        Error::msg(Code::InvalidArgument, message).with(|d| d.argument = Some((name.to_string(), value.to_string())))
    }
    pub fn internal(what: impl fmt::Display) -> Self {
        tracing::error!(error = %what, "internal error");
        Error::new(Code::InternalError)
    }
    /// Sets detail elements.
    pub fn with(mut self, f: impl FnOnce(&mut Detail)) -> Self {
        f(self.detail.get_or_insert_with(Default::default));
        self
    }
    pub fn with_bucket(self, b: &str) -> Self {
        self.with(|d| d.bucket = Some(b.to_string()))
    }
    pub fn with_key(self, k: &str) -> Self {
        self.with(|d| d.key = Some(k.to_string()))
    }
    pub fn with_upload(self, u: &str) -> Self {
        self.with(|d| d.upload_id = Some(u.to_string()))
    }
    pub fn detail(&self) -> Detail {
        self.detail.as_deref().cloned().unwrap_or_default()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
