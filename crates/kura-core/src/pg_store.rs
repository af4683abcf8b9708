//! The PostgreSQL metadata backend, for several gateways over one database (tokio-postgres,
//! a deadpool connection pool, TLS by rustls when the URL asks for it).
//!
//! Locking: READ COMMITTED with row locks, not SERIALIZABLE. Every race the API has is a
//! race on one row that exists (the upload, the object, the part) or on one that is about to
//! be inserted, so each write locks that row (`FOR UPDATE`, or `FOR SHARE` for the upload
//! while a part is recorded, so parts of one upload commit in parallel and Complete/Abort wait
//! for them), and an insert that loses a race to another insert (`ON CONFLICT DO NOTHING`
//! inserting nothing) restarts its transaction. A part recorded while Complete holds the
//! upload finds the upload gone and is refused (NoSuchUpload). Deadlocks (40P01) and
//! serialization failures (40001, which CockroachDB and YugabyteDB raise for conflicts) are
//! retried the same way. Foreign keys keep objects and uploads from outliving their bucket.
//!
//! The SQL is plain: no advisory locks, no PostgreSQL-only syntax beyond `COLLATE "C"` (keys
//! sort by bytes, as S3 and OSS list them), `jsonb` and `unnest`, which CockroachDB and
//! YugabyteDB also have; the one exception is the bucket statistics (migration 5), kept by
//! PL/pgSQL statement-level triggers with transition tables.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{GenericClient, Transaction};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Json;

use crate::error::{Code, Error, Result};
use crate::meta::{
    check_expected_checksum, choose_parts, object_from_parts, CompleteRequest, DeleteCondition, MetaStore, ScanStart,
    WriteCondition,
};
use crate::model::*;
use crate::service::prefix_successor;

/// The database's clock in epoch milliseconds: leases and the leader's term are timed by one
/// clock, whatever the gateways' clocks say.
const NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// Versioned schema steps, applied in order, each in its own transaction, once.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE buckets (
    name TEXT PRIMARY KEY,
    rec JSONB NOT NULL
);
CREATE TABLE objects (
    bucket TEXT NOT NULL REFERENCES buckets (name),
    key TEXT COLLATE "C" NOT NULL,
    rec JSONB NOT NULL,
    extents JSONB NOT NULL,
    PRIMARY KEY (bucket, key)
);
CREATE TABLE uploads (
    upload_id TEXT COLLATE "C" PRIMARY KEY,
    bucket TEXT NOT NULL REFERENCES buckets (name),
    key TEXT COLLATE "C" NOT NULL,
    rec JSONB NOT NULL
);
CREATE UNIQUE INDEX uploads_by_key ON uploads (bucket, key, upload_id);
CREATE TABLE parts (
    upload_id TEXT COLLATE "C" NOT NULL,
    part_number INT NOT NULL,
    rec JSONB NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
CREATE TABLE completed (
    upload_id TEXT PRIMARY KEY,
    completed_ms BIGINT NOT NULL,
    rec JSONB NOT NULL
);
CREATE INDEX completed_by_time ON completed (completed_ms);
CREATE TABLE deletions (
    blob TEXT PRIMARY KEY,
    due_ms BIGINT NOT NULL
);
CREATE INDEX deletions_by_due ON deletions (due_ms, blob);
CREATE TABLE blob_index (
    blob TEXT PRIMARY KEY
);
CREATE TABLE read_leases (
    gateway TEXT NOT NULL,
    blob TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (gateway, blob)
);
CREATE INDEX read_leases_by_blob ON read_leases (blob);
CREATE TABLE leader (
    role TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
"#,
    ),
    (
        2,
        r#"
ALTER TABLE blob_index ADD COLUMN orphan BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE blob_index ADD COLUMN claimed_ms BIGINT;
CREATE TABLE gateways (
    id TEXT PRIMARY KEY,
    expires_ms BIGINT NOT NULL
);
"#,
    ),
    (
        3,
        r#"
CREATE TABLE kura_info (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    ),
    (
        4,
        r#"
CREATE TABLE inline_blobs (
    blob TEXT PRIMARY KEY,
    data BYTEA NOT NULL
);
"#,
    ),
    (
        5,
        // Bucket statistics, kept by statement-level triggers in the transaction of every
        // write. Each change goes to one of 16 rows per (bucket, class), chosen at random, so
        // that concurrent writes to one bucket do not queue on one row lock; GetBucketStat
        // sums them. Parts are counted under their upload: a part deleted after its upload
        // (Abort deletes the upload first) was already subtracted by the upload's trigger,
        // which takes away whatever parts the upload still has.
        r#"
CREATE TABLE bucket_stats (
    bucket TEXT NOT NULL,
    class TEXT NOT NULL,
    shard INT NOT NULL,
    objects BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    uploads BIGINT NOT NULL DEFAULT 0,
    parts BIGINT NOT NULL DEFAULT 0,
    part_bytes BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, class, shard)
);
CREATE FUNCTION kura_bump(b TEXT, c TEXT, o BIGINT, s BIGINT, u BIGINT, p BIGINT, ps BIGINT) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO bucket_stats AS t (bucket, class, shard, objects, bytes, uploads, parts, part_bytes)
    VALUES (b, coalesce(c, 'Standard'), (txid_current() % 16)::INT, o, s, u, p, ps)
    ON CONFLICT (bucket, class, shard) DO UPDATE SET
        objects = t.objects + excluded.objects, bytes = t.bytes + excluded.bytes,
        uploads = t.uploads + excluded.uploads, parts = t.parts + excluded.parts,
        part_bytes = t.part_bytes + excluded.part_bytes
$$;
-- Statement-level triggers over the transition tables: a Complete that drops 10,000 parts
-- makes one aggregate, not 10,000 trigger calls. Each transaction adds to one shard row per
-- (bucket, class) (its id modulo 16), in (bucket, class) order, so two writers never lock
-- the same rows in opposite orders.
CREATE FUNCTION kura_bump_all(changes REFCURSOR) RETURNS void LANGUAGE plpgsql AS $$
DECLARE r RECORD;
BEGIN
    LOOP
        FETCH changes INTO r;
        EXIT WHEN NOT FOUND;
        PERFORM kura_bump(r.bucket, r.class, r.o, r.s, r.u, r.p, r.ps);
    END LOOP;
    CLOSE changes;
END $$;
CREATE FUNCTION kura_objects_stats() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE c REFCURSOR;
BEGIN
    OPEN c FOR
        SELECT t.bucket, t.class, sum(t.n)::BIGINT AS o, sum(t.size)::BIGINT AS s, 0::BIGINT AS u,
               0::BIGINT AS p, 0::BIGINT AS ps
        FROM (
            SELECT bucket, rec->>'storage_class' AS class, 1 AS n, (rec->>'size')::BIGINT AS size FROM new_rows
            UNION ALL
            SELECT bucket, rec->>'storage_class', -1, -(rec->>'size')::BIGINT FROM old_rows
        ) t
        GROUP BY t.bucket, t.class
        HAVING sum(t.n) <> 0 OR sum(t.size) <> 0
        ORDER BY t.bucket, t.class;
    PERFORM kura_bump_all(c);
    RETURN NULL;
END $$;
CREATE FUNCTION kura_objects_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE c REFCURSOR;
BEGIN
    OPEN c FOR
        SELECT bucket, rec->>'storage_class' AS class, count(*) AS o, sum((rec->>'size')::BIGINT)::BIGINT AS s,
               0::BIGINT AS u, 0::BIGINT AS p, 0::BIGINT AS ps
        FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2;
    PERFORM kura_bump_all(c);
    RETURN NULL;
END $$;
CREATE FUNCTION kura_objects_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE c REFCURSOR;
BEGIN
    OPEN c FOR
        SELECT bucket, rec->>'storage_class' AS class, -count(*) AS o, -sum((rec->>'size')::BIGINT)::BIGINT AS s,
               0::BIGINT AS u, 0::BIGINT AS p, 0::BIGINT AS ps
        FROM old_rows GROUP BY 1, 2 ORDER BY 1, 2;
    PERFORM kura_bump_all(c);
    RETURN NULL;
END $$;
CREATE TRIGGER objects_stats_ins AFTER INSERT ON objects REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kura_objects_inserted();
CREATE TRIGGER objects_stats_upd AFTER UPDATE ON objects REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kura_objects_stats();
CREATE TRIGGER objects_stats_del AFTER DELETE ON objects REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kura_objects_deleted();
CREATE FUNCTION kura_uploads_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE c REFCURSOR;
BEGIN
    OPEN c FOR
        SELECT bucket, rec->>'storage_class' AS class, 0::BIGINT AS o, 0::BIGINT AS s, count(*) AS u,
               0::BIGINT AS p, 0::BIGINT AS ps
        FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2;
    PERFORM kura_bump_all(c);
    RETURN NULL;
END $$;
-- A deleted upload takes away itself and whatever parts it still has (Abort deletes the
-- upload first; Complete deletes the parts first, which the parts' trigger counted).
CREATE FUNCTION kura_uploads_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE c REFCURSOR;
BEGIN
    OPEN c FOR
        SELECT t.bucket, t.class, 0::BIGINT AS o, 0::BIGINT AS s, -count(DISTINCT t.upload_id) AS u,
               -count(t.size) AS p, -coalesce(sum(t.size), 0)::BIGINT AS ps
        FROM (
            SELECT u.bucket, u.rec->>'storage_class' AS class, u.upload_id, (p.rec->>'size')::BIGINT AS size
            FROM old_rows u LEFT JOIN parts p ON p.upload_id = u.upload_id
        ) t
        GROUP BY 1, 2 ORDER BY 1, 2;
    PERFORM kura_bump_all(c);
    RETURN NULL;
END $$;
CREATE TRIGGER uploads_stats_ins AFTER INSERT ON uploads REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kura_uploads_inserted();
CREATE TRIGGER uploads_stats_del AFTER DELETE ON uploads REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kura_uploads_deleted();
-- Parts count under their upload; parts whose upload is already gone were counted out by it.
CREATE FUNCTION kura_parts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE c REFCURSOR;
BEGIN
    OPEN c FOR
        SELECT u.bucket, u.rec->>'storage_class' AS class, 0::BIGINT AS o, 0::BIGINT AS s, 0::BIGINT AS u,
               sum(t.n)::BIGINT AS p, sum(t.size)::BIGINT AS ps
        FROM (
            SELECT upload_id, 1 AS n, (rec->>'size')::BIGINT AS size FROM new_rows
            UNION ALL
            SELECT upload_id, -1, -(rec->>'size')::BIGINT FROM old_rows
        ) t JOIN uploads u ON u.upload_id = t.upload_id
        GROUP BY 1, 2
        HAVING sum(t.n) <> 0 OR sum(t.size) <> 0
        ORDER BY 1, 2;
    PERFORM kura_bump_all(c);
    RETURN NULL;
END $$;
CREATE FUNCTION kura_parts_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE c REFCURSOR;
BEGIN
    OPEN c FOR
        SELECT u.bucket, u.rec->>'storage_class' AS class, 0::BIGINT AS o, 0::BIGINT AS s, 0::BIGINT AS u,
               count(*) AS p, sum((t.rec->>'size')::BIGINT)::BIGINT AS ps
        FROM new_rows t JOIN uploads u ON u.upload_id = t.upload_id
        GROUP BY 1, 2 ORDER BY 1, 2;
    PERFORM kura_bump_all(c);
    RETURN NULL;
END $$;
CREATE FUNCTION kura_parts_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE c REFCURSOR;
BEGIN
    OPEN c FOR
        SELECT u.bucket, u.rec->>'storage_class' AS class, 0::BIGINT AS o, 0::BIGINT AS s, 0::BIGINT AS u,
               -count(*) AS p, -sum((t.rec->>'size')::BIGINT)::BIGINT AS ps
        FROM old_rows t JOIN uploads u ON u.upload_id = t.upload_id
        GROUP BY 1, 2 ORDER BY 1, 2;
    PERFORM kura_bump_all(c);
    RETURN NULL;
END $$;
CREATE TRIGGER parts_stats_ins AFTER INSERT ON parts REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kura_parts_inserted();
CREATE TRIGGER parts_stats_upd AFTER UPDATE ON parts REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kura_parts_changed();
CREATE TRIGGER parts_stats_del AFTER DELETE ON parts REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kura_parts_deleted();
CREATE FUNCTION kura_buckets_stats() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM bucket_stats WHERE bucket = OLD.name;
    RETURN NULL;
END $$;
CREATE TRIGGER buckets_stats AFTER DELETE ON buckets
    FOR EACH ROW EXECUTE FUNCTION kura_buckets_stats();
INSERT INTO bucket_stats (bucket, class, shard, objects, bytes)
    SELECT bucket, coalesce(rec->>'storage_class', 'Standard'), 0, count(*), sum((rec->>'size')::BIGINT)
    FROM objects GROUP BY 1, 2;
INSERT INTO bucket_stats AS t (bucket, class, shard, uploads)
    SELECT bucket, coalesce(rec->>'storage_class', 'Standard'), 0, count(*) FROM uploads GROUP BY 1, 2
    ON CONFLICT (bucket, class, shard) DO UPDATE SET uploads = t.uploads + excluded.uploads;
INSERT INTO bucket_stats AS t (bucket, class, shard, parts, part_bytes)
    SELECT u.bucket, coalesce(u.rec->>'storage_class', 'Standard'), 0, count(*), sum((p.rec->>'size')::BIGINT)
    FROM parts p JOIN uploads u USING (upload_id) GROUP BY 1, 2
    ON CONFLICT (bucket, class, shard) DO UPDATE SET
        parts = t.parts + excluded.parts, part_bytes = t.part_bytes + excluded.part_bytes;
"#,
    ),
];

/// Statements sent to the database by this process (BEGIN and COMMIT included): each is one
/// round trip. `kura bench` reads it to report round trips per operation.
pub static ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);

