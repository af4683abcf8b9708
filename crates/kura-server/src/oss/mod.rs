//! The OSS dialect: the operations' OSS headers and XML, and OSS's error shapes, over the
//! core service.

pub mod handlers;
pub mod render;
