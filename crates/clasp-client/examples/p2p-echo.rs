//! A P2P echo peer, for trying a browser (or any §11 peer) against `clasp_client::p2p`: it
//! sends back everything it receives, prefixed with `echo:`, on the same channel and by the
//! same route, and prints one line per event for a script to read.
//!
//! ```sh
//! cargo run -p clasp-client --example p2p-echo -- ws://127.0.0.1:7330          # waits for offers
//! cargo run -p clasp-client --example p2p-echo -- ws://127.0.0.1:7330 --offer  # offers to every announced peer
//! ```
//!
//! `--trickle-first`: its SDPs carry no candidates and, offering, it signals its candidates
//! before the offer (the other side must keep early candidates and connect from trickled ones).
//!
//! Output lines: `session ID`, `announced PEER`, `connected PEER`, `data PEER ROUTE RELIABLE TEXT`,
//! `disconnected PEER REASON`, `failed PEER REASON`.

use clasp_client::Client;
use clasp_client::p2p::{P2p, P2pConfig, P2pEvent, Route};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:7330".to_string());
    let rest: Vec<String> = args.collect();
    let offer = rest.iter().any(|a| a == "--offer");
    let config = P2pConfig {
        trickle_first: rest.iter().any(|a| a == "--trickle-first"),
        ..P2pConfig::default()
    };
    let client = Client::builder(url).name("p2p-echo").connect().await?;
    let (p2p, mut events) = P2p::attach(&client, config).await?;
    println!("session {}", p2p.session_id());
    loop {
        tokio::select! {
            e = events.recv() => {
                let Some(e) = e else { break };
                match e {
                    P2pEvent::PeerAnnounced { session, .. } => {
                        println!("announced {session}");
                        if offer {
                            p2p.connect_to_peer(&session).await?;
                        }
                    }
                    P2pEvent::Connected { peer } => println!("connected {peer}"),
                    P2pEvent::Data { peer, data, reliable, route } => {
                        let way = if route == Route::Direct { "direct" } else { "router" };
                        let text = String::from_utf8_lossy(&data).into_owned();
                        println!("data {peer} {way} {reliable} {text}");
                        if !text.starts_with("echo:") {
                            let back = format!("echo:{text}").into_bytes();
                            p2p.send_p2p(&peer, back, reliable).await?;
                        }
                    }
                    P2pEvent::Disconnected { peer, reason } => println!("disconnected {peer} {reason}"),
                    P2pEvent::ConnectionFailed { peer, reason } => println!("failed {peer} {reason}"),
                    _ => {}
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.close().await;
    Ok(())
}
