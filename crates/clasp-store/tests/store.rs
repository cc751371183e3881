#![allow(clippy::unwrap_used)]
//! Tests of the stores through their public API.

use std::collections::BTreeMap;
use std::path::Path;

use clasp_proto::{Str, Value};
use clasp_store::{
    Batch, FORMAT_VERSION_KEY, META_TABLE, MemoryStore, PARAMS_TABLE, RedbStore, Store, StoreError,
    StoredAttachment, StoredParam,
};
use proptest::prelude::*;
use redb::ReadableDatabase;

fn param(address: &str, value: Value, revision: u64) -> StoredParam {
    StoredParam {
        address: address.to_owned(),
        value,
        revision,
        writer: format!("session-{revision}"),
        timestamp: 1_700_000_000_000_000 + revision,
        expires_at: if revision.is_multiple_of(2) {
            Some(1_800_000_000_000_000 + revision)
        } else {
            None
        },
        attachment: revision.is_multiple_of(3).then(|| StoredAttachment {
            kind: "mqtt".into(),
            bytes: revision.to_be_bytes().to_vec(),
        }),
    }
}

fn by_address(params: Vec<StoredParam>) -> BTreeMap<String, StoredParam> {
    let n = params.len();
    let map: BTreeMap<_, _> = params.into_iter().map(|p| (p.address.clone(), p)).collect();
    assert_eq!(map.len(), n, "load returned an address twice");
    map
}

fn all_kinds() -> Vec<StoredParam> {
    let nested = Value::Map(vec![
        (
            "list".into(),
            Value::Array(vec![
                Value::Int(1),
                Value::Array(vec![Value::Null, Value::Bool(false)]),
                Value::Map(vec![("deep".into(), Value::Float(-0.25))]),
            ]),
        ),
        ("ключ".into(), Value::from("значение 🎛️")),
        ("empty".into(), Value::Map(vec![])),
        ("dup".into(), Value::Int(1)),
        ("dup".into(), Value::Int(2)),
    ]);
    vec![
        param("/null", Value::Null, 1),
        param("/bool/t", Value::Bool(true), 2),
        param("/bool/f", Value::Bool(false), 3),
        param("/int/min", Value::Int(i64::MIN), 4),
        param("/int/max", Value::Int(i64::MAX), 5),
        param("/float", Value::Float(std::f64::consts::PI), 6),
        param("/float/inf", Value::Float(f64::NEG_INFINITY), 7),
        param("/string", Value::from("héllo, 世界 — ✓"), 8),
        param("/string/empty", Value::from(""), 9),
        param("/bytes", Value::from(vec![0u8, 1, 2, 255, 254]), 10),
        param("/bytes/empty", Value::from(Vec::<u8>::new()), 11),
        param(
            "/array",
            Value::Array(vec![Value::Int(1), "two".into()]),
            12,
        ),
        param("/map/nested", nested, 13),
        param("/unicode/адрес/🎚", Value::Int(0), 14),
        StoredParam {
            writer: String::new(),
            expires_at: Some(u64::MAX),
            revision: u64::MAX,
            timestamp: 0,
            ..param("/extremes", Value::from("x".repeat(60_000)), 0)
        },
    ]
}

#[test]
fn redb_round_trip_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let params = all_kinds();
    {
        let mut store = RedbStore::open(&data).unwrap();
        assert_eq!(store.path(), data.join("state.redb"));
        assert_eq!(
            store.describe(),
            format!("redb:{}", data.join("state.redb").display())
        );
        assert!(store.load().unwrap().is_empty());
        store
            .apply(&Batch {
                upserts: params.clone(),
                deletes: vec![],
            })
            .unwrap();
        assert_eq!(
            by_address(store.load().unwrap()),
            by_address(params.clone())
        );
    }
    let mut store = RedbStore::open(&data).unwrap();
    assert_eq!(
        by_address(store.load().unwrap()),
        by_address(params.clone())
    );

    // Deletes remove; a later upsert replaces; deleting a missing address is fine.
    let replacement = param("/string", Value::Int(99), 100);
    store
        .apply(&Batch {
            upserts: vec![replacement.clone()],
            deletes: vec!["/null".into(), "/map/nested".into(), "/never/stored".into()],
        })
        .unwrap();
    drop(store);
    let store = RedbStore::open(&data).unwrap();
    let loaded = by_address(store.load().unwrap());
    let mut want = by_address(params);
    want.remove("/null");
    want.remove("/map/nested");
    want.insert("/string".into(), replacement);
    assert_eq!(loaded, want);
}

