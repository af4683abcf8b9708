//! Blob files: immutable byte files with generated ids, never named after keys. A blob is
//! written under `tmp/`, hashed (MD5 and CRC-64 in the same pass over each buffer) while it
//! streams, fsynced, renamed into `blobs/xx/ID` (and the directory fsynced), and only then
//! referenced from metadata. Disk I/O and hashing run on the blocking pool in batches, so the
//! async workers never stall on them and a stalled client holds no thread.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};
use tokio::sync::mpsc;

use crate::meta::MetaStore;
use crate::model::Extent;
use kura_proto::checksum::{Algorithm, Hasher};
use kura_proto::crc64::Crc64;

/// Frames queued between the network and the disk thread, per stream.
const CHANNEL_FRAMES: usize = 2;
/// Write buffer and read chunk size.
pub const IO_CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct BlobInfo {
    pub id: String,
    pub size: u64,
    pub md5: [u8; 16],
    pub crc64: u64,
    /// The extra digests asked for with [`BlobStore::writer_with`].
    pub extra: Vec<(Algorithm, Vec<u8>)>,
    /// Keeps the blob out of the orphan sweep until the write that will reference it has
    /// committed (or given up): hold the info until then.
    pub in_flight: InFlight,
    /// The bytes, when the blob is small enough to live in the metadata store
    /// ([`BlobWriter::inline_up_to`]): no file was written.
    pub inline: Option<Bytes>,
}

/// Blob ids being written and not yet committed to metadata (or given up on). The orphan
/// sweep leaves them alone, however long the commit takes.
#[derive(Default)]
struct InFlightSet(Mutex<HashSet<String>>);

impl InFlightSet {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A registration in the in-flight set; the id leaves the set when the last clone drops.
#[derive(Clone)]
pub struct InFlight(Arc<InFlightRegistration>);

struct InFlightRegistration {
    set: Arc<InFlightSet>,
    id: String,
}

impl Drop for InFlightRegistration {
    fn drop(&mut self) {
        self.set.lock().remove(&self.id);
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InFlight({})", self.0.id)
    }
}

/// Blobs in use by a reader: the sweeper leaves them alone until the reader ends.
#[derive(Default)]
struct Leases(Mutex<HashMap<String, usize>>);

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        // A poisoned lease map only means a reader panicked; the counts are still usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How far ahead of a reader the kernel is asked to read (into the page cache, not into this
/// process's memory).
const READ_AHEAD: u64 = 8 * 1024 * 1024;

enum Advice {
    Sequential,
    WillNeed,
}

/// `posix_fadvise` on a blob being read: a hint, so failures are ignored.
fn advise(file: &File, offset: u64, len: u64, advice: Advice) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        if len == 0 {
            return;
        }
        let advice = match advice {
            Advice::Sequential => libc::POSIX_FADV_SEQUENTIAL,
            Advice::WillNeed => libc::POSIX_FADV_WILLNEED,
        };
        // SAFETY: a hint syscall on a descriptor borrowed for its duration.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), offset as libc::off64_t, len as libc::off64_t, advice);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len, advice);
}

/// What an orphan sweep must respect when other gateways share the directory.
#[derive(Debug, Clone, Default)]
pub struct Sharing {
    /// Ids of the gateways alive now (their temporary directories are left alone).
    pub live: HashSet<String>,
    /// How old an unknown blob file must be before it is a candidate.
    pub grace: Duration,
}

/// Empties and removes the temporary directory of a gateway that is gone (this store's
/// earlier runs, or a dead peer): files at least `min_age` old; the directory once empty.
fn remove_dead_tmp(dir: &Path, min_age: Duration) -> usize {
    let now = SystemTime::now();
    let mut removed = 0;
    if let Ok(rd) = fs::read_dir(dir) {
        for entry in rd.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= min_age);
            if old && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    let _ = fs::remove_dir(dir); // only if empty
    removed
}

/// Creates a temporary file, and its directory if a sweep removed it (a gateway's directory
/// is only removed once the gateway is gone, but a directory removed by hand must not stop
/// every upload).
fn create_tmp(path: &Path) -> io::Result<File> {
    match File::create_new(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            File::create_new(path)
        }
        other => other,
    }
}