/// A connection or transaction whose statements are prepared once per connection (deadpool's
/// statement cache) and counted: `rt(tx).query(SQL, params)`. Without the cache, every
/// statement would cost a round trip to prepare it before the one that runs it.
struct Counted<'a, C: ?Sized>(&'a C);

fn rt<C: GenericClient + ?Sized>(c: &C) -> Counted<'_, C> {
    Counted(c)
}

type Param<'p> = &'p (dyn tokio_postgres::types::ToSql + Sync);

impl<C: GenericClient + ?Sized> Counted<'_, C> {
    async fn prepared(&self, sql: &str) -> std::result::Result<tokio_postgres::Statement, tokio_postgres::Error> {
        let stmt = self.0.prepare_cached(sql).await?;
        ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
        Ok(stmt)
    }

    async fn query(
        &self,
        sql: &str,
        p: &[Param<'_>],
    ) -> std::result::Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let stmt = self.prepared(sql).await?;
        self.0.query(&stmt, p).await
    }

    async fn query_one(
        &self,
        sql: &str,
        p: &[Param<'_>],
    ) -> std::result::Result<tokio_postgres::Row, tokio_postgres::Error> {
        let stmt = self.prepared(sql).await?;
        self.0.query_one(&stmt, p).await
    }

    async fn query_opt(
        &self,
        sql: &str,
        p: &[Param<'_>],
    ) -> std::result::Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
        let stmt = self.prepared(sql).await?;
        self.0.query_opt(&stmt, p).await
    }

    async fn execute(&self, sql: &str, p: &[Param<'_>]) -> std::result::Result<u64, tokio_postgres::Error> {
        let stmt = self.prepared(sql).await?;
        self.0.execute(&stmt, p).await
    }

    async fn batch_execute(&self, sql: &str) -> std::result::Result<(), tokio_postgres::Error> {
        ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
        self.0.batch_execute(sql).await
    }
}

/// How often a lock-or-insert looks again inside one transaction when another request's insert
/// took the row between the two.
const IN_TX_TRIES: usize = 16;

/// How often a transaction that lost a race is run again before the request fails.
const ATTEMPTS: u32 = 8;

pub struct PgStore {
    pool: Pool,
    /// Two connections of their own for the heartbeat and the leader's term, so that a pool
    /// saturated by requests cannot make a live gateway look dead.
    background: Pool,
    /// The URL without its password, for messages.
    display_url: String,
}

/// Why a transaction body stopped: a rule of the API (returned to the client), the
/// database (classified by [`PgStore::write`]), or a lost insert race (run again).
enum Fail {
    Kura(Error),
    Db(tokio_postgres::Error),
    Retry,
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Kura(e)
    }
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Db(e)
    }
}

type TxResult<T> = std::result::Result<T, Fail>;