#[test]
fn batch_order_rules() {
    let dir = tempfile::tempdir().unwrap();
    for mut store in [
        Box::new(MemoryStore::default()) as Box<dyn Store>,
        Box::new(RedbStore::open(dir.path()).unwrap()),
    ] {
        store
            .apply(&Batch {
                upserts: vec![
                    param("/a", Value::Int(1), 1),
                    param("/a", Value::Int(2), 2),
                    param("/b", Value::Int(1), 1),
                ],
                deletes: vec!["/b".into()],
            })
            .unwrap();
        let loaded = by_address(store.load().unwrap());
        assert_eq!(loaded.len(), 1, "{}", store.describe());
        assert_eq!(loaded["/a"].value, Value::Int(2));
        store.apply(&Batch::default()).unwrap();
        assert_eq!(store.load().unwrap().len(), 1);
    }
}

#[test]
fn failed_batch_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut redb = RedbStore::open(dir.path()).unwrap();
    let mut memory = MemoryStore::default();
    let before = Batch {
        upserts: vec![
            param("/keep", Value::Int(1), 1),
            param("/gone", Value::Int(1), 1),
        ],
        deletes: vec![],
    };
    // The bad value comes last, after an insert, a replacement and a delete would have happened.
    let bad = Batch {
        upserts: vec![
            param("/new", Value::Int(2), 2),
            param("/keep", Value::Int(2), 2),
            param("/bad", Value::from("x".repeat(70_000)), 3),
        ],
        deletes: vec!["/gone".into()],
    };
    for store in [&mut redb as &mut dyn Store, &mut memory] {
        store.apply(&before).unwrap();
        let err = store.apply(&bad).unwrap_err();
        assert!(matches!(err, StoreError::InvalidParam { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("/bad") && msg.contains("70000"), "{msg}");
        assert_eq!(
            by_address(store.load().unwrap()),
            by_address(before.upserts.clone()),
            "{}",
            store.describe()
        );
    }
    // Still nothing after a reopen, and the store still works.
    drop(redb);
    let mut redb = RedbStore::open(dir.path()).unwrap();
    assert_eq!(by_address(redb.load().unwrap()), by_address(before.upserts));
    let writer_too_long = StoredParam {
        writer: "w".repeat(65_536),
        ..param("/w", Value::Null, 1)
    };
    let err = redb
        .apply(&Batch {
            upserts: vec![writer_too_long],
            deletes: vec![],
        })
        .unwrap_err();
    assert!(err.to_string().contains("writer"), "{err}");
    redb.apply(&Batch {
        upserts: vec![param("/ok", Value::Null, 1)],
        deletes: vec![],
    })
    .unwrap();
    assert_eq!(redb.load().unwrap().len(), 3);
}

#[test]
fn second_open_is_refused_while_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let first = RedbStore::open(dir.path()).unwrap();
    let err = RedbStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("another clasp server is using this data directory"),
        "{msg}"
    );
    assert!(msg.contains(&first.path().display().to_string()), "{msg}");
    drop(first);
    RedbStore::open(dir.path()).unwrap();
}

#[test]
fn non_redb_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let garbage: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + 3) as u8).collect();
    for contents in [
        b"this is not a database\n".to_vec(),
        garbage,
        vec![0u8; 10_000],
    ] {
        std::fs::write(&path, &contents).unwrap();
        let err = RedbStore::open(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
        assert!(msg.contains("cannot open state database"), "{msg}");
        assert!(msg.contains("not a CLASP state database"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        // The file is left alone.
        assert_eq!(std::fs::read(&path).unwrap(), contents);
    }
}

/// A state file left empty or cut short (full disk, failed copy) must not be taken for a new
/// database: that would start the router with none of its state and overwrite the file.
#[test]
fn empty_or_cut_short_state_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A brand-new data directory still gets a new database.
    let data = dir.path().join("new");
    let good = database_with_all_kinds(&data);
    let full = std::fs::read(&good).unwrap();
    assert!(full.len() > 320);

    let path = dir.path().join("state.redb");
    for contents in [
        Vec::new(),
        full[..4].to_vec(),
        full[..100].to_vec(),
        full[..319].to_vec(),
        vec![0u8; 64],
    ] {
        std::fs::write(&path, &contents).unwrap();
        let err = RedbStore::open(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, StoreError::Truncated { len, .. } if len == contents.len() as u64),
            "{} bytes: {err:?}",
            contents.len()
        );
        assert!(msg.contains("cannot open state database"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        let what = if contents.is_empty() {
            "empty (0 bytes)"
        } else {
            "truncated"
        };
        assert!(msg.contains(what), "{msg}");
        assert!(msg.contains("move the file away"), "{msg}");
        assert!(msg.contains("backup"), "{msg}");
        // The file is left alone for the operator.
        assert_eq!(std::fs::read(&path).unwrap(), contents);
    }

    // Moved away, the directory starts empty; the intact database still opens.
    std::fs::remove_file(&path).unwrap();
    assert!(
        RedbStore::open(dir.path())
            .unwrap()
            .load()
            .unwrap()
            .is_empty()
    );
    let store = RedbStore::open(&data).unwrap();
    assert_eq!(by_address(store.load().unwrap()), by_address(all_kinds()));
}

#[test]
fn foreign_redb_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<u64, u64>::new("other"))
            .unwrap()
            .insert(1, 2)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = RedbStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
    assert!(err.to_string().contains("other"), "{err}");
}

