//! Interop scenarios with the official Rust client (crates.io `clasp-client` 4.5.0) against a
//! router: the v3 basics, and v4's per-SET TTL (sliding, absolute, never).
//!
//! Usage: clasp-interop-rust-v4 ws://127.0.0.1:PORT/ [--default-ttl]
//! (`--default-ttl`: the router runs with `--param-ttl 1`, to check that `Ttl::Never` overrides
//! it). Prints one line per check and a closing "N passed, N failed"; exits non-zero on failure.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clasp_client::Clasp;
use clasp_core::{Ttl, Value};

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

struct Checks {
    passed: usize,
    failed: usize,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Debug) {
        if ok {
            self.passed += 1;
            println!("ok   {name}");
        } else {
            self.failed += 1;
            println!("FAIL {name}: {detail:?}");
        }
    }
}

async fn client(url: &str, name: &str) -> Clasp {
    Clasp::builder(url)
        .name(name)
        .reconnect(false)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

async fn watch(c: &Clasp, pattern: &str) -> Seen {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    c.subscribe(pattern, move |v, a| s.lock().unwrap().push((a.to_owned(), v)))
        .await
        .expect("subscribe");
    seen
}

/// Waits up to 5 s for `pred` over what was seen.
async fn wait_for(seen: &Seen, pred: impl Fn(&[(String, Value)]) -> bool) -> bool {
    for _ in 0..500 {
        if pred(&seen.lock().unwrap()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Whether a fresh client finds `address` (its connect snapshot, then a GET).
async fn present(url: &str, address: &str) -> bool {
    let c = client(url, "probe").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let found = matches!(
        tokio::time::timeout(Duration::from_secs(2), c.get(address)).await,
        Ok(Ok(v)) if v != Value::Null
    );
    c.close().await;
    found
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "ws://127.0.0.1:7330/".into());
    let default_ttl = args.any(|a| a == "--default-ttl");
    let mut c = Checks {
        passed: 0,
        failed: 0,
    };

    let a = client(&url, "rust-v4-a").await;
    let b = client(&url, "rust-v4-b").await;
    c.check("session id from WELCOME", a.session_id().is_some(), a.session_id());

    if default_ttl {
        // The router expires params 1 s after their last write; Ttl::Never overrides it.
        a.set_with_ttl("/v4/never", 1i64, Ttl::Never).await.unwrap();
        a.set("/v4/default", 1i64).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        c.check("Ttl::Never outlives the router's default TTL", present(&url, "/v4/never").await, "gone");
        c.check("a plain SET expires with the router's default TTL", !present(&url, "/v4/default").await, "still there");
    } else {
        let seen = watch(&b, "/v4/**").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.set("/v4/plain", 7i64).await.unwrap();
        c.check(
            "a SET reaches a subscriber",
            wait_for(&seen, |s| s.iter().any(|(a, v)| a == "/v4/plain" && *v == Value::Int(7))).await,
            seen.lock().unwrap().clone(),
        );
        a.emit("/v4/ev", "hi").await.unwrap();
        c.check(
            "an event reaches a subscriber",
            wait_for(&seen, |s| s.iter().any(|(a, _)| a == "/v4/ev")).await,
            seen.lock().unwrap().clone(),
        );

        a.set_with_ttl("/v4/abs", 1i64, Ttl::Absolute(1)).await.unwrap();
        a.set_with_ttl("/v4/slide", 1i64, Ttl::Sliding(1)).await.unwrap();
        a.set_with_ttl("/v4/never", 1i64, Ttl::Never).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        c.check("a param with an absolute TTL is there before it", present(&url, "/v4/abs").await, "missing");
        c.check(
            "subscribers learn that it expired (null)",
            wait_for(&seen, |s| s.iter().any(|(a, v)| a == "/v4/abs" && *v == Value::Null)).await,
            seen.lock().unwrap().clone(),
        );
        c.check(
            "an unread sliding TTL expires too",
            wait_for(&seen, |s| s.iter().any(|(a, v)| a == "/v4/slide" && *v == Value::Null)).await,
            seen.lock().unwrap().clone(),
        );
        c.check("an expired param is gone from snapshots and GETs", !present(&url, "/v4/abs").await, "still there");
        c.check("Ttl::Never stays", present(&url, "/v4/never").await, "gone");
        // A later write without a TTL makes it permanent again.
        a.set_with_ttl("/v4/renew", 1i64, Ttl::Absolute(1)).await.unwrap();
        a.set("/v4/renew", 2i64).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1800)).await;
        c.check("a SET without TTL clears an earlier one", present(&url, "/v4/renew").await, "gone");
    }
    a.close().await;
    b.close().await;
    println!("{} passed, {} failed", c.passed, c.failed);
    std::process::exit(i32::from(c.failed > 0));
}
