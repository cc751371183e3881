//! `/healthz` and `/metrics`: the router's state and counters over HTTP (JSON and
//! Prometheus text).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::{Shared, ws};

pub(super) async fn healthz(State(state): State<ws::AppState>) -> impl IntoResponse {
    let s = &state.shared;
    let (sessions, params, subs, pending, peers) = {
        let core = s.core.lock();
        (
            core.session_count(),
            core.params().len(),
            core.subscription_count(),
            core.cluster_writes_pending(),
            core.remote_peer_count(),
        )
    };
    // A clustered router whose NATS link is down cannot take writes: a load balancer should
    // send clients elsewhere (HTTP 503, status "cluster_down").
    let (status, cluster) = match (&s.cluster, &s.config.cluster) {
        (Some(c), Some(cfg)) => {
            let up = c.connected.load(Ordering::Relaxed);
            let routers = c.routers.list();
            let all_sessions = routers
                .iter()
                .fold(sessions as u64, |n, r| n.saturating_add(r.beat.sessions));
            let list: Vec<String> = routers
                .iter()
                .map(|r| {
                    format!(
                        "{{\"id\":{},\"name\":{},\"sessions\":{},\"seen_ms_ago\":{}}}",
                        json_str(&r.beat.id),
                        json_str(&r.beat.name),
                        r.beat.sessions,
                        r.seen.elapsed().as_millis()
                    )
                })
                .collect();
            (
                if up { "ok" } else { "cluster_down" },
                format!(
                    ",\"cluster\":{{\"name\":{},\"router_id\":{},\"connected\":{up},\"writes_pending\":{pending},\"sessions\":{all_sessions},\"remote_p2p_peers\":{peers},\"routers\":[{}]}}",
                    json_str(&cfg.name),
                    json_str(&c.router_id),
                    list.join(",")
                ),
            )
        }
        _ => ("ok", String::new()),
    };
    let body = format!(
        "{{\"status\":\"{status}\",\"name\":{},\"sessions\":{sessions},\"params\":{params},\"subscriptions\":{subs},\"store\":{},\"persist_errors\":{},\"uptime_s\":{}{cluster}}}\n",
        json_str(&s.config.router.name),
        json_str(&s.store_desc),
        s.persist.errors.load(Ordering::Relaxed),
        s.start.elapsed().as_secs()
    );
    let code = if status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, [(header::CONTENT_TYPE, "application/json")], body)
}

