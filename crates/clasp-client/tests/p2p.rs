//! P2P over WebRTC DataChannels, signalled through a real router, with real UDP on loopback.
//! `scripts/test.sh` runs this file inside a network namespace that has only `lo`.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use clasp_client::Client;
use clasp_client::p2p::{P2p, P2pConfig, P2pError, P2pEvent, Route, RoutingMode};
use support::Router;
use tokio::sync::mpsc::UnboundedReceiver;

/// Longest a test waits for a P2P event (connection set-up on loopback takes well under 1 s).
const P2P_WAIT: Duration = Duration::from_secs(20);

struct Node {
    client: Client,
    p2p: P2p,
    events: UnboundedReceiver<P2pEvent>,
    id: String,
}

impl Node {
    async fn join(router: &Router, cfg: P2pConfig) -> Node {
        let client = Client::connect(&router.url).await.unwrap();
        let (p2p, events) = P2p::attach(&client, cfg).await.unwrap();
        let id = p2p.session_id();
        Node {
            client,
            p2p,
            events,
            id,
        }
    }

    /// The next event that `pick` accepts (others are kept in `skipped`).
    async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(&P2pEvent) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + P2P_WAIT;
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("{}: timed out waiting for {what}", self.id))
                .unwrap_or_else(|| panic!("{}: event stream ended waiting for {what}", self.id));
            if let Some(t) = pick(&e) {
                return t;
            }
        }
    }

    async fn connected(&mut self, peer: &str) {
        let peer = peer.to_owned();
        self.wait_for("Connected", |e| {
            matches!(e, P2pEvent::Connected { peer: p } if *p == peer).then_some(())
        })
        .await;
    }

    async fn data_from(&mut self, peer: &str) -> (Vec<u8>, bool, Route) {
        let peer = peer.to_owned();
        self.wait_for("Data", |e| match e {
            P2pEvent::Data {
                peer: p,
                data,
                reliable,
                route,
            } if *p == peer => Some((data.to_vec(), *reliable, *route)),
            _ => None,
        })
        .await
    }

    async fn disconnected(&mut self, peer: &str) -> String {
        let peer = peer.to_owned();
        self.wait_for("Disconnected", |e| match e {
            P2pEvent::Disconnected { peer: p, reason } if *p == peer => Some(reason.clone()),
            _ => None,
        })
        .await
    }

    async fn failed(&mut self, peer: &str) -> String {
        let peer = peer.to_owned();
        self.wait_for("ConnectionFailed", |e| match e {
            P2pEvent::ConnectionFailed { peer: p, reason } if *p == peer => Some(reason.clone()),
            _ => None,
        })
        .await
    }

    /// Events that arrive within `wait`.
    async fn drain(&mut self, wait: Duration) -> Vec<P2pEvent> {
        let mut out = Vec::new();
        while let Ok(Some(e)) = tokio::time::timeout(wait, self.events.recv()).await {
            out.push(e);
        }
        out
    }
}

async fn pair(router: &Router) -> (Node, Node) {
    let a = Node::join(router, P2pConfig::default()).await;
    let b = Node::join(router, P2pConfig::default()).await;
    (a, b)
}

/// Two nodes with a direct connection up (A offered).
async fn linked(router: &Router) -> (Node, Node) {
    linked_with(router, P2pConfig::default()).await
}

/// Two nodes configured with `cfg`, with a direct connection up (A offered).
async fn linked_with(router: &Router, cfg: P2pConfig) -> (Node, Node) {
    let mut a = Node::join(router, cfg.clone()).await;
    let mut b = Node::join(router, cfg).await;
    a.p2p.connect_to_peer(&b.id).await.unwrap();
    a.connected(&b.id).await;
    b.connected(&a.id).await;
    (a, b)
}

/// Sends `msg` from `from` to `to`, checks that it arrives as sent and that both sides agree
/// on the way it went; returns that way.
async fn exchange(from: &Node, to: &mut Node, msg: &[u8], reliable: bool) -> Route {
    let sent = from
        .p2p
        .send_p2p(&to.id, msg.to_vec(), reliable)
        .await
        .unwrap();
    let (data, got_reliable, route) = to.data_from(&from.id).await;
    assert_eq!(
        (data.as_slice(), got_reliable, route),
        (msg, reliable, sent)
    );
    route
}

