//! The tools (`clasp set`, `get`, `sub`, `emit`, `query`, `ping`, `snapshot`) as processes
//! against a real `clasp server`.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clasp_client::{Client, ReconnectPolicy, SignalDef, SignalType};
use common::start;
use serde_json::{Value as Json, json};

/// How long a test waits for a tool.
const WAIT: Duration = Duration::from_secs(10);

/// `clasp ARGS --url URL`, with no CLASP_* variables from the environment.
fn tool(url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_clasp"));
    c.args(args)
        .args(["--url", url])
        .env_remove("CLASP_URL")
        .env_remove("CLASP_TOKEN");
    c
}

/// Runs a tool to completion.
fn run(url: &str, args: &[&str]) -> Output {
    tool(url, args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// Runs a tool that must succeed; returns its standard output.
fn ok(url: &str, args: &[&str]) -> String {
    let o = run(url, args);
    assert!(
        o.status.success(),
        "clasp {args:?} failed: {:?}\n{}",
        o.status,
        stderr(&o)
    );
    stdout(&o)
}

/// Like [`ok`], parsing the output as one JSON document.
fn ok_json(url: &str, args: &[&str]) -> Json {
    let out = ok(url, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// A `clasp sub` running in the background, ready (its subscription is in place at the router).
struct Sub {
    child: Child,
}

impl Sub {
    fn start(url: &str, args: &[&str]) -> Sub {
        let mut child = tool(url, &[&["sub"][..], args].concat())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let _ = tx.send(line.unwrap_or_default());
            }
        });
        let line = rx.recv_timeout(WAIT).expect("sub did not become ready");
        assert!(line.starts_with("subscribed to "), "{line}");
        std::thread::spawn(move || for _ in rx {});
        Sub { child }
    }

    /// Waits for the process to end by itself; returns its exit success and standard output.
    fn finish(mut self) -> (bool, String) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "sub did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        (status.success(), out)
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn set_then_get_numbers_json_and_plain_strings() {
    let p = start(&["--memory"]);
    let url = &p.url;
    assert_eq!(
        ok(url, &["set", "/t/level", "0.5"]),
        "/t/level = 0.5 (revision 1)\n"
    );
    assert_eq!(
        ok(url, &["set", "/t/level", "0.75"]),
        "/t/level = 0.75 (revision 2)\n"
    );
    assert_eq!(
        ok(url, &["set", "/t/neg", "-3"]),
        "/t/neg = -3 (revision 1)\n"
    );
    assert_eq!(
        ok(url, &["set", "/t/map", r#"{"b":[1,2.5,true],"a":null}"#]),
        "/t/map = {\"b\":[1,2.5,true],\"a\":null} (revision 1)\n"
    );
    // Not JSON: the text itself, as a string.
    assert_eq!(
        ok(url, &["set", "/t/name", "hello world"]),
        "/t/name = \"hello world\" (revision 1)\n"
    );
    // Quoted JSON: a string even though it looks like a number.
    assert_eq!(
        ok_json(url, &["set", "/t/code", r#""7""#, "--json"]),
        json!({"address": "/t/code", "value": "7", "revision": 1})
    );

    assert_eq!(ok(url, &["get", "/t/level"]), "0.75\n");
    assert_eq!(ok(url, &["get", "/t/neg"]), "-3\n");
    assert_eq!(
        ok(url, &["get", "/t/map"]),
        "{\"b\":[1,2.5,true],\"a\":null}\n"
    );
    assert_eq!(ok(url, &["get", "/t/name"]), "\"hello world\"\n");
    assert_eq!(ok(url, &["get", "/t/code"]), "\"7\"\n");

    let j = ok_json(url, &["get", "/t/level", "--json"]);
    assert_eq!(j["address"], "/t/level");
    assert_eq!(j["value"], 0.75);
    assert_eq!(j["revision"], 2);
    assert!(j["writer"].as_str().is_some_and(|w| !w.is_empty()), "{j}");
    assert!(j["timestamp"].as_u64().is_some_and(|t| t > 0), "{j}");

    // The URL can come from the environment.
    let o = Command::new(env!("CARGO_BIN_EXE_clasp"))
        .args(["get", "/t/level"])
        .env("CLASP_URL", url)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "0.75\n");
}

#[test]
fn get_of_a_missing_address_is_exit_code_1() {
    let p = start(&["--memory"]);
    for args in [
        &["get", "/nothing/here"][..],
        &["get", "/nothing/here", "--json"],
    ] {
        let o = run(&p.url, args);
        assert_eq!(o.status.code(), Some(1));
        assert_eq!(stdout(&o), "");
        assert_eq!(stderr(&o), "error: nothing is stored at /nothing/here\n");
    }
}

#[test]
fn sub_json_prints_updates_written_by_another_process() {
    let p = start(&["--memory"]);
    let url = &p.url;
    let sub = Sub::start(url, &["/live/**", "--count", "2", "--json"]);
    ok(url, &["set", "/live/a", "1"]);
    ok(url, &["set", "/live/b", "on stage"]);
    ok(url, &["set", "/other", "3"]); // not under the pattern
    let (success, out) = sub.finish();
    assert!(success, "{out}");
    let lines: Vec<Json> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    for (j, (addr, value)) in lines
        .iter()
        .zip([("/live/a", json!(1)), ("/live/b", json!("on stage"))])
    {
        assert_eq!(j["address"], addr, "{j}");
        assert_eq!(j["value"], value, "{j}");
        assert_eq!(j["kind"], "param", "{j}");
        assert_eq!(j["revision"], 1, "{j}");
        // The router's live SET fan-out carries no timestamp (snapshots do): null, not missing.
        let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["address", "value", "kind", "revision", "timestamp"]);
        assert!(j["timestamp"].is_null() || j["timestamp"].is_u64(), "{j}");
    }
}

#[test]
fn sub_starts_with_the_current_state_and_sees_events() {
    let p = start(&["--memory"]);
    let url = &p.url;
    ok(url, &["set", "/h/pre", "1"]);
    let sub = Sub::start(url, &["/h/**", "--count", "3"]);
    assert_eq!(ok(url, &["emit", "/h/go", "3"]), "emitted /h/go = 3\n");
    assert_eq!(
        ok_json(url, &["emit", "/h/bare", "--json"]),
        json!({"address": "/h/bare", "value": null})
    );
    let (success, out) = sub.finish();
    assert!(success, "{out}");
    assert_eq!(
        out,
        "/h/pre = 1  [param rev 1]\n/h/go = 3  [event]\n/h/bare = null  [event]\n"
    );
}

#[test]
fn sub_types_filters_signal_kinds() {
    let p = start(&["--memory"]);
    let url = &p.url;
    let sub = Sub::start(
        url,
        &["/f/**", "--types", "event", "--count", "1", "--json"],
    );
    ok(url, &["set", "/f/param", "1"]);
    ok(url, &["emit", "/f/hit", r#"{"v":2}"#]);
    let (success, out) = sub.finish();
    assert!(success, "{out}");
    let j: Json = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (&j["address"], &j["value"], &j["kind"], &j["revision"]),
        (
            &json!("/f/hit"),
            &json!({"v": 2}),
            &json!("event"),
            &Json::Null
        )
    );
}

#[test]
fn sub_exits_0_on_ctrl_c() {
    let p = start(&["--memory"]);
    let sub = Sub::start(&p.url, &["/quiet/**"]);
    let ok = Command::new("kill")
        .args(["-INT", &sub.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let (success, out) = sub.finish();
    assert!(success, "{out}");
    assert_eq!(out, "");
}

#[test]
fn snapshot_prints_the_state() {
    let p = start(&["--memory"]);
    let url = &p.url;
    assert_eq!(ok(url, &["snapshot"]), "{}\n");
    ok(url, &["set", "/s/b", "2"]);
    ok(url, &["set", "/s/a", "[1,\"x\"]"]);
    ok(url, &["set", "/s/a", "text"]);
    ok(url, &["set", "/z", "true"]);
    let human = ok_json(url, &["snapshot"]);
    assert_eq!(human, json!({"/s/a": "text", "/s/b": 2, "/z": true}));
    let j = ok_json(url, &["snapshot", "/s/*", "--json"]);
    let items = j.as_array().unwrap();
    assert_eq!(items.len(), 2, "{j}");
    assert_eq!(
        (
            &items[0]["address"],
            &items[0]["value"],
            &items[0]["revision"]
        ),
        (&json!("/s/a"), &json!("text"), &json!(2))
    );
    assert_eq!(
        (
            &items[1]["address"],
            &items[1]["value"],
            &items[1]["revision"]
        ),
        (&json!("/s/b"), &json!(2), &json!(1))
    );
    for i in items {
        assert!(i["writer"].is_string() && i["timestamp"].is_u64(), "{i}");
    }
}

#[test]
fn ping_reports_round_trips_and_the_clock() {
    let p = start(&["--memory", "--name", "Test Router"]);
    let url = &p.url;
    let out = ok(url, &["ping", "--count", "2"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert_eq!(lines[0], format!("PING {url} (Test Router)"));
    assert!(
        lines[1].starts_with(&format!("pong from {url}: seq=1 time=")),
        "{out}"
    );
    assert!(
        lines[2].starts_with(&format!("pong from {url}: seq=2 time=")),
        "{out}"
    );
    assert!(lines[3].starts_with("2 pings: min/avg/max = "), "{out}");
    assert!(lines[4].starts_with("clock: offset "), "{out}");

    let j = ok_json(url, &["ping", "--count", "3", "--json"]);
    assert_eq!(j["router"], "Test Router");
    assert_eq!(j["count"], 3);
    let rtts = j["rtt_ms"].as_array().unwrap();
    assert_eq!(rtts.len(), 3);
    assert!(rtts.iter().all(|r| r.as_f64().is_some_and(|r| r >= 0.0)));
    assert!(j["min_ms"].as_f64() <= j["max_ms"].as_f64(), "{j}");
    assert!(
        j["clock"]["samples"].as_u64().is_some_and(|n| n >= 1),
        "{j}"
    );
    let q = j["clock"]["quality"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&q), "{j}");
    assert!(j["clock"]["offset_us"].is_i64(), "{j}");
}

#[tokio::test(flavor = "multi_thread")]
async fn query_lists_announced_signals() {
    let p = start(&["--memory"]);
    let url = p.url.clone();
    let o = run(&url, &["query", "/**"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");
    assert_eq!(stderr(&o), "no announced signals match /**\n");
    assert_eq!(ok_json(&url, &["query", "/**", "--json"]), json!([]));

    let client = Client::builder(url.clone())
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    let def = |a: &str, s, d: Option<&str>| SignalDef {
        address: a.into(),
        signal: s,
        datatype: d.map(Into::into),
        access: None,
        meta: None,
    };
    client
        .announce(
            "/q",
            vec![
                def("/q/level", SignalType::Param, Some("f64")),
                def("/q/hit", SignalType::Event, None),
            ],
        )
        .await
        .unwrap();
    let (human, j) = tokio::task::spawn_blocking(move || {
        (
            ok(&url, &["query", "/q/**"]),
            ok_json(&url, &["query", "/**", "--json"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(human, "/q/hit    event\n/q/level  param  f64\n");
    assert_eq!(
        j,
        json!([
            {"address": "/q/hit", "type": "event", "datatype": null, "access": null},
            {"address": "/q/level", "type": "param", "datatype": "f64", "access": null},
        ])
    );
    client.close().await;
}

#[test]
fn connection_failures_are_one_clear_line_and_exit_code_1() {
    // A port nobody listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}");
    let cases: [&[&str]; 7] = [
        &["set", "/a", "1"],
        &["get", "/a"],
        &["sub", "/**"],
        &["emit", "/a"],
        &["query", "/**"],
        &["ping"],
        &["snapshot"],
    ];
    for args in cases {
        let o = run(&url, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(stdout(&o), "", "{args:?}");
        let err = stderr(&o);
        assert!(
            err.starts_with(&format!("error: cannot connect to {url}: "))
                && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
    let o = run("http://127.0.0.1:1", &["get", "/a"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: invalid URL `http://127.0.0.1:1`"),
        "{}",
        stderr(&o)
    );
}
