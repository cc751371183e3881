//! The client over `tcp://` and `quic://` against our router (real sockets, real QUIC with
//! TLS), mixed with WebSocket clients.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use clasp_client::{
    Client, ConnectionEvent, Error, ReconnectPolicy, SignalType, SubscribeOptions, Value,
};
use clasp_router::server::{QuicListen, TlsConfig};
use futures_util::StreamExt;

mod support;

use support::{WAIT, within};

/// A router with WebSocket, TCP and QUIC listeners on 127.0.0.1.
struct Rig {
    router: support::Router,
    ws: String,
    tcp: String,
    quic: String,
    tls: TlsConfig,
    cert_pem: String,
}

impl Rig {
    async fn start() -> Rig {
        let (tls, cert_pem, _) =
            TlsConfig::self_signed(&["127.0.0.1".into(), "localhost".into()]).unwrap();
        let any = "127.0.0.1:0".parse().unwrap();
        Rig::start_on((any, any, any), tls, cert_pem).await
    }

    async fn start_on(
        (ws, tcp, quic): (SocketAddr, SocketAddr, SocketAddr),
        tls: TlsConfig,
        cert_pem: String,
    ) -> Rig {
        let quic_tls = tls.clone();
        let router = support::Router::start_on(ws, |c| {
            c.tcp_listen = Some(tcp);
            c.quic = Some(QuicListen {
                listen: quic,
                tls: quic_tls,
            });
            c.writer_threads = 1;
        })
        .await;
        Rig {
            ws: router.url.clone(),
            tcp: format!("tcp://{}", router.tcp.unwrap()),
            quic: format!("quic://{}", router.quic.unwrap()),
            router,
            tls,
            cert_pem,
        }
    }

    /// The WebSocket, TCP and QUIC addresses.
    fn addrs(&self) -> (SocketAddr, SocketAddr, SocketAddr) {
        let r = &self.router;
        (r.addr, r.tcp.unwrap(), r.quic.unwrap())
    }

    async fn stop(self) {
        self.router.stop().await;
    }

    fn builder(&self, url: &str) -> clasp_client::ClientBuilder {
        Client::builder(url)
            .add_root_certificate_pem(self.cert_pem.clone())
            .reconnect(ReconnectPolicy::disabled())
            .connect_timeout(WAIT)
            .request_timeout(WAIT)
    }

    async fn client(&self, url: &str) -> Client {
        self.builder(url).connect().await.unwrap()
    }
}

