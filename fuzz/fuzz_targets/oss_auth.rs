#![no_main]
//! OSS V1/V4 authentication (header and presigned) on arbitrary requests: never a panic,
//! and never root without the secret.
use kura_server::auth::{authenticate, Principal};
use kura_server::op::Dialect;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some(parts) = common::request(data) else { return };
    let Ok(ctx) = kura_server::request::parse(&parts, Some("fuzz.local")) else {
        return;
    };
    if let Ok(a) = authenticate(Dialect::Oss, &ctx, &common::creds()) {
        // No forged signature can verify: only anonymous requests pass.
        assert_eq!(a.principal, Principal::Anonymous);
    }
});
