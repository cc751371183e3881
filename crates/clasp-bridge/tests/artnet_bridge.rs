//! The Art-Net bridge on 127.0.0.1 against UDP sockets playing a node and two consoles: output
//! dissected by Wireshark (`tshark`) with no complaint and the values set; input from
//! hand-built ArtDmx (byte for byte from the standard's layout), two sources merged HTP and a
//! third refused; ArtPoll answered with ArtPollReplies Wireshark reads; bad datagrams counted.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-client/tests/support/mod.rs"]
mod support;
mod wire_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use clasp_bridge::RouterLink;
use clasp_bridge::lighting::artnet_bridge::{ArtNetBridge, ArtNetConfig};
use clasp_bridge::stats::BridgeStats;
use clasp_client::{Client, ReconnectPolicy, Value};
use futures_util::StreamExt;
use support::{Router, within};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// ArtDmx by hand: ID, OpCode 0x5000 LE, ProtVer 14 BE, sequence, physical, SubUni, Net,
/// Length BE, data.
fn art_dmx(seq: u8, physical: u8, universe: u16, data: &[u8]) -> Vec<u8> {
    let mut p = b"Art-Net\0".to_vec();
    p.extend_from_slice(&[0x00, 0x50, 0x00, 0x0E, seq, physical]);
    p.extend_from_slice(&[(universe & 0xFF) as u8, (universe >> 8) as u8]);
    p.extend_from_slice(&(data.len() as u16).to_be_bytes());
    p.extend_from_slice(data);
    p
}

/// Datagrams arriving at `s` for `wait`.
async fn gather(s: &UdpSocket, wait: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, s.recv_from(&mut buf)).await {
        got.push(buf[..n].to_vec());
    }
    got
}

struct Running {
    port: SocketAddr,
    stats: Arc<BridgeStats>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), clasp_bridge::BridgeError>>,
}

