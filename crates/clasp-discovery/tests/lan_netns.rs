//! The real LAN case: two network namespaces joined by a veth pair (10.77.0.1/24 and
//! 10.77.0.2/24, plus fd77::1/64 and fd77::2/64), the advertiser/responder running in one and
//! the browser/scanner in the other, each as this test binary re-executed under
//! `ip netns exec`. Needs root and iproute2; otherwise each test prints `SKIPPED: <why>` and
//! passes. The namespaces are deleted by a Drop guard, also on failure.
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clasp_discovery::{
    Advertiser, BroadcastResponder, Device, MdnsBrowser, MdnsEvent, RouterInfo, ScanOptions,
    Source, browse, discover_lan, scan,
};
use clasp_proto::Features;

const ROLE_ENV: &str = "CLASP_DISCOVERY_NETNS_ROLE";
const ID_ENV: &str = "CLASP_DISCOVERY_NETNS_ID";
const ROUTER_V4: &str = "10.77.0.1";
const ROUTER_V6: &str = "fd77::1";
const WS_PORT: u16 = 9301;
const NAME: &str = "LAN Router.Stage 1";

mod netns;

use netns::{ChildGuard, lan_pair, lines_of, wait_exit, wait_for_line};

/// This test binary, re-executed in `ns` running only `netns_child` with `role`.
fn child(ns: &str, role: &str, id: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns])
        .arg(exe)
        .args(["--exact", "netns_child", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(ROLE_ENV, role)
        .env(ID_ENV, id)
        .stderr(Stdio::inherit());
    c
}

#[test]
fn lan_mdns_and_broadcast_across_veth() {
    let (_ns, a, b) = match lan_pair() {
        Ok(x) => x,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let id = format!("lan-{}", std::process::id());
    let mut adv = ChildGuard(
        child(&a, "advertise", &id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let adv_lines = lines_of(&mut adv.0);
    wait_for_line(&adv_lines, "READY", Duration::from_secs(60));

    let mut scanner = ChildGuard(
        child(&b, "scan", &id)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let scan_lines = lines_of(&mut scanner.0);
    // The scanner reports FOUND, then waits for the advertiser's goodbye.
    wait_for_line(&scan_lines, "FOUND", Duration::from_secs(180));
    // Closing stdin stops the advertiser, which unregisters (mDNS goodbye).
    drop(adv.0.stdin.take());
    assert!(wait_exit(&mut adv, Duration::from_secs(60)).success());
    wait_for_line(&scan_lines, "SCAN OK", Duration::from_secs(120));
    assert!(wait_exit(&mut scanner, Duration::from_secs(60)).success());
}

#[test]
fn mdns_advertise_and_browse_in_one_process() {
    let (_ns, a, _b) = match lan_pair() {
        Ok(x) => x,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let id = format!("one-{}", std::process::id());
    let mut c = ChildGuard(
        child(&a, "inproc", &id)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = lines_of(&mut c.0);
    wait_for_line(&lines, "INPROC OK", Duration::from_secs(120));
    assert!(wait_exit(&mut c, Duration::from_secs(60)).success());
}

fn router_info(id: &str) -> RouterInfo {
    RouterInfo::new(NAME, Features::ROUTER, WS_PORT)
        .with_id(id)
        .with_extra("quic", "9302")
        .with_extra("path", "/")
}

fn check_device(d: &Device, id: &str) {
    let v4: IpAddr = ROUTER_V4.parse().unwrap();
    assert_eq!(d.id, id);
    assert_eq!(d.name, NAME);
    assert_eq!(d.ws_port, WS_PORT);
    assert_eq!(d.features, Features::ROUTER);
    assert_eq!(d.version, 1);
    assert_eq!(d.addresses.first(), Some(&v4), "{d:?}");
    assert_eq!(d.ws_url, format!("ws://{ROUTER_V4}:{WS_PORT}/"));
    let txt = |k: &str| d.txt.get(k).map(String::as_str);
    assert_eq!(txt("version"), Some("1"));
    assert_eq!(txt("name"), Some(NAME));
    assert_eq!(txt("features"), Some("pesgt"));
    assert_eq!(txt("ws"), Some("9301"));
    assert_eq!(txt("quic"), Some("9302"));
}

/// Browses until the router `id` is resolved with both its IPv4 and IPv6 addresses.
async fn find_by_mdns(browser: &mut MdnsBrowser, id: &str) -> Device {
    let v6: IpAddr = ROUTER_V6.parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let mut seen: Option<Device> = None;
    loop {
        match tokio::time::timeout_at(deadline, browser.next()).await {
            Ok(Some(MdnsEvent::Found(d))) if d.id == id => {
                let complete = d.addresses.contains(&v6);
                match &mut seen {
                    Some(s) => s.merge(d),
                    None => seen = Some(d),
                }
                if complete || seen.as_ref().is_some_and(|s| s.addresses.contains(&v6)) {
                    return seen.unwrap();
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("browser stopped"),
            Err(_) => panic!("router not resolved with IPv4+IPv6 in time: {seen:?}"),
        }
    }
}

/// Threads of this process named like mdns-sd's daemon thread.
fn mdns_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim().starts_with("mDNS_daemon"))
        })
        .count()
}

/// The child side; does nothing unless re-executed by the tests above.
#[test]
#[ignore = "run by the netns tests inside a namespace"]
fn netns_child() {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let id = std::env::var(ID_ENV).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        match role.as_str() {
            "advertise" => {
                let adv = Advertiser::new(router_info(&id)).unwrap();
                let resp =
                    BroadcastResponder::bind(BroadcastResponder::default_addr(), router_info(&id))
                        .await
                        .unwrap()
                        .spawn()
                        .unwrap();
                println!("READY {}", adv.fullname());
                std::io::stdout().flush().unwrap();
                // Serve until the parent closes stdin.
                tokio::task::spawn_blocking(|| {
                    let mut s = String::new();
                    while std::io::stdin().read_line(&mut s).is_ok_and(|n| n > 0) {}
                })
                .await
                .unwrap();
                drop(resp);
                adv.stop().await;
                println!("STOPPED");
            }
            "scan" => {
                let v6: IpAddr = ROUTER_V6.parse().unwrap();
                let mut browser = MdnsBrowser::start().unwrap();
                let d = find_by_mdns(&mut browser, &id).await;
                check_device(&d, &id);
                assert_eq!(d.source, Source::Mdns);
                assert_eq!(d.ws_url_for(v6), format!("ws://[{ROUTER_V6}]:{WS_PORT}/"));
                println!("MDNS {d:?}");

                let timeout = Duration::from_secs(3);
                for target in ["10.77.0.255:7331", "255.255.255.255:7331"] {
                    let opts = ScanOptions::unicast(
                        "0.0.0.0:0".parse().unwrap(),
                        vec![target.parse().unwrap()],
                        timeout,
                    );
                    let found = scan(&opts).await.unwrap();
                    assert_eq!(found.len(), 1, "{target}: {found:?}");
                    let d = &found[0];
                    assert_eq!(d.source, Source::Broadcast);
                    assert_eq!(d.addresses, vec![ROUTER_V4.parse::<IpAddr>().unwrap()]);
                    check_device(d, &id);
                    println!("BROADCAST {target} {d:?}");
                }
                let opts = ScanOptions::broadcast(7331, timeout);
                assert!(
                    opts.targets.contains(&"10.77.0.255:7331".parse().unwrap()),
                    "directed broadcast of veth1 is a target: {:?}",
                    opts.targets
                );

                let all = discover_lan(Duration::from_secs(8)).await.unwrap();
                let mine: Vec<_> = all.iter().filter(|d| d.id == id).collect();
                assert_eq!(mine.len(), 1, "merged across sources: {all:?}");
                check_device(mine[0], &id);
                println!("LAN {all:?}");
                println!("FOUND");
                std::io::stdout().flush().unwrap();

                // The advertiser's goodbye reaches us as a loss.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
                loop {
                    match tokio::time::timeout_at(deadline, browser.next()).await {
                        Ok(Some(MdnsEvent::Lost { id: lost })) if lost == id => break,
                        Ok(Some(_)) => {}
                        other => panic!("no goodbye: {other:?}"),
                    }
                }
                drop(browser);
                println!("SCAN OK");
            }
            "inproc" => {
                let mut browser = MdnsBrowser::start().unwrap();
                let adv = Advertiser::new(router_info(&id)).unwrap();
                let d = find_by_mdns(&mut browser, &id).await;
                check_device(&d, &id);
                // The timed browse finds it too and shuts its daemon down on return.
                let found = browse(Duration::from_secs(5)).await.unwrap();
                assert!(found.iter().any(|d| d.id == id), "{found:?}");
                drop(browser);
                drop(adv);
                // No mDNS daemon thread outlives its owner.
                let deadline = Instant::now() + Duration::from_secs(60);
                while mdns_threads() > 0 {
                    assert!(Instant::now() < deadline, "mDNS daemon threads leaked");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                println!("INPROC OK");
            }
            other => panic!("unknown role {other}"),
        }
    });
}
