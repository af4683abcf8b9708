//! The embedded metadata backend on redb. Each trait call is one redb transaction; write
//! transactions are durable (fsynced) when they commit. Values are JSON (small, debuggable,
//! and the schema can grow with `#[serde(default)]`).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Code, Error, Result};
use crate::meta::{
    check_expected_checksum, choose_parts, object_from_parts, BlockingMetaStore, CompleteRequest, DeleteCondition,
    ScanStart, WriteCondition,
};
use crate::model::*;

const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
/// (bucket, key) -> ObjectRecord without its extents: what listings read.
const OBJECTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("objects");
/// (bucket, key) -> the object's extents (Vec<Extent>), apart so that listing a bucket of
/// 10,000-part objects does not decode 10,000 extents per key.
const EXTENTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("extents");

type ObjectTable<'t> = redb::Table<'t, (&'static str, &'static str), &'static [u8]>;

/// Writes an object: its record to OBJECTS, its extents to EXTENTS.
fn store_object(
    objects: &mut ObjectTable,
    extents: &mut ObjectTable,
    bucket: &str,
    key: &str,
    rec: &ObjectRecord,
) -> Result<()> {
    let head = ObjectRecord {
        extents: Vec::new(),
        ..rec.clone()
    };
    objects.insert((bucket, key), enc(&head)?.as_slice()).map_err(db_err)?;
    extents
        .insert((bucket, key), enc(&rec.extents)?.as_slice())
        .map_err(db_err)?;
    Ok(())
}

/// Removes an object's extents and returns them (for the deletion queue).
fn take_extents(extents: &mut ObjectTable, bucket: &str, key: &str) -> Result<Vec<Extent>> {
    match extents.remove((bucket, key)).map_err(db_err)? {
        Some(v) => dec(v.value()),
        None => Ok(Vec::new()),
    }
}
/// (bucket, key, upload id) -> UploadRecord; upload ids sort by initiation time.
const UPLOADS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("uploads");
/// (upload id, part number) -> PartRecord: one row per part, so the 5,000th costs what the first did.
const PARTS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("parts");
/// upload id -> CompletedUpload, for idempotent Complete retries.
const COMPLETED: TableDefinition<&str, &[u8]> = TableDefinition::new("completed");
/// blob id -> due time (ms): blobs no metadata refers to any more, deleted by the sweeper.
const DELETIONS: TableDefinition<&str, u64> = TableDefinition::new("deletions");
/// (due time, blob id) -> (): the same queue in due order, so the sweeper reads only what is due.
const DELETIONS_BY_DUE: TableDefinition<(u64, &str), ()> = TableDefinition::new("deletions_by_due");

/// When an upload was initiated, from its id (48 bits of milliseconds lead it; see
/// `Kura::new_upload_id`). Upload ids sort by initiation time, so the Complete answers table,
/// keyed by upload id, is already in initiation order: expiry scans from the oldest and stops
/// at the first answer initiated after the cut-off (an answer is never completed before its
/// upload began), with no second index to write on every Complete.
fn initiated_ms(upload_id: &str) -> Option<u64> {
    upload_id
        .get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .map(|stamp| stamp >> 16)
}

/// The deletion queue, both orders, inside one write transaction.
struct DeletionQueue<'t> {
    by_blob: redb::Table<'t, &'static str, u64>,
    by_due: redb::Table<'t, (u64, &'static str), ()>,
}

impl<'t> DeletionQueue<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Self> {
        Ok(DeletionQueue {
            by_blob: txn.open_table(DELETIONS).map_err(db_err)?,
            by_due: txn.open_table(DELETIONS_BY_DUE).map_err(db_err)?,
        })
    }

    fn push(&mut self, blob: &str, due_ms: u64) -> Result<()> {
        if let Some(old) = self.by_blob.insert(blob, due_ms).map_err(db_err)? {
            let old = old.value();
            self.by_due.remove((old, blob)).map_err(db_err)?;
        }
        self.by_due.insert((due_ms, blob), ()).map_err(db_err)?;
        Ok(())
    }

    fn forget(&mut self, blob: &str) -> Result<()> {
        if let Some(due) = self.by_blob.remove(blob).map_err(db_err)? {
            let due = due.value();
            self.by_due.remove((due, blob)).map_err(db_err)?;
        }
        Ok(())
    }
}
/// blob id -> (): every blob an object, a part or the deletion queue refers to, written in
/// the transaction that first refers to it and removed when the sweeper deletes the file, so
/// the orphan sweep can ask about one batch of files at a time instead of loading every id.
const BLOB_INDEX: TableDefinition<&str, ()> = TableDefinition::new("blob_index");
/// blob id -> bytes: the blobs of small objects, kept here instead of in files (one commit
/// makes a small PutObject durable, no file or directory fsync). Removed with the blob's
/// deletion-queue entry, like a file.
const INLINE: TableDefinition<&str, &[u8]> = TableDefinition::new("inline_blobs");
/// (bucket, storage class) -> Usage: the bucket statistics, changed by every write in its
/// own transaction.
const STATS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("bucket_stats");
/// Settings of the store itself (schema steps done).
const STORE_INFO: TableDefinition<&str, u64> = TableDefinition::new("store_info");

/// Keeps the bytes of the extents that carry them (new inline blobs), inside the caller's
/// transaction.
fn store_inline(txn: &redb::WriteTransaction, extents: &[Extent]) -> Result<()> {
    let mut t = txn.open_table(INLINE).map_err(db_err)?;
    for e in extents {
        if let Some(data) = &e.data {
            t.insert(e.blob.as_str(), data.as_ref()).map_err(db_err)?;
        }
    }
    Ok(())
}

/// Adds `delta` to the bucket's usage in `class`, inside the caller's transaction.
fn bump(txn: &redb::WriteTransaction, bucket: &str, class: &str, delta: Usage) -> Result<()> {
    let class = crate::classes::StorageClass::of(class).as_str();
    let mut t = txn.open_table(STATS).map_err(db_err)?;
    let mut usage: Usage = match t.get((bucket, class)).map_err(db_err)? {
        Some(v) => dec(v.value())?,
        None => Usage::default(),
    };
    usage.add(&delta);
    t.insert((bucket, class), enc(&usage)?.as_slice()).map_err(db_err)?;
    Ok(())
}