async fn bridge(r: &Router, cfg: ArtNetConfig) -> Running {
    let link = RouterLink::connect(&r.url, "artnet", None).await.unwrap();
    let b = ArtNetBridge::start(link, cfg).await.unwrap();
    let port = b.local_addr().unwrap();
    let stats = Arc::new(BridgeStats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(b.run(stats.clone(), stop.clone()));
    Running {
        port,
        stats,
        stop,
        task,
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test]
async fn output_is_paced_and_correct_on_the_wire() {
    if !wire_support::have_tshark() {
        return;
    }
    let r = Router::start().await;
    let c = Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    let node = UdpSocket::bind(loopback()).await.unwrap();
    let mut cfg = ArtNetConfig::new(vec![0, 0x0123]);
    cfg.bind = loopback();
    cfg.targets = vec![node.local_addr().unwrap()];
    cfg.sync = true;
    let b = bridge(&r, cfg).await;

    // A float is normalised (rounded, never truncated), an integer is the level.
    c.set("/artnet/0/1", 1.0).await.unwrap();
    c.set("/artnet/0/2", 0.5).await.unwrap();
    c.set_confirmed("/artnet/0/3", 7).await.unwrap();
    let frame: Vec<u8> = (0..=255).chain(0..=255).collect();
    c.set_confirmed("/artnet/291", Value::Bytes(frame.clone().into()))
        .await
        .unwrap();
    let got = gather(&node, Duration::from_millis(400)).await;
    assert!(!got.is_empty());
    assert!(
        wire_support::complaints(&got, 6454).is_empty(),
        "{:?}",
        wire_support::complaints(&got, 6454)
    );
    let rows = wire_support::fields(
        &got,
        6454,
        &["--disable-protocol", "dmx_chan"],
        &[
            "artnet.header.opcode",
            "artnet.output.universe",
            "artnet.output.sequence",
            "artnet.output.length",
            "data.data",
        ],
    );
    // The last frame of each universe holds what was set.
    let last = |u: &str| {
        rows.iter()
            .rev()
            .find(|r| r[0] == "0x5000" && r[1] == u)
            .cloned()
            .unwrap_or_else(|| panic!("no ArtDmx for universe {u}: {rows:?}"))
    };
    let u0 = last("0");
    assert_eq!(u0[3], "512");
    assert!(u0[4].starts_with("ff8007000000"), "{}", u0[4]);
    let u291 = last("291");
    assert_eq!(u291[4][..8], *"00010203");
    // Sequences count up from 1 per universe; ArtSync follows each round.
    let seqs: Vec<u32> = rows
        .iter()
        .filter(|r| r[0] == "0x5000" && r[1] == "0")
        .map(|r| r[2].parse().unwrap())
        .collect();
    assert_eq!(seqs[0], 1);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(rows.iter().any(|r| r[0] == "0x5200"), "no ArtSync");
    // At most one frame per universe per 1/44 s: 400 ms gives at most ~18 of each.
    assert!(seqs.len() <= 20, "{} frames of universe 0", seqs.len());

    // Unchanged: only keep-alives, about once a second.
    let quiet = gather(&node, Duration::from_millis(1500)).await;
    let dmx = quiet.iter().filter(|d| d[8..10] == [0x00, 0x50]).count();
    assert!((1..=4).contains(&dmx), "{dmx} keep-alive frames in 1.5 s");
    b.stop.cancel();
    b.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn input_from_two_consoles_is_merged_and_written() {
    let r = Router::start().await;
    let c = Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    let mut cfg = ArtNetConfig::new(vec![5]);
    cfg.bind = loopback();
    cfg.direction = clasp_bridge::lighting::artnet_bridge::Direction::Input;
    let b = bridge(&r, cfg).await;
    let mut sub = c.subscribe("/artnet/5/**").await.unwrap();
    c.ping().await.unwrap();
    let a = UdpSocket::bind(loopback()).await.unwrap();
    let bb = UdpSocket::bind(loopback()).await.unwrap();
    let third = UdpSocket::bind(loopback()).await.unwrap();
    a.send_to(&art_dmx(1, 0, 5, &[10, 200]), b.port)
        .await
        .unwrap();
    bb.send_to(&art_dmx(1, 0, 5, &[50, 100]), b.port)
        .await
        .unwrap();
    third
        .send_to(&art_dmx(1, 0, 5, &[255, 255]), b.port)
        .await
        .unwrap();
    // HTP: the highest of the two per channel; the third source is refused.
    let want = [("/artnet/5/1", 50), ("/artnet/5/2", 200)];
    let mut seen = std::collections::HashMap::new();
    within("the merged channels", async {
        while want
            .iter()
            .any(|(a, v)| seen.get(*a) != Some(&Value::Int(*v)))
        {
            let u = sub.next().await.unwrap();
            seen.insert(u.address.to_string(), u.value.clone());
        }
    })
    .await;
    let frame = c.get("/artnet/5").await.unwrap();
    let Value::Bytes(bytes) = frame else {
        panic!("{frame:?}")
    };
    assert_eq!(
        (bytes.len(), bytes[0], bytes[1], bytes[2]),
        (512, 50, 200, 0)
    );
    assert_eq!(b.stats.skipped.load(Relaxed), 1);
    // Bad datagrams: counted, skipped, nothing else happens.
    for bad in [
        &b"Art-Net"[..],
        b"MadrixN\0\x00\x50\x00\x0e",
        &art_dmx(1, 0, 5, &[])[..],
    ] {
        a.send_to(bad, b.port).await.unwrap();
    }
    let mut short = art_dmx(1, 0, 5, &[1, 2, 3, 4]);
    short.truncate(20);
    a.send_to(&short, b.port).await.unwrap();
    within("the bad datagrams counted", async {
        while b.stats.skipped.load(Relaxed) < 5 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    b.stop.cancel();
    b.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn artpoll_is_answered_with_replies_wireshark_reads() {
    if !wire_support::have_tshark() {
        return;
    }
    let r = Router::start().await;
    let mut cfg = ArtNetConfig::new(vec![1, 0x0203]);
    cfg.bind = loopback();
    cfg.direction = clasp_bridge::lighting::artnet_bridge::Direction::Input;
    cfg.name = "Stage left".into();
    let b = bridge(&r, cfg).await;
    let poller = UdpSocket::bind(loopback()).await.unwrap();
    // ArtPoll by hand: header, Flags (reply on change), DiagPriority.
    let mut poll = b"Art-Net\0".to_vec();
    poll.extend_from_slice(&[0x00, 0x20, 0x00, 0x0E, 0x02, 0x10]);
    poller.send_to(&poll, b.port).await.unwrap();
    let mut replies = Vec::new();
    within("two ArtPollReplies", async {
        let mut buf = [0u8; 600];
        while replies.len() < 2 {
            let (n, _) = poller.recv_from(&mut buf).await.unwrap();
            replies.push(buf[..n].to_vec());
        }
    })
    .await;
    assert!(replies.iter().all(|r| r.len() == 239));
    assert!(
        wire_support::complaints(&replies, 6454).is_empty(),
        "{:?}",
        wire_support::complaints(&replies, 6454)
    );
    let rows = wire_support::fields(
        &replies,
        6454,
        &[],
        &[
            "artnet.poll_reply.short_name",
            "artnet.poll_reply.netswitch",
            "artnet.poll_reply.subswitch",
            "artnet.poll_reply.swout_1",
            "artnet.poll_reply.port_types_1",
            "artnet.poll_reply.bind_index",
            "artnet.poll_reply.port_nr",
        ],
    );
    let mut rows: Vec<Vec<String>> = rows;
    rows.sort_by(|a, b| a[5].cmp(&b[5]));
    assert_eq!(rows[0][0], "Stage left");
    assert_eq!(&rows[0][1..4], ["0x00", "0x00", "0x01"]);
    assert_eq!(&rows[1][1..4], ["0x02", "0x00", "0x03"]);
    assert_eq!((rows[0][5].as_str(), rows[1][5].as_str()), ("0x01", "0x02"));
    assert_eq!(rows[0][6], "6454");
    b.stop.cancel();
    b.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn discover_lists_the_nodes_that_answer() {
    let r = Router::start().await;
    let mut cfg = ArtNetConfig::new(vec![0x0102]);
    cfg.bind = loopback();
    cfg.direction = clasp_bridge::lighting::artnet_bridge::Direction::Input;
    cfg.name = "Node A".into();
    let b = bridge(&r, cfg).await;
    let found = clasp_bridge::lighting::artnet_bridge::discover(
        loopback(),
        b.port,
        Duration::from_millis(1500),
    )
    .await
    .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(f.from, b.port);
    assert_eq!(
        (
            f.reply.short_name.as_str(),
            f.reply.outputs(),
            f.reply.bind_index
        ),
        ("Node A", vec![0x0102], 1)
    );
    b.stop.cancel();
    b.task.await.unwrap().unwrap();
}