#[tokio::test]
async fn p2p_two_peers_exchange_data_on_both_channels() {
    let router = Router::start().await;
    let (mut a, mut b) = linked(&router).await;
    assert!(a.p2p.is_peer_connected(&b.id));
    assert!(b.p2p.is_peer_connected(&a.id));

    assert_eq!(
        exchange(&a, &mut b, b"reliable hello", true).await,
        Route::Direct
    );
    // The unordered channel loses nothing on loopback in practice; retry a few times anyway.
    let mut got = None;
    for _ in 0..20 {
        a.p2p
            .send_p2p(&b.id, b"fast".to_vec(), false)
            .await
            .unwrap();
        if let Ok(d) = tokio::time::timeout(Duration::from_millis(200), b.data_from(&a.id)).await {
            got = Some(d);
            break;
        }
    }
    assert_eq!(got, Some((b"fast".to_vec(), false, Route::Direct)));
    assert_eq!(exchange(&b, &mut a, b"back", true).await, Route::Direct);

    // Ordered and complete on the reliable channel, in both directions at once.
    for i in 0..200u32 {
        a.p2p
            .send_p2p(&b.id, i.to_be_bytes().to_vec(), true)
            .await
            .unwrap();
        b.p2p
            .send_p2p(&a.id, i.to_be_bytes().to_vec(), true)
            .await
            .unwrap();
    }
    for i in 0..200u32 {
        assert_eq!(b.data_from(&a.id).await.0, i.to_be_bytes().to_vec());
        assert_eq!(a.data_from(&b.id).await.0, i.to_be_bytes().to_vec());
    }

    // Connected came exactly once per side.
    let extra: Vec<_> = a
        .drain(Duration::from_millis(300))
        .await
        .into_iter()
        .chain(b.drain(Duration::from_millis(300)).await)
        .filter(|e| matches!(e, P2pEvent::Connected { .. }))
        .collect();
    assert!(extra.is_empty(), "Connected fired again: {extra:?}");
    router.stop().await;
}

async fn mesh(n: usize) {
    let router = Router::start().await;
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(Node::join(&router, P2pConfig::default()).await);
    }
    let ids: Vec<String> = nodes.iter().map(|x| x.id.clone()).collect();
    // Every pair connects: the lower index offers.
    for (i, node) in nodes.iter().enumerate() {
        for id in &ids[i + 1..] {
            node.p2p.connect_to_peer(id).await.unwrap();
        }
    }
    for (i, node) in nodes.iter_mut().enumerate() {
        let mut want: HashSet<String> = ids.iter().filter(|x| **x != ids[i]).cloned().collect();
        while !want.is_empty() {
            let p = node
                .wait_for("Connected", |e| match e {
                    P2pEvent::Connected { peer } => Some(peer.clone()),
                    _ => None,
                })
                .await;
            assert!(want.remove(&p), "{p} connected twice or unexpectedly");
        }
    }
    // Every node sends to every other on the reliable channel; every message arrives directly.
    for (i, node) in nodes.iter().enumerate() {
        for (j, id) in ids.iter().enumerate() {
            if i != j {
                let msg = format!("{i}->{j}").into_bytes();
                let r = node.p2p.send_p2p(id, msg, true).await.unwrap();
                assert_eq!(r, Route::Direct);
            }
        }
    }
    for (j, node) in nodes.iter_mut().enumerate() {
        let mut want: HashSet<Vec<u8>> = (0..n)
            .filter(|i| *i != j)
            .map(|i| format!("{i}->{j}").into_bytes())
            .collect();
        while !want.is_empty() {
            let d = node
                .wait_for("Data", |e| match e {
                    P2pEvent::Data { data, route, .. } => Some((data.to_vec(), *route)),
                    _ => None,
                })
                .await;
            assert_eq!(d.1, Route::Direct);
            assert!(
                want.remove(&d.0),
                "unexpected {:?}",
                String::from_utf8_lossy(&d.0)
            );
        }
    }
    router.stop().await;
}