/// The URL with any password replaced, so that errors and logs can name it.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // The key=value form: hide the password's value.
        return url
            .split(' ')
            .map(|kv| {
                if kv.starts_with("password=") {
                    "password=***"
                } else {
                    kv
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once("password=") {
        Some((before, after)) => {
            let end = after.find('&').unwrap_or(after.len());
            format!("{before}password=***{}", &after[end..])
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// An error and its causes on one line (the TLS or socket reason under a pool error).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// A database error as the client sees it: a lost connection or a database that is
/// starting or stopping is ServiceUnavailable (retry), anything else an internal error.
fn db_error(e: tokio_postgres::Error) -> Error {
    if matches!(
        e.code(),
        Some(c) if *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE || *c == SqlState::UNTRANSLATABLE_CHARACTER
    ) {
        // A client's string (a marker, an upload id) with a character TEXT cannot hold: NUL.
        return Error::msg(
            Code::InvalidArgument,
            "A parameter contains a character that is not allowed (NUL).",
        );
    }
    let unavailable = match e.code() {
        // No SQL state: a lost connection (closed, or an I/O error), or a mistake on this
        // side (a parameter of the wrong type), which is not the database's absence.
        None => {
            e.is_closed() || std::error::Error::source(&e).is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
        }
        Some(c) => {
            c.code().starts_with("08")
                || c.code().starts_with("57P")
                || *c == SqlState::TOO_MANY_CONNECTIONS
                || *c == SqlState::CANNOT_CONNECT_NOW
        }
    };
    if unavailable {
        tracing::warn!(error = %e, "metadata database unavailable");
        Error::new(Code::ServiceUnavailable)
    } else {
        Error::internal(format!("metadata database: {}", chain(&e)))
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => db_error(e),
        other => {
            tracing::warn!(error = %other, "metadata database unavailable");
            Error::new(Code::ServiceUnavailable)
        }
    }
}

fn is_fk_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION)
}

fn no_such_bucket(b: &str) -> Error {
    Error::new(Code::NoSuchBucket).with_bucket(b)
}

fn no_such_upload(u: &str) -> Error {
    Error::new(Code::NoSuchUpload).with_upload(u)
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// How to use TLS, read from the URL the way libpq reads it: `sslmode=disable`; `prefer` (the
/// default) and `require` encrypt without checking the server's certificate (unless
/// `sslrootcert` names a CA file, which is then checked, as libpq does); `verify-ca` and
/// `verify-full` check the certificate and the host name against `sslrootcert`, or the Mozilla
/// roots when none is given. tokio-postgres itself knows only disable/prefer/require and no
/// `sslrootcert`, so those are taken out of the URL here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    pub verify: bool,
    pub root_cert: Option<std::path::PathBuf>,
}

/// Splits the TLS settings tokio-postgres does not parse off a URL (or key=value string).
pub fn tls_options(url: &str) -> (String, TlsOptions) {
    let mut verify = false;
    let mut root_cert = None;
    let mut keep = |k: &str, v: &str| -> Option<String> {
        match (k, v) {
            ("sslrootcert", path) => {
                root_cert = Some(std::path::PathBuf::from(path));
                None
            }
            ("sslmode", "verify-ca" | "verify-full") => {
                verify = true;
                Some(format!("{k}=require"))
            }
            _ => Some(format!("{k}={v}")),
        }
    };
    let rest = if let Some((base, query)) = url.split_once('?') {
        let kept: Vec<String> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let v = percent_decode(v);
                keep(k, &v).map(|kv| if k == "sslmode" { kv } else { p.to_string() })
            })
            .collect();
        if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else if !url.contains("://") {
        url.split_whitespace()
            .filter_map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                keep(k, v).map(|kv| if k == "sslmode" { kv } else { p.to_string() })
            })
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        url.to_string()
    };
    let verify = verify || root_cert.is_some();
    (rest, TlsOptions { verify, root_cert })
}

fn percent_decode(v: &str) -> String {
    percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned()
}

/// Accepts any server certificate (libpq's `prefer` and `require`: encryption without
/// authentication), still checking the handshake signatures.
#[derive(Debug)]
struct UncheckedServer(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for UncheckedServer {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The rustls connector for `opts`.
fn tls(opts: &TlsOptions) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls_pki_types::pem::PemObject;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS: {e}")))?;
    let config = if opts.verify {
        let mut roots = rustls::RootCertStore::empty();
        match &opts.root_cert {
            Some(path) => {
                let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                    .map_err(|e| Error::internal(format!("sslrootcert {}: {e}", path.display())))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(Error::internal(format!(
                        "sslrootcert {}: no certificate in it",
                        path.display()
                    )));
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(UncheckedServer(provider)))
            .with_no_client_auth()
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl PgStore {
    /// Connects (one connection is opened now, so a wrong URL fails here with its reason)
    /// and applies the schema migrations not yet applied.
    /// Errors here are for a person starting a gateway: the whole cause, URL without password.
    pub async fn connect(url: &str, pool_size: usize) -> std::result::Result<PgStore, String> {
        let store = Self::connect_only(url, pool_size).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating.
    pub async fn connect_only(url: &str, pool_size: usize) -> std::result::Result<PgStore, String> {
        let display_url = redact_url(url);
        let (url, tls_opts) = tls_options(url);
        let connector = tls(&tls_opts).map_err(|e| format!("{display_url}: {}", e.message))?;
        let mut cfg =
            tokio_postgres::Config::from_str(&url).map_err(|e| format!("metadata URL {display_url}: {}", chain(&e)))?;
        if cfg.get_connect_timeout().is_none() {
            cfg.connect_timeout(Duration::from_secs(5));
        }
        // A gateway that loses its database notices within a minute even with no traffic.
        cfg.keepalives(true).keepalives_idle(Duration::from_secs(30));
        if cfg.get_application_name().is_none() {
            cfg.application_name("kura");
        }
        let build = |size: usize| {
            let mgr = Manager::from_config(
                cfg.clone(),
                connector.clone(),
                ManagerConfig {
                    recycling_method: RecyclingMethod::Fast,
                },
            );
            Pool::builder(mgr)
                .max_size(size)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(10)))
                .create_timeout(Some(Duration::from_secs(5)))
                .recycle_timeout(Some(Duration::from_secs(5)))
                .build()
                .map_err(|e| format!("metadata pool: {e}"))
        };
        let store = PgStore {
            pool: build(pool_size.max(1))?,
            background: build(2)?,
            display_url,
        };
        let _first = store.pool.get().await.map_err(|e| {
            format!(
                "cannot connect to the metadata database at {}: {}",
                store.display_url,
                chain(&e)
            )
        })?;
        Ok(store)
    }

    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    /// Applies the migrations not yet applied; returns how many. Gateways starting together
    /// are safe: each step inserts its version row in its own transaction first, so a second
    /// gateway waits for the first and then skips the step.
    pub async fn migrate(&self) -> std::result::Result<usize, String> {
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|e| format!("metadata database {}: {}", self.display_url, chain(&e)))?;
        let mut known: bool = rt(&client)
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = 'kura_migrations')",
                &[],
            )
            .await
            .map_err(|e| format!("metadata schema migration: {}", chain(&e)))?
            .get(0);
        // Gateways starting together on an empty database race to create the table: IF NOT
        // EXISTS does not stop the loser's duplicate-key error on the type, so it tries again.
        let mut tries = 0;
        while !known {
            known = match rt(&client)
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS kura_migrations (version INT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
                )
                .await
            {
                Ok(()) => true,
                Err(e) if tries < 5 && e.code().is_some() => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50 + rand::random::<u64>() % 200)).await;
                    false
                }
                Err(e) => return Err(format!("metadata schema migration: {}", chain(&e))),
            };
        }
        let mut applied = 0;
        for (version, sql) in MIGRATIONS {
            let tx = client
                .transaction()
                .await
                .map_err(|e| format!("metadata schema migration: {}", chain(&e)))?;
            let inserted = rt(&tx)
                .execute(
                    &format!("INSERT INTO kura_migrations (version, applied_ms) VALUES ($1, {NOW_MS}) ON CONFLICT (version) DO NOTHING"),
                    &[version],
                )
                .await
                .map_err(|e| format!("metadata schema migration: {}", chain(&e)))?;
            if inserted == 0 {
                continue;
            }
            rt(&tx)
                .batch_execute(sql)
                .await
                .map_err(|e| format!("metadata schema migration: {}", chain(&e)))?;
            tx.commit()
                .await
                .map_err(|e| format!("metadata schema migration: {}", chain(&e)))?;
            tracing::info!(version, "applied metadata schema migration");
            applied += 1;
        }
        Ok(applied)
    }

    /// The newest schema version applied.
    pub async fn schema_version(&self) -> std::result::Result<i32, String> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| format!("metadata database {}: {}", self.display_url, chain(&e)))?;
        let row = rt(&client)
            .query_one("SELECT COALESCE(MAX(version), 0) FROM kura_migrations", &[])
            .await
            .map_err(|e| format!("metadata schema migration: {}", chain(&e)))?;
        Ok(row.get(0))
    }
}

fn busy() -> Error {
    tracing::warn!("a metadata write kept losing races; the client is asked to retry");
    Error::msg(
        Code::ServiceUnavailable,
        "Too many requests are writing the same object or upload at once; please retry.",
    )
}

