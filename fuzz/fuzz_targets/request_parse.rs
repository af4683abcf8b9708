#![no_main]
//! Path and query parsing, dialect choice and classification on arbitrary requests: never a
//! panic; a parsed key is never empty and classification is total.
use kura_server::{op, request};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some(parts) = common::request(data) else { return };
    for domain in [None, Some("fuzz.local")] {
        let Ok(ctx) = request::parse(&parts, domain) else {
            continue;
        };
        assert!(ctx.key.as_deref() != Some(""));
        assert!(ctx.bucket.as_deref() != Some(""));
        let dialect = op::dialect(&ctx);
        let _ = op::classify(dialect, &ctx);
        let _ = op::classify(op::Dialect::Oss, &ctx);
        let _ = op::classify(op::Dialect::S3, &ctx);
    }
});
