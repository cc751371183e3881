//! `p2p`: the same exchange between two clients directly over WebRTC and through the router.
//!
//! Two `clasp-client` clients join the router, attach P2P and connect to each other. Then, for
//! each route (direct DataChannel, and the router with [`RoutingMode::ServerOnly`]):
//! * round trip: A sends a message, B sends it back, A waits for it before the next one;
//! * throughput: A sends `messages` messages on the reliable channel as fast as it may, B
//!   counts them; the time runs until B has them all.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clasp_client::Client;
use clasp_client::p2p::{P2p, P2pConfig, P2pEvent, Route, RoutingMode};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::conn::Target;
use crate::output::{Out, r1};

/// Options of `p2p`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct P2pOpts {
    /// Timed round trips per route.
    #[arg(long, default_value_t = 5000)]
    pub(crate) samples: usize,
    /// Bytes per message.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..=60_000))]
    pub(crate) size: u32,
    /// Messages per route in the throughput run.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) messages: usize,
}

#[derive(Debug, Serialize)]
struct P2pResult {
    route: &'static str,
    size: u32,
    samples: usize,
    rtt_p50_us: f64,
    rtt_p95_us: f64,
    rtt_p99_us: f64,
    messages: usize,
    messages_per_sec: f64,
    mbytes_per_sec: f64,
}

/// Longest wait for any single step.
const STEP: Duration = Duration::from_secs(20);

async fn next_data(
    events: &mut UnboundedReceiver<P2pEvent>,
) -> anyhow::Result<(bytes::Bytes, Route)> {
    loop {
        match tokio::time::timeout(STEP, events.recv()).await {
            Ok(Some(P2pEvent::Data { data, route, .. })) => return Ok((data, route)),
            Ok(Some(P2pEvent::Disconnected { reason, .. })) => bail!("peer disconnected: {reason}"),
            Ok(Some(_)) => {}
            Ok(None) => bail!("P2P stopped"),
            Err(_) => bail!("no data within {STEP:?}"),
        }
    }
}

async fn connected(events: &mut UnboundedReceiver<P2pEvent>) -> anyhow::Result<()> {
    loop {
        match tokio::time::timeout(STEP, events.recv()).await {
            Ok(Some(P2pEvent::Connected { .. })) => return Ok(()),
            Ok(Some(P2pEvent::ConnectionFailed { reason, .. })) => {
                bail!("P2P connection failed: {reason}")
            }
            Ok(Some(_)) => {}
            Ok(None) => bail!("P2P stopped"),
            Err(_) => bail!("not connected within {STEP:?}"),
        }
    }
}

fn percentile_us(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

/// Runs the exchange on both routes and prints one result per route.
pub(crate) async fn run(target: &Target, o: &P2pOpts, out: &Out) -> anyhow::Result<()> {
    let a_client = Client::connect(target.url()).await.context("client A")?;
    let b_client = Client::connect(target.url()).await.context("client B")?;
    let (a, mut a_events) = P2p::attach(&a_client, P2pConfig::default()).await?;
    let (b, mut b_events) = P2p::attach(&b_client, P2pConfig::default()).await?;
    let (a_id, b_id) = (a.session_id(), b.session_id());
    a.connect_to_peer(&b_id).await?;
    connected(&mut a_events).await?;
    connected(&mut b_events).await?;

    // B echoes round-trip probes (first byte 1) and counts throughput messages (first byte 2),
    // answering with byte 3 once it has them all.
    let b_p2p = b.clone();
    let expected = o.messages;
    let echo = tokio::spawn(async move {
        let mut count = 0usize;
        while let Ok((data, route)) = next_data(&mut b_events).await {
            match data.first() {
                Some(1) => {
                    b_p2p.set_routing_mode(match route {
                        Route::Direct => RoutingMode::P2POnly,
                        Route::Router => RoutingMode::ServerOnly,
                    });
                    let _ = b_p2p.send_p2p(&a_id, data, true).await;
                }
                Some(2) => {
                    count += 1;
                    if count == expected {
                        count = 0;
                        b_p2p.set_routing_mode(match route {
                            Route::Direct => RoutingMode::P2POnly,
                            Route::Router => RoutingMode::ServerOnly,
                        });
                        let _ = b_p2p.send_p2p(&a_id, vec![3u8; 8], true).await;
                    }
                }
                _ => {}
            }
        }
    });

    let size = o.size as usize;
    for (route, mode) in [
        ("direct", RoutingMode::P2POnly),
        ("router", RoutingMode::ServerOnly),
    ] {
        a.set_routing_mode(mode);
        let mut probe = vec![0u8; size];
        probe[0] = 1;
        // Warm-up.
        for _ in 0..100 {
            a.send_p2p(&b_id, probe.clone(), true).await?;
            next_data(&mut a_events).await?;
        }
        let mut rtts = Vec::with_capacity(o.samples);
        for i in 0..o.samples {
            probe[1..5].copy_from_slice(&(i as u32).to_be_bytes());
            let t0 = Instant::now();
            a.send_p2p(&b_id, probe.clone(), true).await?;
            loop {
                let (d, _) = next_data(&mut a_events).await?;
                if d.get(1..5) == probe.get(1..5) {
                    break;
                }
            }
            rtts.push(t0.elapsed());
        }
        rtts.sort_unstable();

        let mut msg = vec![0u8; size];
        msg[0] = 2;
        let msg = bytes::Bytes::from(msg);
        let t0 = Instant::now();
        for _ in 0..o.messages {
            a.send_p2p(&b_id, msg.clone(), true).await?;
        }
        loop {
            let (d, _) = next_data(&mut a_events).await?;
            if d.first() == Some(&3) {
                break;
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        let r = P2pResult {
            route,
            size: o.size,
            samples: rtts.len(),
            rtt_p50_us: r1(percentile_us(&rtts, 0.50)),
            rtt_p95_us: r1(percentile_us(&rtts, 0.95)),
            rtt_p99_us: r1(percentile_us(&rtts, 0.99)),
            messages: o.messages,
            messages_per_sec: (o.messages as f64 / secs).round(),
            mbytes_per_sec: r1(o.messages as f64 * size as f64 / secs / 1e6),
        };
        out.result(
            "p2p",
            &format!(
                "p2p {route}: {} B messages, round trips (A → B → A) and reliable throughput A → B",
                o.size
            ),
            &r,
        );
    }
    echo.abort();
    a_client.close().await;
    b_client.close().await;
    Ok(())
}
