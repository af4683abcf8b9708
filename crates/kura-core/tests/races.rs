//! The multipart rules under concurrency, at the metadata store, on both backends: the
//! embedded redb store always, and PostgreSQL when `KURA_TEST_PG_URL` names a server
//! (scripts/test starts one), with two stores (two pools: two gateways) over one database.
//!
//! Each race is run many rounds and checked by what must hold whatever the interleaving:
//! every acknowledged part is in the object and nothing else is; every blob that was dropped
//! is queued for deletion (none leaks); one of two Completes wins, whole.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kura_core::meta::{Blocking, CompleteRequest, MetaStore, WriteCondition};
use kura_core::model::*;
use kura_core::pg_store::PgStore;
use kura_core::redb_store::RedbStore;
use kura_core::{Code, DeleteCondition};

/// Two handles on one store: for redb the same store, for PostgreSQL two pools.
async fn backends() -> Vec<(
    &'static str,
    Arc<dyn MetaStore>,
    Arc<dyn MetaStore>,
    Option<tempfile::TempDir>,
)> {
    let dir = tempfile::tempdir().unwrap();
    let redb: Arc<dyn MetaStore> = Arc::new(Blocking(Arc::new(
        RedbStore::open(&dir.path().join("meta.redb")).unwrap(),
    )));
    let mut out = vec![("redb", redb.clone(), redb, Some(dir))];
    if let Ok(base) = std::env::var("KURA_TEST_PG_URL") {
        let url = fresh_database(&base).await;
        let a: Arc<dyn MetaStore> = Arc::new(PgStore::connect(&url, 8).await.unwrap());
        let b: Arc<dyn MetaStore> = Arc::new(PgStore::connect(&url, 8).await.unwrap());
        out.push(("postgres", a, b, None));
    } else {
        eprintln!("KURA_TEST_PG_URL not set: PostgreSQL races skipped (scripts/test sets it)");
    }
    out
}

async fn fresh_database(base: &str) -> String {
    let (client, conn) = tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let name = format!("kr_{}", hex::encode(rand::random::<[u8; 8]>()));
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    format!("{base}/{name}")
}

fn blob() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn part(size: u64) -> PartRecord {
    PartRecord {
        etag: hex::encode_upper(rand::random::<[u8; 16]>()),
        checksum: None,
        size,
        crc64: 0,
        last_modified_ms: 1,
        blob: blob(),
    }
}

fn upload(key: &str) -> UploadRecord {
    UploadRecord {
        upload_id: hex::encode_upper(rand::random::<[u8; 16]>()),
        key: key.into(),
        initiated_ms: 1,
        storage_class: "Standard".into(),
        acl: ObjectAcl::Default,
        headers: ObjectHeaders::default(),
        forbid_overwrite: false,
        checksum: None,
        sequential: false,
        tags: Vec::new(),
    }
}