pub struct BlobStore {
    root: PathBuf,
    /// This process's temporary directory, `tmp/<gateway id>`: another gateway's sweep
    /// judges its files by age only.
    tmp: PathBuf,
    leases: Arc<Leases>,
    in_flight: Arc<InFlightSet>,
}

/// Keeps blobs leased while alive.
pub struct LeaseGuard {
    leases: Arc<Leases>,
    ids: Vec<String>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let mut map = self.leases.lock();
        for id in &self.ids {
            if let Some(n) = map.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    map.remove(id);
                }
            }
        }
    }
}

pub fn new_blob_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn is_blob_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl BlobStore {
    /// Opens the blob files under `root`; `gateway` names this process's temporary directory.
    pub fn open(root: &Path, gateway: &str) -> io::Result<Self> {
        let blobs = root.join("blobs");
        fs::create_dir_all(&blobs)?;
        let tmp = root.join("tmp").join(gateway);
        fs::create_dir_all(&tmp)?;
        // Every prefix directory exists, durably, before the first blob: a blob's own
        // directory fsync would not make a freshly created `blobs/xx` survive a power cut.
        let mut created = false;
        for prefix in 0..=255u8 {
            let dir = blobs.join(format!("{prefix:02x}"));
            if !dir.is_dir() {
                fs::create_dir(&dir)?;
                created = true;
            }
        }
        if created {
            File::open(&blobs)?.sync_all()?;
            File::open(root)?.sync_all()?;
        }
        Ok(BlobStore {
            root: root.to_path_buf(),
            tmp,
            leases: Arc::default(),
            in_flight: Arc::default(),
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.root.join("blobs").join(&id[..2]).join(id)
    }

    /// Starts a new blob. Feed it with [`BlobWriter::write`], then [`BlobWriter::finish`];
    /// dropping it unfinished removes the temporary file.
    pub fn writer(&self) -> BlobWriter {
        self.writer_with(&[])
    }

    /// A writer that also computes `extra` digests (S3 checksums, the payload SHA-256) in the
    /// same pass over each batch.
    pub fn writer_with(&self, extra: &[Algorithm]) -> BlobWriter {
        let id = new_blob_id();
        self.in_flight.lock().insert(id.clone());
        let in_flight = InFlight(Arc::new(InFlightRegistration {
            set: self.in_flight.clone(),
            id: id.clone(),
        }));
        BlobWriter {
            in_flight: Some(in_flight),
            extra: extra.to_vec(),
            tmp: self.tmp.join(&id),
            dest: self.path(&id),
            id,
            state: None,
            pending: None,
            batch: Vec::new(),
            batch_len: 0,
            finished: false,
            inline_max: 0,
        }
    }

    pub fn lease(&self, extents: &[Extent]) -> LeaseGuard {
        let mut map = self.leases.lock();
        let ids: Vec<String> = extents.iter().map(|e| e.blob.clone()).collect();
        for id in &ids {
            *map.entry(id.clone()).or_insert(0) += 1;
        }
        LeaseGuard {
            leases: self.leases.clone(),
            ids,
        }
    }

    /// Bytes available to this process on the data volume (statvfs `f_bavail`).
    pub fn free_bytes(&self) -> io::Result<u64> {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(self.root.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: statvfs writes only into `st`, which is a plain C struct we own, and reads
        // the NUL-terminated path, which outlives the call.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.f_bavail as u64 * st.f_frsize as u64)
    }

    pub fn is_leased(&self, id: &str) -> bool {
        self.leases.lock().contains_key(id)
    }

    /// Removes the temporary files of gateways not in `live` (and not this one) once at least
    /// `min_age` old, and their directories once empty: a cheap look at `tmp/` that the
    /// leader takes every few seconds. The age keeps a live gateway whose heartbeat merely
    /// lapsed (its database connection down) from losing an upload in progress.
    pub fn sweep_dead_tmp(&self, live: &HashSet<String>, min_age: Duration) -> io::Result<usize> {
        let mut removed = 0;
        for entry in fs::read_dir(self.root.join("tmp"))? {
            let p = entry?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if p != self.tmp && p.is_dir() && !live.contains(name) {
                removed += remove_dead_tmp(&p, min_age);
            }
        }
        Ok(removed)
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The blobs readers of this process hold now.
    pub fn leased_ids(&self) -> Vec<String> {
        self.leases.lock().keys().cloned().collect()
    }

    /// Removes a blob file; a missing file is fine (deletion is idempotent).
    pub fn delete(&self, id: &str) -> io::Result<()> {
        if !is_blob_id(id) {
            return Ok(());
        }
        match fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Streams bytes `[start, end)` of the concatenated extents in chunks of at most
    /// [`IO_CHUNK`]. Each chunk is read on the blocking pool and handed over through a channel
    /// of two, so a client that stops reading holds no thread; an inline extent's bytes come
    /// from `meta` in one piece (they are small). The lease keeps the blobs from the sweeper
    /// until the stream ends.
    pub fn read(
        &self,
        extents: Vec<Extent>,
        start: u64,
        end: u64,
        meta: &Arc<dyn MetaStore>,
    ) -> mpsc::Receiver<io::Result<Bytes>> {
        let (tx, rx) = mpsc::channel(CHANNEL_FRAMES);
        let lease = self.lease(&extents);
        let mut segments = Vec::new(); // the part of each blob to send: [from, to) within it
        let mut offset = 0u64;
        for e in &extents {
            let (ext_start, ext_end) = (offset, offset + e.len);
            offset = ext_end;
            if ext_end > start && ext_start < end {
                let (from, to) = (start.max(ext_start) - ext_start, end.min(ext_end) - ext_start);
                segments.push(if e.inline {
                    Segment::Inline(e.blob.clone(), from, to)
                } else {
                    Segment::File(self.path(&e.blob), from, to)
                });
            }
        }
        let meta = meta.clone();
        tokio::spawn(async move {
            let _lease = lease;
            // Each blob file is opened one segment early and its first window read ahead, so
            // a multipart object's next part is on its way while this one is sent.
            let open = |segment: &Segment| match segment {
                Segment::File(path, from, to) => {
                    let (path, from, to) = (path.clone(), *from, *to);
                    Some(tokio::task::spawn_blocking(move || {
                        let f = File::open(path)?;
                        advise(&f, from, to - from, Advice::Sequential);
                        advise(&f, from, READ_AHEAD.min(to - from), Advice::WillNeed);
                        Ok::<_, io::Error>(Arc::new(f))
                    }))
                }
                Segment::Inline(..) => None,
            };
            let mut segments = segments.into_iter().peekable();
            let mut next = segments.peek().and_then(open);
            while let Some(segment) = segments.next() {
                let opened = next.take();
                next = segments.peek().and_then(open);
                let (from, to) = match segment {
                    Segment::Inline(id, from, to) => {
                        let chunk = match meta.inline_blob(&id).await {
                            Ok(Some(b)) if b.len() as u64 >= to => Ok(b.slice(from as usize..to as usize)),
                            Ok(_) => Err(io::Error::new(
                                io::ErrorKind::NotFound,
                                format!("inline blob {id} is missing"),
                            )),
                            Err(e) => Err(io::Error::other(e.to_string())),
                        };
                        let failed = chunk.is_err();
                        if tx.send(chunk).await.is_err() || failed {
                            return;
                        }
                        continue;
                    }
                    Segment::File(_, from, to) => (from, to),
                };
                let file = match opened {
                    Some(handle) => match handle.await {
                        Ok(Ok(f)) => f,
                        Ok(Err(e)) => return drop(tx.send(Err(e)).await),
                        Err(e) => return drop(tx.send(Err(io::Error::other(e))).await),
                    },
                    None => return,
                };
                let mut off = from;
                while off < to {
                    let n = (to - off).min(IO_CHUNK as u64) as usize;
                    let f = file.clone();
                    let chunk = tokio::task::spawn_blocking(move || {
                        // The disk reads ahead while this chunk travels: a cold single stream
                        // otherwise waits on each read in turn.
                        // Once per window: the next window, so the disk is busy while this one
                        // is sent (asking on every chunk costs more than it brings).
                        if (off - from) % READ_AHEAD == 0 {
                            let next = off + READ_AHEAD;
                            advise(&f, next, READ_AHEAD.min(to.saturating_sub(next)), Advice::WillNeed);
                        }
                        let mut buf = BytesMut::zeroed(n);
                        f.read_exact_at(&mut buf, off).map(|_| buf.freeze())
                    })
                    .await
                    .unwrap_or_else(|e| Err(io::Error::other(e)));
                    let failed = chunk.is_err();
                    if tx.send(chunk).await.is_err() || failed {
                        return; // the client went away, or the read failed (already reported)
                    }
                    off += n as u64;
                }
            }
        });
        rx
    }

    /// Copies `[start, end)` of the extents into a new blob (UploadPartCopy, CopyObject),
    /// kept inline when it is at most `inline_max` bytes.
    pub async fn copy(
        &self,
        extents: Vec<Extent>,
        start: u64,
        end: u64,
        meta: &Arc<dyn MetaStore>,
        inline_max: usize,
    ) -> io::Result<BlobInfo> {
        let mut rx = self.read(extents, start, end, meta);
        let mut w = self.writer().inline_up_to(inline_max);
        while let Some(chunk) = rx.recv().await {
            w.write(chunk?).await?;
        }
        w.finish().await
    }

    /// Removes files left by writers that died: temporary files older than `tmp_grace` that
    /// no writer in this process owns (and every file of a dead gateway's temporary
    /// directory), and blob files that no metadata knows and no writer in this process is
    /// about to commit.
    ///
    /// `sharing`: other gateways write to this directory too. Their temporary directories are
    /// left alone while they are live (`live` names them; a dead gateway's id never comes
    /// back), and a blob file is a candidate only once older than `grace`.
    ///
    /// `claim` takes a batch of candidate ids and returns those the metadata does not know,
    /// claimed for deletion (PostgreSQL: marked in the blob index, so that a commit still
    /// racing for one of them fails instead of referring to a deleted file); `forget` is
    /// told which were deleted.
    ///
    /// The order makes it safe against writes in progress in this process, whatever their
    /// speed: first the directory walk, then (per batch) a snapshot of the in-flight set, then
    /// the metadata. A blob seen in the walk was registered before its file existed; if it has
    /// left the set by the snapshot, its commit happened before the lookup, which then sees
    /// it (the registration is dropped only once the commit has finished, so a request
    /// cancelled mid-commit cannot release it early).
    /// Memory stays at one batch of ids, whatever the number of blobs.
    pub fn sweep_orphans(
        &self,
        tmp_grace: Duration,
        sharing: Option<&Sharing>,
        claim: &dyn Fn(&[String]) -> io::Result<Vec<String>>,
        forget: &dyn Fn(&[String]) -> io::Result<()>,
    ) -> io::Result<usize> {
        const BATCH_IDS: usize = 4096;
        let now = SystemTime::now();
        let older_than = |p: &Path, limit: Duration| -> bool {
            fs::metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= limit)
        };
        let mut removed = 0;
        for entry in fs::read_dir(self.root.join("tmp"))? {
            let p = entry?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            if p == self.tmp {
                for entry in fs::read_dir(&p)? {
                    let p = entry?.path();
                    let owned = p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| self.in_flight.lock().contains(n));
                    if !owned && older_than(&p, tmp_grace) && fs::remove_file(&p).is_ok() {
                        removed += 1;
                    }
                }
            } else if p.is_dir() {
                if sharing.is_some_and(|s| s.live.contains(&name)) {
                    continue; // a live gateway's writes: its own business
                }
                // With peers, a dead-looking gateway's files must also be old; this store's
                // earlier runs (no peers) are gone for sure.
                removed += remove_dead_tmp(&p, sharing.map_or(Duration::ZERO, |s| s.grace));
            } else if sharing.is_none() && older_than(&p, tmp_grace) && fs::remove_file(&p).is_ok() {
                // A file directly under tmp/ (the layout before per-gateway directories).
                removed += 1;
            }
        }
        let mut sweep_batch = |batch: &mut Vec<String>| -> io::Result<()> {
            let candidates: Vec<String> = {
                let set = self.in_flight.lock();
                batch
                    .iter()
                    .filter(|id| !set.contains(*id) && !self.is_leased(id))
                    .filter(|id| sharing.is_none_or(|s| older_than(&self.path(id), s.grace)))
                    .cloned()
                    .collect()
            };
            batch.clear();
            if candidates.is_empty() {
                return Ok(());
            }
            let mut deleted = Vec::new();
            for id in claim(&candidates)? {
                match fs::remove_file(self.path(&id)) {
                    Ok(()) => {
                        removed += 1;
                        deleted.push(id);
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => deleted.push(id),
                    Err(_) => {}
                }
            }
            if !deleted.is_empty() {
                forget(&deleted)?;
            }
            Ok(())
        };
        let mut batch = Vec::with_capacity(BATCH_IDS);
        for dir in fs::read_dir(self.root.join("blobs"))? {
            let dir = dir?.path();
            if !dir.is_dir() {
                continue;
            }
            for entry in fs::read_dir(&dir)? {
                let name = entry?.file_name();
                if let Some(name) = name.to_str().filter(|n| is_blob_id(n)) {
                    batch.push(name.to_string());
                    if batch.len() >= BATCH_IDS {
                        sweep_batch(&mut batch)?;
                    }
                }
            }
        }
        sweep_batch(&mut batch)?;
        Ok(removed)
    }
}

/// The part of a blob being written that lives on the blocking pool between batches.
struct WriterState {
    file: BufWriter<File>,
    md5: Md5,
    crc: Crc64,
    extra: Vec<(Algorithm, Hasher)>,
    size: u64,
}

/// What a read sends of one blob: `[from, to)` of a file, or of an inline blob's bytes.
enum Segment {
    File(PathBuf, u64, u64),
    Inline(String, u64, u64),
}

/// Bytes gathered before they are hashed and written in one blocking call.
const BATCH: usize = 512 * 1024;

/// A blob being written. Frames are gathered into batches of [`BATCH`] bytes; each batch is
/// hashed and written on the blocking pool while the next one is gathered, so at most two
/// batches (about 1 MiB) are held, and a stalled client holds no thread.
pub struct BlobWriter {
    in_flight: Option<InFlight>,
    extra: Vec<Algorithm>,
    id: String,
    tmp: PathBuf,
    dest: PathBuf,
    state: Option<WriterState>,
    pending: Option<tokio::task::JoinHandle<io::Result<WriterState>>>,
    batch: Vec<Bytes>,
    batch_len: usize,
    finished: bool,
    inline_max: usize,
}

impl BlobWriter {
    /// A blob that ends at most `max` bytes long (and at most one batch) is not written to a
    /// file (0: always a file): [`BlobWriter::finish`] hands its bytes back in [`BlobInfo::inline`] for the
    /// metadata store to keep in the transaction that records it. The bytes are held anyway
    /// until the first batch is full, so this costs no memory.
    pub fn inline_up_to(mut self, max: usize) -> Self {
        self.inline_max = max.min(BATCH - 1);
        self
    }

    pub async fn write(&mut self, data: Bytes) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.batch_len += data.len();
        self.batch.push(data);
        if self.batch_len >= BATCH {
            self.dispatch().await?;
        }
        Ok(())
    }

    /// Waits for the batch in flight, then sends the gathered one to the blocking pool.
    async fn dispatch(&mut self) -> io::Result<()> {
        self.settle().await?;
        let batch = std::mem::take(&mut self.batch);
        self.batch_len = 0;
        let state = self.state.take();
        let tmp = self.tmp.clone();
        let extra = self.extra.clone();
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let mut st = match state {
                Some(s) => s,
                None => WriterState {
                    file: BufWriter::with_capacity(IO_CHUNK, create_tmp(&tmp)?),
                    md5: Md5::new(),
                    crc: Crc64::new(),
                    extra: extra.iter().map(|a| (*a, Hasher::new(*a))).collect(),
                    size: 0,
                },
            };
            for buf in batch {
                st.md5.update(&buf);
                st.crc.update(&buf);
                for (_, h) in &mut st.extra {
                    h.update(&buf);
                }
                st.file.write_all(&buf)?;
                st.size += buf.len() as u64;
            }
            Ok(st)
        }));
        Ok(())
    }

    async fn settle(&mut self) -> io::Result<()> {
        if let Some(p) = self.pending.take() {
            self.state = Some(p.await.map_err(io::Error::other)??);
        }
        Ok(())
    }

    /// Flushes, fsyncs and renames the blob into place; returns its size and hashes.
    pub async fn finish(mut self) -> io::Result<BlobInfo> {
        if self.inline_max > 0 && self.state.is_none() && self.pending.is_none() && self.batch_len <= self.inline_max {
            return self.finish_inline();
        }
        self.dispatch().await?;
        self.settle().await?;
        self.finished = true;
        let in_flight = self.in_flight.take();
        let state = self.state.take();
        let (id, tmp, dest) = (self.id.clone(), self.tmp.clone(), self.dest.clone());
        let result = tokio::task::spawn_blocking(move || -> io::Result<BlobInfo> {
            let in_flight = in_flight.ok_or_else(|| io::Error::other("blob writer lost its registration"))?;
            let st = state.ok_or_else(|| io::Error::other("blob writer lost its state"))?;
            let file = st.file.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            drop_cached_pages(&file);
            drop(file);
            let parent = dest
                .parent()
                .ok_or_else(|| io::Error::other("blob path has no parent"))?;
            fs::create_dir_all(parent)?;
            fs::rename(&tmp, &dest)?;
            File::open(parent)?.sync_all()?;
            Ok(BlobInfo {
                id,
                size: st.size,
                md5: st.md5.finalize().into(),
                crc64: st.crc.finish(),
                extra: st.extra.into_iter().map(|(a, h)| (a, h.finish())).collect(),
                in_flight,
                inline: None,
            })
        })
        .await
        .map_err(io::Error::other)?;
        if result.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        result
    }
}

