//! Arbitrary bucket entries, as another program (or damage) could leave them in the cluster's
//! JetStream bucket: the first bytes are a key, the rest a stored param record. Invariants:
//!
//! * nothing panics, whatever the bytes;
//! * a key that names an address names it one to one (the address's key is the key again);
//! * a record that decodes encodes to bytes that decode to the same record.
#![no_main]

use clasp_cluster::naming;
use clasp_cluster::record::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    let (key, record) = data.split_at(split);
    if let Ok(key) = std::str::from_utf8(key)
        && let Ok(address) = naming::address_of_key(key)
    {
        assert_eq!(naming::key(&address).ok().as_deref(), Some(key));
    }
    if let Ok(r) = Record::decode(record) {
        // Compared as bytes: a NaN value is not equal to itself.
        let once = r.encode().expect("a decoded record encodes");
        let twice = Record::decode(&once).expect("an encoded record decodes");
        assert_eq!(twice.encode().ok(), Some(once));
    }
});
