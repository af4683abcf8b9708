//! Kura's core: the OSS rules for buckets, objects and multipart uploads over a metadata
//! store ([`meta::MetaStore`], redb by default) and immutable blob files ([`blob::BlobStore`]).
//! Nothing here knows HTTP.

pub mod blob;
pub mod classes;
pub mod copy;
pub mod error;
pub mod meta;
pub mod model;
pub mod pg_store;
pub mod redb_store;
pub mod service;
pub mod tags;

pub use error::{Code, Error, Result};
pub use meta::{DeleteCondition, WriteCondition};
pub use service::{BodyChecks, BodySource, Config, Kura, WriteOptions};
