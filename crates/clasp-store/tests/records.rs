#![allow(clippy::unwrap_used)]
//! Tests of the record tables through the public API.

use clasp_proto::Value;
use clasp_store::{
    Batch, MemoryRecordTable, MemoryStore, RecordBatch, RecordTable, RedbStore, Store, StoreError,
    StoredParam,
};

fn param(address: &str) -> StoredParam {
    StoredParam {
        address: address.to_owned(),
        value: Value::Int(7),
        revision: 1,
        writer: "s".into(),
        timestamp: 1,
        expires_at: None,
        attachment: None,
    }
}

fn kv(k: &str, v: &[u8]) -> (String, Vec<u8>) {
    (k.to_owned(), v.to_vec())
}

/// Batch rules shared by every implementation.
fn check_semantics(t: &dyn RecordTable) {
    assert!(t.load_all().unwrap().is_empty());
    t.put("b", b"2").unwrap();
    t.put("a", b"1").unwrap();
    t.put("a", b"one").unwrap();
    assert_eq!(t.load_all().unwrap(), vec![kv("a", b"one"), kv("b", b"2")]);
    t.delete("missing").unwrap();
    t.delete("b").unwrap();
    assert_eq!(t.load_all().unwrap(), vec![kv("a", b"one")]);
    // Puts first, then deletes; empty values and odd keys are fine.
    t.apply(&RecordBatch {
        puts: vec![kv("c", b""), kv("x", b"gone"), kv("ключ/🎛", &[0, 255])],
        deletes: vec!["x".into(), "a".into()],
    })
    .unwrap();
    assert_eq!(
        t.load_all().unwrap(),
        vec![kv("c", b""), kv("ключ/🎛", &[0, 255])]
    );
    t.apply(&RecordBatch::default()).unwrap();
    assert_eq!(t.load_all().unwrap().len(), 2);
}

#[test]
fn memory_table_semantics() {
    check_semantics(&MemoryRecordTable::new());
    let store = MemoryStore::new();
    check_semantics(&*store.records("t1").unwrap());
}

#[test]
fn redb_table_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let store = RedbStore::open(dir.path()).unwrap();
    check_semantics(&*store.records("t1").unwrap());
}

#[test]
fn memory_store_hands_out_one_table_per_name() {
    let store = MemoryStore::new();
    let a = store.records("rendezvous").unwrap();
    let b = store.records("rendezvous").unwrap();
    let other = store.records("other").unwrap();
    a.put("k", b"v").unwrap();
    assert_eq!(b.load_all().unwrap(), vec![kv("k", b"v")]);
    assert!(other.load_all().unwrap().is_empty());
    assert!(store.load().unwrap().is_empty(), "records are not params");
}

#[test]
fn redb_records_survive_reopen_beside_params() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = RedbStore::open(dir.path()).unwrap();
        let table = store.records("rendezvous").unwrap();
        table.put("dev-1", b"{\"name\":\"a\"}").unwrap();
        table.put("dev-2", b"two").unwrap();
        // Params and records share the database: interleave writes.
        store
            .apply(&Batch {
                upserts: vec![param("/p")],
                deletes: vec![],
            })
            .unwrap();
        table.delete("dev-2").unwrap();
        store.records("other").unwrap().put("o", b"x").unwrap();
        // A table handle outlives nothing: dropping the store with handles alive is fine.
        drop(table);
    }
    let store = RedbStore::open(dir.path()).unwrap();
    assert_eq!(store.load().unwrap(), vec![param("/p")]);
    assert_eq!(
        store.records("rendezvous").unwrap().load_all().unwrap(),
        vec![kv("dev-1", b"{\"name\":\"a\"}")]
    );
    assert_eq!(
        store.records("other").unwrap().load_all().unwrap(),
        vec![kv("o", b"x")]
    );
    assert!(
        store
            .records("never")
            .unwrap()
            .load_all()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn records_work_through_a_boxed_store_from_threads() {
    let dir = tempfile::tempdir().unwrap();
    let store: Box<dyn Store> = Box::new(RedbStore::open(dir.path()).unwrap());
    let table = store.records("t").unwrap();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let table = table.clone();
            std::thread::spawn(move || {
                for j in 0..10 {
                    table.put(&format!("{i}-{j}"), &[i, j]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(table.load_all().unwrap().len(), 40);
}

#[test]
fn bad_table_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let redb = RedbStore::open(dir.path()).unwrap();
    let mem = MemoryStore::new();
    for name in ["", "a/b", "with space", "ü", &"x".repeat(65)] {
        for store in [&redb as &dyn Store, &mem] {
            let err = store.records(name).unwrap_err();
            assert!(
                matches!(err, StoreError::InvalidTableName { .. }),
                "{name:?}: {err}"
            );
            assert!(err.to_string().contains("record table name"));
        }
    }
    assert!(redb.records(&"x".repeat(64)).is_ok());
    assert!(redb.records("a-b_c.d9").is_ok());
}