/// Records blobs in the index, inside the caller's transaction.
fn index_blobs<'a>(txn: &redb::WriteTransaction, ids: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let mut t = txn.open_table(BLOB_INDEX).map_err(db_err)?;
    for id in ids {
        t.insert(id, ()).map_err(db_err)?;
    }
    Ok(())
}

pub struct RedbStore {
    db: Database,
    group: GroupCommit,
}

/// Group commit: concurrent write calls share one redb write transaction and its one durable
/// commit (one fsync for the batch instead of one per call, which is what bounds small writes
/// on this store: redb has a single writer and each commit waits for the disk).
///
/// Each call runs its own closure, on its own thread, inside the batch's open transaction,
/// one at a time (under `state`), so every check a call makes (conditions, the upload still
/// open, a racing part number) sees the writes of the calls before it in the batch and is made
/// inside the transaction that commits it. Calls that arrive while a batch is committing wait
/// and form the next batch; the last of them to run commits it, so a lone call commits at once
/// and is never held back waiting for company. Every member, failed or not, answers only once
/// its batch's commit is done.
///
/// The rule that lets one call fail without failing the others: a store call returns an error
/// other than an internal one only before its first write (every call here checks, then
/// writes). An internal error or a panic may leave a half-done write behind, so it poisons the
/// batch: the transaction is aborted and every member gets an internal error (outcome unknown
/// to the service, which leaves their blobs to the orphan sweep).
struct GroupCommit {
    state: std::sync::Mutex<GroupState>,
    changed: std::sync::Condvar,
    /// Durable commits made (batches that wrote something), for tests and diagnostics.
    commits: std::sync::atomic::AtomicU64,
    /// A commit failed since the store was opened (see [`RedbStore::unknown_blobs`]).
    commit_failed: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct GroupState {
    open: Option<OpenBatch>,
    /// A batch's commit is running (its transaction is out of `open`).
    committing: bool,
    /// Calls that have arrived and not yet run their closure.
    waiting: usize,
    /// Calls waiting to run alone (after their batch was aborted by another member).
    alone_waiting: usize,
}

struct OpenBatch {
    txn: redb::WriteTransaction,
    outcome: std::sync::Arc<std::sync::OnceLock<Outcome>>,
    members: usize,
    succeeded: usize,
    poisoned: Option<String>,
}

/// A batch commits once this many calls have run in it even if more are waiting, so that a
/// steady stream of writers cannot hold a batch (and its first member's answer) open for long.
const MAX_BATCH: usize = 256;

impl GroupCommit {
    fn new() -> Self {
        GroupCommit {
            state: std::sync::Mutex::new(GroupState::default()),
            changed: std::sync::Condvar::new(),
            commits: Default::default(),
            commit_failed: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in a batch; when the batch is aborted because another member failed inside
    /// it, `f` runs again alone, in a transaction of its own (it was not at fault, an aborted
    /// batch wrote nothing, and alone no other call can abort it). Each call's closure
    /// therefore must be safe to run more than once.
    fn write<T>(&self, db: &Database, mut f: impl FnMut(&redb::WriteTransaction) -> Result<T>) -> Result<T> {
        match self.write_once(db, &mut f) {
            Ok(v) => Ok(v),
            Err(Attempt::Failed(e)) => Err(e),
            Err(Attempt::Aborted(why)) => {
                tracing::debug!(%why, "write batch aborted by another member; running alone");
                self.write_alone(db, &mut f)
            }
        }
    }

    /// Waits for the batch in progress to end, then runs `f` in a transaction no other call
    /// joins (calls arriving meanwhile wait and form the next batch).
    fn write_alone<T>(&self, db: &Database, f: &mut impl FnMut(&redb::WriteTransaction) -> Result<T>) -> Result<T> {
        let mut st = self.lock();
        st.alone_waiting += 1;
        while st.committing || st.open.is_some() {
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.alone_waiting -= 1;
        st.committing = true;
        drop(st);
        let outcome = std::sync::OnceLock::new();
        let finish = FinishBatch {
            group: self,
            outcome: &outcome,
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<T> {
            let txn = db.begin_write().map_err(db_err)?;
            match f(&txn) {
                Ok(v) => match txn.commit() {
                    Ok(()) => {
                        self.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Ok(v)
                    }
                    Err(e) => {
                        self.commit_failed.store(true, std::sync::atomic::Ordering::Relaxed);
                        Err(db_err(e))
                    }
                },
                Err(e) => {
                    let _ = txn.abort();
                    Err(e)
                }
            }
        }))
        .unwrap_or_else(|_| Err(Error::internal("metadata store: a store call panicked")));
        drop(finish);
        result
    }

    fn write_once<T>(
        &self,
        db: &Database,
        f: &mut impl FnMut(&redb::WriteTransaction) -> Result<T>,
    ) -> std::result::Result<T, Attempt> {
        let mut st = self.lock();
        st.waiting += 1;
        // A call waiting to run alone goes before a new batch opens.
        while st.committing || (st.open.is_none() && st.alone_waiting > 0) {
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.waiting -= 1;
        if st.open.is_none() {
            let txn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.begin_write()))
                .map_err(|_| Attempt::Failed(Error::internal("metadata store: begin_write panicked")))?
                .map_err(|e| Attempt::Failed(db_err(e)))?;
            st.open = Some(OpenBatch {
                txn,
                outcome: Default::default(),
                members: 0,
                succeeded: 0,
                poisoned: None,
            });
        }
        let Some(batch) = st.open.as_mut() else {
            return Err(Attempt::Failed(Error::internal("metadata store: no open batch")));
        };
        batch.members += 1;
        let mut at_fault = false;
        let result = match &batch.poisoned {
            Some(_) => None, // not run: it runs again in the next batch
            None => {
                let txn = &batch.txn;
                Some(
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(txn))) {
                        Ok(Ok(v)) => {
                            batch.succeeded += 1;
                            Ok(v)
                        }
                        Ok(Err(e)) => {
                            if e.code == Code::InternalError || e.code == Code::ServiceUnavailable {
                                batch.poisoned = Some(e.message.clone());
                                at_fault = true;
                            }
                            Err(e)
                        }
                        Err(_) => {
                            batch.poisoned = Some("a store call panicked".into());
                            at_fault = true;
                            Err(Error::internal("metadata store: a store call panicked"))
                        }
                    },
                )
            }
        };
        let outcome = batch.outcome.clone();
        let full = batch.members >= MAX_BATCH;
        if st.waiting == 0 || full {
            if let Some(batch) = st.open.take() {
                st.committing = true;
                drop(st);
                // Whatever happens below (a panic in redb included), the batch gets an outcome
                // and the next one may start.
                let finish = FinishBatch {
                    group: self,
                    outcome: &batch.outcome,
                };
                let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    if let Some(why) = batch.poisoned {
                        let _ = batch.txn.abort();
                        Outcome::Aborted(why)
                    } else if batch.succeeded == 0 {
                        // Every member failed its checks before writing: nothing to make durable.
                        let _ = batch.txn.abort();
                        Outcome::Committed
                    } else {
                        match batch.txn.commit() {
                            Ok(()) => {
                                self.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                Outcome::Committed
                            }
                            Err(e) => {
                                // A failed commit may still have reached the disk: nobody can
                                // tell its members what happened, and the orphan sweep must
                                // not trust this process's view of the blob index.
                                self.commit_failed.store(true, std::sync::atomic::Ordering::Relaxed);
                                Outcome::Failed(e.to_string())
                            }
                        }
                    }
                }))
                .unwrap_or_else(|_| {
                    self.commit_failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    Outcome::Failed("the commit panicked".into())
                });
                let _ = batch.outcome.set(done);
                drop(finish);
                st = self.lock();
            }
        }
        while outcome.get().is_none() {
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        drop(st);
        match (outcome.get(), result) {
            (Some(Outcome::Committed), Some(r)) => r.map_err(Attempt::Failed),
            (Some(Outcome::Aborted(why)), _) if !at_fault => Err(Attempt::Aborted(why.clone())),
            (Some(Outcome::Aborted(_)), Some(Err(e))) => Err(Attempt::Failed(e)),
            (Some(Outcome::Failed(why)), _) => Err(Attempt::Failed(Error::internal(format!(
                "metadata store: batch commit failed: {why}"
            )))),
            _ => Err(Attempt::Failed(Error::internal(
                "metadata store: batch ended without an outcome",
            ))),
        }
    }
}