#[tokio::test]
async fn p2p_mesh_of_4_peers_connects_every_pair() {
    mesh(4).await;
}

#[tokio::test]
async fn p2p_mesh_of_8_peers_connects_every_pair() {
    mesh(8).await;
}

#[tokio::test]
async fn p2p_nonexistent_peer_gives_connection_failed() {
    let router = Router::start().await;
    let mut a = Node::join(&router, P2pConfig::default()).await;
    let started = std::time::Instant::now();
    a.p2p.connect_to_peer("no-such-session").await.unwrap();
    let reason = a.failed("no-such-session").await;
    assert!(reason.contains("not found"), "{reason}");
    // The router says so at once: no 30 s timeout.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(matches!(
        a.p2p.connect_to_peer(&a.id).await,
        Err(P2pError::OwnSession)
    ));
    router.stop().await;
}

#[tokio::test]
async fn p2p_killed_peer_gives_disconnected() {
    let router = Router::start().await;
    let (mut a, b) = linked(&router).await;
    // B vanishes without a goodbye: its P2P tasks stop and its router connection drops.
    let b_id = b.id.clone();
    let Node { client, p2p, .. } = b;
    drop(p2p);
    drop(client);
    let reason = a.disconnected(&b_id).await;
    assert!(!reason.is_empty());
    assert!(!a.p2p.is_peer_connected(&b_id));
    router.stop().await;
}

#[tokio::test]
async fn p2p_routing_modes_and_a_fallback_that_delivers() {
    let router = Router::start().await;
    let (mut a, mut b) = pair(&router).await;

    // Not connected yet: PreferP2P goes through the router and arrives.
    assert_eq!(
        exchange(&a, &mut b, b"via router", true).await,
        Route::Router
    );
    // P2POnly refuses.
    a.p2p.set_routing_mode(RoutingMode::P2POnly);
    assert!(matches!(
        a.p2p.send_p2p(&b.id, b"x".to_vec(), true).await,
        Err(P2pError::NotConnected(_))
    ));

    a.p2p.set_routing_mode(RoutingMode::PreferP2P);
    a.p2p.connect_to_peer(&b.id).await.unwrap();
    a.connected(&b.id).await;
    b.connected(&a.id).await;
    assert_eq!(exchange(&a, &mut b, b"direct", true).await, Route::Direct);

    a.p2p.set_routing_mode(RoutingMode::P2POnly);
    assert_eq!(exchange(&a, &mut b, b"only", true).await, Route::Direct);

    // ServerOnly: through the router even though a direct link is up.
    a.p2p.set_routing_mode(RoutingMode::ServerOnly);
    assert_eq!(exchange(&a, &mut b, b"server", false).await, Route::Router);
    router.stop().await;
}

#[tokio::test]
async fn p2p_timeout_fails_on_both_sides() {
    // The two peers share no address family, so no candidate pair can form.
    let router = Router::start().await;
    let short = |ip: &str| P2pConfig {
        connect_timeout: Duration::from_millis(1500),
        addresses: vec![ip.parse().unwrap()],
        ..P2pConfig::default()
    };
    let mut a = Node::join(&router, short("127.0.0.1")).await;
    let mut b = Node::join(&router, short("::1")).await;
    a.p2p.connect_to_peer(&b.id).await.unwrap();
    let (b_id, a_id) = (b.id.clone(), a.id.clone());
    let ra = a.failed(&b_id).await;
    let rb = b.failed(&a_id).await;
    assert!(ra.contains("timed out"), "{ra}");
    assert!(
        rb.contains("timed out") || rb.contains("disconnected"),
        "{rb}"
    );
    router.stop().await;
}

#[tokio::test]
async fn p2p_simultaneous_offers_resolve_to_one_connection() {
    let router = Router::start().await;
    let (mut a, mut b) = pair(&router).await;
    let (ra, rb) = tokio::join!(a.p2p.connect_to_peer(&b.id), b.p2p.connect_to_peer(&a.id));
    ra.unwrap();
    rb.unwrap();
    a.connected(&b.id).await;
    b.connected(&a.id).await;
    assert_eq!(
        exchange(&a, &mut b, b"after glare", true).await,
        Route::Direct
    );
    let again: Vec<_> = a
        .drain(Duration::from_millis(500))
        .await
        .into_iter()
        .chain(b.drain(Duration::from_millis(500)).await)
        .filter(|e| {
            matches!(
                e,
                P2pEvent::Connected { .. }
                    | P2pEvent::Disconnected { .. }
                    | P2pEvent::ConnectionFailed { .. }
            )
        })
        .collect();
    assert!(again.is_empty(), "glare left {again:?}");
    router.stop().await;
}

