#![allow(clippy::unwrap_used)]
//! The client against a real server over 127.0.0.1.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clasp_rendezvous::client::{ClientError, RendezvousClient};
use clasp_rendezvous::{DiscoverQuery, Registration, RendezvousConfig};
use support::{T0, TestServer, config};

fn reg(name: &str, tags: &[&str]) -> Registration {
    Registration {
        name: name.to_owned(),
        endpoints: BTreeMap::from([("ws".to_owned(), format!("ws://{name}:7330"))]),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        ..Registration::default()
    }
}

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn client_round_trips() {
    let server = TestServer::start(config()).await;
    // A trailing slash is fine.
    let client = RendezvousClient::new(&format!("{}/", server.base)).unwrap();
    client.health().await.unwrap();

    let a = client
        .register(&reg("a", &["x&y=z", "plain"]))
        .await
        .unwrap();
    assert_eq!(a.ttl, 300);
    assert_eq!(a.timestamp, T0);
    let b = client.register(&reg("b", &["plain"])).await.unwrap();

    let all = client.discover(&DiscoverQuery::default()).await.unwrap();
    assert_eq!(all.len(), 2);
    let da = all.iter().find(|d| d.id == a.id).unwrap();
    assert_eq!(da.name, "a");
    assert_eq!(
        da.features,
        ["param", "event"],
        "the reference client's defaults"
    );
    assert_eq!(da.endpoints["ws"], "ws://a:7330");
    // Query values are URL-encoded: '&' and '=' in a tag survive.
    let odd = client
        .discover(&DiscoverQuery {
            tag: Some("x&y=z".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(odd.len(), 1);
    assert_eq!(odd[0].id, a.id);
    let limited = client
        .discover(&DiscoverQuery {
            tag: Some("plain".into()),
            feature: Some("param".into()),
            limit: Some(1),
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 1);
    assert!(
        client
            .discover(&DiscoverQuery {
                feature: Some("nope".into()),
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty()
    );

    assert!(client.refresh(&a.id).await.unwrap());
    assert!(
        client
            .refresh_with_secret(&a.id, a.secret.as_deref())
            .await
            .unwrap()
    );
    let wrong = client
        .refresh_with_secret(&a.id, Some("bad"))
        .await
        .unwrap_err();
    assert!(
        matches!(wrong, ClientError::Status { status: 403, .. }),
        "{wrong}"
    );
    // Unregister needs the owner secret.
    let refused = client.unregister(&b.id).await.unwrap_err();
    assert!(
        matches!(refused, ClientError::Status { status: 403, .. }),
        "{refused}"
    );
    assert!(
        client
            .unregister_with_secret(&b.id, b.secret.as_deref())
            .await
            .unwrap()
    );
    assert!(!client.unregister(&b.id).await.unwrap());
    assert!(!client.refresh(&b.id).await.unwrap());
    // Ids with odd characters are path-encoded, not a different route.
    assert!(!client.refresh("a/b?c#d").await.unwrap());

    // Server-side validation errors come back with the server's message.
    let err = client
        .register(&Registration {
            name: "n".repeat(300),
            ..Registration::default()
        })
        .await
        .unwrap_err();
    match err {
        ClientError::Status { status, message } => {
            assert_eq!(status, 422);
            assert!(message.contains("name"), "{message}");
        }
        other => panic!("{other}"),
    }
    server.stop().await;
}

#[tokio::test]
async fn client_bearer_token() {
    let cfg = RendezvousConfig {
        auth: Some(Arc::new(|t: Option<&str>| t == Some("tok"))),
        ..config()
    };
    let server = TestServer::start(cfg).await;
    let anon = RendezvousClient::new(&server.base).unwrap();
    let err = anon.register(&reg("a", &[])).await.unwrap_err();
    assert!(
        matches!(err, ClientError::Status { status: 401, .. }),
        "{err}"
    );
    let client = RendezvousClient::new(&server.base)
        .unwrap()
        .with_token("tok");
    let a = client.register(&reg("a", &[])).await.unwrap();
    assert!(matches!(
        anon.unregister_with_secret(&a.id, a.secret.as_deref())
            .await
            .unwrap_err(),
        ClientError::Status { status: 401, .. }
    ));
    assert!(matches!(
        client.unregister(&a.id).await.unwrap_err(),
        ClientError::Status { status: 403, .. }
    ));
    assert!(
        client
            .unregister_with_secret(&a.id, a.secret.as_deref())
            .await
            .unwrap()
    );
    server.stop().await;
}

#[tokio::test]
async fn client_errors_are_clear() {
    for bad in ["", "not a url", "ftp://x", "mailto:a@b"] {
        let err = RendezvousClient::new(bad).unwrap_err();
        assert!(
            matches!(err, ClientError::InvalidUrl { .. }),
            "{bad}: {err}"
        );
    }
    // Nothing listens on a port we bound and closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = RendezvousClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
    assert!(matches!(
        client.health().await.unwrap_err(),
        ClientError::Http(_)
    ));
}

#[tokio::test]
async fn keep_alive_registers_refreshes_reregisters_and_unregisters() {
    let server = TestServer::start(config()).await;
    let client = RendezvousClient::new(&server.base).unwrap();
    let mut ka = client.keep_alive(reg("kept", &["ka"]), Duration::from_millis(50));
    let first = tokio::time::timeout(WAIT, ka.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ka.current().unwrap().id, first.id);
    let seen = |server: &TestServer| {
        let client = client.clone();
        let _ = server;
        async move { client.discover(&DiscoverQuery::default()).await.unwrap() }
    };
    assert_eq!(seen(&server).await.len(), 1);
    // Refreshes move lastSeen forward with the (injected) clock.
    server.clock.advance(Duration::from_secs(200));
    let want = T0 + 200_000_000;
    tokio::time::timeout(WAIT, async {
        loop {
            let d = seen(&server).await;
            if d.len() == 1 && d[0].last_seen == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    // Let it expire between two ticks: the next refresh gets 404 and it registers again.
    server.clock.advance(Duration::from_secs(301));
    let second = tokio::time::timeout(WAIT, ka.changed())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(second.id, first.id);
    let d = seen(&server).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].id, second.id);
    // Stopping unregisters.
    tokio::time::timeout(WAIT, ka.stop()).await.unwrap();
    assert!(seen(&server).await.is_empty());

    // Dropping unregisters too (in the background).
    let mut ka = client.keep_alive(reg("dropped", &[]), Duration::from_secs(3600));
    tokio::time::timeout(WAIT, ka.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen(&server).await.len(), 1);
    drop(ka);
    tokio::time::timeout(WAIT, async {
        while !seen(&server).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn keep_alive_retries_until_the_server_is_up() {
    // Reserve a port, start the keep-alive against it, then start the server there.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client =
        RendezvousClient::with_timeout(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();
    let mut ka = client.keep_alive(reg("late", &[]), Duration::from_millis(50));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(ka.current().is_none());
    let service = clasp_rendezvous::RendezvousService::new(config());
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(clasp_rendezvous::serve(listener, service.clone(), async {
        let _ = stopped.await;
    }));
    let r = tokio::time::timeout(WAIT, ka.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(service.len(), 1);
    assert!(!r.id.is_empty());
    ka.stop().await;
    assert!(service.is_empty());
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
}
