//! The S3 dialect: AWS SigV4, aws-chunked bodies, S3's XML and error codes, over the same
//! core service and store as the OSS dialect.

pub mod auth;
pub mod chunked;
pub mod handlers;
