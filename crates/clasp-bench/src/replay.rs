//! `replay`: fills a journaled router with SETs, then REPLAYs them all and times the answer.
//!
//! The fill is one writer sending `--fill` SETs (QoS Fire) over 100 rotating addresses as fast
//! as it can, followed by a PING answered (everything taken). The REPLAY (QoS Confirm) asks
//! for the pattern over the whole journal; the answer is read until its ACK: entries, time to
//! the first, total time, entries/s. Needs a router started with `--journal`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clasp_proto::{
    FrameOptions, Message, Qos, Replay, SignalTypes, decode_frame_bytes, encode_with,
};
use futures_util::StreamExt;
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message as WsMsg;

use crate::conn::{Target, close, connect, send_frame, seq_value, set_frame};
use crate::output::{Out, r1};

/// Options of `replay`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ReplayOpts {
    /// SETs written before the REPLAY (0: replay what the journal holds).
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) fill: u64,
    /// Value size in bytes of the fill (8 or less: an f64).
    #[arg(long, default_value_t = 8)]
    pub(crate) size: usize,
    /// The pattern replayed.
    #[arg(long, default_value = "/bench/replay/**")]
    pub(crate) pattern: String,
}

#[derive(Debug, Serialize)]
struct ReplayResult {
    fill: u64,
    fill_ms: f64,
    fill_per_sec: f64,
    entries: u64,
    bytes: u64,
    first_entry_ms: f64,
    replay_ms: f64,
    entries_per_sec: f64,
    mb_per_sec: f64,
}

/// Runs the fill and the REPLAY.
pub(crate) async fn run(target: &Target, o: &ReplayOpts, out: &Out) -> anyhow::Result<()> {
    let started = Instant::now();
    if o.fill > 0 {
        let mut w = connect(target, "bench-replay-writer", None).await?;
        for i in 0..o.fill {
            let address = format!("/bench/replay/{}", i % 100);
            send_frame(&mut w, set_frame(&address, seq_value(i, o.size))?).await?;
        }
        // The router answers in order: once the PONG is back, every SET was taken.
        send_frame(
            &mut w,
            encode_with(&Message::Ping, FrameOptions::default())?,
        )
        .await?;
        loop {
            match next(&mut w, Duration::from_secs(120)).await? {
                Message::Pong => break,
                _ => continue,
            }
        }
        close(w).await;
    }
    let fill_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut r = connect(target, "bench-replay-reader", None).await?;
    let ask = Message::Replay(Replay {
        pattern: o.pattern.as_str().into(),
        types: SignalTypes::ALL,
        ..Default::default()
    });
    let frame = encode_with(
        &ask,
        FrameOptions {
            qos: Some(Qos::Confirm),
            timestamp: None,
        },
    )?;
    let t0 = Instant::now();
    send_frame(&mut r, frame).await?;
    let (mut entries, mut bytes, mut first) = (0u64, 0u64, None);
    loop {
        let Some(msg) = tokio::time::timeout(Duration::from_secs(30), r.next())
            .await
            .context("the REPLAY answer stalled for 30 s")?
        else {
            bail!("the router closed the connection during the REPLAY");
        };
        let WsMsg::Binary(b) = msg.context("connection failed during the REPLAY")? else {
            continue;
        };
        match decode_frame_bytes(&b).context("undecodable frame")?.message {
            Message::Ack(_) => break,
            Message::Error(e) => bail!("REPLAY refused: {} {}", e.code.code(), e.message),
            Message::Set(_) | Message::Publish(_) => {
                first.get_or_insert_with(|| t0.elapsed());
                entries += 1;
                bytes += b.len() as u64;
            }
            _ => {}
        }
    }
    let replay = t0.elapsed().as_secs_f64();
    close(r).await;
    let result = ReplayResult {
        fill: o.fill,
        fill_ms: r1(fill_ms),
        fill_per_sec: r1(o.fill as f64 / (fill_ms / 1e3).max(1e-9)),
        entries,
        bytes,
        first_entry_ms: r1(first.unwrap_or_default().as_secs_f64() * 1e3),
        replay_ms: r1(replay * 1e3),
        entries_per_sec: r1(entries as f64 / replay.max(1e-9)),
        mb_per_sec: r1(bytes as f64 / replay.max(1e-9) / 1e6),
    };
    out.result("replay", "REPLAY of the journal", &result);
    Ok(())
}

async fn next(ws: &mut crate::conn::Ws, wait: Duration) -> anyhow::Result<Message> {
    loop {
        let m = tokio::time::timeout(wait, ws.next())
            .await
            .context("the router went silent")?
            .context("the connection ended")?
            .context("connection failed")?;
        if let WsMsg::Binary(b) = m {
            return Ok(decode_frame_bytes(&b).context("undecodable frame")?.message);
        }
    }
}
