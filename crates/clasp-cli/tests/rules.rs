//! `clasp server --rules FILE`: the rules run inside the router, with their own session (and
//! token), fire on real updates, stop their own loops, show their counters in `/metrics`,
//! reload when the file changes (a broken edit keeps the rules in force), and a bad file is
//! refused at start with its line and column.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;
#[path = "../../clasp-router/tests/support/mod.rs"]
mod support;

use std::process::Stdio;
use std::time::Duration;

use clasp_client::{Client, ReconnectPolicy, Value};
use common::start;
use futures_util::StreamExt;

const WAIT: Duration = Duration::from_secs(10);

const RULES: &str = r#"
[[rule]]
id = "hall-motion"
trigger = { type = "threshold", address = "/room/motion", above = 0.5, hysteresis = 0.1 }
actions = [
  { type = "publish", address = "/log/motion", value = "seen" },
  { type = "ramp", address = "/lights/hall", from = 0.0, to = 1.0, over = "300ms" },
]

[[rule]]
id = "a-to-b"
trigger = { type = "change", pattern = "/loop/a" }
actions = [{ type = "set_from_trigger", address = "/loop/b", transform = [{ type = "scale", from_min = 0.0, from_max = 1.0, to_min = 1.0, to_max = 2.0 }] }]

[[rule]]
id = "b-to-a"
trigger = { type = "change", pattern = "/loop/b" }
actions = [{ type = "set_from_trigger", address = "/loop/a", transform = [{ type = "scale", from_min = 0.0, from_max = 1.0, to_min = 1.0, to_max = 2.0 }] }]
"#;

async fn connect(url: &str) -> Client {
    Client::builder(url)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap()
}

/// Waits until `/metrics` has `name` at `want` or more.
async fn metric_reaches(url: &str, name: &str, want: f64) {
    let host = url.trim_start_matches("ws://").trim_end_matches('/');
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = support::http_get(host, "/metrics").await;
        let got = support::metric(&text, name);
        if got.is_some_and(|g| g >= want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} is {got:?}, wanted {want}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rules_run_in_the_router_ramp_stop_loops_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, RULES).unwrap();
    let server = start(&["--memory", "--rules", path.to_str().unwrap()]);
    let c = connect(&server.url).await;
    let mut hall = c.subscribe("/lights/hall").await.unwrap();
    let mut log = c.subscribe("/log/**").await.unwrap();
    c.ping().await.unwrap();
    // Give the rules' session a moment to subscribe.
    metric_reaches(&server.url, "clasp_rules_updates_total", 0.0).await;

    c.set_confirmed("/room/motion", 0.2).await.unwrap();
    c.set_confirmed("/room/motion", 0.9).await.unwrap();
    let e = tokio::time::timeout(WAIT, log.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&*e.address, &e.value),
        ("/log/motion", &Value::String("seen".into()))
    );
    // The ramp: several steps, ending exactly on 1.0.
    let mut steps = Vec::new();
    while steps.last() != Some(&1.0) {
        let u = tokio::time::timeout(WAIT, hall.next())
            .await
            .unwrap()
            .unwrap();
        steps.push(u.value.as_f64().unwrap());
    }
    assert!(steps.len() >= 5, "{steps:?}");
    assert!(steps.windows(2).all(|w| w[1] >= w[0]), "{steps:?}");

    // A loop between two rules stops, and the stop is counted.
    let mut b = c.subscribe("/loop/**").await.unwrap();
    c.ping().await.unwrap();
    c.set_confirmed("/loop/a", 1.0).await.unwrap();
    metric_reaches(
        &server.url,
        "clasp_rules_rule_suppressed_loop_total{rule=\"a-to-b\"}",
        1.0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut seen = Vec::new();
    while let Ok(Some(u)) = tokio::time::timeout(Duration::from_millis(200), b.next()).await {
        seen.push((u.address.to_string(), u.value.as_f64().unwrap()));
    }
    assert!(seen.len() <= 4, "the loop ran on: {seen:?}");
    assert_eq!(c.get("/loop/b").await.unwrap(), Value::Float(2.0));
    assert_eq!(c.get("/loop/a").await.unwrap(), Value::Float(3.0));

    // A broken edit is refused and counted; the rules in force keep running.
    std::fs::write(
        &path,
        "[[rule]]\nid = \"x\"\ntrigger = { type = \"nope\" }\n",
    )
    .unwrap();
    metric_reaches(&server.url, "clasp_rules_reload_errors_total", 1.0).await;
    // A good edit replaces them.
    std::fs::write(
        &path,
        "[[rule]]\nid = \"echo\"\ntrigger = { type = \"event\", pattern = \"/in/*\" }\nactions = [{ type = \"set\", address = \"/out\", value = 42 }]\n",
    )
    .unwrap();
    metric_reaches(&server.url, "clasp_rules_reloads_total", 1.0).await;
    let mut out = c.subscribe("/out").await.unwrap();
    c.ping().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.emit("/in/x", Value::Int(1)).await.unwrap();
    let u = tokio::time::timeout(WAIT, out.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.value, Value::Int(42));
    metric_reaches(
        &server.url,
        "clasp_rules_rule_firings_total{rule=\"echo\"}",
        1.0,
    )
    .await;
    c.close().await;
}

