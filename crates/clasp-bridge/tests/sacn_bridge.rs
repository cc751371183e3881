//! The sACN bridge over unicast on 127.0.0.1 against UDP sockets playing receivers and
//! sources: output dissected by Wireshark with the values, priority and name set, and three
//! stream-terminated packets on exit; input from data packets built here byte by byte from
//! E1.31's table (not by the bridge's encoder): the highest priority's sources merged HTP, a
//! lower one ignored, an out-of-order packet discarded, a terminated source leaving at once.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-client/tests/support/mod.rs"]
mod support;
mod wire_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use clasp_bridge::RouterLink;
use clasp_bridge::lighting::sacn_bridge::{Direction, SacnBridge, SacnConfig};
use clasp_bridge::stats::BridgeStats;
use clasp_client::{Client, ReconnectPolicy, Value};
use support::{Router, within};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// An E1.31 data packet from the standard's table (§2.2 of our notes): root layer, framing
/// layer, DMP layer, START code 0, then the slots.
fn data_packet(
    cid: u8,
    priority: u8,
    seq: u8,
    options: u8,
    universe: u16,
    slots: &[u8],
) -> Vec<u8> {
    let n = slots.len();
    let mut p = vec![0x00, 0x10, 0x00, 0x00];
    p.extend_from_slice(b"ASC-E1.17\0\0\0");
    p.extend_from_slice(&(0x7000 | (110 + n) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 4]);
    p.extend_from_slice(&[cid; 16]);
    p.extend_from_slice(&(0x7000 | (88 + n) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 2]);
    let mut name = format!("console {cid}").into_bytes();
    name.resize(64, 0);
    p.extend_from_slice(&name);
    p.extend_from_slice(&[priority, 0, 0, seq, options]);
    p.extend_from_slice(&universe.to_be_bytes());
    p.extend_from_slice(&(0x7000 | (11 + n) as u16).to_be_bytes());
    p.extend_from_slice(&[0x02, 0xA1, 0, 0, 0, 1]);
    p.extend_from_slice(&((n + 1) as u16).to_be_bytes());
    p.push(0);
    p.extend_from_slice(slots);
    assert_eq!(p.len(), 126 + n);
    p
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn gather(s: &UdpSocket, wait: Duration) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(deadline, s.recv_from(&mut buf)).await {
        got.push(buf[..n].to_vec());
    }
    got
}