fn object(blob: &str) -> ObjectRecord {
    ObjectRecord {
        etag: "E".into(),
        s3_etag: None,
        checksum: None,
        size: 1,
        crc64: 0,
        content_md5: None,
        last_modified_ms: 1,
        object_type: ObjectType::Normal,
        storage_class: "Standard".into(),
        acl: ObjectAcl::Default,
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

fn complete(bucket: &str, key: &str, upload_id: &str, selection: PartSelection) -> CompleteRequest {
    CompleteRequest {
        bucket: bucket.into(),
        key: key.into(),
        upload_id: upload_id.into(),
        selection,
        condition: WriteCondition::default(),
        acl: None,
        min_part_size: 1,
        now_ms: 2,
        delete_due_ms: 0,
        expected_checksum: None,
    }
}

async fn queued(store: &Arc<dyn MetaStore>) -> HashSet<String> {
    store
        .due_deletions(u64::MAX / 2, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

async fn make_bucket(store: &Arc<dyn MetaStore>, name: &str) {
    let rec = BucketRecord {
        name: name.into(),
        created_ms: 0,
        acl: Acl::Private,
        storage_class: "Standard".into(),
        tags: Vec::new(),
    };
    store.create_bucket(&rec, false, 1000).await.unwrap();
}

/// Parts recorded on one gateway while the other completes: the object holds exactly the
/// parts acknowledged (with x-oss-complete-all semantics), and later parts are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_part_racing_complete() {
    for (name, a, b, _dir) in backends().await {
        make_bucket(&a, "bkt").await;
        for round in 0..15 {
            let key = format!("k{round}");
            let up = upload(&key);
            a.create_upload("bkt", &up).await.unwrap();
            let first = part(10);
            a.put_part("bkt", &key, &up.upload_id, 1, &first, 0).await.unwrap();
            let writer = {
                let (a, key, id) = (a.clone(), key.clone(), up.upload_id.clone());
                tokio::spawn(async move {
                    let mut acked = vec![(1u32, first.blob.clone())];
                    for n in 2..=30u32 {
                        let p = part(10);
                        match a.put_part("bkt", &key, &id, n, &p, 0).await {
                            Ok(()) => acked.push((n, p.blob)),
                            Err(e) => {
                                assert_eq!(e.code, Code::NoSuchUpload);
                                break;
                            }
                        }
                    }
                    acked
                })
            };
            tokio::time::sleep(std::time::Duration::from_micros(200 * (round % 5))).await;
            let done = b
                .complete_upload(&complete("bkt", &key, &up.upload_id, PartSelection::All))
                .await
                .unwrap();
            let acked = writer.await.unwrap();
            let obj = b.get_object("bkt", &key).await.unwrap().unwrap();
            let in_object: Vec<String> = obj.extents.iter().map(|e| e.blob.clone()).collect();
            let acked_blobs: Vec<String> = acked.iter().map(|(_, b)| b.clone()).collect();
            assert_eq!(in_object, acked_blobs, "{name}: the object is the acknowledged parts");
            assert_eq!(done.size, 10 * acked.len() as u64);
            assert!(a.get_upload("bkt", &key, &up.upload_id).await.unwrap().is_none());
        }
    }
}

/// Parts recorded while the other gateway aborts: every acknowledged part's blob is queued
/// for deletion, and parts after the abort are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_part_racing_abort() {
    for (name, a, b, _dir) in backends().await {
        make_bucket(&a, "bkt").await;
        for round in 0..15 {
            let key = format!("k{round}");
            let up = upload(&key);
            a.create_upload("bkt", &up).await.unwrap();
            let writers: Vec<_> = (0..3u32)
                .map(|w| {
                    let (a, key, id) = (a.clone(), key.clone(), up.upload_id.clone());
                    tokio::spawn(async move {
                        let mut acked = Vec::new();
                        for i in 0..20u32 {
                            let p = part(10);
                            match a.put_part("bkt", &key, &id, 1 + w * 100 + i, &p, 0).await {
                                Ok(()) => acked.push(p.blob),
                                Err(e) => {
                                    assert_eq!(e.code, Code::NoSuchUpload);
                                    break;
                                }
                            }
                        }
                        acked
                    })
                })
                .collect();
            tokio::time::sleep(std::time::Duration::from_micros(300 * (round % 5))).await;
            b.abort_upload("bkt", &key, &up.upload_id, 0).await.unwrap();
            let mut acked = Vec::new();
            for w in writers {
                acked.extend(w.await.unwrap());
            }
            let queue = queued(&b).await;
            for blob in &acked {
                assert!(
                    queue.contains(blob),
                    "{name}: an acknowledged part's blob leaked after Abort"
                );
            }
            assert_eq!(
                b.abort_upload("bkt", &key, &up.upload_id, 0).await.unwrap_err().code,
                Code::NoSuchUpload
            );
            assert!(a.scan_parts(&up.upload_id, 0, 10).await.unwrap().is_empty());
        }
    }
}

/// Two gateways complete one upload with different part lists: one wins, whole; the other
/// gets NoSuchUpload. With the same list both get the same answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_completes_one_winner() {
    for (name, a, b, _dir) in backends().await {
        make_bucket(&a, "bkt").await;
        for round in 0..15 {
            let key = format!("k{round}");
            let up = upload(&key);
            a.create_upload("bkt", &up).await.unwrap();
            let mut parts = BTreeMap::new();
            for n in 1..=3u32 {
                let p = part(10);
                a.put_part("bkt", &key, &up.upload_id, n, &p, 0).await.unwrap();
                parts.insert(n, p);
            }
            let list = |ns: &[u32]| PartSelection::Listed(ns.iter().map(|n| (*n, parts[n].etag.clone())).collect());
            let same = round % 3 == 0;
            let (sel_a, sel_b) = if same {
                (list(&[1, 2, 3]), list(&[1, 2, 3]))
            } else {
                (list(&[1, 2, 3]), list(&[1, 2]))
            };
            let (req_a, req_b) = (
                complete("bkt", &key, &up.upload_id, sel_a),
                complete("bkt", &key, &up.upload_id, sel_b),
            );
            let (ra, rb) = tokio::join!(a.complete_upload(&req_a), b.complete_upload(&req_b));
            let obj = a.get_object("bkt", &key).await.unwrap().unwrap();
            let blobs: Vec<&str> = obj.extents.iter().map(|e| e.blob.as_str()).collect();
            let all: Vec<&str> = parts.values().map(|p| p.blob.as_str()).collect();
            if same {
                let (ra, rb) = (ra.unwrap(), rb.unwrap());
                assert_eq!(ra, rb, "{name}: the same list gets the same answer");
                assert_eq!(blobs, all);
            } else {
                match (ra, rb) {
                    (Ok(_), Err(e)) => {
                        assert_eq!(e.code, Code::NoSuchUpload);
                        assert_eq!(blobs, all);
                    }
                    (Err(e), Ok(_)) => {
                        assert_eq!(e.code, Code::NoSuchUpload);
                        assert_eq!(blobs, all[..2].to_vec());
                        assert!(queued(&a).await.contains(all[2]), "{name}: the unlisted part leaked");
                    }
                    other => panic!("{name}: not exactly one winner: {other:?}"),
                }
            }
        }
    }
}

/// Overwrites of one key from two gateways: one object remains and every replaced blob is
/// queued for deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_overwrites_queue_every_replaced_blob() {
    for (name, a, b, _dir) in backends().await {
        make_bucket(&a, "bkt").await;
        let mut tasks = Vec::new();
        for store in [a.clone(), b.clone(), a.clone(), b.clone()] {
            tasks.push(tokio::spawn(async move {
                let mut written = Vec::new();
                for _ in 0..25 {
                    let id = blob();
                    store
                        .put_object("bkt", "hot", &object(&id), &WriteCondition::default(), 0)
                        .await
                        .unwrap();
                    written.push(id);
                }
                written
            }));
        }
        let mut written = Vec::new();
        for t in tasks {
            written.extend(t.await.unwrap());
        }
        let last = a.get_object("bkt", "hot").await.unwrap().unwrap().extents[0]
            .blob
            .clone();
        let queue = queued(&b).await;
        for id in &written {
            assert!(
                *id == last || queue.contains(id),
                "{name}: a replaced blob was neither kept nor queued"
            );
        }
        assert!(!queue.contains(&last));
        // A conditional create loses to an existing object in its own transaction.
        let e = b
            .put_object(
                "bkt",
                "hot",
                &object(&blob()),
                &WriteCondition {
                    forbid_overwrite: true,
                    if_match: None,
                },
                0,
            )
            .await
            .unwrap_err();
        assert_eq!(e.code, Code::FileAlreadyExists);
        b.delete_object("bkt", "hot", &DeleteCondition::default(), 0)
            .await
            .unwrap();
        assert!(queued(&a).await.contains(&last));
        // A bucket with an upload in it is not empty, on either gateway.
        let up = upload("u");
        a.create_upload("bkt", &up).await.unwrap();
        assert_eq!(b.delete_bucket("bkt").await.unwrap_err().code, Code::BucketNotEmpty);
        a.abort_upload("bkt", "u", &up.upload_id, 0).await.unwrap();
        b.delete_bucket("bkt").await.unwrap();
        assert_eq!(
            a.create_upload("bkt", &upload("v")).await.unwrap_err().code,
            Code::NoSuchBucket
        );
    }
}

