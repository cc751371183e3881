//! The HTTP bridge driven by curl (a real HTTP client): params read and written, events, a
//! pattern listing, Server-Sent Events, the OpenAPI document, and bearer tokens whose scopes
//! the router applies, over a router link and inside the router alike.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-client/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use clasp_bridge::RouterLink;
use clasp_bridge::http::{HttpBridge, HttpBridgeConfig, HttpStats};
use clasp_client::{Client, ReconnectPolicy, Value};
use clasp_router::server::tokens::{TokenFile, TokenRecord, generate, unix_now};
use clasp_router::server::{AuthConfig, RouterHandle, Server, ServerConfig};
use futures_util::StreamExt;
use serde_json::{Value as Json, json};
use support::{Router, within};
use tokio_util::sync::CancellationToken;

/// `curl -s -w '\n%{http_code}' ARGS`: (status, body as JSON or text).
async fn curl(args: &[&str]) -> (u16, Json) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    let body = serde_json::from_str(body).unwrap_or(Json::String(body.to_owned()));
    (code.parse().unwrap(), body)
}

async fn bridge(link: RouterLink) -> (String, Arc<HttpStats>, CancellationToken) {
    let b = HttpBridge::start(
        link,
        HttpBridgeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            webhooks: Vec::new(),
        },
    )
    .await
    .unwrap();
    let base = format!("http://{}", b.local_addr().unwrap());
    let stats = Arc::new(HttpStats::default());
    let stop = CancellationToken::new();
    tokio::spawn(b.run(stats.clone(), stop.clone()));
    (base, stats, stop)
}

async fn rest_and_events(r: &Router, base: &str) {
    let c = Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    let url = |p: &str| format!("{base}{p}");
    // Write a param, read it back.
    let (code, body) = curl(&[
        "-X",
        "PUT",
        "--data",
        "0.75",
        &url("/params/lights/1/level"),
    ])
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        json!({"address": "/lights/1/level", "value": 0.75, "revision": 1})
    );
    let (code, body) = curl(&[&url("/params/lights/1/level")]).await;
    assert_eq!(
        (code, &body["value"], &body["revision"]),
        (200, &json!(0.75), &json!(1))
    );
    assert_eq!(c.get("/lights/1/level").await.unwrap(), Value::Float(0.75));
    // Structured values; a missing param; a body that is not JSON.
    let (code, _) = curl(&[
        "-X",
        "PUT",
        "--data",
        r#"{"r":1,"g":[0,0.5]}"#,
        &url("/params/lights/1/color"),
    ])
    .await;
    assert_eq!(code, 200);
    let (code, body) = curl(&[&url("/params/lights/9/level")]).await;
    assert_eq!(
        (code, body["error"].as_str().unwrap()),
        (404, "nothing is stored at /lights/9/level")
    );
    let (code, body) = curl(&["-X", "PUT", "--data", "{not json", &url("/params/x")]).await;
    assert_eq!(code, 400, "{body}");
    // A listing by pattern, sorted.
    let (code, body) = curl(&[&url("/params?pattern=/lights/**")]).await;
    assert_eq!((code, &body["count"]), (200, &json!(2)));
    assert_eq!(body["params"][0]["address"], "/lights/1/color");
    assert_eq!(body["params"][0]["value"], json!({"r": 1, "g": [0, 0.5]}));
    // An event reaches subscribers.
    let mut cues = c.subscribe("/cue/**").await.unwrap();
    c.ping().await.unwrap();
    let (code, _) = curl(&["-X", "POST", "--data", r#"{"n":7}"#, &url("/events/cue/go")]).await;
    assert_eq!(code, 202);
    let u = within("the event", cues.next()).await.unwrap();
    assert_eq!(
        (&*u.address, u.value.get("n")),
        ("/cue/go", Some(&Value::Int(7)))
    );
    // The OpenAPI document.
    let (code, body) = curl(&[&url("/openapi.json")]).await;
    assert_eq!((code, body["openapi"].as_str()), (200, Some("3.1.0")));

    // Server-Sent Events: curl -N reads the stream; the current state first, then changes.
    let mut sse = Command::new("curl")
        .args([
            "-s",
            "-N",
            "--max-time",
            "10",
            &url("/stream?pattern=/lights/**"),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(sse.stdout.take().unwrap()).lines();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if let Some(data) = l.strip_prefix("data: ") {
                let _ = tx.send(serde_json::from_str::<Json>(data).unwrap());
            }
        }
    });
    let first = within("the current state", rx.recv()).await.unwrap();
    assert_eq!(first["kind"], "param");
    within("the second param", rx.recv()).await.unwrap();
    c.set_confirmed("/lights/2/level", 0.5).await.unwrap();
    let live = within("a change", rx.recv()).await.unwrap();
    assert_eq!(
        live,
        json!({"address": "/lights/2/level", "value": 0.5, "kind": "param", "revision": 1})
    );
    let _ = sse.kill();
    let _ = sse.wait();
}

#[tokio::test]
async fn rest_events_and_sse_through_a_router_link() {
    let r = Router::start().await;
    let link = RouterLink::connect(&r.url, "http", None).await.unwrap();
    let (base, stats, stop) = bridge(link).await;
    rest_and_events(&r, &base).await;
    use std::sync::atomic::Ordering::Relaxed;
    // Eight API requests (the OpenAPI document is not counted), two of them refused.
    assert_eq!(stats.requests.load(Relaxed), 8);
    assert_eq!(stats.errors.load(Relaxed), 2);
    stop.cancel();
}