#[test]
fn data_dir_that_is_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = RedbStore::open(&file).unwrap_err();
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("cannot create data directory") && msg.contains("not a directory"));
    // A data dir below a file cannot be created either.
    let err = RedbStore::open(&file.join("sub")).unwrap_err();
    assert!(
        err.to_string().contains("cannot create data directory"),
        "{err}"
    );
}

#[test]
fn newer_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = RedbStore::open(dir.path()).unwrap().path().to_path_buf();
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META_TABLE)
            .unwrap()
            .insert(FORMAT_VERSION_KEY, 7)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = RedbStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UnsupportedFormat {
                found: 7,
                supported: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("format version 7"), "{err}");
}

fn write_raw(path: &Path, address: &str, bytes: &[u8]) {
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(PARAMS_TABLE)
        .unwrap()
        .insert(address, bytes)
        .unwrap();
    txn.commit().unwrap();
}

/// Writes every value kind into a fresh database in `dir` and closes it; returns its file.
fn database_with_all_kinds(dir: &std::path::Path) -> std::path::PathBuf {
    let mut store = RedbStore::open(dir).unwrap();
    store
        .apply(&Batch {
            upserts: all_kinds(),
            deletes: vec![],
        })
        .unwrap();
    store.path().to_path_buf()
}

#[test]
fn corrupt_record_is_reported_with_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_with_all_kinds(dir.path());
    for bytes in [&b""[..], b"\x01garbage", b"\x09\x00", &[1u8; 40]] {
        write_raw(&path, "/broken/param", bytes);
        let store = RedbStore::open(dir.path()).unwrap();
        let err = store.load().unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("corrupt record for /broken/param"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
    // Once the record is rewritten properly, loading works again.
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(PARAMS_TABLE)
            .unwrap()
            .remove("/broken/param")
            .unwrap();
        txn.commit().unwrap();
        let txn = db.begin_read().unwrap();
        assert!(txn.open_table(PARAMS_TABLE).is_ok());
    }
    let store = RedbStore::open(dir.path()).unwrap();
    assert_eq!(store.load().unwrap().len(), all_kinds().len());
}

#[test]
fn ten_thousand_params_in_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let params: Vec<StoredParam> = (0..10_000u64)
        .map(|i| {
            let value = match i % 4 {
                0 => Value::Int(i as i64),
                1 => Value::Float(i as f64 / 3.0),
                2 => Value::from(format!("value {i}")),
                _ => Value::Array(vec![Value::Int(i as i64), Value::Bool(i % 3 == 0)]),
            };
            param(&format!("/bulk/{}/{i}", i % 97), value, i)
        })
        .collect();
    let deletes: Vec<String> = (0..10_000u64)
        .step_by(10)
        .map(|i| format!("/bulk/{}/{i}", i % 97))
        .collect();
    {
        let mut store = RedbStore::open(dir.path()).unwrap();
        store
            .apply(&Batch {
                upserts: params.clone(),
                deletes: vec![],
            })
            .unwrap();
        assert_eq!(
            by_address(store.load().unwrap()),
            by_address(params.clone())
        );
        store
            .apply(&Batch {
                upserts: vec![],
                deletes: deletes.clone(),
            })
            .unwrap();
    }
    let store = RedbStore::open(dir.path()).unwrap();
    let mut want = by_address(params);
    for d in &deletes {
        want.remove(d);
    }
    assert_eq!(want.len(), 9_000);
    assert_eq!(by_address(store.load().unwrap()), want);
}

// ---------------------------------------------------------------------------------------------
// MemoryStore and RedbStore agree
// ---------------------------------------------------------------------------------------------

fn value_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        // NaN never equals itself, which would make the comparison meaningless.
        any::<f64>()
            .prop_filter("not NaN", |f| !f.is_nan())
            .prop_map(Value::Float),
        "\\PC{0,12}".prop_map(Value::from),
        proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("\\PC{0,6}".prop_map(Str::from), inner), 0..4)
                .prop_map(Value::Map),
        ]
    })
}

