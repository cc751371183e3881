//! A peer-to-peer chat: every participant connects directly (WebRTC) to every other one it
//! hears of through the router, and each line typed goes to all of them.
//!
//! ```sh
//! clasp server --memory &                                         # a router
//! cargo run -p clasp-client --example p2p-chat -- ws://127.0.0.1:7330   # in two terminals
//! ```
//!
//! Lines show which way each message came: `direct` over the DataChannel, `router` when no
//! direct connection was up (the fallback really delivers). Ctrl-C or end of input stops it.

use std::collections::BTreeSet;

use clasp_client::Client;
use clasp_client::p2p::{P2p, P2pConfig, P2pEvent, Route};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "ws://127.0.0.1:7330".to_string());
    let client = Client::builder(url).name("p2p-chat").connect().await?;
    let (p2p, mut events) = P2p::attach(&client, P2pConfig::default()).await?;
    println!("you are {}; type a line and press Enter", p2p.session_id());
    let mut peers = BTreeSet::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            e = events.recv() => {
                let Some(e) = e else { break };
                match e {
                    P2pEvent::PeerAnnounced { session, .. } => {
                        println!("* {session} is here, connecting");
                        peers.insert(session.clone());
                        p2p.connect_to_peer(&session).await?;
                    }
                    P2pEvent::Connected { peer } => println!("* direct connection to {peer}"),
                    P2pEvent::Data { peer, data, route, .. } => {
                        let way = if route == Route::Direct { "direct" } else { "router" };
                        println!("<{peer} {way}> {}", String::from_utf8_lossy(&data));
                    }
                    P2pEvent::Disconnected { peer, reason } => {
                        println!("* {peer} disconnected: {reason}");
                        peers.remove(&peer);
                    }
                    P2pEvent::ConnectionFailed { peer, reason } => {
                        println!("* no direct connection to {peer}: {reason} (messages go through the router)");
                    }
                    _ => {}
                }
            }
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                for peer in &peers {
                    let way = p2p.send_p2p(peer, line.clone().into_bytes(), true).await?;
                    if way == Route::Router {
                        println!("  (to {peer} through the router)");
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.close().await;
    Ok(())
}
