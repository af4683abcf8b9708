//! The aws-chunked body encoding that current AWS SDKs send: `hex-size[;chunk-signature=sig]`
//! lines, data, and after the zero-size chunk optional trailer headers (checksums, and a
//! trailer signature when signed). Decoded as it streams; each chunk's signature is checked
//! when the chunk ends, and any failure fails the whole body, so the upload stores nothing.

use bytes::{Buf, Bytes, BytesMut};
use kura_core::{BodySource, Code, Error, Result};
use kura_proto::checksum::{self, Algorithm};
use kura_proto::sigv4;
use sha2::{Digest, Sha256};

use crate::auth::ChunkSigning;

/// Longest chunk header line and trailer section we accept.
const MAX_LINE: usize = 4096;
const MAX_TRAILER: usize = 16 * 1024;

enum State {
    Header,
    Data { remaining: u64, signature: Option<String> },
    DataEnd { signature: Option<String> },
    Trailer,
    Done,
}

pub struct AwsChunked<B> {
    inner: B,
    buf: BytesMut,
    state: State,
    signing: Option<ChunkSigning>,
    previous: String,
    chunk_hash: Sha256,
    trailers: Vec<(Algorithm, Vec<u8>)>,
    decoded: u64,
    expected: Option<u64>,
    inner_done: bool,
}

fn malformed(msg: &str) -> Error {
    Error::msg(Code::IncompleteBody, format!("Malformed aws-chunked body: {msg}"))
}

impl<B: BodySource> AwsChunked<B> {
    pub fn new(inner: B, signing: Option<ChunkSigning>, expected: Option<u64>) -> Self {
        let previous = signing.as_ref().map(|s| s.seed.clone()).unwrap_or_default();
        AwsChunked {
            inner,
            buf: BytesMut::new(),
            state: State::Header,
            signing,
            previous,
            chunk_hash: Sha256::new(),
            trailers: Vec::new(),
            decoded: 0,
            expected,
            inner_done: false,
        }
    }

    /// Reads more of the raw body; false at its end.
    async fn fill(&mut self) -> Result<bool> {
        if self.inner_done {
            return Ok(false);
        }
        match self.inner.next_chunk().await {
            Some(Ok(b)) => {
                self.buf.extend_from_slice(&b);
                Ok(true)
            }
            Some(Err(e)) => Err(e),
            None => {
                self.inner_done = true;
                Ok(false)
            }
        }
    }

    /// A CRLF-terminated line from the buffer, if complete.
    fn take_line(&mut self, limit: usize) -> Result<Option<String>> {
        match self.buf.windows(2).position(|w| w == b"\r\n") {
            Some(i) => {
                let line = self.buf.split_to(i);
                self.buf.advance(2);
                String::from_utf8(line.to_vec())
                    .map(Some)
                    .map_err(|_| malformed("a header line is not text"))
            }
            None if self.buf.len() > limit => Err(malformed("a header line is too long")),
            None => Ok(None),
        }
    }

    fn verify_chunk(&mut self, signature: Option<String>) -> Result<()> {
        let hash = hex::encode(std::mem::take(&mut self.chunk_hash).finalize());
        let Some(s) = &self.signing else { return Ok(()) };
        let got = signature.ok_or_else(|| malformed("a chunk has no signature"))?;
        let want = sigv4::chunk_signature(&s.key, &s.timestamp, &s.scope, &self.previous, &hash);
        if !kura_proto::sign::signatures_equal(&want, &got) {
            return Err(Error::msg(
                Code::SignatureDoesNotMatch,
                "A chunk signature does not match.",
            ));
        }
        self.previous = want;
        Ok(())
    }

