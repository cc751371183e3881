//! The journal's and history's counters for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Sender;

/// Writes the journal's and history's counters.
pub(crate) fn metrics(
    o: &mut String,
    journal: Option<&Sender>,
    m: &crate::core::Metrics,
    (ring_entries, ring_bytes): (usize, usize),
) {
    use crate::server::status::write_tables;
    let counters = [
        (
            "clasp_journaled_total",
            "Broadcasts handed to the journal.",
            m.journaled,
        ),
        (
            "clasp_history_requests_total",
            "Subscriptions that asked for history.",
            m.history_requests,
        ),
        (
            "clasp_history_sent_total",
            "Broadcasts sent as history.",
            m.history_sent,
        ),
        (
            "clasp_history_late_total",
            "Histories given up (not read within 10 s, or over 16 MiB of updates waited behind them).",
            m.history_late,
        ),
        ("clasp_replays_total", "REPLAYs accepted.", m.replays),
        (
            "clasp_replayed_total",
            "Entries sent in answer to REPLAYs.",
            m.replayed,
        ),
    ];
    let gauges = [
        (
            "clasp_history_kept",
            "Recent broadcasts kept in memory for history (without a journal).",
            ring_entries as u64,
        ),
        (
            "clasp_history_kept_bytes",
            "Bytes of the recent broadcasts kept for history.",
            ring_bytes as u64,
        ),
    ];
    write_tables(o, &counters, &gauges);
    let Some(j) = journal else {
        return;
    };
    let s = &j.status;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let counters = [
        (
            "clasp_journal_written_total",
            "Entries written to the journal.",
            load(&s.written),
        ),
        (
            "clasp_journal_dropped_total",
            "Entries lost: the journal could not keep up (over 2,000,000 waiting) or a write failed.",
            load(&s.dropped),
        ),
        (
            "clasp_journal_write_errors_total",
            "Failed journal writes.",
            load(&s.write_errors),
        ),
        (
            "clasp_journal_trimmed_total",
            "Entries removed by the journal's retention.",
            load(&s.trimmed),
        ),
        (
            "clasp_journal_compactions_total",
            "Times the journal file was compacted.",
            load(&s.compactions),
        ),
    ];
    let gauges = [
        (
            "clasp_journal_entries",
            "Entries in the journal.",
            load(&s.entries),
        ),
        (
            "clasp_journal_bytes",
            "Bytes of entries in the journal.",
            load(&s.bytes),
        ),
        (
            "clasp_journal_queued",
            "Entries waiting to be written to the journal.",
            load(&s.queued),
        ),
    ];
    write_tables(o, &counters, &gauges);
}