/// Whether to run a failed transaction again: a lost race is, a few times, after a short
/// random pause; anything else is the answer.
async fn give_up(fail: Fail, attempt: u32) -> Option<Error> {
    match fail {
        Fail::Kura(e) => return Some(e),
        Fail::Retry if attempt < ATTEMPTS => {}
        Fail::Db(e) if is_retryable(&e) && attempt < ATTEMPTS => {}
        // Contention, not a fault: the client is asked to come back (503, Retry-After).
        Fail::Retry => return Some(busy()),
        Fail::Db(e) if is_retryable(&e) => return Some(busy()),
        Fail::Db(e) => return Some(db_error(e)),
    }
    let pause = rand::random::<u64>() % (5 * u64::from(attempt)) + 1;
    tokio::time::sleep(Duration::from_millis(pause)).await;
    None
}

/// Runs the block as one transaction (`tx` is the transaction inside it), again when it lost
/// a race (an insert that found the row taken, a deadlock, a serialization failure), up to
/// [`ATTEMPTS`] times. `return` in the block ends the attempt with that result.
macro_rules! write_tx {
    ($self:ident, |$tx:ident| $body:block) => {
        write_tx!($self, pool, |$tx| $body)
    };
    ($self:ident, $pool:ident, |$tx:ident| $body:block) => {{
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut client = $self.$pool.get().await.map_err(pool_error)?;
            ROUND_TRIPS.fetch_add(1, Ordering::Relaxed); // BEGIN
            let txn = client.transaction().await.map_err(db_error)?;
            let out: TxResult<_> = {
                let $tx = &txn;
                async { $body }.await
            };
            let fail = match out {
                Ok(v) => match {
                    ROUND_TRIPS.fetch_add(1, Ordering::Relaxed); // COMMIT
                    txn.commit().await
                } {
                    Ok(()) => break Ok(v),
                    Err(e) => Fail::Db(e),
                },
                Err(f) => f,
            };
            if let Some(e) = give_up(fail, attempt).await {
                break Err(e);
            }
        }
    }};
}

/// Queues blobs for deletion (one statement for any number).
/// The deletion grace a caller's due time asks for, taken when the store call begins, so that
/// it counts from the statement that queues the blobs, whatever the wait for locks.
fn grace_of(delete_due_ms: u64) -> u64 {
    delete_due_ms.saturating_sub(kura_proto::timefmt::now_millis())
}

/// Queues blobs for deletion (one statement for any number), due `grace_ms` after this
/// statement on the database's clock, like the leases and the leader's term: the gateways'
/// clocks need not agree, and time spent waiting for locks does not eat into the grace.
async fn queue_deletions(tx: &Transaction<'_>, blobs: &[String], grace_ms: u64) -> TxResult<()> {
    if blobs.is_empty() {
        return Ok(());
    }
    rt(tx)
        .execute(
            &format!(
                "INSERT INTO deletions (blob, due_ms) SELECT b, {NOW_MS} + $2 FROM unnest($1::TEXT[]) AS t(b) \
                 ON CONFLICT (blob) DO UPDATE SET due_ms = excluded.due_ms"
            ),
            &[&blobs, &ms(grace_ms)],
        )
        .await?;
    Ok(())
}

async fn index_blobs(tx: &Transaction<'_>, blobs: &[String]) -> TxResult<()> {
    if blobs.is_empty() {
        return Ok(());
    }
    rt(tx)
        .execute(
            "INSERT INTO blob_index (blob) SELECT b FROM unnest($1::TEXT[]) AS t(b)",
            &[&blobs],
        )
        .await?;
    Ok(())
}

fn extent_blobs(extents: &[Extent]) -> Vec<String> {
    extents.iter().map(|e| e.blob.clone()).collect()
}

/// Locks the object row (if any) and returns it with its extents.
async fn lock_object(tx: &Transaction<'_>, bucket: &str, key: &str) -> TxResult<Option<ObjectRecord>> {
    let row = rt(tx)
        .query_opt(
            "SELECT rec, extents FROM objects WHERE bucket = $1 AND key = $2 FOR UPDATE",
            &[&bucket, &key],
        )
        .await?;
    Ok(row.map(|r| {
        let Json(mut rec): Json<ObjectRecord> = r.get(0);
        let Json(extents): Json<Vec<Extent>> = r.get(1);
        rec.extents = extents;
        rec
    }))
}

/// Writes the object over `old` (locked by [`lock_object`]), queueing the old blobs. False when
/// there was no object and an insert by another request took the key meanwhile: the caller
/// locks and checks again.
async fn write_object(
    tx: &Transaction<'_>,
    bucket: &str,
    key: &str,
    rec: &ObjectRecord,
    old: Option<&ObjectRecord>,
    grace_ms: u64,
) -> TxResult<bool> {
    let head = ObjectRecord {
        extents: Vec::new(),
        ..rec.clone()
    };
    match old {
        Some(old) => {
            queue_deletions(tx, &extent_blobs(&old.extents), grace_ms).await?;
            rt(tx)
                .execute(
                    "UPDATE objects SET rec = $3, extents = $4 WHERE bucket = $1 AND key = $2",
                    &[&bucket, &key, &Json(&head), &Json(&rec.extents)],
                )
                .await?;
        }
        None => {
            let inserted = rt(tx)
                .execute(
                    "INSERT INTO objects (bucket, key, rec, extents) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (bucket, key) DO NOTHING",
                    &[&bucket, &key, &Json(&head), &Json(&rec.extents)],
                )
                .await
                .map_err(|e| {
                    if is_fk_violation(&e) {
                        Fail::Kura(no_such_bucket(bucket))
                    } else {
                        Fail::Db(e)
                    }
                })?;
            return Ok(inserted == 1);
        }
    }
    Ok(true)
}

/// Locks the object row, checks `condition` against it, and writes `rec` over it (or inserts
/// it), looking again when an insert by another request takes the key meanwhile.
async fn put_object_locked(
    tx: &Transaction<'_>,
    bucket: &str,
    key: &str,
    rec: &ObjectRecord,
    condition: &WriteCondition,
    grace_ms: u64,
) -> TxResult<()> {
    for _ in 0..IN_TX_TRIES {
        let old = lock_object(tx, bucket, key).await?;
        condition.check(key, old.as_ref())?;
        if write_object(tx, bucket, key, rec, old.as_ref(), grace_ms).await? {
            return Ok(());
        }
    }
    Err(Fail::Retry)
}

async fn bucket_exists(tx: &Transaction<'_>, bucket: &str) -> TxResult<bool> {
    Ok(rt(tx)
        .query_opt("SELECT 1 FROM buckets WHERE name = $1", &[&bucket])
        .await?
        .is_some())
}

