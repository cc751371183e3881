//! The mapping host against a real router, with real clients as the other parties: a MIDI-like
//! source, a mixer app, feedback both ways and no loop.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-client/tests/support/mod.rs"]
mod support;

use std::sync::Arc;

use clasp_bridge::RouterLink;
use clasp_bridge::mapper::{Mapper, MapperStats};
use clasp_client::{Client, ReconnectPolicy, Value};
use clasp_mapping::{Engine, MappingSpec};
use clasp_router::server::{AuthConfig, RouterHandle, Server, ServerConfig};
use futures_util::{FutureExt, StreamExt};
use support::{Router, within};
use tokio_util::sync::CancellationToken;

#[derive(serde::Deserialize)]
struct File {
    mapping: Vec<MappingSpec>,
}

const CONFIG: &str = r#"
[[mapping]]
from = "/midi/{dev}/ch/1/cc/{n}"
to = "/mixer/{dev}/{n}/volume"
transform = [{ type = "scale", from_min = 0, from_max = 127, to_min = 0.0, to_max = 1.0 }]
both_ways = true
"#;

async fn client(r: &Router, name: &str) -> Client {
    Client::builder(&r.url)
        .name(name)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap()
}

async fn start(
    link: RouterLink,
) -> (
    Arc<MapperStats>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let file: File = toml::from_str(CONFIG).unwrap();
    let engine = Engine::new(file.mapping).unwrap();
    let mapper = Mapper::start(link, engine).await.unwrap();
    let stats = Arc::new(MapperStats::default());
    let stop = CancellationToken::new();
    let (s, st) = (stats.clone(), stop.clone());
    let task = tokio::spawn(async move { mapper.run(s, st).await.unwrap() });
    (stats, stop, task)
}

/// A router in this process, and its handle for in-process links.
async fn router() -> (Router, RouterHandle) {
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let handle = server.handle();
    (Router::run(server), handle)
}

#[tokio::test]
async fn a_fader_drives_the_mixer_and_the_mixer_moves_the_fader_back() {
    let (r, _) = router().await;
    let link = RouterLink::connect(&r.url, "mapper", None).await.unwrap();
    fader_and_mixer(&r, link).await;
}

#[tokio::test]
async fn the_same_mapper_runs_inside_the_router_through_the_typed_door() {
    let (r, handle) = router().await;
    let link = RouterLink::local(&handle, None).unwrap();
    fader_and_mixer(&r, link).await;
}

#[tokio::test]
async fn an_in_process_link_is_refused_without_a_valid_token() {
    // Tokens required, none valid: the door refuses as a HELLO would be refused.
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth: AuthConfig {
            require_tokens: true,
            ..AuthConfig::default()
        },
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let handle = server.handle();
    let e = RouterLink::local(&handle, Some("cpsk_wrong")).unwrap_err();
    assert!(e.to_string().starts_with("the router refused"), "{e}");
    assert!(RouterLink::local(&handle, None).is_err());
}

async fn fader_and_mixer(r: &Router, link: RouterLink) {
    let midi = client(r, "midi").await;
    let app = client(r, "app").await;
    // State before the mapper starts is left as it is.
    midi.set_confirmed("/midi/nano/ch/1/cc/1", 127)
        .await
        .unwrap();
    let (stats, stop, task) = start(link).await;
    assert!(
        app.get("/mixer/nano/1/volume").await.is_err(),
        "nothing moved at start"
    );

    let mut mixer = app.subscribe("/mixer/**").await.unwrap();
    let mut fader = midi.subscribe("/midi/**").await.unwrap();
    midi.ping().await.unwrap();
    app.ping().await.unwrap();
    // Drain the current state the subscriptions start with.
    while let Some(Some(_)) = fader.next().now_or_never() {}

    // The fader moves: the mixer follows, scaled.
    midi.set_confirmed("/midi/nano/ch/1/cc/7", 127)
        .await
        .unwrap();
    let u = within("mixer follows", mixer.next()).await.unwrap();
    assert_eq!(
        (&*u.address, &u.value),
        ("/mixer/nano/7/volume", &Value::Float(1.0))
    );

    // The app moves the mixer: the fader gets it back, as a CC integer.
    let fader_own = within("own write echoed", fader.next()).await.unwrap();
    assert_eq!(fader_own.value, Value::Int(127));
    app.set_confirmed("/mixer/nano/7/volume", 0.5)
        .await
        .unwrap();
    let own = within("the app's own write", mixer.next()).await.unwrap();
    assert_eq!(own.value, Value::Float(0.5));
    let u = within("fader follows", fader.next()).await.unwrap();
    assert_eq!(
        (&*u.address, &u.value),
        ("/midi/nano/ch/1/cc/7", &Value::Int(64))
    );

    // And then nothing more: the mapper handles updates in order, so once a later change has
    // gone through it, anything a loop would have made has been made.
    midi.set_confirmed("/midi/nano/ch/1/cc/8", 0).await.unwrap();
    let u = within("a later change", mixer.next()).await.unwrap();
    assert_eq!(
        (&*u.address, &u.value),
        ("/mixer/nano/8/volume", &Value::Float(0.0))
    );
    // A write is counted just after it is sent: the router may deliver it first.
    within("the last write counted", async {
        while stats.snapshot().1 < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    let (updates, writes, errors) = stats.snapshot();
    assert_eq!((writes, errors), (3, 0), "updates seen: {updates}");
    assert_eq!(
        app.get("/mixer/nano/7/volume").await.unwrap(),
        Value::Float(0.5)
    );

    stop.cancel();
    task.await.unwrap();
}