#[tokio::test]
async fn p2p_late_joiners_hear_of_earlier_peers() {
    let router = Router::start().await;
    let a = Node::join(&router, P2pConfig::default()).await;
    let mut b = Node::join(&router, P2pConfig::default()).await;
    let a_id = a.id.clone();
    let announced = b
        .wait_for("PeerAnnounced", |e| match e {
            P2pEvent::PeerAnnounced { session, features } if *session == a_id => {
                Some(features.clone())
            }
            _ => None,
        })
        .await;
    assert!(announced.iter().any(|f| f == "webrtc"));
    assert!(b.p2p.known_peers().contains_key(&a.id));
    router.stop().await;
}

#[tokio::test]
async fn p2p_peer_lost_without_leaving_the_router_is_detected() {
    // B's P2P stops (process wedged, network gone) while its router session lives on: A
    // notices from the connection itself (ICE consent checks), not from the router.
    let router = Router::start().await;
    let (mut a, b) = linked(&router).await;
    let b_id = b.id.clone();
    let Node { client, p2p, .. } = b;
    drop(p2p);
    let reason = a.disconnected(&b_id).await;
    assert!(!reason.contains("left the router"), "{reason}");
    drop(client);
    router.stop().await;
}

#[tokio::test]
async fn p2p_comes_back_after_a_router_restart() {
    let router = Router::start().await;
    let addr = router.addr;
    let (mut a, mut b) = linked(&router).await;
    let mut a_conn = a.client.events();
    let mut b_conn = b.client.events();
    router.stop().await;
    let router = Router::start_on(addr, |_| {}).await;
    for ev in [&mut a_conn, &mut b_conn] {
        let deadline = tokio::time::Instant::now() + P2P_WAIT;
        loop {
            let e = tokio::time::timeout_at(deadline, ev.recv())
                .await
                .unwrap()
                .unwrap();
            if matches!(e, clasp_client::ConnectionEvent::Reconnected { .. }) {
                break;
            }
        }
    }
    // Both sides drop the old connection, rejoin under their new session ids, and hear of
    // each other again.
    let new_b = b.client.session_id().unwrap();
    assert_ne!(new_b, b.id);
    let nb = new_b.clone();
    a.wait_for("PeerAnnounced (new id)", |e| {
        matches!(e, P2pEvent::PeerAnnounced { session, .. } if *session == nb).then_some(())
    })
    .await;
    // The manager may still be rejoining; wait until it reports the new id.
    let deadline = tokio::time::Instant::now() + P2P_WAIT;
    while b.p2p.session_id() != new_b || a.p2p.session_id() != a.client.session_id().unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "P2P did not rejoin");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let new_a = a.p2p.session_id();
    a.p2p.connect_to_peer(&new_b).await.unwrap();
    a.connected(&new_b).await;
    b.connected(&new_a).await;
    let r = a
        .p2p
        .send_p2p(&new_b, b"again".to_vec(), true)
        .await
        .unwrap();
    assert_eq!(r, Route::Direct);
    assert_eq!(b.data_from(&new_a).await.0, b"again".to_vec());
    router.stop().await;
}

