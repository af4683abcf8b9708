//! The S3 dialect: the operations' S3 headers and XML (with S3's namespace), and S3's error
//! codes, over the same core service and store as the OSS dialect.

pub mod handlers;