#[test]
fn a_bad_rules_file_is_refused_at_start_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(
        &path,
        "[[rule]]\nid = \"r\"\ntrigger = { type = \"schedule\", cron = \"0 25 * * *\" }\nactions = [{ type = \"set\", address = \"/a\", value = 1 }]\n",
    )
    .unwrap();
    let out = common::clasp(&[
        "server",
        "--memory",
        "--port",
        "0",
        "--rules",
        path.to_str().unwrap(),
    ])
    .stderr(Stdio::piped())
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3, column"), "{err}");
    assert!(err.contains("hour: 25 is out of range"), "{err}");
}

fn token(dir: &str, scopes: &str) -> String {
    let out = common::clasp_ok(&["token", "create", "--data-dir", dir, "--scopes", scopes]);
    String::from_utf8(out).unwrap().trim().to_owned()
}

/// With tokens required, the rules need a token of their own, and its scopes bound what they
/// may do: a write outside them is refused by the router and counted.
#[tokio::test]
async fn rules_act_within_their_token_scopes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let client_token = token(d, "admin:/**");
    let rules_token = token(d, "read:/**,write:/allowed/**");
    let path = dir.path().join("rules.toml");
    std::fs::write(
        &path,
        "[[rule]]\nid = \"both\"\ntrigger = { type = \"event\", pattern = \"/go\" }\nactions = [\n  { type = \"set\", address = \"/allowed/x\", value = 1 },\n  { type = \"set\", address = \"/denied/y\", value = 1 },\n]\n",
    )
    .unwrap();
    let rules = path.to_str().unwrap();
    // Without a token for them, the router does not start, and says why.
    let out = common::clasp(&[
        "server",
        "--data-dir",
        d,
        "--port",
        "0",
        "--bind",
        "127.0.0.1",
        "--rules",
        rules,
    ])
    .stderr(Stdio::piped())
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--rules-token"), "{err}");

    let server = start(&[
        "--data-dir",
        d,
        "--rules",
        rules,
        "--rules-token",
        &rules_token,
    ]);
    let c = Client::builder(&server.url)
        .token(client_token)
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    metric_reaches(&server.url, "clasp_rules_updates_total", 0.0).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.emit("/go", Value::Int(1)).await.unwrap();
    metric_reaches(&server.url, "clasp_rules_write_errors_total", 1.0).await;
    assert_eq!(c.get("/allowed/x").await.unwrap(), Value::Int(1));
    assert!(
        c.get("/denied/y").await.is_err(),
        "written outside the rules' scopes"
    );
    c.close().await;
}

/// Rules that read nothing (timed triggers only) run on.
#[tokio::test]
async fn rules_with_only_timed_triggers_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.json");
    std::fs::write(
        &path,
        r#"{"rule": [{"id": "tick", "trigger": {"type": "interval", "every": "100ms"},
            "actions": [{"type": "publish", "address": "/tick", "value": true}]}]}"#,
    )
    .unwrap();
    let server = start(&["--memory", "--rules", path.to_str().unwrap()]);
    let c = connect(&server.url).await;
    let mut ticks = c.subscribe("/tick").await.unwrap();
    for _ in 0..3 {
        let u = tokio::time::timeout(WAIT, ticks.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(u.value, Value::Bool(true));
    }
    c.close().await;
}
