//! The S3 additional checksums: CRC32, CRC32C, CRC64NVME, SHA1, SHA256. Values travel base64
//! encoded (big-endian for the CRCs). CRCs of parts combine into the CRC of the whole object.

use base64::Engine;
use crc_fast::CrcAlgorithm;
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

pub const ALL: [Algorithm; 5] = [
    Algorithm::Crc32,
    Algorithm::Crc32c,
    Algorithm::Crc64Nvme,
    Algorithm::Sha1,
    Algorithm::Sha256,
];

impl Algorithm {
    /// `CRC32`, as in `x-amz-checksum-algorithm`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "CRC32",
            Algorithm::Crc32c => "CRC32C",
            Algorithm::Crc64Nvme => "CRC64NVME",
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
        }
    }
    /// `crc32`, as in `x-amz-checksum-crc32`.
    pub fn header(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "x-amz-checksum-crc32",
            Algorithm::Crc32c => "x-amz-checksum-crc32c",
            Algorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            Algorithm::Sha1 => "x-amz-checksum-sha1",
            Algorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }
    /// `ChecksumCRC32`, as in the XML bodies.
    pub fn xml_element(self) -> &'static str {
        match self {
            Algorithm::Crc32 => "ChecksumCRC32",
            Algorithm::Crc32c => "ChecksumCRC32C",
            Algorithm::Crc64Nvme => "ChecksumCRC64NVME",
            Algorithm::Sha1 => "ChecksumSHA1",
            Algorithm::Sha256 => "ChecksumSHA256",
        }
    }
    pub fn parse(name: &str) -> Option<Algorithm> {
        ALL.into_iter().find(|a| a.name().eq_ignore_ascii_case(name))
    }
    pub fn from_header(header: &str) -> Option<Algorithm> {
        ALL.into_iter().find(|a| a.header().eq_ignore_ascii_case(header))
    }
    fn crc(self) -> Option<CrcAlgorithm> {
        match self {
            Algorithm::Crc32 => Some(CrcAlgorithm::Crc32IsoHdlc),
            Algorithm::Crc32c => Some(CrcAlgorithm::Crc32Iscsi),
            Algorithm::Crc64Nvme => Some(CrcAlgorithm::Crc64Nvme),
            _ => None,
        }
    }
    /// Whether parts combine into a full-object value (the CRCs do; SHAs do not).
    pub fn combinable(self) -> bool {
        self.crc().is_some()
    }
    fn width(self) -> usize {
        match self {
            Algorithm::Crc32 | Algorithm::Crc32c => 4,
            Algorithm::Crc64Nvme => 8,
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
        }
    }
}

/// A running checksum.
pub enum Hasher {
    Crc(Box<crc_fast::Digest>, Algorithm),
    Sha1(Box<Sha1>),
    Sha256(Box<Sha256>),
}

impl Hasher {
    pub fn new(a: Algorithm) -> Hasher {
        match a.crc() {
            Some(c) => Hasher::Crc(Box::new(crc_fast::Digest::new(c)), a),
            None if a == Algorithm::Sha1 => Hasher::Sha1(Box::default()),
            None => Hasher::Sha256(Box::default()),
        }
    }
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc(d, _) => d.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
        }
    }
    /// The raw value (big-endian for CRCs).
    pub fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Crc(d, a) => crc_bytes(d.finalize(), a),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

fn crc_bytes(v: u64, a: Algorithm) -> Vec<u8> {
    if a.width() == 4 {
        (v as u32).to_be_bytes().to_vec()
    } else {
        v.to_be_bytes().to_vec()
    }
}

fn crc_value(raw: &[u8]) -> u64 {
    raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

pub fn digest(a: Algorithm, data: &[u8]) -> Vec<u8> {
    let mut h = Hasher::new(a);
    h.update(data);
    h.finish()
}

pub fn to_base64(raw: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Decodes a base64 checksum value, checking its width for the algorithm.
pub fn from_base64(a: Algorithm, value: &str) -> Option<Vec<u8>> {
    let raw = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?;
    (raw.len() == a.width()).then_some(raw)
}

/// The full-object CRC from the parts' (raw value, length), in order.
pub fn combine(a: Algorithm, parts: &[(Vec<u8>, u64)]) -> Option<Vec<u8>> {
    let crc = a.crc()?;
    let mut iter = parts.iter();
    let (first, _) = iter.next()?;
    let mut acc = crc_value(first);
    for (raw, len) in iter {
        acc = crc_fast::checksum_combine(crc, acc, crc_value(raw), *len);
    }
    Some(crc_bytes(acc, a))
}

/// The COMPOSITE value: the checksum of the concatenated raw part checksums (then `-N`).
pub fn composite(a: Algorithm, parts: &[Vec<u8>]) -> Vec<u8> {
    let mut h = Hasher::new(a);
    for p in parts {
        h.update(p);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // "123456789" check values of each CRC.
        assert_eq!(digest(Algorithm::Crc32, b"123456789"), 0xCBF43926u32.to_be_bytes());
        assert_eq!(digest(Algorithm::Crc32c, b"123456789"), 0xE3069283u32.to_be_bytes());
        assert_eq!(
            digest(Algorithm::Crc64Nvme, b"123456789"),
            0xAE8B14860A799888u64.to_be_bytes()
        );
        assert_eq!(
            to_base64(&digest(Algorithm::Sha256, b"")),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(
            to_base64(&digest(Algorithm::Sha1, b"abc")),
            "qZk+NkcGgWq6PiVxeFDCbJzQ2J0="
        );
        assert_eq!(Algorithm::parse("crc32c"), Some(Algorithm::Crc32c));
        assert!(from_base64(Algorithm::Crc32, "AAAAAAAA").is_none());
    }

    #[test]
    fn parts_combine() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        for a in [Algorithm::Crc32, Algorithm::Crc32c, Algorithm::Crc64Nvme] {
            let parts: Vec<(Vec<u8>, u64)> = data.chunks(1234).map(|c| (digest(a, c), c.len() as u64)).collect();
            assert_eq!(combine(a, &parts).unwrap(), digest(a, &data), "{a:?}");
        }
        assert!(combine(Algorithm::Sha256, &[(vec![0; 32], 1)]).is_none());
    }
}