/// Waits until `/sacn/3/1` holds `want`.
async fn until(c: &Client, want: i64) {
    within(&format!("/sacn/3/1 = {want}"), async {
        while c.get("/sacn/3/1").await.ok() != Some(Value::Int(want)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

async fn client(r: &Router) -> Client {
    Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn output_on_the_wire_and_goodbye() {
    if !wire_support::have_tshark() {
        return;
    }
    let r = Router::start().await;
    let c = client(&r).await;
    let receiver = UdpSocket::bind(loopback()).await.unwrap();
    let mut cfg = SacnConfig::new(vec![1, 7]);
    cfg.bind = loopback();
    cfg.multicast = false;
    cfg.targets = vec![receiver.local_addr().unwrap()];
    cfg.priority = 120;
    cfg.source_name = "Desk B".into();
    cfg.cid = Some("01234567-89ab-4cde-8f01-23456789abcd".into());
    cfg.direction = Direction::Output;
    let link = RouterLink::connect(&r.url, "sacn", None).await.unwrap();
    let b = SacnBridge::start(link, cfg).await.unwrap();
    let stats = Arc::new(BridgeStats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(b.run(stats.clone(), stop.clone()));

    c.set("/sacn/1/1", 1.0).await.unwrap();
    c.set("/sacn/1/2", 0.25).await.unwrap();
    c.set_confirmed("/sacn/7/512", 9).await.unwrap();
    let got = gather(&receiver, Duration::from_millis(300)).await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let bye = gather(&receiver, Duration::from_millis(200)).await;
    let heur = [
        "--enable-heuristic",
        "acn",
        "-o",
        "acn.dmx_enable:TRUE",
        "--disable-protocol",
        "dmx_chan",
    ];
    let data: Vec<Vec<u8>> = got.iter().filter(|p| p.len() == 638).cloned().collect();
    let complaints: Vec<Vec<String>> = wire_support::fields(
        &data,
        5568,
        &heur[..4],
        &["_ws.malformed", "_ws.expert.message"],
    )
    .into_iter()
    .filter(|r| r.iter().any(|f| !f.is_empty()))
    .collect();
    assert!(complaints.is_empty(), "{complaints:?}");
    let rows = wire_support::fields(
        &data,
        5568,
        &heur,
        &[
            "acn.dmx.universe",
            "acn.dmx.priority",
            "acn.dmx.source_name",
            "acn.cid",
            "acn.dmx.data",
        ],
    );
    let last = |u: &str| {
        rows.iter()
            .rev()
            .find(|r| r[0] == u)
            .cloned()
            .unwrap_or_else(|| panic!("no data for universe {u}: {rows:?}"))
    };
    let u1 = last("1");
    assert_eq!(
        &u1[1..4],
        ["120", "Desk B", "01234567-89ab-4cde-8f01-23456789abcd"]
    );
    let u7 = last("7");
    assert_eq!(u7[0], "7");
    // The slots as raw bytes: channel 1 full, channel 2 at a quarter (64), channel 512 of 7 at 9.
    let slots = |p: &Vec<u8>| p[126..].to_vec();
    let u1_frame = data
        .iter()
        .rev()
        .find(|p| p[113..115] == [0, 1])
        .map(slots)
        .unwrap();
    assert_eq!(u1_frame[..3], [255, 64, 0]);
    let u7_frame = data
        .iter()
        .rev()
        .find(|p| p[113..115] == [0, 7])
        .map(slots)
        .unwrap();
    assert_eq!(u7_frame[511], 9);
    // Goodbye: three stream-terminated packets for each universe sent.
    let terminated = bye
        .iter()
        .filter(|p| p.len() == 638 && p[112] & 0x40 != 0)
        .count();
    assert_eq!(terminated, 6, "{} terminated packets", terminated);
}

#[tokio::test]
async fn input_priority_merge_order_and_termination() {
    let r = Router::start().await;
    let c = client(&r).await;
    let mut cfg = SacnConfig::new(vec![3]);
    cfg.bind = loopback();
    cfg.multicast = false;
    cfg.direction = Direction::Input;
    let link = RouterLink::connect(&r.url, "sacn", None).await.unwrap();
    let b = SacnBridge::start(link, cfg).await.unwrap();
    let port = b.local_addr().unwrap();
    let stats = Arc::new(BridgeStats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(b.run(stats.clone(), stop.clone()));
    let src = UdpSocket::bind(loopback()).await.unwrap();
    let send = |p: Vec<u8>| {
        let src = &src;
        async move { src.send_to(&p, port).await.unwrap() }
    };
    // Two sources at priority 100 merge HTP; one at 50 does not count.
    send(data_packet(1, 100, 10, 0, 3, &[100, 0])).await;
    send(data_packet(2, 100, 1, 0, 3, &[150, 0])).await;
    send(data_packet(3, 50, 1, 0, 3, &[255, 255])).await;
    until(&c, 150).await;
    assert_eq!(c.get("/sacn/3/2").await.unwrap(), Value::Int(0));
    // Out of order (10 then 5): discarded and counted.
    send(data_packet(1, 100, 5, 0, 3, &[200, 0])).await;
    within("the late packet counted", async {
        while stats.skipped.load(Relaxed) < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Source 2 says it stopped: source 1's level is the merge now.
    send(data_packet(2, 100, 2, 0x40, 3, &[0, 0])).await;
    until(&c, 100).await;
    // A packet that is not sACN, or whose universe is 0: counted, skipped.
    send(b"not sACN at all".to_vec()).await;
    send(data_packet(1, 100, 11, 0, 0, &[1])).await;
    within("the bad packets counted", async {
        while stats.skipped.load(Relaxed) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
}