#[tokio::test]
async fn p2p_with_tokens_needs_p2p_scopes() {
    use clasp_router::server::tokens::{TokenFile, TokenRecord, generate, unix_now};
    let dir = tempfile::tempdir().unwrap();
    let mut file = TokenFile::default();
    let mut token = |scopes: &[&str]| {
        let t = generate();
        file.tokens.insert(
            t.clone(),
            TokenRecord {
                token: t.clone(),
                subject: None,
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                expires_at: None,
                created_at: unix_now(),
            },
        );
        t
    };
    let peer = token(&["read:/clasp/p2p/**", "write:/clasp/p2p/**"]);
    let outsider = token(&["read:/lights/**", "write:/lights/**"]);
    file.save(&dir.path().join("tokens.json")).unwrap();
    let path = dir.path().join("tokens.json");
    let router = Router::start_with(|c| c.auth.token_file = Some(path)).await;
    let join = |t: String| {
        let url = router.url.clone();
        async move {
            let client = Client::builder(url).token(t).connect().await.unwrap();
            let (p2p, events) = P2p::attach(&client, P2pConfig::default()).await.unwrap();
            let id = p2p.session_id();
            Node {
                client,
                p2p,
                events,
                id,
            }
        }
    };
    let mut a = join(peer.clone()).await;
    let mut b = join(peer).await;
    a.p2p.connect_to_peer(&b.id).await.unwrap();
    a.connected(&b.id).await;
    b.connected(&a.id).await;
    assert_eq!(exchange(&a, &mut b, b"scoped", true).await, Route::Direct);

    // Without write scope on the P2P namespace the router refuses the signals: the attempt
    // fails at once instead of hanging for the timeout.
    let mut c = join(outsider).await;
    c.p2p.connect_to_peer(&a.id).await.unwrap();
    let reason = c.failed(&a.id).await;
    assert!(reason.contains("refused"), "{reason}");
    assert!(!a.p2p.is_peer_connected(&c.id));
    router.stop().await;
}

/// A coturn `turnserver` on loopback (Debian package `coturn`), stopped on drop; `None` when
/// it is not installed.
struct Turn {
    child: std::process::Child,
    port: u16,
}

impl Turn {
    /// A running turnserver, or `None` (with a SKIPPED line) when coturn is not installed.
    async fn start_or_skip() -> Option<Turn> {
        let Some(turn) = Turn::start() else {
            eprintln!(
                "SKIPPED: turnserver (Debian coturn) is not installed; scripts/test.sh installs it"
            );
            return None;
        };
        // Give coturn a moment to listen.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Some(turn)
    }

    fn start() -> Option<Turn> {
        let port = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
            s.local_addr().ok()?.port()
        };
        let child = std::process::Command::new("turnserver")
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                "--relay-ip=127.0.0.1",
                "--min-port=49200",
                "--max-port=49999",
                "--lt-cred-mech",
                "--user=clasp:secret",
                "--realm=clasp.test",
                "--allow-loopback-peers",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--log-file=stdout",
                "--simple-log",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        Some(Turn { child, port })
    }

    fn server(&self) -> clasp_client::p2p::TurnServer {
        clasp_client::p2p::TurnServer {
            address: format!("127.0.0.1:{}", self.port),
            username: "clasp".into(),
            password: "secret".into(),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn p2p_through_a_turn_relay_only() {
    let Some(turn) = Turn::start_or_skip().await else {
        return;
    };
    let router = Router::start().await;
    let cfg = P2pConfig {
        turn_servers: vec![turn.server()],
        relay_only: true,
        ..P2pConfig::default()
    };
    let (mut a, mut b) = linked_with(&router, cfg).await;
    assert_eq!(exchange(&a, &mut b, b"via turn", true).await, Route::Direct);
    assert_eq!(
        exchange(&b, &mut a, b"back via turn", true).await,
        Route::Direct
    );
    router.stop().await;
}

#[tokio::test]
async fn p2p_candidates_that_arrive_before_the_offer_are_kept() {
    // Relay only, and no candidates in the SDPs: the answerer learns the offerer's only
    // candidate from an ice_candidate signal sent *before* the offer. Dropped, the answerer
    // would know no candidate of the offerer, open no TURN permission for it, and the
    // connection could not form; kept, it connects.
    let Some(turn) = Turn::start_or_skip().await else {
        return;
    };
    let router = Router::start().await;
    let cfg = P2pConfig {
        turn_servers: vec![turn.server()],
        relay_only: true,
        trickle_first: true,
        connect_timeout: Duration::from_secs(10),
        ..P2pConfig::default()
    };
    let (a, mut b) = linked_with(&router, cfg).await;
    assert_eq!(exchange(&a, &mut b, b"early", true).await, Route::Direct);
    router.stop().await;
}