impl BlobWriter {
    /// The whole blob is in `batch` (small): hash it here, no file.
    fn finish_inline(mut self) -> io::Result<BlobInfo> {
        self.finished = true;
        let in_flight = self
            .in_flight
            .take()
            .ok_or_else(|| io::Error::other("blob writer lost its registration"))?;
        // A body that came in one frame (most small ones) is kept as it is, not copied.
        let whole = (self.batch.len() == 1).then(|| self.batch[0].clone());
        let mut data = BytesMut::with_capacity(if whole.is_some() { 0 } else { self.batch_len });
        let (mut md5, mut crc) = (Md5::new(), Crc64::new());
        let mut extra: Vec<(Algorithm, Hasher)> = self.extra.iter().map(|a| (*a, Hasher::new(*a))).collect();
        for buf in std::mem::take(&mut self.batch) {
            md5.update(&buf);
            crc.update(&buf);
            for (_, h) in &mut extra {
                h.update(&buf);
            }
            if whole.is_none() {
                data.extend_from_slice(&buf);
            }
        }
        let data = whole.unwrap_or_else(|| data.freeze());
        Ok(BlobInfo {
            id: self.id.clone(),
            size: data.len() as u64,
            md5: md5.finalize().into(),
            crc64: crc.finish(),
            extra: extra.into_iter().map(|(a, h)| (a, h.finish())).collect(),
            in_flight,
            inline: Some(data),
        })
    }
}

impl Drop for BlobWriter {
    /// An unfinished blob (disconnect, error, size limit) leaves no file behind.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let tmp = self.tmp.clone();
        match (self.pending.take(), tokio::runtime::Handle::try_current()) {
            (Some(p), Ok(h)) => {
                h.spawn(async move {
                    let _ = p.await;
                    let _ = tokio::fs::remove_file(tmp).await;
                });
            }
            _ => {
                let _ = fs::remove_file(tmp);
            }
        }
    }
}

/// Tells the kernel the blob's pages (clean after fsync) need not stay cached. A blob is
/// written once and read later, if ever; keeping gigabytes of fresh uploads in the page cache
/// only pushes out hotter data, and reusing freed pages for the next write is much cheaper
/// than faulting in new ones (measured here: a 1 GiB upload went from ~300 to ~550 MB/s once
/// the page cache stopped growing).
fn drop_cached_pages(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only reads the descriptor, which `file` keeps open for the call.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}