/// How a batch ended.
enum Outcome {
    Committed,
    /// A member failed inside it (its reason); nothing was written.
    Aborted(String),
    /// The commit failed; it may or may not have reached the disk.
    Failed(String),
}

/// Why one attempt of a call did not give its answer.
enum Attempt {
    /// The batch was aborted by another member: run again.
    Aborted(String),
    Failed(Error),
}

/// Ends a batch's commit phase even if the commit unwinds: an outcome for its members (if
/// none was set), then the next batch may open.
struct FinishBatch<'a> {
    group: &'a GroupCommit,
    outcome: &'a std::sync::OnceLock<Outcome>,
}

impl Drop for FinishBatch<'_> {
    fn drop(&mut self) {
        let _ = self
            .outcome
            .set(Outcome::Failed("the batch ended without committing".into()));
        self.group.lock().committing = false;
        self.group.changed.notify_all();
    }
}

fn db_err(e: impl std::fmt::Display) -> Error {
    Error::internal(format!("metadata store: {e}"))
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(db_err)
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(db_err)
}

fn no_such_bucket(b: &str) -> Error {
    Error::new(Code::NoSuchBucket).with_bucket(b)
}

fn no_such_upload(u: &str) -> Error {
    Error::new(Code::NoSuchUpload).with_upload(u)
}

/// The smallest string greater than every string starting with `prefix` is not expressible,
/// so range scans use `prefix..` and stop at the first key without the prefix.
fn has_prefix(s: &str, prefix: &str) -> bool {
    s.starts_with(prefix)
}

/// redb's page cache when not told otherwise (redb's own default is 1 GiB, which inline
/// objects would fill: the cache is the store's largest use of memory).
pub const DEFAULT_CACHE_BYTES: usize = 256 * 1024 * 1024;