/// Many writers at once (one group-commit batch on redb): of the conditional creates of one
/// key in a round exactly one wins and the object is the winner's, while the plain writes
/// batched with them, before and after the losers, all land.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_creates_in_one_batch_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let redb = Arc::new(RedbStore::open(&dir.path().join("meta.redb")).unwrap());
    let mut stores = vec![("redb", {
        let s: Arc<dyn MetaStore> = Arc::new(Blocking(redb.clone()));
        (s.clone(), s)
    })];
    for (name, a, b, _) in backends().await.into_iter().skip(1) {
        stores.push((name, (a, b)));
    }
    let mut writes = 0u64;
    for (name, (a, b)) in stores {
        make_bucket(&a, "bkt").await;
        for round in 0..20 {
            let hot = format!("hot-{round}");
            let mut tasks = Vec::new();
            for i in 0..64 {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                let hot = hot.clone();
                tasks.push(tokio::spawn(async move {
                    let id = blob();
                    if i % 4 == 0 {
                        let plain = store
                            .put_object(
                                "bkt",
                                &format!("plain-{i}-{id}"),
                                &object(&id),
                                &WriteCondition::default(),
                                0,
                            )
                            .await;
                        return (None, plain.map(|_| id));
                    }
                    let forbid = WriteCondition {
                        forbid_overwrite: true,
                        if_match: None,
                    };
                    let r = store.put_object("bkt", &hot, &object(&id), &forbid, 0).await;
                    (Some(id.clone()), r.map(|_| id))
                }));
            }
            let mut winners = Vec::new();
            for t in tasks {
                match t.await.unwrap() {
                    (None, r) => {
                        r.unwrap_or_else(|e| panic!("{name}: a plain write failed: {e:?}"));
                    }
                    (Some(_), Ok(id)) => winners.push(id),
                    (Some(_), Err(e)) => assert_eq!(e.code, Code::FileAlreadyExists, "{name}"),
                }
                writes += u64::from(name == "redb");
            }
            assert_eq!(winners.len(), 1, "{name}: round {round}: {} winners", winners.len());
            let stored = a.get_object("bkt", &hot).await.unwrap().unwrap();
            assert_eq!(
                stored.extents[0].blob, winners[0],
                "{name}: the object is not the winner's"
            );
        }
        let plain = a
            .scan_objects(
                "bkt",
                "plain-",
                &kura_core::meta::ScanStart::After(String::new()),
                10_000,
            )
            .await
            .unwrap();
        assert_eq!(plain.len(), 20 * 16, "{name}: plain writes lost");
    }
    // The writes shared commits: fewer durable commits than writes on redb.
    let commits = redb.commits();
    eprintln!("redb: {commits} durable commits for {writes} writes");
    assert!(
        commits < writes / 2,
        "{commits} commits for {writes} redb writes: no group commit"
    );
}
