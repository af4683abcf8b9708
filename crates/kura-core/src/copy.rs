//! Growing from one machine: the embedded store's metadata copied into PostgreSQL (the blob
//! files stay where they are; gateways mount the same data directory).
//!
//! The copy streams rows from one redb read transaction (a snapshot) through a bounded
//! channel into batched inserts that skip rows already present, so it is resumable: run it
//! again after an interruption and it adds what is missing. Then it verifies: for every table,
//! the row count and an order-independent checksum (the wrapping sum of each row's SHA-256,
//! over a canonical encoding of the typed row) must be equal on both sides. A target that
//! holds other rows, or different values under the same keys, fails the check.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::model::*;
use crate::pg_store::PgStore;
use crate::redb_store::RedbStore;

/// One row of the metadata, whichever store it lives in.
#[derive(Debug, Clone, Serialize)]
pub enum Row {
    Bucket(BucketRecord),
    /// (bucket, key, record with its extents)
    Object(String, String, ObjectRecord),
    /// (bucket, upload)
    Upload(String, UploadRecord),
    /// (upload id, part number, part)
    Part(String, u32, PartRecord),
    /// (upload id, answer)
    Completed(String, CompletedUpload),
    /// (blob id, due ms)
    Deletion(String, u64),
    /// A blob id some row refers to (the orphan sweep's index).
    Blob(String),
    /// (blob id, bytes) of an inline blob (a small object's bytes kept in the store).
    Inline(String, #[serde(serialize_with = "as_hex")] Vec<u8>),
}

/// Inline bytes enter the tally's digest as hex (a JSON array of numbers would be 4x larger).
fn as_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

impl Row {
    pub fn table(&self) -> &'static str {
        match self {
            Row::Bucket(_) => "buckets",
            Row::Object(..) => "objects",
            Row::Upload(..) => "uploads",
            Row::Part(..) => "parts",
            Row::Completed(..) => "completed",
            Row::Deletion(..) => "deletions",
            Row::Blob(_) => "blob_index",
            Row::Inline(..) => "inline_blobs",
        }
    }
}

/// Per table: how many rows, and the wrapping sum of their digests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally(pub BTreeMap<&'static str, (u64, u128)>);

impl Tally {
    pub fn add(&mut self, row: &Row) -> Result<()> {
        let bytes = serde_json::to_vec(row).map_err(Error::internal)?;
        let digest = Sha256::digest(&bytes);
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        let entry = self.0.entry(row.table()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.wrapping_add(u128::from_be_bytes(first));
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.0.values().map(|(n, _)| n).sum()
    }
}

const BATCH: usize = 1000;
/// A batch is also sent once its inline bytes reach this much (memory stays bounded).
const BATCH_BYTES: usize = 8 << 20;

/// What a copy did.
#[derive(Debug)]
pub struct CopyReport {
    /// Rows read from the source.
    pub source: Tally,
    /// Rows found in the target afterwards.
    pub target: Tally,
    /// Rows inserted by this run (rows already there were kept).
    pub inserted: u64,
}

/// Copies every row of `from` into `to` (migrated), then tallies both sides. Returns an error
/// when the tallies differ; `progress` is called after each batch with the rows read so far.
pub async fn copy_redb_to_pg(
    from: std::sync::Arc<RedbStore>,
    to: &PgStore,
    progress: &dyn Fn(u64),
) -> Result<CopyReport> {
    let (tx, mut rx) = mpsc::channel::<Vec<Row>>(4);
    let reader = tokio::task::spawn_blocking(move || -> Result<Tally> {
        let mut tally = Tally::default();
        let mut batch = Vec::with_capacity(BATCH);
        let mut bytes = 0usize;
        from.export(&mut |row| {
            tally.add(&row)?;
            if let Row::Inline(_, data) = &row {
                bytes += data.len();
            }
            batch.push(row);
            if batch.len() >= BATCH || bytes >= BATCH_BYTES {
                bytes = 0;
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                tx.blocking_send(full)
                    .map_err(|_| Error::internal("the copy's writer stopped"))?;
            }
            Ok(())
        })?;
        if !batch.is_empty() {
            tx.blocking_send(batch)
                .map_err(|_| Error::internal("the copy's writer stopped"))?;
        }
        Ok(tally)
    });
    let mut inserted = 0u64;
    let mut read = 0u64;
    while let Some(batch) = rx.recv().await {
        read += batch.len() as u64;
        inserted += to.import(&batch).await?;
        progress(read);
    }
    let source = reader.await.map_err(Error::internal)??;
    let target = to.tally().await?;
    if source != target {
        let mut lines = Vec::new();
        for table in source
            .0
            .keys()
            .chain(target.0.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            let s = source.0.get(table).copied().unwrap_or_default();
            let t = target.0.get(table).copied().unwrap_or_default();
            if s != t {
                lines.push(format!(
                    "{table}: source {} rows (sum {:032x}), target {} rows (sum {:032x})",
                    s.0, s.1, t.0, t.1
                ));
            }
        }
        return Err(Error::internal(format!(
            "the copy does not match its source: {}",
            lines.join("; ")
        )));
    }
    to.mark_embedded_copy_verified().await?;
    Ok(CopyReport {
        source,
        target,
        inserted,
    })
}
