//! Property tests of the param record stored in the cluster's bucket: what is written reads
//! back the same; no bytes make the decoder panic; a record that decodes encodes to bytes that
//! decode to the same record (the value codec reads any non-zero byte as `true`, so the bytes
//! themselves may differ); every prefix of a record is refused.
#![allow(clippy::unwrap_used, missing_docs)]

use bytes::Bytes;
use clasp_cluster::record::{BundleMark, Record};
use clasp_proto::Value;
use proptest::prelude::*;

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        any::<f64>()
            .prop_filter("NaN is not equal to itself", |f| !f.is_nan())
            .prop_map(Value::Float),
        ".{0,40}".prop_map(|s| Value::String(s.into())),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Value::Bytes(b.into())),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    let mark = (
        any::<u64>(),
        any::<u32>(),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..30), 0..4),
    )
        .prop_map(|(id, sets, signals)| BundleMark {
            id,
            sets,
            signals: signals.into_iter().map(Bytes::from).collect(),
        });
    (
        value(),
        ".{0,20}",
        any::<u64>(),
        proptest::option::of(any::<u64>()),
        proptest::option::of(mark),
    )
        .prop_map(|(value, writer, timestamp, expires_at, bundle)| Record {
            value,
            writer,
            timestamp,
            expires_at,
            bundle,
        })
}

/// The invariant the fuzz target checks too.
fn decodes_canonically(bytes: &[u8]) {
    if let Ok(r) = Record::decode(bytes) {
        // Compared as bytes: a NaN value is not equal to itself.
        let once = r.encode().unwrap();
        assert_eq!(Record::decode(&once).unwrap().encode().unwrap(), once);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn records_round_trip(r in record()) {
        let b = r.encode().unwrap();
        prop_assert_eq!(Record::decode(&b).unwrap(), r);
        for cut in 0..b.len() {
            prop_assert!(Record::decode(&b[..cut]).is_err());
        }
    }

    #[test]
    fn noise_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        decodes_canonically(&b);
        let mut with_magic = b"C2".to_vec();
        with_magic.extend_from_slice(&b);
        decodes_canonically(&with_magic);
    }

    #[test]
    fn damaged_records_never_panic(r in record(), at in any::<prop::sample::Index>(), x in any::<u8>()) {
        let mut b = r.encode().unwrap();
        let i = at.index(b.len());
        b[i] ^= x | 1;
        decodes_canonically(&b);
    }
}
