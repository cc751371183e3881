//! sACN over real multicast, in a network namespace of its own (`scripts/test.sh` creates it
//! with `unshare -rn`: a veth pair v0 10.9.0.1 ↔ v1 10.9.0.2, multicast routed out of v0, v1
//! accepting packets from an address of its own namespace (`accept_local`), so nothing leaves
//! the machine). An output bridge sends universes 1 and 2 from 10.9.0.1 to
//! their groups 239.255.0.1 and 239.255.0.2; an input bridge on the standard port 5568 joins
//! both groups on 10.9.0.2 and writes what arrives; a plain socket beside it on the same port
//! (shared, as the bridge allows) joins only 239.255.0.2 and the discovery group
//! 239.255.250.214, and reads the packets by hand: universe 2's data and the discovery page
//! listing 1 and 2, never universe 1's. Ignored by a plain `cargo test` (the addresses exist
//! only inside the namespace).
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-client/tests/support/mod.rs"]
mod support;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use clasp_bridge::RouterLink;
use clasp_bridge::lighting::sacn_bridge::{Direction, SacnBridge, SacnConfig};
use clasp_bridge::stats::BridgeStats;
use clasp_client::{Client, ReconnectPolicy, Value};
use support::{Router, within};
use tokio_util::sync::CancellationToken;

const V0: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const V1: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

/// A plain receiver on 0.0.0.0:5568 (shared) that gets only the groups it joins on v1.
fn listener(groups: &[Ipv4Addr]) -> tokio::net::UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_multicast_all_v4(false).unwrap();
    s.bind(&SocketAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 5568)).into())
        .unwrap();
    for g in groups {
        s.join_multicast_v4(g, &V1).unwrap();
    }
    s.set_nonblocking(true).unwrap();
    tokio::net::UdpSocket::from_std(s.into()).unwrap()
}

async fn until(c: &Client, address: &str, want: i64) {
    within(&format!("{address} = {want}"), async {
        while c.get(address).await.ok() != Some(Value::Int(want)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the network namespace scripts/test.sh creates (veth 10.9.0.1/10.9.0.2)"]
async fn universes_travel_on_their_multicast_groups() {
    if std::net::UdpSocket::bind((V0, 0)).is_err() {
        panic!("10.9.0.1 is not here: run this test inside scripts/test.sh's network namespace");
    }
    let r = Router::start().await;
    let c = Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    let stats = Arc::new(BridgeStats::default());
    let stop = CancellationToken::new();

    // The receiving side: the bridge on the standard port, joined on v1.
    let mut input = SacnConfig::new(vec![1, 2]);
    input.direction = Direction::Input;
    input.namespace = "/in".into();
    input.interface = Some(V1);
    let link = RouterLink::connect(&r.url, "sacn-in", None).await.unwrap();
    let b = SacnBridge::start(link, input).await.unwrap();
    let rx_task = tokio::spawn(b.run(stats.clone(), stop.clone()));
    let plain = listener(&[
        Ipv4Addr::new(239, 255, 0, 2),
        Ipv4Addr::new(239, 255, 250, 214),
    ]);

    // The sending side: multicast out of v0.
    let mut output = SacnConfig::new(vec![1, 2]);
    output.direction = Direction::Output;
    output.bind = SocketAddr::from((V0, 0));
    output.interface = Some(V0);
    output.source_name = "netns desk".into();
    let link = RouterLink::connect(&r.url, "sacn-out", None).await.unwrap();
    let b = SacnBridge::start(link, output).await.unwrap();
    let tx_task = tokio::spawn(b.run(stats.clone(), stop.clone()));

    c.set("/sacn/1/1", 1.0).await.unwrap();
    c.set("/sacn/2/10", 77).await.unwrap();
    until(&c, "/in/1/1", 255).await;
    until(&c, "/in/2/10", 77).await;

    // The plain socket: universe 2 from 10.9.0.1, the discovery page, and nothing of universe 1.
    let (mut data_2, mut discovery, mut other) = (0, None, 0);
    let mut buf = [0u8; 1500];
    within("universe 2's data and a discovery page", async {
        // Pages go out as universes start, so an early one may list only universe 1.
        while data_2 == 0 || discovery != Some(vec![1, 2]) {
            let (n, from) = plain.recv_from(&mut buf).await.unwrap();
            assert_eq!(from.ip(), std::net::IpAddr::V4(V0));
            let p = &buf[..n];
            assert_eq!(&p[4..16], b"ASC-E1.17\0\0\0");
            match u32::from_be_bytes(p[18..22].try_into().unwrap()) {
                // Data: universe at 113, START code at 125, slots after.
                0x0000_0004 => match u16::from_be_bytes([p[113], p[114]]) {
                    2 => {
                        assert_eq!((p[125], p[135]), (0, 77));
                        data_2 += 1;
                    }
                    _ => other += 1,
                },
                // Extended: universe discovery, the list from byte 120.
                0x0000_0008 => {
                    let list: Vec<u16> = p[120..]
                        .chunks_exact(2)
                        .map(|u| u16::from_be_bytes([u[0], u[1]]))
                        .collect();
                    discovery = Some(list);
                }
                v => panic!("unexpected root vector {v:#x}"),
            }
        }
    })
    .await;
    assert_eq!(other, 0, "universe 1's group was not joined here");
    stop.cancel();
    rx_task.await.unwrap().unwrap();
    tx_task.await.unwrap().unwrap();
}