impl PgStore {
    /// Inserts rows copied from another store, keeping rows already present (so a copy can be
    /// run again after an interruption). Returns how many were inserted.
    pub async fn import(&self, rows: &[crate::copy::Row]) -> Result<u64> {
        use crate::copy::Row;
        let mut buckets = (Vec::new(), Vec::new());
        let mut objects = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut uploads = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut parts = (Vec::new(), Vec::new(), Vec::new());
        let mut completed = (Vec::new(), Vec::new(), Vec::new());
        let mut deletions = (Vec::new(), Vec::new());
        let mut blobs = Vec::new();
        let mut inline = (Vec::new(), Vec::new());
        for row in rows {
            match row {
                Row::Bucket(b) => {
                    buckets.0.push(b.name.clone());
                    buckets.1.push(Json(b.clone()));
                }
                Row::Object(bucket, key, rec) => {
                    objects.0.push(bucket.clone());
                    objects.1.push(key.clone());
                    objects.2.push(Json(ObjectRecord {
                        extents: Vec::new(),
                        ..rec.clone()
                    }));
                    objects.3.push(Json(rec.extents.clone()));
                }
                Row::Upload(bucket, rec) => {
                    uploads.0.push(rec.upload_id.clone());
                    uploads.1.push(bucket.clone());
                    uploads.2.push(rec.key.clone());
                    uploads.3.push(Json(rec.clone()));
                }
                Row::Part(id, n, rec) => {
                    parts.0.push(id.clone());
                    parts.1.push(i32::try_from(*n).map_err(Error::internal)?);
                    parts.2.push(Json(rec.clone()));
                }
                Row::Completed(id, rec) => {
                    completed.0.push(id.clone());
                    completed.1.push(ms(rec.completed_ms));
                    completed.2.push(Json(rec.clone()));
                }
                Row::Deletion(blob, due) => {
                    deletions.0.push(blob.clone());
                    deletions.1.push(ms(*due));
                }
                Row::Blob(blob) => blobs.push(blob.clone()),
                Row::Inline(blob, data) => {
                    inline.0.push(blob.clone());
                    inline.1.push(data.clone());
                }
            }
        }
        let client = self.pool.get().await.map_err(pool_error)?;
        // One statement per table, each keeping the rows already there.
        let statements: [(&str, Vec<Param<'_>>); 8] = [
            (
                "INSERT INTO buckets (name, rec) SELECT * FROM unnest($1::TEXT[], $2::JSONB[])",
                vec![&buckets.0, &buckets.1],
            ),
            (
                "INSERT INTO objects (bucket, key, rec, extents) \
                 SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::JSONB[], $4::JSONB[])",
                vec![&objects.0, &objects.1, &objects.2, &objects.3],
            ),
            (
                "INSERT INTO uploads (upload_id, bucket, key, rec) \
                 SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::JSONB[])",
                vec![&uploads.0, &uploads.1, &uploads.2, &uploads.3],
            ),
            (
                "INSERT INTO parts (upload_id, part_number, rec) SELECT * FROM unnest($1::TEXT[], $2::INT[], $3::JSONB[])",
                vec![&parts.0, &parts.1, &parts.2],
            ),
            (
                "INSERT INTO completed (upload_id, completed_ms, rec) \
                 SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::JSONB[])",
                vec![&completed.0, &completed.1, &completed.2],
            ),
            (
                "INSERT INTO deletions (blob, due_ms) SELECT * FROM unnest($1::TEXT[], $2::BIGINT[])",
                vec![&deletions.0, &deletions.1],
            ),
            ("INSERT INTO blob_index (blob) SELECT * FROM unnest($1::TEXT[])", vec![&blobs]),
            (
                "INSERT INTO inline_blobs (blob, data) SELECT * FROM unnest($1::TEXT[], $2::BYTEA[])",
                vec![&inline.0, &inline.1],
            ),
        ];
        let mut n = 0;
        for (sql, params) in &statements {
            n += rt(&client)
                .execute(&format!("{sql} ON CONFLICT DO NOTHING"), params)
                .await
                .map_err(db_error)?;
        }
        Ok(n)
    }

    /// Records that an embedded store's copy into this database was verified: until then a
    /// gateway whose data directory still holds `meta.redb` sweeps no orphans (every blob of
    /// the embedded store would look like one).
    pub async fn mark_embedded_copy_verified(&self) -> Result<()> {
        let client = self.pool.get().await.map_err(pool_error)?;
        rt(&client)
            .execute(
                &format!(
                    "INSERT INTO kura_info (name, value) VALUES ('embedded_copy_verified', ({NOW_MS})::TEXT) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value"
                ),
                &[],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    /// Counts and checksums every table (see [`crate::copy`]), streaming the rows.
    pub async fn tally(&self) -> Result<crate::copy::Tally> {
        use crate::copy::{Row, Tally};
        use futures_util::TryStreamExt;
        let client = self.pool.get().await.map_err(pool_error)?;
        let mut tally = Tally::default();
        let queries: [&str; 8] = [
            "SELECT rec FROM buckets",
            "SELECT bucket, key, rec, extents FROM objects",
            "SELECT bucket, rec FROM uploads",
            "SELECT upload_id, part_number, rec FROM parts",
            "SELECT upload_id, rec FROM completed",
            "SELECT blob, due_ms FROM deletions",
            "SELECT blob, orphan FROM blob_index",
            "SELECT blob, data FROM inline_blobs",
        ];
        for (i, sql) in queries.iter().enumerate() {
            ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
            let stream = client
                .query_raw(*sql, std::iter::empty::<i32>())
                .await
                .map_err(db_error)?;
            let mut stream = std::pin::pin!(stream);
            while let Some(r) = stream.try_next().await.map_err(db_error)? {
                let row = match i {
                    0 => Row::Bucket(r.get::<_, Json<BucketRecord>>(0).0),
                    1 => {
                        let Json(mut rec): Json<ObjectRecord> = r.get(2);
                        rec.extents = r.get::<_, Json<Vec<Extent>>>(3).0;
                        Row::Object(r.get(0), r.get(1), rec)
                    }
                    2 => Row::Upload(r.get(0), r.get::<_, Json<UploadRecord>>(1).0),
                    3 => Row::Part(r.get(0), r.get::<_, i32>(1) as u32, r.get::<_, Json<PartRecord>>(2).0),
                    4 => Row::Completed(r.get(0), r.get::<_, Json<CompletedUpload>>(1).0),
                    5 => Row::Deletion(r.get(0), r.get::<_, i64>(1) as u64),
                    7 => Row::Inline(r.get(0), r.get(1)),
                    // A claim of the orphan sweep is not a blob the source refers to.
                    _ if r.get::<_, bool>(1) => Row::Blob(format!("{} (claimed as an orphan)", r.get::<_, String>(0))),
                    _ => Row::Blob(r.get(0)),
                };
                tally.add(&row)?;
            }
        }
        Ok(tally)
    }
}

#[async_trait::async_trait]
impl MetaStore for PgStore {
    async fn create_bucket(&self, rec: &BucketRecord, acl_given: bool, max_buckets: usize) -> Result<bool> {
        let max = i64::try_from(max_buckets).unwrap_or(i64::MAX);
        write_tx!(self, |tx| {
            let existing = rt(tx)
                .query_opt("SELECT rec FROM buckets WHERE name = $1 FOR UPDATE", &[&rec.name])
                .await?;
            if let Some(row) = existing {
                let Json(mut b): Json<BucketRecord> = row.get(0);
                if acl_given && b.acl != rec.acl {
                    b.acl = rec.acl;
                    rt(tx)
                        .execute("UPDATE buckets SET rec = $2 WHERE name = $1", &[&rec.name, &Json(&b)])
                        .await?;
                }
                return Ok(false);
            }
            let count: i64 = rt(tx).query_one("SELECT COUNT(*) FROM buckets", &[]).await?.get(0);
            if count >= max {
                return Err(Error::new(Code::TooManyBuckets).into());
            }
            let inserted = rt(tx)
                .execute(
                    "INSERT INTO buckets (name, rec) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                    &[&rec.name, &Json(rec)],
                )
                .await?;
            if inserted == 0 {
                return Err(Fail::Retry);
            }
            Ok(true)
        })
    }

    async fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = rt(&client)
            .query_opt("SELECT rec FROM buckets WHERE name = $1", &[&name])
            .await
            .map_err(db_error)?;
        Ok(row.map(|r| r.get::<_, Json<BucketRecord>>(0).0))
    }

    async fn list_buckets(&self) -> Result<Vec<BucketRecord>> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = rt(&client)
            .query("SELECT rec FROM buckets ORDER BY name", &[])
            .await
            .map_err(db_error)?;
        Ok(rows.iter().map(|r| r.get::<_, Json<BucketRecord>>(0).0).collect())
    }

    async fn update_bucket(&self, name: &str, change: &BucketChange) -> Result<()> {
        write_tx!(self, |tx| {
            let row = rt(tx)
                .query_opt("SELECT rec FROM buckets WHERE name = $1 FOR UPDATE", &[&name])
                .await?
                .ok_or_else(|| no_such_bucket(name))?;
            let Json(mut b): Json<BucketRecord> = row.get(0);
            change.apply(&mut b);
            rt(tx)
                .execute("UPDATE buckets SET rec = $2 WHERE name = $1", &[&name, &Json(&b)])
                .await?;
            Ok(())
        })
    }

    async fn delete_bucket(&self, name: &str) -> Result<()> {
        write_tx!(self, |tx| {
            // The foreign keys of objects and uploads refuse the delete while any remain.
            match rt(tx).execute("DELETE FROM buckets WHERE name = $1", &[&name]).await {
                Ok(0) => Err(no_such_bucket(name).into()),
                Ok(_) => Ok(()),
                Err(e) if is_fk_violation(&e) => Err(Error::new(Code::BucketNotEmpty).with_bucket(name).into()),
                Err(e) => Err(e.into()),
            }
        })
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        rec: &ObjectRecord,
        condition: &WriteCondition,
        delete_due_ms: u64,
    ) -> Result<()> {
        if rec.extents.iter().any(|e| e.data.is_some()) {
            // stores_inline() is false: the service never sends bytes; refuse rather than lose them.
            return Err(Error::internal("new inline blobs are not stored in PostgreSQL"));
        }
        let grace_ms = grace_of(delete_due_ms);
        if condition.if_match.is_none() {
            // A new key, the common case: one statement (autocommit) creates the object and
            // indexes its blobs, or creates nothing when the key is taken.
            let client = self.pool.get().await.map_err(pool_error)?;
            let head = ObjectRecord {
                extents: Vec::new(),
                ..rec.clone()
            };
            let created: i64 = match rt(&client)
                .query_one(
                    "WITH ins AS (INSERT INTO objects (bucket, key, rec, extents) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (bucket, key) DO NOTHING RETURNING 1), \
                     idx AS (INSERT INTO blob_index (blob) SELECT b FROM unnest($5::TEXT[]) AS t(b) \
                     WHERE EXISTS (SELECT 1 FROM ins)) \
                     SELECT COUNT(*) FROM ins",
                    &[
                        &bucket,
                        &key,
                        &Json(&head),
                        &Json(&rec.extents),
                        &extent_blobs(&rec.extents),
                    ],
                )
                .await
            {
                Ok(row) => row.get(0),
                Err(e) if is_fk_violation(&e) => return Err(no_such_bucket(bucket)),
                Err(e) => return Err(db_error(e)),
            };
            if created == 1 {
                return Ok(());
            }
            if condition.forbid_overwrite {
                return Err(Error::new(Code::FileAlreadyExists).with_key(key));
            }
        }
        write_tx!(self, |tx| {
            put_object_locked(tx, bucket, key, rec, condition, grace_ms).await?;
            index_blobs(tx, &extent_blobs(&rec.extents)).await?;
            Ok(())
        })
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectRecord>> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = rt(&client)
            .query_opt(
                "SELECT rec, extents FROM objects WHERE bucket = $1 AND key = $2",
                &[&bucket, &key],
            )
            .await
            .map_err(db_error)?;
        Ok(row.map(|r| {
            let Json(mut rec): Json<ObjectRecord> = r.get(0);
            rec.extents = r.get::<_, Json<Vec<Extent>>>(1).0;
            rec
        }))
    }

    async fn delete_object(
        &self,
        bucket: &str,
        key: &str,
        condition: &DeleteCondition,
        delete_due_ms: u64,
    ) -> Result<()> {
        let grace_ms = grace_of(delete_due_ms);
        write_tx!(self, |tx| {
            if !condition.is_empty() {
                let existing = lock_object(tx, bucket, key).await?;
                if existing.is_none() && !bucket_exists(tx, bucket).await? {
                    return Err(no_such_bucket(bucket).into());
                }
                condition.check(key, existing.as_ref())?;
            }
            let row = rt(tx)
                .query_opt(
                    "DELETE FROM objects WHERE bucket = $1 AND key = $2 RETURNING extents",
                    &[&bucket, &key],
                )
                .await?;
            match row {
                Some(r) => {
                    let Json(extents): Json<Vec<Extent>> = r.get(0);
                    queue_deletions(tx, &extent_blobs(&extents), grace_ms).await?;
                }
                None if !bucket_exists(tx, bucket).await? => return Err(no_such_bucket(bucket).into()),
                None => {}
            }
            Ok(())
        })
    }

    async fn update_object(&self, bucket: &str, key: &str, change: &ObjectChange) -> Result<ObjectRecord> {
        write_tx!(self, |tx| {
            let row = rt(tx)
                .query_opt(
                    "SELECT rec FROM objects WHERE bucket = $1 AND key = $2 FOR UPDATE",
                    &[&bucket, &key],
                )
                .await?
                .ok_or_else(|| Error::new(Code::NoSuchKey).with_key(key))?;
            let Json(mut rec): Json<ObjectRecord> = row.get(0);
            change.apply(&mut rec)?;
            rt(tx)
                .execute(
                    "UPDATE objects SET rec = $3 WHERE bucket = $1 AND key = $2",
                    &[&bucket, &key, &Json(&rec)],
                )
                .await?;
            Ok(rec)
        })
    }

    async fn scan_objects(
        &self,
        bucket: &str,
        prefix: &str,
        start: &ScanStart,
        limit: usize,
    ) -> Result<Vec<(String, ObjectRecord)>> {
        // One index range scan: from max(start, prefix) to the prefix's successor.
        let (from, exclusive) = match start {
            ScanStart::After(k) if k.as_str() >= prefix => (k.as_str(), true),
            ScanStart::At(k) if k.as_str() >= prefix => (k.as_str(), false),
            _ => (prefix, false),
        };
        let upper = if prefix.is_empty() {
            None
        } else {
            prefix_successor(prefix)
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Both bounds are index conditions (a `$3 IS NULL OR` form would leave the upper one a
        // filter in a generic plan, and a scan past the prefix would run to the bucket's end).
        let lower = if exclusive { "key > $2" } else { "key >= $2" };
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = match &upper {
            Some(upper) => {
                let sql = format!(
                    "SELECT key, rec FROM objects WHERE bucket = $1 AND {lower} AND key < $3 ORDER BY key LIMIT $4"
                );
                rt(&client).query(&sql, &[&bucket, &from, upper, &limit]).await
            }
            None => {
                let sql = format!("SELECT key, rec FROM objects WHERE bucket = $1 AND {lower} ORDER BY key LIMIT $3");
                rt(&client).query(&sql, &[&bucket, &from, &limit]).await
            }
        }
        .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, Json<ObjectRecord>>(1).0))
            .collect())
    }

