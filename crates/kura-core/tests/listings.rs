//! Listings checked against a simple model for random key sets, prefixes, delimiters,
//! markers and page sizes: following the pages returns every entry exactly once, in order,
//! with the right common prefixes, and always ends. Keys are drawn from an alphabet with the
//! awkward characters: `/`, U+10FFFF (the largest code point), a control character, a
//! non-ASCII letter, and empty path segments. On the embedded store, or on PostgreSQL when
//! `KURA_TEST_PG_URL` names a server (scripts/test runs this file once each way).

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use kura_core::{BodyChecks, BodySource, Config, Kura, Result, WriteOptions};
use proptest::prelude::*;

/// Pieces keys are made of; the run of U+10FFFF is longer than any fixed padding a cursor
/// might use to get past a prefix.
const ALPHABET: &[&str] = &[
    "a",
    "b",
    "/",
    "\u{10FFFF}",
    "\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}",
    "\u{1}",
    "é",
    "0",
];

fn key_strategy() -> impl Strategy<Value = String> {
    // Keys may not start with '/' (OSS rule); after that, anything from the alphabet.
    let first = proptest::sample::select(ALPHABET).prop_filter("no leading /", |c| *c != "/");
    (
        first,
        proptest::collection::vec(proptest::sample::select(ALPHABET), 0..5),
    )
        .prop_map(|(f, rest)| std::iter::once(f).chain(rest).collect())
}

fn text_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(ALPHABET), 0..3).prop_map(|cs| cs.concat())
}

fn delimiter_strategy() -> impl Strategy<Value = String> {
    proptest::sample::select(vec!["", "/", "\u{10FFFF}", "a/", "//"]).prop_map(str::to_string)
}

struct Once(Option<Bytes>);

impl BodySource for Once {
    async fn next_chunk(&mut self) -> Option<Result<Bytes>> {
        self.0.take().map(Ok)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Key(String),
    Prefix(String),
}

fn common_prefix<'a>(key: &'a str, prefix: &str, delimiter: &str) -> Option<&'a str> {
    if delimiter.is_empty() {
        return None;
    }
    let rest = key.strip_prefix(prefix)?;
    rest.find(delimiter).map(|i| &key[..prefix.len() + i + delimiter.len()])
}

/// The listing as the API defines it: entries after the marker (a marker inside a common
/// prefix skips that whole prefix), keys under a common prefix rolled up into it.
fn model(keys: &BTreeSet<String>, prefix: &str, delimiter: &str, marker: &str) -> Vec<Entry> {
    let skipped = common_prefix(marker, prefix, delimiter).filter(|_| marker.starts_with(prefix));
    let mut out: Vec<Entry> = Vec::new();
    for k in keys.iter().filter(|k| k.starts_with(prefix) && k.as_str() > marker) {
        if skipped.is_some_and(|cp| k.starts_with(cp)) {
            continue;
        }
        let entry = match common_prefix(k, prefix, delimiter) {
            Some(cp) => Entry::Prefix(cp.to_string()),
            None => Entry::Key(k.clone()),
        };
        if out.last() != Some(&entry) {
            out.push(entry);
        }
    }
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct Store {
    _dir: tempfile::TempDir,
    kura: Arc<Kura>,
    next_bucket: std::cell::Cell<u32>,
    /// One runtime per thread for the store's life: PostgreSQL connections live on it.
    rt: tokio::runtime::Runtime,
}

impl Store {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            max_buckets: 100_000,
            ..Config::default()
        };
        let rt = runtime();
        let kura = match std::env::var("KURA_TEST_PG_URL") {
            Ok(base) => rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&format!("{base}/postgres"), tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                let name = format!("kl_{}", hex::encode(rand::random::<[u8; 8]>()));
                client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
                let store = kura_core::pg_store::PgStore::connect(&format!("{base}/{name}"), 4)
                    .await
                    .unwrap();
                Kura::open(Arc::new(store), dir.path(), cfg).unwrap()
            }),
            Err(_) => Kura::open_local(dir.path(), cfg).unwrap(),
        };
        Store {
            _dir: dir,
            kura,
            next_bucket: std::cell::Cell::new(0),
            rt,
        }
    }

    async fn bucket(&self) -> String {
        let n = self.next_bucket.get();
        self.next_bucket.set(n + 1);
        let name = format!("b{n:06}");
        self.kura.create_bucket(&name, None, None).await.unwrap();
        name
    }
}