#[tokio::test]
async fn ws_tcp_and_quic_clients_share_params_and_events_both_ways() {
    let r = Rig::start().await;
    let ws = r.client(&r.ws).await;
    let tcp = r.client(&r.tcp).await;
    let quic = r.client(&r.quic).await;

    // Params: written on one transport, read on the others.
    assert_eq!(ws.set_confirmed("/mix/a", 1).await.unwrap(), 1);
    assert_eq!(tcp.get("/mix/a").await.unwrap(), Value::Int(1));
    assert_eq!(quic.get("/mix/a").await.unwrap(), Value::Int(1));
    assert_eq!(tcp.set_confirmed("/mix/a", 2).await.unwrap(), 2);
    assert_eq!(quic.set_confirmed("/mix/b", "q").await.unwrap(), 1);
    assert_eq!(ws.get("/mix/a").await.unwrap(), Value::Int(2));
    assert_eq!(ws.get("/mix/b").await.unwrap(), Value::String("q".into()));

    // Subscriptions: each transport sees what the others write and publish.
    let params = SubscribeOptions::new().types([SignalType::Param]);
    let events = SubscribeOptions::new().types([SignalType::Event]);
    let mut on_ws = ws.subscribe_with("/live/**", params.clone()).await.unwrap();
    let mut on_tcp = tcp.subscribe_with("/ev/**", events.clone()).await.unwrap();
    let mut on_quic = quic.subscribe_with("/ev/**", events).await.unwrap();
    let mut quic_params = quic.subscribe_with("/live/**", params).await.unwrap();
    // Subscriptions are in place once a round trip on the same connection is answered.
    tcp.ping().await.unwrap();
    quic.ping().await.unwrap();
    ws.ping().await.unwrap();

    quic.set("/live/x", 0.25).await.unwrap();
    let u = within("ws sees the QUIC write", on_ws.next())
        .await
        .unwrap();
    assert_eq!((&*u.address, &u.value), ("/live/x", &Value::Float(0.25)));
    tcp.set("/live/y", 0.5).await.unwrap();
    let u = within("ws sees the TCP write", on_ws.next()).await.unwrap();
    assert_eq!((&*u.address, &u.value), ("/live/y", &Value::Float(0.5)));
    let u = within("quic sees its own write", quic_params.next())
        .await
        .unwrap();
    assert_eq!(&*u.address, "/live/x");
    let u = within("quic sees the TCP write", quic_params.next())
        .await
        .unwrap();
    assert_eq!(&*u.address, "/live/y");

    ws.emit("/ev/go", 7).await.unwrap();
    for (name, sub) in [("tcp", &mut on_tcp), ("quic", &mut on_quic)] {
        let u = within(name, sub.next()).await.unwrap();
        assert_eq!(
            (&*u.address, &u.value, u.kind),
            ("/ev/go", &Value::Int(7), SignalType::Event),
            "{name}"
        );
    }
    tcp.emit("/ev/from-tcp", "t").await.unwrap();
    let u = within("quic sees the TCP event", on_quic.next())
        .await
        .unwrap();
    assert_eq!(&*u.address, "/ev/from-tcp");
    quic.emit("/ev/from-quic", "q").await.unwrap();
    let u = within("tcp sees the QUIC event", on_tcp.next())
        .await
        .unwrap();
    assert_eq!(&*u.address, "/ev/from-quic");

    // Large values (up to the frame limit) cross every transport intact.
    let big = Value::Bytes(vec![9u8; 60_000].into());
    quic.set_confirmed("/live/big", big.clone()).await.unwrap();
    assert_eq!(tcp.get("/live/big").await.unwrap(), big);
    assert_eq!(ws.get("/live/big").await.unwrap(), big);
    r.stop().await;
}

#[tokio::test]
async fn oversize_send_fails_clearly_and_the_connection_stays_usable() {
    let r = Rig::start().await;
    for url in [&r.tcp, &r.quic] {
        let c = r.client(url).await;
        // Each part fits its length field; together they exceed the 65,535-byte payload.
        let part = Value::Bytes(vec![1u8; 40_000].into());
        let huge = Value::Array(vec![part.clone(), part]);
        let e = c.set("/too/big", huge.clone()).await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::Encode(clasp_client::proto::EncodeError::PayloadTooLarge { .. })
            ),
            "{url}: {e:?}"
        );
        assert!(
            e.to_string().contains("exceeds the frame limit"),
            "{url}: {e}"
        );
        let e = c.emit("/too/big", huge).await.unwrap_err();
        assert!(matches!(e, Error::Encode(_)), "{url}: {e:?}");
        // Nothing was lost or broken: the connection keeps working.
        assert!(c.is_connected());
        assert!(c.set_confirmed("/after", 1).await.unwrap() > 0);
        assert_eq!(c.get("/after").await.unwrap(), Value::Int(1));
        c.close().await;
    }
    r.stop().await;
}