    async fn create_upload(&self, bucket: &str, rec: &UploadRecord) -> Result<()> {
        write_tx!(self, |tx| {
            rt(tx)
                .execute(
                    "INSERT INTO uploads (upload_id, bucket, key, rec) VALUES ($1, $2, $3, $4)",
                    &[&rec.upload_id, &bucket, &rec.key, &Json(rec)],
                )
                .await
                .map_err(|e| {
                    if is_fk_violation(&e) {
                        Fail::Kura(no_such_bucket(bucket))
                    } else {
                        Fail::Db(e)
                    }
                })?;
            Ok(())
        })
    }

    async fn get_upload(&self, bucket: &str, key: &str, upload_id: &str) -> Result<Option<UploadRecord>> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = rt(&client)
            .query_opt(
                "SELECT rec FROM uploads WHERE upload_id = $1 AND bucket = $2 AND key = $3",
                &[&upload_id, &bucket, &key],
            )
            .await
            .map_err(db_error)?;
        Ok(row.map(|r| r.get::<_, Json<UploadRecord>>(0).0))
    }

    async fn get_completed(&self, upload_id: &str) -> Result<Option<CompletedUpload>> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = rt(&client)
            .query_opt("SELECT rec FROM completed WHERE upload_id = $1", &[&upload_id])
            .await
            .map_err(db_error)?;
        Ok(row.map(|r| r.get::<_, Json<CompletedUpload>>(0).0))
    }

    async fn put_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        part_number: u32,
        rec: &PartRecord,
        delete_due_ms: u64,
    ) -> Result<()> {
        let grace_ms = grace_of(delete_due_ms);
        let number = i32::try_from(part_number).map_err(Error::internal)?;
        let sequential = {
            // A new part number of an open upload that is not sequential, the common case:
            // one statement (autocommit) holds the upload (shared, as below), records the part
            // and indexes its blob. Anything else takes the transaction below.
            let client = self.pool.get().await.map_err(pool_error)?;
            let row = rt(&client)
                .query_one(
                    "WITH up AS (SELECT rec FROM uploads WHERE upload_id = $1 AND bucket = $2 AND key = $3 FOR SHARE), \
                     ins AS (INSERT INTO parts (upload_id, part_number, rec) SELECT $1, $4, $5 FROM up \
                     WHERE NOT COALESCE((up.rec->>'sequential')::BOOLEAN, FALSE) \
                     ON CONFLICT (upload_id, part_number) DO NOTHING RETURNING 1), \
                     idx AS (INSERT INTO blob_index (blob) SELECT $6 FROM ins) \
                     SELECT (SELECT COUNT(*) FROM up), (SELECT COUNT(*) FROM ins), \
                     (SELECT COUNT(*) FROM up WHERE COALESCE((up.rec->>'sequential')::BOOLEAN, FALSE))",
                    &[&upload_id, &bucket, &key, &number, &Json(rec), &rec.blob],
                )
                .await
                .map_err(db_error)?;
            let (open, recorded, sequential): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
            if open == 0 {
                return Err(no_such_upload(upload_id));
            }
            if recorded == 1 {
                return Ok(());
            }
            sequential > 0
        };
        // Shared: parts of one upload commit side by side; Complete and Abort, which lock the
        // upload for update, wait for them (and they for Complete and Abort). Parts of a
        // sequential upload are decided one at a time: they lock it for update from the
        // start (taking it shared, then for update, would deadlock two of them).
        let lock_upload = if sequential {
            "SELECT rec FROM uploads WHERE upload_id = $1 AND bucket = $2 AND key = $3 FOR UPDATE"
        } else {
            "SELECT rec FROM uploads WHERE upload_id = $1 AND bucket = $2 AND key = $3 FOR SHARE"
        };
        write_tx!(self, |tx| {
            let row = rt(tx)
                .query_opt(lock_upload, &[&upload_id, &bucket, &key])
                .await?
                .ok_or_else(|| no_such_upload(upload_id))?;
            let Json(upload): Json<UploadRecord> = row.get(0);
            if upload.sequential && !sequential {
                return Err(Fail::Retry); // cannot happen: the flag is set at Initiate
            }
            if upload.sequential {
                let last: i32 = rt(tx)
                    .query_one(
                        "SELECT COALESCE(MAX(part_number), 0) FROM parts WHERE upload_id = $1",
                        &[&upload_id],
                    )
                    .await?
                    .get(0);
                if number > last + 1 {
                    return Err(Error::new(Code::PartNotSequential).into());
                }
            }
            // Lock the part or insert it; an insert that loses to another looks again (each
            // statement sees what committed before it), so racing uploads of one number
            // settle here instead of restarting the transaction.
            let mut settled = false;
            for _ in 0..IN_TX_TRIES {
                let old = rt(tx)
                    .query_opt(
                        "SELECT rec FROM parts WHERE upload_id = $1 AND part_number = $2 FOR UPDATE",
                        &[&upload_id, &number],
                    )
                    .await?;
                if let Some(r) = old {
                    let Json(old): Json<PartRecord> = r.get(0);
                    queue_deletions(tx, &[old.blob], grace_ms).await?;
                    rt(tx)
                        .execute(
                            "UPDATE parts SET rec = $3 WHERE upload_id = $1 AND part_number = $2",
                            &[&upload_id, &number, &Json(rec)],
                        )
                        .await?;
                    settled = true;
                    break;
                }
                let inserted = rt(tx)
                    .execute(
                        "INSERT INTO parts (upload_id, part_number, rec) VALUES ($1, $2, $3) \
                         ON CONFLICT (upload_id, part_number) DO NOTHING",
                        &[&upload_id, &number, &Json(rec)],
                    )
                    .await?;
                if inserted == 1 {
                    settled = true;
                    break;
                }
            }
            if !settled {
                return Err(Fail::Retry);
            }
            index_blobs(tx, std::slice::from_ref(&rec.blob)).await?;
            Ok(())
        })
    }

    async fn scan_parts(&self, upload_id: &str, after: u32, limit: usize) -> Result<Vec<(u32, PartRecord)>> {
        let after = i32::try_from(after).unwrap_or(i32::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = rt(&client)
            .query(
                "SELECT part_number, rec FROM parts WHERE upload_id = $1 AND part_number > $2 \
                 ORDER BY part_number LIMIT $3",
                &[&upload_id, &after, &limit],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, i32>(0) as u32, r.get::<_, Json<PartRecord>>(1).0))
            .collect())
    }

    async fn scan_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        after: (&str, &str),
        limit: usize,
    ) -> Result<Vec<UploadRecord>> {
        let upper = if prefix.is_empty() {
            None
        } else {
            prefix_successor(prefix)
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.pool.get().await.map_err(pool_error)?;
        // `key\0` (the service's "past every upload of key") cannot travel as TEXT: it means
        // keys after `key`. The key bounds are index conditions; the (key, upload id)
        // comparison only trims the first key's uploads.
        let (past, after_id) = match after.0.strip_suffix('\0') {
            Some(k) => (k, None),
            None => (after.0, Some(after.1)),
        };
        let (from, op, id_cond) = match after_id {
            _ if past < prefix => (prefix, ">=", ""),
            Some(_) => (past, ">=", "AND (key, upload_id) > ($2, $4)"),
            None => (past, ">", ""),
        };
        let after_id = after_id.unwrap_or("");
        let rows = match &upper {
            Some(upper) => {
                let sql = format!(
                    "SELECT rec FROM uploads WHERE bucket = $1 AND key {op} $2 AND key < $3 AND $4::TEXT IS NOT NULL \
                     {id_cond} ORDER BY key, upload_id LIMIT $5"
                );
                rt(&client)
                    .query(&sql, &[&bucket, &from, upper, &after_id, &limit])
                    .await
            }
            None => {
                // Every parameter is referenced, so that each has a type.
                let sql = format!(
                    "SELECT rec FROM uploads WHERE bucket = $1 AND key {op} $2 AND $3::TEXT IS NULL \
                     AND $4::TEXT IS NOT NULL {id_cond} ORDER BY key, upload_id LIMIT $5"
                );
                rt(&client)
                    .query(&sql, &[&bucket, &from, &upper, &after_id, &limit])
                    .await
            }
        }
        .map_err(db_error)?;
        Ok(rows.iter().map(|r| r.get::<_, Json<UploadRecord>>(0).0).collect())
    }

    async fn complete_upload(&self, req: &CompleteRequest) -> Result<CompletedUpload> {
        let grace_ms = grace_of(req.delete_due_ms);
        let (bucket, key, upload_id) = (req.bucket.as_str(), req.key.as_str(), req.upload_id.as_str());
        write_tx!(self, |tx| {
            let row = rt(tx)
                .query_opt(
                    "SELECT rec FROM uploads WHERE upload_id = $1 AND bucket = $2 AND key = $3 FOR UPDATE",
                    &[&upload_id, &bucket, &key],
                )
                .await?;
            let Some(row) = row else {
                // A retry of a Complete that succeeded (here or on another gateway) gets
                // the same answer.
                let done = rt(tx)
                    .query_opt("SELECT rec FROM completed WHERE upload_id = $1", &[&upload_id])
                    .await?;
                if let Some(r) = done {
                    let Json(c): Json<CompletedUpload> = r.get(0);
                    if c.bucket == bucket && c.key == key && c.request_fingerprint == req.selection.fingerprint() {
                        return Ok(c);
                    }
                }
                return Err(no_such_upload(upload_id).into());
            };
            let Json(upload): Json<UploadRecord> = row.get(0);
            let rows = rt(tx)
                .query(
                    "SELECT part_number, rec FROM parts WHERE upload_id = $1 ORDER BY part_number",
                    &[&upload_id],
                )
                .await?;
            let stored: std::collections::BTreeMap<u32, PartRecord> = rows
                .iter()
                .map(|r| (r.get::<_, i32>(0) as u32, r.get::<_, Json<PartRecord>>(1).0))
                .collect();
            let chosen = choose_parts(&req.selection, &stored, req.min_part_size)?;
            if upload.sequential && chosen.iter().enumerate().any(|(i, (n, _))| *n as usize != i + 1) {
                return Err(Error::new(Code::PartNotSequential).into());
            }
            let rec = object_from_parts(&upload, &chosen, req.acl, req.now_ms);
            check_expected_checksum(&rec, req.expected_checksum.as_ref())?;
            let mut condition = req.condition.clone();
            condition.forbid_overwrite |= upload.forbid_overwrite;
            put_object_locked(tx, bucket, key, &rec, &condition, grace_ms).await?;
            // Parts not listed are discarded.
            let used: std::collections::HashSet<u32> = chosen.iter().map(|(n, _)| *n).collect();
            let unused: Vec<String> = stored
                .iter()
                .filter(|(n, _)| !used.contains(n))
                .map(|(_, p)| p.blob.clone())
                .collect();
            queue_deletions(tx, &unused, grace_ms).await?;
            rt(tx)
                .execute("DELETE FROM parts WHERE upload_id = $1", &[&upload_id])
                .await?;
            rt(tx)
                .execute("DELETE FROM uploads WHERE upload_id = $1", &[&upload_id])
                .await?;
            let outcome = req.outcome(&rec);
            rt(tx)
                .execute(
                    "INSERT INTO completed (upload_id, completed_ms, rec) VALUES ($1, $2, $3)",
                    &[&upload_id, &ms(req.now_ms), &Json(&outcome)],
                )
                .await?;
            Ok(outcome)
        })
    }

    async fn abort_upload(&self, bucket: &str, key: &str, upload_id: &str, delete_due_ms: u64) -> Result<()> {
        let grace_ms = grace_of(delete_due_ms);
        write_tx!(self, |tx| {
            let gone = rt(tx)
                .execute(
                    "DELETE FROM uploads WHERE upload_id = $1 AND bucket = $2 AND key = $3",
                    &[&upload_id, &bucket, &key],
                )
                .await?;
            if gone == 0 {
                return Err(no_such_upload(upload_id).into());
            }
            let rows = rt(tx)
                .query("DELETE FROM parts WHERE upload_id = $1 RETURNING rec", &[&upload_id])
                .await?;
            let blobs: Vec<String> = rows.iter().map(|r| r.get::<_, Json<PartRecord>>(0).0.blob).collect();
            queue_deletions(tx, &blobs, grace_ms).await?;
            Ok(())
        })
    }

    async fn due_deletions(&self, now_ms: u64, limit: usize) -> Result<Vec<String>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = rt(&client)
            .query(
                &format!(
                    "SELECT blob FROM deletions d WHERE due_ms <= {NOW_MS} + $1 AND NOT EXISTS \
                     (SELECT 1 FROM read_leases l WHERE l.blob = d.blob AND l.expires_ms > {NOW_MS}) \
                     ORDER BY due_ms, blob LIMIT $2"
                ),
                // The caller's "now" as an offset from this gateway's clock, applied to the
                // database's (a century at most, so the sum stays a BIGINT).
                &[
                    &ms(now_ms
                        .saturating_sub(kura_proto::timefmt::now_millis())
                        .min(100 * 365 * 86_400_000)),
                    &limit,
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn forget_deletions(&self, blobs: &[String]) -> Result<()> {
        write_tx!(self, |tx| {
            rt(tx)
                .execute("DELETE FROM deletions WHERE blob = ANY($1)", &[&blobs])
                .await?;
            rt(tx)
                .execute("DELETE FROM blob_index WHERE blob = ANY($1)", &[&blobs])
                .await?;
            rt(tx)
                .execute("DELETE FROM inline_blobs WHERE blob = ANY($1)", &[&blobs])
                .await?;
            Ok(())
        })
    }

    async fn unknown_blobs(&self, ids: &[String]) -> Result<Vec<String>> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = rt(&client)
            .query(
                "SELECT id FROM unnest($1::TEXT[]) AS t(id) \
                 WHERE NOT EXISTS (SELECT 1 FROM blob_index WHERE blob = t.id)",
                &[&ids],
            )
            .await
            .map_err(db_error)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// PostgreSQL keeps inline blobs copied from an embedded store and serves them, but new
    /// blobs go to files: not measured there yet (each row is a round trip of its own).
    fn stores_inline(&self) -> bool {
        false
    }

    async fn bucket_usage(&self, bucket: &str) -> Result<Vec<(String, Usage)>> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = rt(&client)
            .query(
                "SELECT class, sum(objects)::BIGINT, sum(bytes)::BIGINT, sum(uploads)::BIGINT, \
                 sum(parts)::BIGINT, sum(part_bytes)::BIGINT FROM bucket_stats WHERE bucket = $1 GROUP BY class",
                &[&bucket],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|r| {
                let usage = Usage {
                    objects: r.get(1),
                    bytes: r.get(2),
                    uploads: r.get(3),
                    parts: r.get(4),
                    part_bytes: r.get(5),
                };
                (r.get::<_, String>(0), usage)
            })
            .collect())
    }

    async fn inline_blob(&self, id: &str) -> Result<Option<bytes::Bytes>> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = rt(&client)
            .query_opt("SELECT data FROM inline_blobs WHERE blob = $1", &[&id])
            .await
            .map_err(db_error)?;
        Ok(row.map(|r| bytes::Bytes::from(r.get::<_, Vec<u8>>(0))))
    }

    async fn expire_completed(&self, before_ms: u64) -> Result<usize> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let n = rt(&client)
            .execute("DELETE FROM completed WHERE completed_ms < $1", &[&ms(before_ms)])
            .await
            .map_err(db_error)?;
        rt(&client)
            .execute(
                &format!("DELETE FROM gateways WHERE expires_ms < {NOW_MS} - 3600000"),
                &[],
            )
            .await
            .map_err(db_error)?;
        rt(&client)
            .execute(
                &format!("DELETE FROM blob_index WHERE orphan AND claimed_ms < {NOW_MS} - 86400000"),
                &[],
            )
            .await
            .map_err(db_error)?;
        // Leases of gateways that died and never withdrew them.
        rt(&client)
            .execute(
                &format!("DELETE FROM read_leases WHERE expires_ms < {NOW_MS} - 60000"),
                &[],
            )
            .await
            .map_err(db_error)?;
        Ok(n as usize)
    }

    async fn lead(&self, holder: &str, ttl_ms: u64) -> Result<bool> {
        let client = self.background.get().await.map_err(pool_error)?;
        let row = rt(&client)
            .query_opt(
                &format!(
                    "INSERT INTO leader (role, holder, expires_ms) VALUES ('sweeper', $1, {NOW_MS} + $2) \
                     ON CONFLICT (role) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms \
                     WHERE leader.holder = excluded.holder OR leader.expires_ms < {NOW_MS} RETURNING holder"
                ),
                &[&holder, &ms(ttl_ms)],
            )
            .await
            .map_err(db_error)?;
        Ok(row.is_some())
    }

    async fn claim_orphans(&self, ids: &[String]) -> Result<Vec<String>> {
        // Unknown ids are claimed by inserting them marked as orphans: a commit that would
        // index one now fails on the primary key, and one that indexed it first keeps it.
        // Ids claimed by an earlier sweep that stopped before deleting count too.
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = rt(&client)
            .query(
                &format!(
                    "WITH claimed AS (INSERT INTO blob_index (blob, orphan, claimed_ms) \
                     SELECT id, TRUE, {NOW_MS} FROM unnest($1::TEXT[]) AS t(id) \
                     ON CONFLICT (blob) DO NOTHING RETURNING blob) \
                     SELECT blob FROM claimed UNION ALL \
                     SELECT blob FROM blob_index WHERE blob = ANY($1) AND orphan"
                ),
                &[&ids],
            )
            .await
            .map_err(db_error)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn forget_orphans(&self, _ids: &[String]) -> Result<()> {
        // The claims stay, as tombstones: a commit held up somewhere must still find its
        // blob claimed and fail. They are dropped after a day (`expire_completed`).
        Ok(())
    }

    async fn embedded_copy_verified(&self) -> Result<bool> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let row = rt(&client)
            .query_opt("SELECT 1 FROM kura_info WHERE name = 'embedded_copy_verified'", &[])
            .await
            .map_err(db_error)?;
        Ok(row.is_some())
    }

    async fn live_gateways(&self) -> Result<Option<Vec<String>>> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let rows = rt(&client)
            .query(&format!("SELECT id FROM gateways WHERE expires_ms > {NOW_MS}"), &[])
            .await
            .map_err(db_error)?;
        Ok(Some(rows.iter().map(|r| r.get(0)).collect()))
    }

    async fn publish_leases(&self, gateway: &str, blobs: &[String], ttl_ms: u64) -> Result<()> {
        write_tx!(self, background, |tx| {
            rt(tx)
                .execute(
                    &format!(
                        "INSERT INTO gateways (id, expires_ms) VALUES ($1, {NOW_MS} + $2) \
                         ON CONFLICT (id) DO UPDATE SET expires_ms = excluded.expires_ms"
                    ),
                    &[&gateway, &ms(ttl_ms)],
                )
                .await?;
            rt(tx)
                .execute(
                    "DELETE FROM read_leases WHERE gateway = $1 AND NOT (blob = ANY($2))",
                    &[&gateway, &blobs],
                )
                .await?;
            if !blobs.is_empty() {
                rt(tx)
                    .execute(
                        &format!(
                            "INSERT INTO read_leases (gateway, blob, expires_ms) \
                         SELECT $1, b, {NOW_MS} + $3 FROM unnest($2::TEXT[]) AS t(b) \
                         ON CONFLICT (gateway, blob) DO UPDATE SET expires_ms = excluded.expires_ms"
                        ),
                        &[&gateway, &blobs, &ms(ttl_ms)],
                    )
                    .await?;
            }
            Ok(())
        })
    }

    fn shared(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_as_libpq_reads_them() {
        let (url, o) =
            tls_options("postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x");
        assert_eq!(url, "postgres://u@h/db?sslmode=require&application_name=x");
        assert_eq!(
            o,
            TlsOptions {
                verify: true,
                root_cert: Some("/etc/ca.pem".into())
            }
        );
        let (url, o) = tls_options("postgres://u@h/db?sslmode=require");
        assert_eq!(url, "postgres://u@h/db?sslmode=require");
        assert!(!o.verify);
        let (url, o) = tls_options("postgres://u@h/db?sslrootcert=/ca.pem");
        assert_eq!(url, "postgres://u@h/db");
        assert!(o.verify, "a CA file given is checked, as libpq does");
        let (url, o) = tls_options("host=h sslmode=verify-ca dbname=d");
        assert_eq!(url, "host=h sslmode=require dbname=d");
        assert!(o.verify);
        assert_eq!(tls_options("postgres://u@h/db").0, "postgres://u@h/db");
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact_url("postgres://kura:s3cret@db:5432/kura"),
            "postgres://kura:***@db:5432/kura"
        );
        assert_eq!(
            redact_url("postgres://db/kura?password=x&sslmode=require"),
            "postgres://db/kura?password=***&sslmode=require"
        );
        assert_eq!(redact_url("postgres://kura@db/kura"), "postgres://kura@db/kura");
        assert_eq!(redact_url("host=/tmp dbname=kura"), "host=/tmp dbname=kura");
        assert_eq!(
            redact_url("host=db password=x dbname=k"),
            "host=db password=*** dbname=k"
        );
    }
}
