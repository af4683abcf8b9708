#![no_main]
//! Every XML request body the server parses, through the strict parser.
use kura_proto::xml::{from_request_xml, CompleteMultipartUpload, CreateBucketConfiguration, Delete};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = from_request_xml::<CompleteMultipartUpload>(data, "CompleteMultipartUpload");
    let _ = from_request_xml::<Delete>(data, "Delete");
    let _ = from_request_xml::<CreateBucketConfiguration>(data, "CreateBucketConfiguration");
});