#[tokio::test]
async fn the_same_api_inside_the_router() {
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let handle: RouterHandle = server.handle();
    let r = Router::run(server);
    let link = RouterLink::local(&handle, None).unwrap();
    let (base, _stats, stop) = bridge(link).await;
    rest_and_events(&r, &base).await;
    stop.cancel();
}

#[tokio::test]
async fn bearer_tokens_carry_their_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let mut file = TokenFile::default();
    let mut add = |scopes: &[&str]| {
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
    let admin = add(&["admin:/**"]);
    let reader = add(&["read:/lights/**"]);
    file.save(&path).unwrap();
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: AuthConfig {
            token_file: Some(path),
            ..AuthConfig::default()
        },
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let handle = server.handle();
    let _r = Router::run(server);
    let link = RouterLink::local(&handle, Some(&admin)).unwrap();
    let (base, _stats, stop) = bridge(link).await;
    let url = format!("{base}/params/lights/1/level");
    let auth = |t: &str| format!("Authorization: Bearer {t}");
    // No token: the router refuses an anonymous session.
    let (code, body) = curl(&["-X", "PUT", "--data", "1", &url]).await;
    assert_eq!(code, 401, "{body}");
    // A bad token.
    let (code, _) = curl(&["-H", &auth("cpsk_nope"), &url]).await;
    assert_eq!(code, 401);
    // The admin writes; the reader reads, and may not write.
    let (code, _) = curl(&["-H", &auth(&admin), "-X", "PUT", "--data", "1", &url]).await;
    assert_eq!(code, 200);
    let (code, body) = curl(&["-H", &auth(&reader), &url]).await;
    assert_eq!((code, &body["value"]), (200, &json!(1)));
    let (code, body) = curl(&["-H", &auth(&reader), "-X", "PUT", "--data", "2", &url]).await;
    assert_eq!(code, 403, "{body}");
    // Outside its read scope: forbidden, and left out of listings.
    let (code, _) = curl(&[
        "-H",
        &auth(&admin),
        "-X",
        "PUT",
        "--data",
        "3",
        &format!("{base}/params/secret"),
    ])
    .await;
    assert_eq!(code, 200);
    let (code, _) = curl(&["-H", &auth(&reader), &format!("{base}/params/secret")]).await;
    assert_eq!(code, 403);
    let (code, body) = curl(&["-H", &auth(&reader), &format!("{base}/params?pattern=/**")]).await;
    assert_eq!((code, &body["count"]), (200, &json!(1)), "{body}");
    stop.cancel();
}

/// A webhook receiver: answers 500 to the first `fail_first` requests, 200 afterwards, and
/// hands over every body it was sent.
async fn receiver(fail_first: usize) -> (String, tokio::sync::mpsc::UnboundedReceiver<Json>) {
    use axum::routing::post;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: axum::Json<Json>| {
            let (tx, calls) = (tx.clone(), calls.clone());
            async move {
                if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < fail_first {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                let _ = tx.send(body.0);
                axum::http::StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, rx)
}

#[tokio::test]
async fn webhooks_post_changes_in_order_and_retry_failures() {
    let r = Router::start().await;
    let c = Client::builder(&r.url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    // State before the bridge starts is not sent.
    c.set_confirmed("/cue/old", 1).await.unwrap();
    let (url, mut got) = receiver(2).await;
    let link = RouterLink::connect(&r.url, "http", None).await.unwrap();
    let b = HttpBridge::start(
        link,
        HttpBridgeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            webhooks: vec![clasp_bridge::http::WebhookConfig {
                pattern: "/cue/**".into(),
                url,
                headers: Default::default(),
                retries: 3,
                queue: 100,
            }],
        },
    )
    .await
    .unwrap();
    let stats = Arc::new(HttpStats::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(b.run(stats.clone(), stop.clone()));
    // start() subscribed the webhook: everything from now on is sent.
    c.set_confirmed("/cue/1", 10).await.unwrap();
    c.emit("/cue/go", "now").await.unwrap();
    c.set_confirmed("/elsewhere", 0).await.unwrap();
    c.set_confirmed("/cue/2", 20).await.unwrap();
    let mut bodies = Vec::new();
    while bodies.len() < 3 {
        bodies.push(within("a webhook", got.recv()).await.unwrap());
    }
    // The first attempt failed twice (500) and was retried; order kept; nothing else sent.
    assert_eq!(
        bodies,
        [
            json!({"address": "/cue/1", "value": 10, "kind": "param", "revision": 1}),
            json!({"address": "/cue/go", "value": "now", "kind": "event", "revision": null}),
            json!({"address": "/cue/2", "value": 20, "kind": "param", "revision": 1}),
        ]
    );
    use std::sync::atomic::Ordering::Relaxed;
    let w = &stats.webhooks;
    // The receiver has the last body before its answer reaches the bridge and is counted.
    within("the last answer counted", async {
        while w.sent.load(Relaxed) < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(
        (
            w.sent.load(Relaxed),
            w.retried.load(Relaxed),
            w.failed.load(Relaxed)
        ),
        (3, 2, 0)
    );
    stop.cancel();
    task.await.unwrap().unwrap();
}