impl RedbStore {
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the store with a page cache of at most `cache_bytes`.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Self> {
        let db = redb::Builder::new()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(db_err)?;
        let txn = db.begin_write().map_err(db_err)?;
        {
            txn.open_table(BUCKETS).map_err(db_err)?;
            txn.open_table(OBJECTS).map_err(db_err)?;
            txn.open_table(EXTENTS).map_err(db_err)?;
            txn.open_table(UPLOADS).map_err(db_err)?;
            txn.open_table(PARTS).map_err(db_err)?;
            txn.open_table(COMPLETED).map_err(db_err)?;
            txn.open_table(DELETIONS).map_err(db_err)?;
            txn.open_table(DELETIONS_BY_DUE).map_err(db_err)?;
            txn.open_table(BLOB_INDEX).map_err(db_err)?;
            txn.open_table(INLINE).map_err(db_err)?;
            txn.open_table(STATS).map_err(db_err)?;
            let mut info = txn.open_table(STORE_INFO).map_err(db_err)?;
            if info.get("blob_index").map_err(db_err)?.is_none() {
                // A store from before the index: record every blob it refers to, once.
                let mut ids = Vec::new();
                for item in txn.open_table(EXTENTS).map_err(db_err)?.iter().map_err(db_err)? {
                    let (_, v) = item.map_err(db_err)?;
                    ids.extend(dec::<Vec<Extent>>(v.value())?.into_iter().map(|e| e.blob));
                }
                for item in txn.open_table(PARTS).map_err(db_err)?.iter().map_err(db_err)? {
                    let (_, v) = item.map_err(db_err)?;
                    ids.push(dec::<PartRecord>(v.value())?.blob);
                }
                for item in txn.open_table(DELETIONS).map_err(db_err)?.iter().map_err(db_err)? {
                    let (k, _) = item.map_err(db_err)?;
                    ids.push(k.value().to_string());
                }
                index_blobs(&txn, ids.iter().map(String::as_str))?;
                info.insert("blob_index", 1).map_err(db_err)?;
            }
            if info.get("ordered_queues").map_err(db_err)?.is_none() {
                // A store from before the due-ordered deletion queue: build it once.
                let mut by_due = txn.open_table(DELETIONS_BY_DUE).map_err(db_err)?;
                for item in txn.open_table(DELETIONS).map_err(db_err)?.iter().map_err(db_err)? {
                    let (k, v) = item.map_err(db_err)?;
                    by_due.insert((v.value(), k.value()), ()).map_err(db_err)?;
                }
                info.insert("ordered_queues", 1).map_err(db_err)?;
            }
            if info.get("bucket_stats").map_err(db_err)?.is_none() {
                // A store from before the statistics: count what it holds, once.
                let mut classes = std::collections::HashMap::new();
                for item in txn.open_table(UPLOADS).map_err(db_err)?.iter().map_err(db_err)? {
                    let (k, v) = item.map_err(db_err)?;
                    let (bucket, _, id) = k.value();
                    let u: UploadRecord = dec(v.value())?;
                    bump(
                        &txn,
                        bucket,
                        &u.storage_class,
                        Usage {
                            uploads: 1,
                            ..Usage::default()
                        },
                    )?;
                    classes.insert(id.to_string(), (bucket.to_string(), u.storage_class));
                }
                for item in txn.open_table(PARTS).map_err(db_err)?.iter().map_err(db_err)? {
                    let (k, v) = item.map_err(db_err)?;
                    if let Some((bucket, class)) = classes.get(k.value().0) {
                        let p: PartRecord = dec(v.value())?;
                        bump(&txn, bucket, class, Usage::part(p.size, 1))?;
                    }
                }
                for item in txn.open_table(OBJECTS).map_err(db_err)?.iter().map_err(db_err)? {
                    let (k, v) = item.map_err(db_err)?;
                    let rec: ObjectRecord = dec(v.value())?;
                    bump(&txn, k.value().0, &rec.storage_class, Usage::object(rec.size, 1))?;
                }
                info.insert("bucket_stats", 1).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(RedbStore {
            db,
            group: GroupCommit::new(),
        })
    }
}

impl RedbStore {
    /// Durable commits made since the store was opened (each covers one batch of writes).
    pub fn commits(&self) -> u64 {
        self.group.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every row of the store, table by table, from one read transaction (a consistent
    /// snapshot): what `kura meta copy` moves into PostgreSQL.
    pub fn export(&self, f: &mut dyn FnMut(crate::copy::Row) -> Result<()>) -> Result<()> {
        use crate::copy::Row;
        let txn = self.db.begin_read().map_err(db_err)?;
        for item in txn.open_table(BUCKETS).map_err(db_err)?.iter().map_err(db_err)? {
            let (_, v) = item.map_err(db_err)?;
            f(Row::Bucket(dec(v.value())?))?;
        }
        // Inline bytes before the objects that refer to them: an interrupted copy leaves bytes
        // without objects (harmless), never objects without their bytes.
        for item in txn.open_table(INLINE).map_err(db_err)?.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            f(Row::Inline(k.value().to_string(), v.value().to_vec()))?;
        }
        let extents = txn.open_table(EXTENTS).map_err(db_err)?;
        for item in txn.open_table(OBJECTS).map_err(db_err)?.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let (bucket, key) = k.value();
            let mut rec: ObjectRecord = dec(v.value())?;
            if let Some(e) = extents.get((bucket, key)).map_err(db_err)? {
                rec.extents = dec(e.value())?;
            }
            f(Row::Object(bucket.to_string(), key.to_string(), rec))?;
        }
        for item in txn.open_table(UPLOADS).map_err(db_err)?.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            f(Row::Upload(k.value().0.to_string(), dec(v.value())?))?;
        }
        for item in txn.open_table(PARTS).map_err(db_err)?.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let (id, n) = k.value();
            f(Row::Part(id.to_string(), n, dec(v.value())?))?;
        }
        for item in txn.open_table(COMPLETED).map_err(db_err)?.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            f(Row::Completed(k.value().to_string(), dec(v.value())?))?;
        }
        for item in txn.open_table(DELETIONS).map_err(db_err)?.iter().map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            f(Row::Deletion(k.value().to_string(), v.value()))?;
        }
        for item in txn.open_table(BLOB_INDEX).map_err(db_err)?.iter().map_err(db_err)? {
            let (k, _) = item.map_err(db_err)?;
            f(Row::Blob(k.value().to_string()))?;
        }
        Ok(())
    }
}

impl BlockingMetaStore for RedbStore {
    fn create_bucket(&self, rec: &BucketRecord, acl_given: bool, max_buckets: usize) -> Result<bool> {
        self.group.write(&self.db, |txn| {
            let created;
            {
                let mut t = txn.open_table(BUCKETS).map_err(db_err)?;
                let existing: Option<BucketRecord> = match t.get(rec.name.as_str()).map_err(db_err)? {
                    Some(v) => Some(dec(v.value())?),
                    None => None,
                };
                match existing {
                    Some(mut b) => {
                        created = false;
                        if acl_given && b.acl != rec.acl {
                            b.acl = rec.acl;
                            t.insert(rec.name.as_str(), enc(&b)?.as_slice()).map_err(db_err)?;
                        }
                    }
                    None => {
                        if t.len().map_err(db_err)? as usize >= max_buckets {
                            return Err(Error::new(Code::TooManyBuckets));
                        }
                        created = true;
                        t.insert(rec.name.as_str(), enc(rec)?.as_slice()).map_err(db_err)?;
                    }
                }
            }
            Ok(created)
        })
    }

    fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(BUCKETS).map_err(db_err)?;
        match t.get(name).map_err(db_err)? {
            Some(v) => Ok(Some(dec(v.value())?)),
            None => Ok(None),
        }
    }

    fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(BUCKETS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(db_err)? {
            let (_, v) = item.map_err(db_err)?;
            out.push(dec(v.value())?);
        }
        Ok(out)
    }

    fn update_bucket(&self, name: &str, change: &BucketChange) -> Result<()> {
        self.group.write(&self.db, |txn| {
            {
                let mut t = txn.open_table(BUCKETS).map_err(db_err)?;
                let mut b: BucketRecord = match t.get(name).map_err(db_err)? {
                    Some(v) => dec(v.value())?,
                    None => return Err(no_such_bucket(name)),
                };
                change.apply(&mut b);
                t.insert(name, enc(&b)?.as_slice()).map_err(db_err)?;
            }
            Ok(())
        })
    }

    fn delete_bucket(&self, name: &str) -> Result<()> {
        self.group.write(&self.db, |txn| {
            {
                let mut buckets = txn.open_table(BUCKETS).map_err(db_err)?;
                if buckets.get(name).map_err(db_err)?.is_none() {
                    return Err(no_such_bucket(name));
                }
                let objects = txn.open_table(OBJECTS).map_err(db_err)?;
                let has_object = objects
                    .range((name, "")..)
                    .map_err(db_err)?
                    .next()
                    .transpose()
                    .map_err(db_err)?
                    .is_some_and(|(k, _)| k.value().0 == name);
                let uploads = txn.open_table(UPLOADS).map_err(db_err)?;
                let has_upload = uploads
                    .range((name, "", "")..)
                    .map_err(db_err)?
                    .next()
                    .transpose()
                    .map_err(db_err)?
                    .is_some_and(|(k, _)| k.value().0 == name);
                if has_object || has_upload {
                    return Err(Error::new(Code::BucketNotEmpty).with_bucket(name));
                }
                buckets.remove(name).map_err(db_err)?;
                let mut stats = txn.open_table(STATS).map_err(db_err)?;
                for class in crate::classes::StorageClass::ALL {
                    stats.remove((name, class.as_str())).map_err(db_err)?;
                }
            }
            Ok(())
        })
    }

    fn put_object(
        &self,
        bucket: &str,
        key: &str,
        rec: &ObjectRecord,
        condition: &WriteCondition,
        delete_due_ms: u64,
    ) -> Result<()> {
        self.group.write(&self.db, |txn| {
            {
                let buckets = txn.open_table(BUCKETS).map_err(db_err)?;
                if buckets.get(bucket).map_err(db_err)?.is_none() {
                    return Err(no_such_bucket(bucket));
                }
                let mut objects = txn.open_table(OBJECTS).map_err(db_err)?;
                let old: Option<ObjectRecord> = match objects.get((bucket, key)).map_err(db_err)? {
                    Some(v) => Some(dec(v.value())?),
                    None => None,
                };
                condition.check(key, old.as_ref())?;
                let mut extents = txn.open_table(EXTENTS).map_err(db_err)?;
                if let Some(old) = &old {
                    let mut del = DeletionQueue::open(txn)?;
                    for e in take_extents(&mut extents, bucket, key)? {
                        del.push(e.blob.as_str(), delete_due_ms)?;
                    }
                    bump(txn, bucket, &old.storage_class, Usage::object(old.size, -1))?;
                }
                store_object(&mut objects, &mut extents, bucket, key, rec)?;
                bump(txn, bucket, &rec.storage_class, Usage::object(rec.size, 1))?;
            }
            index_blobs(txn, rec.extents.iter().map(|e| e.blob.as_str()))?;
            store_inline(txn, &rec.extents)?;
            Ok(())
        })
    }

    fn get_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(OBJECTS).map_err(db_err)?;
        let mut rec: ObjectRecord = match t.get((bucket, key)).map_err(db_err)? {
            Some(v) => dec(v.value())?,
            None => return Ok(None),
        };
        if let Some(v) = txn
            .open_table(EXTENTS)
            .map_err(db_err)?
            .get((bucket, key))
            .map_err(db_err)?
        {
            rec.extents = dec(v.value())?;
        }
        Ok(Some(rec))
    }

    fn delete_object(&self, bucket: &str, key: &str, condition: &DeleteCondition, delete_due_ms: u64) -> Result<()> {
        self.group.write(&self.db, |txn| {
            {
                let buckets = txn.open_table(BUCKETS).map_err(db_err)?;
                if buckets.get(bucket).map_err(db_err)?.is_none() {
                    return Err(no_such_bucket(bucket));
                }
                let mut objects = txn.open_table(OBJECTS).map_err(db_err)?;
                if !condition.is_empty() {
                    let existing: Option<ObjectRecord> = match objects.get((bucket, key)).map_err(db_err)? {
                        Some(v) => Some(dec(v.value())?),
                        None => None,
                    };
                    condition.check(key, existing.as_ref())?;
                }
                let removed: Option<ObjectRecord> = match objects.remove((bucket, key)).map_err(db_err)? {
                    Some(v) => Some(dec(v.value())?),
                    None => None,
                };
                if let Some(old) = removed {
                    bump(txn, bucket, &old.storage_class, Usage::object(old.size, -1))?;
                    let mut extents = txn.open_table(EXTENTS).map_err(db_err)?;
                    let mut del = DeletionQueue::open(txn)?;
                    for e in take_extents(&mut extents, bucket, key)? {
                        del.push(e.blob.as_str(), delete_due_ms)?;
                    }
                }
            }
            Ok(())
        })
    }

    fn update_object(&self, bucket: &str, key: &str, change: &ObjectChange) -> Result<ObjectRecord> {
        self.group.write(&self.db, |txn| {
            let mut objects = txn.open_table(OBJECTS).map_err(db_err)?;
            let mut rec: ObjectRecord = match objects.get((bucket, key)).map_err(db_err)? {
                Some(v) => dec(v.value())?,
                None => return Err(Error::new(Code::NoSuchKey).with_key(key)),
            };
            change.apply(&mut rec)?;
            objects.insert((bucket, key), enc(&rec)?.as_slice()).map_err(db_err)?;
            Ok(rec)
        })
    }

    fn scan_objects(
        &self,
        bucket: &str,
        prefix: &str,
        start: &ScanStart,
        limit: usize,
    ) -> Result<Vec<(String, ObjectRecord)>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(OBJECTS).map_err(db_err)?;
        let (from, exclusive) = match start {
            ScanStart::After(k) => (k.as_str(), true),
            ScanStart::At(k) => (k.as_str(), false),
        };
        let first = if from >= prefix { from } else { prefix };
        let mut out = Vec::new();
        for item in t.range((bucket, first)..).map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let (b, key) = k.value();
            if b != bucket || !has_prefix(key, prefix) {
                break;
            }
            if exclusive && key == from {
                continue;
            }
            out.push((key.to_string(), dec(v.value())?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn create_upload(&self, bucket: &str, rec: &UploadRecord) -> Result<()> {
        self.group.write(&self.db, |txn| {
            {
                let buckets = txn.open_table(BUCKETS).map_err(db_err)?;
                if buckets.get(bucket).map_err(db_err)?.is_none() {
                    return Err(no_such_bucket(bucket));
                }
                let mut uploads = txn.open_table(UPLOADS).map_err(db_err)?;
                uploads
                    .insert((bucket, rec.key.as_str(), rec.upload_id.as_str()), enc(rec)?.as_slice())
                    .map_err(db_err)?;
                let created = Usage {
                    uploads: 1,
                    ..Usage::default()
                };
                bump(txn, bucket, &rec.storage_class, created)?;
            }
            Ok(())
        })
    }

    fn get_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Option<UploadRecord>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(UPLOADS).map_err(db_err)?;
        match t.get((bucket, key, upload_id)).map_err(db_err)? {
            Some(v) => Ok(Some(dec(v.value())?)),
            None => Ok(None),
        }
    }

    fn get_completed(&self, upload_id: &str) -> Result<Option<CompletedUpload>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(COMPLETED).map_err(db_err)?;
        match t.get(upload_id).map_err(db_err)? {
            Some(v) => Ok(Some(dec(v.value())?)),
            None => Ok(None),
        }
    }

    fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        rec: &PartRecord,
        delete_due_ms: u64,
    ) -> Result<()> {
        self.group.write(&self.db, |txn| {
            {
                let uploads = txn.open_table(UPLOADS).map_err(db_err)?;
                let upload: UploadRecord = match uploads.get((bucket, key, upload_id)).map_err(db_err)? {
                    Some(v) => dec(v.value())?,
                    None => return Err(no_such_upload(upload_id)),
                };
                let mut parts = txn.open_table(PARTS).map_err(db_err)?;
                if upload.sequential {
                    let last = parts
                        .range((upload_id, 0)..=(upload_id, u32::MAX))
                        .map_err(db_err)?
                        .next_back()
                        .transpose()
                        .map_err(db_err)?
                        .map_or(0, |(k, _)| k.value().1);
                    if part_number > last + 1 {
                        return Err(Error::new(Code::PartNotSequential));
                    }
                }
                let old = parts
                    .insert((upload_id, part_number), enc(rec)?.as_slice())
                    .map_err(db_err)?;
                let mut usage = Usage::part(rec.size, 1);
                if let Some(old) = old {
                    let old: PartRecord = dec(old.value())?;
                    let mut del = DeletionQueue::open(txn)?;
                    del.push(old.blob.as_str(), delete_due_ms)?;
                    usage.add(&Usage::part(old.size, -1));
                }
                bump(txn, bucket, &upload.storage_class, usage)?;
            }
            index_blobs(txn, [rec.blob.as_str()])?;
            Ok(())
        })
    }

    fn scan_parts(&self, upload_id: &str, after: u32, limit: usize) -> Result<Vec<(u32, PartRecord)>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(PARTS).map_err(db_err)?;
        let mut out = Vec::new();
        let Some(first) = after.checked_add(1) else {
            return Ok(out);
        };
        for item in t.range((upload_id, first)..=(upload_id, u32::MAX)).map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            out.push((k.value().1, dec(v.value())?));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn scan_uploads(&self, bucket: &str, prefix: &str, after: (&str, &str), limit: usize) -> Result<Vec<UploadRecord>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(UPLOADS).map_err(db_err)?;
        let start = if after.0 >= prefix { after.0 } else { prefix };
        let mut out = Vec::new();
        for item in t.range((bucket, start, "")..).map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let (b, key, id) = k.value();
            if b != bucket || !has_prefix(key, prefix) {
                break;
            }
            if (key, id) <= after {
                continue;
            }
            out.push(dec(v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn complete_upload(&self, req: &CompleteRequest) -> Result<CompletedUpload> {
        let (bucket, key, upload_id) = (req.bucket.as_str(), req.key.as_str(), req.upload_id.as_str());
        self.group.write(&self.db, |txn| {
            let outcome;
            {
                let mut uploads = txn.open_table(UPLOADS).map_err(db_err)?;
                let upload: UploadRecord = match uploads.get((bucket, key, upload_id)).map_err(db_err)? {
                    Some(v) => dec(v.value())?,
                    None => {
                        // A retry of a Complete that succeeded gets the same answer.
                        let completed = txn.open_table(COMPLETED).map_err(db_err)?;
                        if let Some(v) = completed.get(upload_id).map_err(db_err)? {
                            let c: CompletedUpload = dec(v.value())?;
                            if c.bucket == bucket
                                && c.key == key
                                && c.request_fingerprint == req.selection.fingerprint()
                            {
                                return Ok(c);
                            }
                        }
                        return Err(no_such_upload(upload_id));
                    }
                };
                let mut parts = txn.open_table(PARTS).map_err(db_err)?;
                let mut stored = BTreeMap::new();
                for item in parts.range((upload_id, 0)..=(upload_id, u32::MAX)).map_err(db_err)? {
                    let (k, v) = item.map_err(db_err)?;
                    stored.insert(k.value().1, dec::<PartRecord>(v.value())?);
                }
                let chosen = choose_parts(&req.selection, &stored, req.min_part_size)?;
                if upload.sequential && chosen.iter().enumerate().any(|(i, (n, _))| *n as usize != i + 1) {
                    return Err(Error::new(Code::PartNotSequential));
                }
                let rec = object_from_parts(&upload, &chosen, req.acl, req.now_ms);
                check_expected_checksum(&rec, req.expected_checksum.as_ref())?;

                let mut objects = txn.open_table(OBJECTS).map_err(db_err)?;
                let mut del = DeletionQueue::open(txn)?;
                let old: Option<ObjectRecord> = match objects.get((bucket, key)).map_err(db_err)? {
                    Some(v) => Some(dec(v.value())?),
                    None => None,
                };
                let mut condition = req.condition.clone();
                condition.forbid_overwrite |= upload.forbid_overwrite;
                condition.check(key, old.as_ref())?;
                let mut extents = txn.open_table(EXTENTS).map_err(db_err)?;
                if let Some(old) = &old {
                    for e in take_extents(&mut extents, bucket, key)? {
                        del.push(e.blob.as_str(), req.delete_due_ms)?;
                    }
                    bump(txn, bucket, &old.storage_class, Usage::object(old.size, -1))?;
                }
                // The upload and all its parts leave the statistics; the object enters them.
                let mut usage = Usage {
                    uploads: -1,
                    ..Usage::default()
                };
                for p in stored.values() {
                    usage.add(&Usage::part(p.size, -1));
                }
                bump(txn, bucket, &upload.storage_class, usage)?;
                bump(txn, bucket, &rec.storage_class, Usage::object(rec.size, 1))?;
                // Parts not listed are discarded.
                let used: HashSet<u32> = chosen.iter().map(|(n, _)| *n).collect();
                for (n, p) in &stored {
                    if !used.contains(n) {
                        del.push(p.blob.as_str(), req.delete_due_ms)?;
                    }
                }
                store_object(&mut objects, &mut extents, bucket, key, &rec)?;
                for item in parts
                    .extract_from_if((upload_id, 0)..=(upload_id, u32::MAX), |_, _| true)
                    .map_err(db_err)?
                {
                    item.map_err(db_err)?;
                }
                uploads.remove((bucket, key, upload_id)).map_err(db_err)?;
                outcome = req.outcome(&rec);
                let mut completed = txn.open_table(COMPLETED).map_err(db_err)?;
                completed.insert(upload_id, enc(&outcome)?.as_slice()).map_err(db_err)?;
            }
            Ok(outcome)
        })
    }

    fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str, delete_due_ms: u64) -> Result<()> {
        self.group.write(&self.db, |txn| {
            {
                let mut uploads = txn.open_table(UPLOADS).map_err(db_err)?;
                let upload: UploadRecord = match uploads.remove((bucket, key, upload_id)).map_err(db_err)? {
                    Some(v) => dec(v.value())?,
                    None => return Err(no_such_upload(upload_id)),
                };
                let mut parts = txn.open_table(PARTS).map_err(db_err)?;
                let mut del = DeletionQueue::open(txn)?;
                let mut usage = Usage {
                    uploads: -1,
                    ..Usage::default()
                };
                for item in parts
                    .extract_from_if((upload_id, 0)..=(upload_id, u32::MAX), |_, _| true)
                    .map_err(db_err)?
                {
                    let (_, v) = item.map_err(db_err)?;
                    let p: PartRecord = dec(v.value())?;
                    del.push(p.blob.as_str(), delete_due_ms)?;
                    usage.add(&Usage::part(p.size, -1));
                }
                bump(txn, bucket, &upload.storage_class, usage)?;
            }
            Ok(())
        })
    }

    fn due_deletions(&self, now_ms: u64, limit: usize) -> Result<Vec<String>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(DELETIONS_BY_DUE).map_err(db_err)?;
        let mut out = Vec::new();
        for item in t.range((0, "")..=(now_ms, "\u{10FFFF}")).map_err(db_err)? {
            let (k, _) = item.map_err(db_err)?;
            out.push(k.value().1.to_string());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn forget_deletions(&self, blobs: &[String]) -> Result<()> {
        self.group.write(&self.db, |txn| {
            {
                let mut queue = DeletionQueue::open(txn)?;
                let mut index = txn.open_table(BLOB_INDEX).map_err(db_err)?;
                let mut inline = txn.open_table(INLINE).map_err(db_err)?;
                for b in blobs {
                    queue.forget(b)?;
                    index.remove(b.as_str()).map_err(db_err)?;
                    inline.remove(b.as_str()).map_err(db_err)?;
                }
            }
            Ok(())
        })
    }

    fn unknown_blobs(&self, ids: &[String]) -> Result<Vec<String>> {
        if self.group.commit_failed.load(std::sync::atomic::Ordering::Relaxed) {
            // The failed commit may be on disk after a restart though this process cannot see
            // it: a blob it refers to would look like an orphan. Sweep after a restart.
            return Err(Error::internal(
                "metadata store: a commit failed in this process; orphans are swept after a restart",
            ));
        }
        let txn = self.db.begin_read().map_err(db_err)?;
        let index = txn.open_table(BLOB_INDEX).map_err(db_err)?;
        let mut out = Vec::new();
        for id in ids {
            if index.get(id.as_str()).map_err(db_err)?.is_none() {
                out.push(id.clone());
            }
        }
        Ok(out)
    }

    fn stores_inline(&self) -> bool {
        true
    }

    fn bucket_usage(&self, bucket: &str) -> Result<Vec<(String, Usage)>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(STATS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in t.range((bucket, "")..).map_err(db_err)? {
            let (k, v) = item.map_err(db_err)?;
            let (b, class) = k.value();
            if b != bucket {
                break;
            }
            out.push((class.to_string(), dec(v.value())?));
        }
        Ok(out)
    }

    fn inline_blob(&self, id: &str) -> Result<Option<bytes::Bytes>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let t = txn.open_table(INLINE).map_err(db_err)?;
        Ok(t.get(id)
            .map_err(db_err)?
            .map(|v| bytes::Bytes::copy_from_slice(v.value())))
    }

    fn expire_completed(&self, before_ms: u64) -> Result<usize> {
        self.group.write(&self.db, |txn| {
            let n;
            {
                let mut completed = txn.open_table(COMPLETED).map_err(db_err)?;
                let mut expired = Vec::new();
                for item in completed.iter().map_err(db_err)? {
                    let (k, v) = item.map_err(db_err)?;
                    if initiated_ms(k.value()).is_some_and(|t| t >= before_ms) {
                        break;
                    }
                    let keep = serde_json::from_slice::<CompletedUpload>(v.value())
                        .map(|c| c.completed_ms >= before_ms)
                        .unwrap_or(false);
                    if !keep {
                        expired.push(k.value().to_string());
                    }
                }
                n = expired.len();
                for id in &expired {
                    completed.remove(id.as_str()).map_err(db_err)?;
                }
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(blob: &str) -> ObjectRecord {
        ObjectRecord {
            etag: "E".into(),
            s3_etag: None,
            checksum: None,
            size: 1,
            crc64: 0,
            content_md5: None,
            last_modified_ms: 0,
            object_type: ObjectType::Normal,
            storage_class: "Standard".into(),
            acl: ObjectAcl::default(),
            headers: ObjectHeaders::default(),
            extents: vec![Extent {
                blob: blob.into(),
                len: 1,
                ..Default::default()
            }],
            tags: Vec::new(),
            restore: None,
        }
    }

    #[test]
    fn deletion_queue_in_due_order_and_blob_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("meta.redb")).unwrap();
        let bucket = BucketRecord {
            name: "bkt".into(),
            created_ms: 0,
            acl: Acl::default(),
            storage_class: "Standard".into(),
            tags: Vec::new(),
        };
        store.create_bucket(&bucket, false, 10).unwrap();
        let none = WriteCondition::default();
        let ids: Vec<String> = (0..4).map(|i| format!("{i:032x}")).collect();
        store.put_object("bkt", "a", &object(&ids[0]), &none, 0).unwrap();
        store.put_object("bkt", "b", &object(&ids[1]), &none, 0).unwrap();
        // Replacing queues the old blob with the given due time; deleting likewise.
        store.put_object("bkt", "a", &object(&ids[2]), &none, 300).unwrap();
        store
            .delete_object("bkt", "b", &DeleteCondition::default(), 100)
            .unwrap();
        assert_eq!(store.unknown_blobs(&ids).unwrap(), vec![ids[3].clone()]);
        assert_eq!(store.due_deletions(99, 10).unwrap(), Vec::<String>::new());
        assert_eq!(store.due_deletions(100, 10).unwrap(), vec![ids[1].clone()]);
        assert_eq!(
            store.due_deletions(1000, 10).unwrap(),
            vec![ids[1].clone(), ids[0].clone()]
        );
        assert_eq!(store.due_deletions(1000, 1).unwrap(), vec![ids[1].clone()]);
        store.forget_deletions(&[ids[1].clone()]).unwrap();
        assert_eq!(store.due_deletions(1000, 10).unwrap(), vec![ids[0].clone()]);
        let mut unknown = store.unknown_blobs(&ids).unwrap();
        unknown.sort();
        assert_eq!(
            unknown,
            vec![ids[1].clone(), ids[3].clone()],
            "a forgotten blob leaves the index"
        );
    }

    /// A call that fails inside a batch (an unreadable row: an internal error, after which
    /// the transaction cannot be trusted) aborts the batch, but only that call fails: the
    /// others in its batch run again and land. Inline bytes are written with their object.
    #[test]
    fn an_internal_error_fails_only_its_own_call() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(RedbStore::open(&dir.path().join("meta.redb")).unwrap());
        let bucket = BucketRecord {
            name: "b".into(),
            created_ms: 0,
            acl: Acl::Private,
            storage_class: "Standard".into(),
            tags: Vec::new(),
        };
        store.create_bucket(&bucket, false, 10).unwrap();
        let txn = store.db.begin_write().unwrap();
        txn.open_table(OBJECTS)
            .unwrap()
            .insert(("b", "bad"), b"not json".as_slice())
            .unwrap();
        txn.commit().unwrap();
        let threads: Vec<_> = (0..32)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut failures = 0;
                    for i in 0..30 {
                        let key = if t == 0 { "bad".to_string() } else { format!("k{t}-{i}") };
                        let mut rec = object(&format!("{t}-{i}"));
                        rec.extents[0].inline = true;
                        rec.extents[0].data = Some(bytes::Bytes::from(key.clone()));
                        let cond = WriteCondition {
                            forbid_overwrite: true,
                            if_match: None,
                        };
                        if let Err(e) = store.put_object("b", &key, &rec, &cond, 0) {
                            assert_eq!(e.code, Code::InternalError);
                            failures += 1;
                        }
                    }
                    failures
                })
            })
            .collect();
        let failures: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(failures[0], 30, "the unreadable row did not fail its writes");
        assert!(
            failures[1..].iter().all(|f| *f == 0),
            "innocent writes failed: {failures:?}"
        );
        for t in 1..32 {
            for i in 0..30 {
                let key = format!("k{t}-{i}");
                assert!(store.get_object("b", &key).unwrap().is_some(), "{key} lost");
                let bytes = store.inline_blob(&format!("{t}-{i}")).unwrap().unwrap();
                assert_eq!(bytes, key.as_bytes());
            }
        }
    }

    #[test]
    fn complete_answers_expire_in_initiation_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(&dir.path().join("meta.redb")).unwrap();
        // Upload ids lead with 48 bits of initiation milliseconds (then a 16-bit sequence).
        let id = |initiated_ms: u64| format!("{:016X}{:016X}", initiated_ms << 16, 7u64);
        let answer = |completed_ms: u64| CompletedUpload {
            bucket: "b".into(),
            key: "k".into(),
            request_fingerprint: String::new(),
            etag: "E".into(),
            crc64: 0,
            size: 0,
            completed_ms,
        };
        // (initiated, completed): old and done long ago; old but completed recently; new.
        let rows = [(100, 150), (120, 900), (800, 850)];
        let txn = store.db.begin_write().unwrap();
        {
            let mut t = txn.open_table(COMPLETED).unwrap();
            for (initiated, completed) in rows {
                t.insert(id(initiated).as_str(), enc(&answer(completed)).unwrap().as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
        assert_eq!(store.expire_completed(500).unwrap(), 1);
        assert!(store.get_completed(&id(100)).unwrap().is_none());
        assert!(
            store.get_completed(&id(120)).unwrap().is_some(),
            "completed after the cut-off"
        );
        assert!(store.get_completed(&id(800)).unwrap().is_some());
        assert_eq!(store.expire_completed(1000).unwrap(), 2);
    }
}
