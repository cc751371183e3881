//! `clasp relay` on one host of a two-host LAN (network namespaces joined by a veth pair) and
//! `clasp discover --lan` on the other: the relay's mDNS advertisement and broadcast responder
//! are found with the address a client on the other host can use, and that URL works. Needs
//! root and iproute2; otherwise prints `SKIPPED: <why>` and passes.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-discovery/tests/netns/mod.rs"]
mod netns;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use netns::{ChildGuard, lan_pair, lines_of, wait_for_line};

fn in_ns(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_clasp")])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn clasp_discover_lan_finds_a_relay_on_another_host_and_its_url_works() {
    let (_ns, a, b) = match lan_pair() {
        Ok(x) => x,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    // Inside its own namespace the relay may listen on every address: only the veth pair and
    // the namespace's loopback exist there.
    let mut relay = ChildGuard(
        Command::new("ip")
            .args(["netns", "exec", &a, env!("CARGO_BIN_EXE_clasp")])
            .args([
                "relay",
                "--memory",
                "--host",
                "0.0.0.0",
                "--ws-port",
                "7330",
            ])
            .args(["--rendezvous-port", "0", "--discovery-port", "7331"])
            .args(["--name", "Booth"])
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let lines = lines_of(&mut relay.0);
    wait_for_line(&lines, "ready: ws://", Duration::from_secs(60));
    std::thread::spawn(move || while lines.recv().is_ok() {});

    // mDNS answers can take a few seconds to settle on a fresh link: ask up to four times.
    let mut found = None;
    for _ in 0..4 {
        let out = in_ns(&b, &["discover", "--lan", "--json", "--timeout", "5"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let booth = list
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == "Booth")
            .cloned();
        if let Some(d) = booth
            && d["extra"]["version"] == "1"
        {
            found = Some(d);
            break;
        }
        println!("not found yet: {list}");
    }
    let d = found.expect("clasp discover --lan never reported the relay's mDNS record");
    println!("found: {d}");
    let url = d["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("ws://10.77.0.1:7330/"), "{d}");
    assert_eq!(d["extra"]["ws"], "7330", "{d}");
    assert!(
        d["features"].as_array().unwrap().contains(&"p".into()),
        "{d}"
    );
    assert!(
        d["addresses"]
            .as_array()
            .unwrap()
            .contains(&"10.77.0.1".into()),
        "{d}"
    );

    // The advertised URL reaches the relay from the other host.
    let set = in_ns(&b, &["set", "/lan/check", "7", "--url", &url]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let get = in_ns(&b, &["get", "/lan/check", "--url", &url]);
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "7");
}
