//! The OSS wire protocol as Kura speaks it. Everything here is pure (no I/O) and shared by the
//! server, which verifies and renders, and by clients, which sign and parse.

pub mod checksum;
pub mod crc64;
pub mod encode;
pub mod etag;
pub mod s3xml;
pub mod sign;
pub mod sigv4;
pub mod timefmt;
pub mod xml;