pub(super) async fn metrics(State(state): State<ws::AppState>) -> impl IntoResponse {
    let mut body = render_metrics(&state.shared);
    for source in state.metrics.iter() {
        source(&mut body);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
}

/// Appends one Prometheus gauge (`# HELP`, `# TYPE` and the value) to `o`; for
/// [`Server::with_metrics`] sources too.
pub fn write_gauge(o: &mut String, name: &str, help: &str, v: u64) {
    use std::fmt::Write as _;
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

/// Appends one Prometheus counter to `o` (see [`write_gauge`]).
pub fn write_counter(o: &mut String, name: &str, help: &str, v: u64) {
    use std::fmt::Write as _;
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
}

/// Appends a table of counters (name, help, value) and one of gauges to `o`.
pub(crate) fn write_tables(
    o: &mut String,
    counters: &[(&str, &str, u64)],
    gauges: &[(&str, &str, u64)],
) {
    for (name, help, v) in counters {
        write_counter(o, name, help, *v);
    }
    for (name, help, v) in gauges {
        write_gauge(o, name, help, *v);
    }
}

fn render_metrics(s: &Shared) -> String {
    use std::fmt::Write as _;
    let core = s.core.lock();
    let m = core.metrics().clone();
    let (sessions, conns, subs, params, dirty) = (
        core.session_count(),
        core.connection_count(),
        core.subscription_count(),
        core.params().len(),
        core.params().dirty_len(),
    );
    let (signals, signal_bytes) = core.signal_usage();
    let param_bytes = core.params().bytes();
    let cluster_locks = core.cluster_lock_count();
    let history = core.history_usage();
    drop(core);
    let mut o = String::with_capacity(4096);
    let mut gauge = |name: &str, help: &str, v: u64| write_gauge(&mut o, name, help, v);
    gauge(
        "clasp_sessions",
        "Sessions that completed the handshake.",
        sessions as u64,
    );
    gauge(
        "clasp_connections",
        "Open connections, handshakes included.",
        conns as u64,
    );
    gauge("clasp_subscriptions", "Active subscriptions.", subs as u64);
    gauge("clasp_params", "Params in the state store.", params as u64);
    gauge(
        "clasp_param_bytes",
        "Bytes the params are counted for (see max_param_bytes).",
        param_bytes as u64,
    );
    gauge(
        "clasp_announced_signals",
        "Signals announced (ANNOUNCE) and listed for QUERY.",
        signals as u64,
    );
    gauge(
        "clasp_announced_signal_bytes",
        "Bytes the announced signals are counted for.",
        signal_bytes as u64,
    );
    gauge(
        "clasp_params_unpersisted",
        "Changed params waiting to be written to the database.",
        dirty as u64,
    );
    gauge(
        "clasp_slow_consumers",
        "Connections whose outbound queue is above its soft limit.",
        s.counters.congested.load(Ordering::Relaxed),
    );
    gauge(
        "clasp_backlogged_consumers",
        "Connections whose outbound queue holds a quarter of its soft limit or more (fast publishers then yield to the writers).",
        s.counters.backlogged.load(Ordering::Relaxed),
    );
    gauge(
        "clasp_queued_bytes",
        "Bytes queued for connections, all outboxes together.",
        s.counters.queued_bytes.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        o,
        "# HELP clasp_messages_in_total Frames received, by message type.\n# TYPE clasp_messages_in_total counter"
    );
    for (name, n) in crate::core::Metrics::by_type(&m.messages_in) {
        let _ = writeln!(o, "clasp_messages_in_total{{type=\"{name}\"}} {n}");
    }
    let _ = writeln!(
        o,
        "# HELP clasp_messages_out_total Frames sent, by message type.\n# TYPE clasp_messages_out_total counter"
    );
    for (name, n) in crate::core::Metrics::by_type(&m.messages_out) {
        let _ = writeln!(o, "clasp_messages_out_total{{type=\"{name}\"}} {n}");
    }
    let _ = writeln!(
        o,
        "# HELP clasp_drops_total Outbound frames not delivered, by kind (params are coalesced to their latest value).\n# TYPE clasp_drops_total counter"
    );
    let _ = writeln!(
        o,
        "clasp_drops_total{{kind=\"param_coalesced\"}} {}",
        s.counters.params_coalesced.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        o,
        "clasp_drops_total{{kind=\"stream\"}} {}",
        s.counters.streams_dropped.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        o,
        "clasp_drops_total{{kind=\"gesture_coalesced\"}} {}",
        m.gesture_moves_coalesced
    );
    let mut counter = |name: &str, help: &str, v: u64| write_counter(&mut o, name, help, v);
    counter(
        "clasp_bytes_in_total",
        "Bytes received in frames.",
        m.bytes_in,
    );
    counter(
        "clasp_bytes_out_total",
        "Bytes queued to connections.",
        m.bytes_out,
    );
    counter(
        "clasp_frames_rejected_total",
        "Frames that could not be decoded or were too large.",
        m.frames_rejected,
    );
    counter(
        "clasp_errors_sent_total",
        "ERROR messages sent.",
        m.errors_sent,
    );
    counter(
        "clasp_publisher_waits_total",
        "Times a publisher sending flat out waited (at most 2 ms) for filling subscriber queues.",
        s.counters.publisher_waits.load(Ordering::Relaxed),
    );
    counter(
        "clasp_slow_disconnects_total",
        "Connections closed because they could not keep up with events.",
        s.counters.slow_disconnects.load(Ordering::Relaxed),
    );
    counter(
        "clasp_params_expired_total",
        "Params removed when their TTL ran out.",
        m.params_expired,
    );
    counter(
        "clasp_bundles_scheduled_total",
        "Bundles scheduled for a later time.",
        m.bundles_scheduled,
    );
    counter(
        "clasp_persist_errors_total",
        "Failed writes to the state database (retried).",
        s.persist.errors.load(Ordering::Relaxed),
    );
    counter(
        "clasp_persisted_params_total",
        "Param changes written to the state database.",
        s.persist.written.load(Ordering::Relaxed),
    );
    counter(
        "clasp_auth_failures_total",
        "HELLOs refused for their token (ERROR 300 or 302).",
        m.auth_failures,
    );
    counter(
        "clasp_forbidden_total",
        "Messages refused for lack of scope (ERROR 301 or 403).",
        m.forbidden,
    );
    counter(
        "clasp_sessions_revoked_total",
        "Sessions ended because their token expired, was revoked or removed.",
        m.sessions_revoked,
    );
    counter(
        "clasp_rate_limited_total",
        "Messages dropped by the per-session rate limit (ERROR 429).",
        m.rate_limited,
    );
    o.push_str(
        "# HELP clasp_refusals_total Requests the router refused, by kind.\n# TYPE clasp_refusals_total counter\n",
    );
    for (kind, n) in m.refusals() {
        let _ = writeln!(o, "clasp_refusals_total{{kind=\"{kind}\"}} {n}");
    }
    let mut counter = |name: &str, help: &str, v: u64| write_counter(&mut o, name, help, v);
    counter(
        "clasp_connections_refused_total",
        "Connections refused because their IP address had too many open (HTTP 429).",
        s.refused_per_ip.load(Ordering::Relaxed),
    );
    super::journal::metrics(&mut o, s.journal.as_ref(), &m, history);
    if let Some(c) = &s.cluster {
        cluster_metrics(&mut o, c, &m, cluster_locks);
    }
    o
}

/// The `clasp_cluster_*` figures of a clustered router.
fn cluster_metrics(
    o: &mut String,
    c: &super::cluster::Status,
    m: &crate::core::Metrics,
    cluster_locks: usize,
) {
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let sig = &c.signals;
    let counters: [(&str, &str, u64); 16] = [
        (
            "clasp_cluster_expired_total",
            "Params whose TTL ran out that this router deleted from the cluster's bucket.",
            load(&c.expired),
        ),
        (
            "clasp_cluster_routers_lost_total",
            "Routers taken for gone after 6.5 s without a heartbeat (their P2P sessions were told as left).",
            load(&c.routers_lost),
        ),
        (
            "clasp_cluster_writes_total",
            "Param writes the cluster (JetStream) took from this router.",
            load(&c.writes),
        ),
        (
            "clasp_cluster_conflicts_total",
            "Param writes the cluster refused for a revision conflict (ERROR 409).",
            load(&c.conflicts),
        ),
        (
            "clasp_cluster_write_failures_total",
            "Param writes that failed because the cluster was unreachable or refused them (the writer got an ERROR; nothing changed).",
            load(&c.write_failures),
        ),
        (
            "clasp_cluster_bad_entries_total",
            "Bucket entries that could not be read (not written by a CLASP router, or damaged) and were skipped.",
            load(&c.bad_entries),
        ),
        (
            "clasp_cluster_rewatches_total",
            "Times the watch of the cluster's params ended, stalled or skipped, and was resumed.",
            load(&c.rewatches),
        ),
        (
            "clasp_cluster_watch_gaps_total",
            "Gaps in the revisions of the params' watch, after which it was resumed from the gap.",
            load(&c.gaps),
        ),
        (
            "clasp_cluster_applied_total",
            "Param changes from the cluster applied to this router's replica.",
            m.cluster_applied,
        ),
        (
            "clasp_cluster_undeliverable_total",
            "Param changes from the cluster applied but not sent to subscribers (could not be framed).",
            m.cluster_undeliverable,
        ),
        (
            "clasp_cluster_bundles_total",
            "Bundles of other routers applied here whole (every SET arrived).",
            m.cluster_bundles,
        ),
        (
            "clasp_cluster_bundles_partial_total",
            "Bundles applied without some of their SETs: another router's whose other SETs did not arrive in time, or this router's when the cluster refused a SET after others were written.",
            m.cluster_bundles_partial,
        ),
        (
            "clasp_cluster_signals_sent_total",
            "Events, streams and gestures (or bundles of them) published here and sent to the other routers.",
            load(&sig.sent),
        ),
        (
            "clasp_cluster_signals_received_total",
            "Events, streams and gestures (or bundles of them) from the other routers fanned out here.",
            load(&sig.received),
        ),
        (
            "clasp_cluster_signals_unsendable_total",
            "Signals not sent to the other routers (an address too long for a NATS subject, or NATS refused), or received damaged.",
            load(&sig.unsendable),
        ),
        (
            "clasp_cluster_signal_duplicates_total",
            "Signals delivered a second time through another matching NATS subscription, dropped.",
            load(&sig.duplicates),
        ),
    ];
    let gauges: [(&str, &str, u64); 4] = [
        (
            "clasp_cluster_routers",
            "Other routers of the cluster heard from within the last 6.5 s.",
            c.routers.list().len() as u64,
        ),
        (
            "clasp_cluster_subscriptions",
            "NATS subscriptions this router holds for its sessions' interest.",
            load(&sig.filters),
        ),
        (
            "clasp_cluster_locks",
            "Param locks this router knows of in the cluster.",
            cluster_locks as u64,
        ),
        (
            "clasp_cluster_connected",
            "1 while the router's NATS connection is up.",
            u64::from(c.connected.load(Ordering::Relaxed)),
        ),
    ];
    write_tables(o, &counters, &gauges);
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
