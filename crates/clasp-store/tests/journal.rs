//! The journal: append, read both ways, time search, retention and compaction, reopening; the
#![allow(clippy::unwrap_used, missing_docs)]
//! file and the memory backends behave alike.

use std::ops::ControlFlow;

use clasp_store::{EntryRef, Journal, Retention, StoreError};

fn entry(seq: u64, time: u64, address: &str, frame: &[u8]) -> clasp_store::Entry {
    clasp_store::Entry {
        seq,
        time,
        kind: if seq.is_multiple_of(3) { 0x02 } else { 0x01 },
        address: address.to_owned(),
        frame: frame.to_vec(),
    }
}

fn fill(j: &Journal, from: u64, n: u64) -> Vec<clasp_store::Entry> {
    let all: Vec<_> = (from..from + n)
        .map(|i| entry(i, 1_000 * i, &format!("/a/{}", i % 7), &i.to_be_bytes()))
        .collect();
    for chunk in all.chunks(100) {
        let refs: Vec<EntryRef<'_>> = chunk.iter().map(|e| e.as_ref()).collect();
        j.append(&refs).unwrap();
    }
    all
}

fn forward(j: &Journal, from: u64, upto: u64) -> Vec<clasp_store::Entry> {
    let mut out = Vec::new();
    j.scan(from, upto, 64, |e| {
        out.push(e);
        ControlFlow::Continue(())
    })
    .unwrap();
    out
}

fn both(mut f: impl FnMut(Journal)) {
    f(Journal::memory());
    let dir = tempfile::tempdir().unwrap();
    f(Journal::open(dir.path()).unwrap());
}

#[test]
fn entries_read_back_in_both_directions() {
    both(|j| {
        let all = fill(&j, 1, 1000);
        assert_eq!(forward(&j, 1, u64::MAX), all);
        assert_eq!(forward(&j, 500, 510), all[499..510].to_vec());
        let mut back = Vec::new();
        j.scan_back(800, 50, |e| {
            back.push(e.seq);
            if back.len() == 120 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!(back, (681..=800).rev().collect::<Vec<_>>());
        let s = j.stats();
        assert_eq!(s.entries, 1000);
        assert_eq!(s.first, Some((1, 1_000)));
        assert_eq!(s.last, Some((1000, 1_000_000)));
        assert!(s.bytes > 1000 * 8);
    });
}

#[test]
fn out_of_order_appends_are_refused_whole() {
    both(|j| {
        fill(&j, 1, 10);
        let a = entry(11, 20_000, "/x", b"1");
        let b = entry(11, 20_000, "/x", b"2");
        let err = j.append(&[a.as_ref(), b.as_ref()]).unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{err}");
        assert_eq!(j.stats().entries, 10);
        assert_eq!(forward(&j, 11, u64::MAX), vec![]);
    });
}

#[test]
fn seek_time_finds_the_first_entry_at_or_after() {
    both(|j| {
        fill(&j, 1, 500);
        assert_eq!(j.seek_time(0).unwrap(), Some(1));
        assert_eq!(j.seek_time(1_000).unwrap(), Some(1));
        assert_eq!(j.seek_time(1_001).unwrap(), Some(2));
        assert_eq!(j.seek_time(250_000).unwrap(), Some(250));
        assert_eq!(j.seek_time(250_500).unwrap(), Some(251));
        assert_eq!(j.seek_time(500_000).unwrap(), Some(500));
        assert_eq!(j.seek_time(500_001).unwrap(), None);
    });
}

#[test]
fn retention_by_count_bytes_and_age() {
    both(|j| {
        fill(&j, 1, 1000);
        let keep_600 = Retention {
            max_age_us: None,
            max_entries: 600,
            max_bytes: u64::MAX,
        };
        assert_eq!(j.trim(&keep_600, 0).unwrap(), 400);
        assert_eq!(j.stats().first.map(|f| f.0), Some(401));
        assert_eq!(forward(&j, 0, u64::MAX).len(), 600);
        // Age: entries older than 100 ms before t = 1 s go (entry i is at i ms).
        let age = Retention {
            max_age_us: Some(100_000),
            max_entries: u64::MAX,
            max_bytes: u64::MAX,
        };
        assert_eq!(j.trim(&age, 1_000_000).unwrap(), 499);
        assert_eq!(j.stats().first, Some((900, 900_000)));
        // Bytes: at most half of what is left.
        let half = j.stats().bytes / 2;
        let bytes = Retention {
            max_age_us: None,
            max_entries: u64::MAX,
            max_bytes: half,
        };
        j.trim(&bytes, 0).unwrap();
        assert!(j.stats().bytes <= half);
        assert_eq!(j.stats().entries, forward(&j, 0, u64::MAX).len() as u64);
        assert_eq!(j.stats().trimmed, 1000 - j.stats().entries);
        // Appends go on after the trims.
        fill(&j, 1001, 5);
        assert_eq!(j.stats().last.map(|l| l.0), Some(1005));
    });
}

#[test]
fn the_file_keeps_everything_across_a_reopen_and_compacts() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![7u8; 4096];
    {
        let j = Journal::open(dir.path()).unwrap();
        let all: Vec<_> = (1..=20_000u64).map(|i| entry(i, i, "/big", &big)).collect();
        for chunk in all.chunks(1000) {
            let refs: Vec<EntryRef<'_>> = chunk.iter().map(|e| e.as_ref()).collect();
            j.append(&refs).unwrap();
        }
    }
    let path = dir.path().join(clasp_store::JOURNAL_FILE_NAME);
    let before = std::fs::metadata(&path).unwrap().len();
    let j = Journal::open(dir.path()).unwrap();
    let s = j.stats();
    assert_eq!(s.entries, 20_000);
    assert_eq!(s.first, Some((1, 1)));
    assert_eq!(s.last, Some((20_000, 20_000)));
    assert!(s.bytes >= 20_000 * 4096);
    let keep = Retention {
        max_age_us: None,
        max_entries: 1000,
        max_bytes: u64::MAX,
    };
    assert_eq!(j.trim(&keep, 0).unwrap(), 19_000);
    assert_eq!(j.stats().compactions, 1);
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(
        after < before / 4,
        "file {before} bytes before, {after} after"
    );
    assert_eq!(forward(&j, 0, u64::MAX).len(), 1000);
    drop(j);
    let j = Journal::open(dir.path()).unwrap();
    assert_eq!(j.stats().entries, 1000);
    assert_eq!(j.stats().first, Some((19_001, 19_001)));
}