#[tokio::test]
async fn quic_certificate_checks() {
    let r = Rig::start().await;
    // Not trusted: the public roots do not know a self-signed certificate.
    let e = Client::builder(&r.quic)
        .reconnect(ReconnectPolicy::disabled())
        .connect_timeout(WAIT)
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");
    // Trusted by DER.
    let der = r.tls.cert_chain[0].to_vec();
    let c = Client::builder(&r.quic)
        .add_root_certificate_der(der)
        .only_added_roots()
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    c.ping().await.unwrap();
    // Explicitly insecure (development).
    let c = Client::builder(&r.quic)
        .dangerous_skip_certificate_verification()
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    c.ping().await.unwrap();
    // Bad URLs are refused before any I/O.
    for bad in ["tcp://127.0.0.1", "quic://:1", "udp://h:1"] {
        assert!(
            matches!(
                Client::builder(bad).connect().await,
                Err(Error::InvalidUrl { .. })
            ),
            "{bad}"
        );
    }
    r.stop().await;
}

#[tokio::test]
async fn tcp_and_quic_clients_reconnect_and_resubscribe() {
    let r = Rig::start().await;
    let policy = ReconnectPolicy {
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        ..ReconnectPolicy::default()
    };
    let mut clients = Vec::new();
    for url in [r.tcp.clone(), r.quic.clone()] {
        let c = r
            .builder(&url)
            .reconnect(policy.clone())
            .connect()
            .await
            .unwrap();
        let sub = c
            .subscribe_with("/r/**", SubscribeOptions::new().types([SignalType::Param]))
            .await
            .unwrap();
        c.ping().await.unwrap();
        let events = c.events();
        clients.push((url, c, sub, events));
    }
    let (addrs, tls, pem) = (r.addrs(), r.tls.clone(), r.cert_pem.clone());
    r.stop().await;
    for (url, c, _, events) in &mut clients {
        let e = within("disconnect", events.recv()).await.unwrap();
        assert!(
            matches!(e, ConnectionEvent::Disconnected { .. }),
            "{url}: {e:?}"
        );
        assert!(!c.is_connected());
    }
    // The same ports again: the clients come back by themselves.
    let r = Rig::start_on(addrs, tls, pem).await;
    for (url, _, _, events) in &mut clients {
        within("reconnected", async {
            loop {
                if let Ok(ConnectionEvent::Reconnected { .. }) = events.recv().await {
                    return;
                }
            }
        })
        .await;
        let _ = url;
    }
    let writer = r.client(&r.ws).await;
    for (url, c, _, _) in &clients {
        c.ping().await.unwrap(); // the resubscription went out before this PING
        let _ = url;
    }
    writer.set_confirmed("/r/after", 3).await.unwrap();
    for (url, _, sub, _) in &mut clients {
        let u = within("update after reconnect", sub.next()).await.unwrap();
        assert_eq!(
            (&*u.address, &u.value),
            ("/r/after", &Value::Int(3)),
            "{url}"
        );
    }
    r.stop().await;
}

#[tokio::test]
async fn router_shutdown_ends_tcp_and_quic_clients() {
    let r = Rig::start().await;
    let tcp = r.client(&r.tcp).await;
    let quic = r.client(&r.quic).await;
    let mut te = tcp.events();
    let mut qe = quic.events();
    r.stop().await;
    for (name, events) in [("tcp", &mut te), ("quic", &mut qe)] {
        within(name, async {
            loop {
                match events.recv().await {
                    Ok(ConnectionEvent::Closed) | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        })
        .await;
    }
    assert!(!tcp.is_connected());
    assert!(!quic.is_connected());
    assert!(matches!(tcp.set("/x", 1).await, Err(Error::Closed)));
}

#[tokio::test]
async fn client_close_ends_the_session_on_the_router() {
    let r = Rig::start().await;
    let watcher = r.client(&r.ws).await;
    for url in [&r.tcp, &r.quic] {
        let c = r.client(url).await;
        c.set_confirmed("/who", 1).await.unwrap();
        c.close().await;
        assert!(!c.is_connected());
    }
    // The router lets both sessions go (their writes stay).
    assert_eq!(watcher.get("/who").await.unwrap(), Value::Int(1));
    r.router.wait_sessions(1).await;
    r.stop().await;
}