thread_local! {
    static STORE: Store = Store::new();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn object_listings_match_the_model(
        keys in proptest::collection::btree_set(key_strategy(), 0..14),
        prefix in text_strategy(),
        delimiter in delimiter_strategy(),
        marker in text_strategy(),
        page in 1usize..5,
    ) {
        STORE.with(|store| store.rt.block_on(async {
            let k = &store.kura;
            let b = store.bucket().await;
            for key in &keys {
                k.put_object(&b, key, &mut Once(Some(Bytes::from_static(b"x"))), WriteOptions::default()).await.unwrap();
            }
            let expected = model(&keys, &prefix, &delimiter, &marker);
            let mut got = Vec::new();
            let mut cursor = marker.clone();
            for _ in 0..=expected.len() + 1 {
                let l = k.list_objects(&b, &prefix, &delimiter, &cursor, page).await.unwrap();
                prop_assert!(l.objects.len() + l.common_prefixes.len() <= page);
                // One page's entries, in key order.
                let mut entries: Vec<Entry> = l.objects.iter().map(|(k, _)| Entry::Key(k.clone()))
                    .chain(l.common_prefixes.iter().map(|p| Entry::Prefix(p.clone()))).collect();
                entries.sort_by(|a, b| {
                    let s = |e: &Entry| match e { Entry::Key(s) | Entry::Prefix(s) => s.clone() };
                    s(a).cmp(&s(b))
                });
                got.extend(entries);
                if !l.truncated {
                    prop_assert!(l.next_marker.is_none());
                    prop_assert_eq!(&got, &expected);
                    return Ok(());
                }
                cursor = l.next_marker.clone().unwrap();
            }
            prop_assert!(false, "the listing did not end: {:?}", got);
            Ok(())
        }))?;
    }

    #[test]
    fn upload_and_part_listings_match_the_model(
        keys in proptest::collection::vec(key_strategy(), 0..8),
        prefix in text_strategy(),
        delimiter in delimiter_strategy(),
        marker_pick in any::<prop::sample::Index>(),
        use_id_marker in any::<bool>(),
        page in 1usize..4,
        parts in proptest::collection::btree_set(1u32..40, 0..8),
    ) {
        STORE.with(|store| store.rt.block_on(async {
            let k = &store.kura;
            let b = store.bucket().await;
            // Some keys get two uploads: ids sort by initiation time within a key.
            let mut uploads: BTreeSet<(String, String)> = BTreeSet::new();
            for (i, key) in keys.iter().enumerate() {
                for _ in 0..(1 + i % 2) {
                    let id = k.initiate_upload(&b, key, WriteOptions::default()).await.unwrap();
                    uploads.insert((key.clone(), id));
                }
            }
            let all: Vec<&(String, String)> = uploads.iter().collect();
            let (key_marker, id_marker) = match all.is_empty() {
                true => (String::new(), String::new()),
                false => {
                    let (mk, mi) = marker_pick.get(&all);
                    (mk.clone(), if use_id_marker { mi.clone() } else { String::new() })
                }
            };
            // The model: uploads after the markers, rolled up into common prefixes.
            let skipped = common_prefix(&key_marker, &prefix, &delimiter).filter(|_| key_marker.starts_with(prefix.as_str()));
            let mut expected: Vec<Entry> = Vec::new();
            for (key, id) in &uploads {
                let after = if id_marker.is_empty() {
                    key.as_str() > key_marker.as_str()
                } else {
                    (key.as_str(), id.as_str()) > (key_marker.as_str(), id_marker.as_str())
                };
                if !key.starts_with(prefix.as_str()) || !after || skipped.is_some_and(|cp| key.starts_with(cp)) {
                    continue;
                }
                let entry = match common_prefix(key, &prefix, &delimiter) {
                    Some(cp) => Entry::Prefix(cp.to_string()),
                    None => Entry::Key(format!("{key}#{id}")),
                };
                if expected.last() != Some(&entry) {
                    expected.push(entry);
                }
            }
            let mut got = Vec::new();
            let (mut km, mut im) = (key_marker.clone(), id_marker.clone());
            let mut ended = false;
            for _ in 0..=expected.len() + 1 {
                let l = k.list_uploads(&b, &prefix, &delimiter, &km, &im, page).await.unwrap();
                prop_assert!(l.uploads.len() + l.common_prefixes.len() <= page);
                let mut entries: Vec<(String, Entry)> = l.uploads.iter()
                    .map(|u| (u.key.clone(), Entry::Key(format!("{}#{}", u.key, u.upload_id))))
                    .chain(l.common_prefixes.iter().map(|p| (p.clone(), Entry::Prefix(p.clone()))))
                    .collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                got.extend(entries.into_iter().map(|(_, e)| e));
                if !l.truncated {
                    ended = true;
                    break;
                }
                (km, im) = (l.next_key_marker.clone(), l.next_upload_id_marker.clone());
            }
            prop_assert!(ended, "the upload listing did not end: {:?}", got);
            prop_assert_eq!(&got, &expected);

            // ListParts of one upload, paged by part-number-marker.
            if let Some((key, id)) = uploads.iter().next() {
                for n in &parts {
                    k.upload_part(&b, key, id, *n, &mut Once(Some(Bytes::from_static(b"p"))), BodyChecks::default()).await.unwrap();
                }
                let mut got = Vec::new();
                let mut marker = 0;
                for _ in 0..=parts.len() + 1 {
                    let l = k.list_parts(&b, key, id, marker, page).await.unwrap();
                    prop_assert!(l.parts.len() <= page);
                    got.extend(l.parts.iter().map(|(n, _)| *n));
                    if !l.truncated {
                        break;
                    }
                    marker = l.next_marker;
                }
                prop_assert_eq!(got, parts.iter().copied().collect::<Vec<_>>());
            }
            Ok(())
        }))?;
    }
}

/// The case that looped before: keys holding U+10FFFF under a common prefix.
#[test]
fn cursor_advances_past_keys_with_the_largest_code_point() {
    STORE.with(|store| {
        store.rt.block_on(async {
            let k = &store.kura;
            let b = store.bucket().await;
            let keys = ["a/\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}", "a/x", "b"];
            for key in keys {
                k.put_object(
                    &b,
                    key,
                    &mut Once(Some(Bytes::from_static(b"x"))),
                    WriteOptions::default(),
                )
                .await
                .unwrap();
            }
            let first = k.list_objects(&b, "", "/", "", 1).await.unwrap();
            assert_eq!(first.common_prefixes, vec!["a/".to_string()]);
            let second = k.list_objects(&b, "", "/", "a/", 1).await.unwrap();
            assert_eq!(
                second.objects.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
                vec!["b"]
            );
            assert!(!second.truncated);
        })
    });
}