    fn parse_trailers(&mut self, text: &str) -> Result<()> {
        let mut signed_part = String::new();
        let mut trailer_signature = None;
        for line in text.split("\r\n").filter(|l| !l.is_empty()) {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| malformed("a trailer line has no colon"))?;
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "x-amz-trailer-signature" {
                trailer_signature = Some(value.to_string());
                continue;
            }
            signed_part.push_str(&format!("{name}:{value}\n"));
            if let Some(a) = Algorithm::from_header(&name) {
                let raw = checksum::from_base64(a, value).ok_or_else(|| {
                    Error::msg(
                        Code::InvalidRequest,
                        format!("{name} is not a valid {} value.", a.name()),
                    )
                })?;
                self.trailers.push((a, raw));
            }
        }
        if let Some(s) = &self.signing {
            let got = trailer_signature.ok_or_else(|| malformed("the trailer has no signature"))?;
            let want = sigv4::trailer_signature(&s.key, &s.timestamp, &s.scope, &self.previous, &signed_part);
            if !kura_proto::sign::signatures_equal(&want, &got) {
                return Err(Error::msg(
                    Code::SignatureDoesNotMatch,
                    "The trailer signature does not match.",
                ));
            }
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<Bytes>> {
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Done => return Ok(None),
                State::Header => match self.take_line(MAX_LINE)? {
                    Some(line) => {
                        let (size, ext) = line.split_once(';').unwrap_or((line.as_str(), ""));
                        let size =
                            u64::from_str_radix(size.trim(), 16).map_err(|_| malformed("a chunk size is not hex"))?;
                        let signature = ext.trim().strip_prefix("chunk-signature=").map(str::to_string);
                        if self.signing.is_some() && signature.is_none() {
                            return Err(malformed("a chunk has no signature"));
                        }
                        if size == 0 {
                            self.verify_chunk(signature)?;
                            self.state = State::Trailer;
                        } else {
                            self.state = State::Data {
                                remaining: size,
                                signature,
                            };
                        }
                    }
                    None => {
                        self.state = State::Header;
                        if !self.fill().await? {
                            return Err(malformed("the body ended inside a chunk header"));
                        }
                    }
                },
                State::Data { remaining, signature } => {
                    if self.buf.is_empty() && !self.fill().await? {
                        return Err(malformed("the body ended inside a chunk"));
                    }
                    let n = (self.buf.len() as u64).min(remaining) as usize;
                    let data = self.buf.split_to(n).freeze();
                    self.chunk_hash.update(&data);
                    self.decoded += n as u64;
                    let remaining = remaining - n as u64;
                    self.state = if remaining == 0 {
                        State::DataEnd { signature }
                    } else {
                        State::Data { remaining, signature }
                    };
                    if !data.is_empty() {
                        return Ok(Some(data));
                    }
                }
                State::DataEnd { signature } => {
                    if self.buf.len() < 2 {
                        self.state = State::DataEnd { signature };
                        if !self.fill().await? {
                            return Err(malformed("the body ended after a chunk"));
                        }
                        continue;
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(malformed("a chunk is not followed by CRLF"));
                    }
                    self.buf.advance(2);
                    self.verify_chunk(signature)?;
                    self.state = State::Header;
                }
                State::Trailer => {
                    // Trailers end with an empty line; without trailers the body may just end.
                    if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let text = String::from_utf8(self.buf.split_to(end + 4).to_vec())
                            .map_err(|_| malformed("the trailer is not text"))?;
                        self.parse_trailers(&text)?;
                        self.state = State::Done;
                    } else if self.buf.as_ref() == b"\r\n" && self.inner_done {
                        self.state = State::Done;
                    } else if self.buf.len() > MAX_TRAILER {
                        return Err(malformed("the trailer is too long"));
                    } else if !self.fill().await? {
                        if self.buf.iter().all(|b| *b == b'\r' || *b == b'\n') {
                            self.state = State::Done;
                        } else {
                            // A trailer without the final empty line.
                            let text = String::from_utf8(std::mem::take(&mut self.buf).to_vec())
                                .map_err(|_| malformed("the trailer is not text"))?;
                            self.parse_trailers(&text)?;
                            self.state = State::Done;
                        }
                    } else {
                        self.state = State::Trailer;
                    }
                    if matches!(self.state, State::Done) {
                        if let Some(e) = self.expected {
                            if e != self.decoded {
                                return Err(Error::msg(
                                    Code::IncompleteBody,
                                    "The body does not have x-amz-decoded-content-length bytes.",
                                ));
                            }
                        }
                        return Ok(None);
                    }
                }
            }
        }
    }
}

impl<B: BodySource> BodySource for AwsChunked<B> {
    async fn next_chunk(&mut self) -> Option<Result<Bytes>> {
        self.next().await.transpose()
    }