fn address_strategy() -> impl Strategy<Value = String> {
    // A small pool, so batches replace and delete what earlier ones stored.
    (0..12u8).prop_map(|i| format!("/p/{i}"))
}

fn param_strategy() -> impl Strategy<Value = StoredParam> {
    (
        address_strategy(),
        prop_oneof![
            20 => value_strategy(),
            // Occasionally a value that cannot be stored, failing its batch.
            1 => Just(Value::from("x".repeat(70_000))),
        ],
        any::<u64>(),
        "\\PC{0,8}",
        any::<u64>(),
        any::<Option<u64>>(),
    )
        .prop_map(
            |(address, value, revision, writer, timestamp, expires_at)| StoredParam {
                address,
                value,
                revision,
                writer,
                timestamp,
                expires_at,
                attachment: (revision % 5 == 0).then(|| StoredAttachment {
                    kind: "k".into(),
                    bytes: vec![revision as u8; (revision % 7) as usize],
                }),
            },
        )
}

fn batch_strategy() -> impl Strategy<Value = Batch> {
    (
        proptest::collection::vec(param_strategy(), 0..6),
        proptest::collection::vec(address_strategy(), 0..4),
    )
        .prop_map(|(upserts, deletes)| Batch { upserts, deletes })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn memory_and_redb_agree(batches in proptest::collection::vec(batch_strategy(), 1..8)) {
        let dir = tempfile::tempdir().unwrap();
        let mut redb = RedbStore::open(dir.path()).unwrap();
        let mut memory = MemoryStore::default();
        for batch in &batches {
            let r = redb.apply(batch);
            let m = memory.apply(batch);
            prop_assert_eq!(r.is_ok(), m.is_ok(), "redb: {:?}, memory: {:?}", r, m);
            prop_assert_eq!(
                by_address(redb.load().unwrap()),
                by_address(memory.load().unwrap())
            );
        }
        drop(redb);
        let redb = RedbStore::open(dir.path()).unwrap();
        prop_assert_eq!(by_address(redb.load().unwrap()), by_address(memory.load().unwrap()));
    }
}

#[test]
fn damaged_database_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_with_all_kinds(dir.path());
    let good = std::fs::read(&path).unwrap();
    // Overwrite one stretch of the file at a time (keeping the header's magic number).
    let mut errors = 0;
    for start in (64..good.len()).step_by(good.len() / 16) {
        let mut bad = good.clone();
        let end = (start + 512).min(bad.len());
        for (i, b) in bad[start..end].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(7);
        }
        std::fs::write(&path, &bad).unwrap();
        // Damage to pages no longer in use goes unnoticed; anything else must be a clear error.
        match RedbStore::open(dir.path()).and_then(|s| s.load()) {
            Ok(loaded) => assert_eq!(by_address(loaded), by_address(all_kinds())),
            Err(err) => {
                errors += 1;
                let msg = err.to_string();
                assert!(msg.contains(&path.display().to_string()), "{msg}");
            }
        }
    }
    assert!(errors > 0);
}

#[test]
fn a_format_1_database_is_read_and_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = RedbStore::open(dir.path()).unwrap().path().to_path_buf();
    // What an earlier build left: format 1, a version 1 record (no attachment field).
    let mut v1 = vec![1u8];
    v1.extend_from_slice(&3u64.to_be_bytes());
    v1.extend_from_slice(&4u64.to_be_bytes());
    v1.push(0);
    v1.extend_from_slice(&[0, 1, b'w']);
    clasp_proto::codec::binary::encode_value(&Value::Int(5), &mut v1).unwrap();
    write_raw(&path, "/old", &v1);
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META_TABLE)
            .unwrap()
            .insert(FORMAT_VERSION_KEY, 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let mut store = RedbStore::open(dir.path()).unwrap();
    let loaded = store.load().unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!((loaded[0].revision, &loaded[0].value), (3, &Value::Int(5)));
    assert_eq!(loaded[0].attachment, None);
    // New writes beside it carry their attachments; the database now says format 2.
    let with = param("/new", Value::Int(1), 3);
    assert!(with.attachment.is_some());
    store
        .apply(&Batch {
            upserts: vec![with.clone()],
            deletes: vec![],
        })
        .unwrap();
    drop(store);
    let store = RedbStore::open(dir.path()).unwrap();
    assert_eq!(by_address(store.load().unwrap())["/new"], with);
    drop(store);
    let db = redb::Database::create(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let meta = txn.open_table(META_TABLE).unwrap();
    assert_eq!(meta.get(FORMAT_VERSION_KEY).unwrap().unwrap().value(), 2);
}
