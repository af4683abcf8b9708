#![no_main]
//! The aws-chunked decoder, unsigned and with chunk signatures, over bodies cut at arbitrary
//! places: never a panic, and a signed body with forged signatures never decodes whole.
use bytes::Bytes;
use kura_core::{BodySource, Result};
use kura_server::auth::chunked::AwsChunked;
use kura_server::auth::ChunkSigning;
use libfuzzer_sys::fuzz_target;

struct Pieces(Vec<Bytes>);

impl BodySource for Pieces {
    async fn next_chunk(&mut self) -> Option<Result<Bytes>> {
        if self.0.is_empty() {
            None
        } else {
            Some(Ok(self.0.remove(0)))
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, body)) = data.split_first() else {
        return;
    };
    let piece = (control as usize % 17) + 1;
    let signed = control & 0x80 != 0;
    let pieces = Pieces(body.chunks(piece).map(Bytes::copy_from_slice).collect());
    let signing = signed.then(|| ChunkSigning {
        key: [7; 32],
        timestamp: "20130524T000000Z".into(),
        scope: "20130524/us-east-1/s3/aws4_request".into(),
        seed: "0".repeat(64),
    });
    let mut decoder = AwsChunked::new(pieces, signing, None);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut ok = true;
    let mut produced = 0usize;
    rt.block_on(async {
        while let Some(chunk) = decoder.next_chunk().await {
            match chunk {
                Ok(c) => produced += c.len(),
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
    });
    let _ = decoder.trailing_checksums();
    // Decoded data never exceeds what was sent.
    assert!(produced <= body.len());
    // With a made-up key, a body that carries data cannot pass every chunk signature.
    if signed && ok {
        assert_eq!(produced, 0);
    }
});