    fn trailing_checksums(&self) -> Vec<(Algorithm, Vec<u8>)> {
        self.trailers.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body source over fixed pieces (to cut the encoding at awkward places).
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

    fn split(raw: &[u8], piece: usize) -> Pieces {
        Pieces(raw.chunks(piece.max(1)).map(Bytes::copy_from_slice).collect())
    }

    async fn decode(mut body: AwsChunked<Pieces>) -> Result<(Vec<u8>, Vec<(Algorithm, Vec<u8>)>)> {
        let mut out = Vec::new();
        while let Some(c) = body.next_chunk().await {
            out.extend_from_slice(&c?);
        }
        Ok((out, body.trailing_checksums()))
    }

    fn aws_example_signing() -> ChunkSigning {
        ChunkSigning {
            key: sigv4::signing_key(
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "20130524",
                "us-east-1",
                "s3",
            ),
            timestamp: "20130524T000000Z".into(),
            scope: sigv4::scope("20130524", "us-east-1", "s3"),
            seed: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9".into(),
        }
    }

    fn aws_example_body(corrupt: bool) -> Vec<u8> {
        let mut body = Vec::new();
        for (size, sig) in [
            (
                65536usize,
                "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
            ),
            (1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
            (0, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
        ] {
            body.extend_from_slice(format!("{size:x};chunk-signature={sig}\r\n").as_bytes());
            let mut data = vec![b'a'; size];
            if corrupt && size == 1024 {
                data[10] = b'b';
            }
            body.extend_from_slice(&data);
            body.extend_from_slice(b"\r\n");
        }
        body
    }

    #[tokio::test]
    async fn aws_signed_example_decodes_in_any_cut() {
        let raw = aws_example_body(false);
        for piece in [1, 7, 4096, 70_000] {
            let (data, trailers) = decode(AwsChunked::new(
                split(&raw, piece),
                Some(aws_example_signing()),
                Some(66560),
            ))
            .await
            .unwrap();
            assert_eq!(data, vec![b'a'; 66560], "piece {piece}");
            assert!(trailers.is_empty());
        }
    }

    #[tokio::test]
    async fn a_forged_chunk_fails_the_body() {
        let raw = aws_example_body(true);
        let e = decode(AwsChunked::new(split(&raw, 4096), Some(aws_example_signing()), None))
            .await
            .unwrap_err();
        assert_eq!(e.code, Code::SignatureDoesNotMatch);
    }

    #[tokio::test]
    async fn unsigned_with_trailer() {
        let crc = checksum::to_base64(&checksum::digest(Algorithm::Crc32, b"hello world"));
        let raw = format!("5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:{crc}\r\n\r\n");
        let (data, trailers) = decode(AwsChunked::new(split(raw.as_bytes(), 3), None, Some(11)))
            .await
            .unwrap();
        assert_eq!(data, b"hello world");
        assert_eq!(
            trailers,
            vec![(Algorithm::Crc32, checksum::digest(Algorithm::Crc32, b"hello world"))]
        );
    }

    #[tokio::test]
    async fn malformed_bodies_are_refused() {
        for (raw, why) in [
            ("zz\r\nhello\r\n0\r\n\r\n", "size not hex"),
            ("5\r\nhel", "ends inside a chunk"),
            ("5\r\nhelloXX0\r\n\r\n", "no CRLF after data"),
            ("5\r\nhello\r\n", "no final chunk"),
            ("3\r\nabc\r\n0\r\nx-amz-checksum-crc32:!!\r\n\r\n", "bad trailer value"),
        ] {
            let r = decode(AwsChunked::new(split(raw.as_bytes(), 2), None, None)).await;
            assert!(r.is_err(), "{why}");
        }
        let long = format!("{}\r\n", "1".repeat(5000));
        assert!(decode(AwsChunked::new(split(long.as_bytes(), 100), None, None))
            .await
            .is_err());
        // A declared decoded length that does not match.
        let r = decode(AwsChunked::new(split(b"3\r\nabc\r\n0\r\n\r\n", 5), None, Some(4))).await;
        assert!(r.is_err());
        // A signed body whose chunk lacks a signature.
        let r = decode(AwsChunked::new(
            split(b"3\r\nabc\r\n0\r\n\r\n", 5),
            Some(aws_example_signing()),
            None,
        ))
        .await;
        assert!(r.is_err());
    }
}
