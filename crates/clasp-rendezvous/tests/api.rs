#![allow(clippy::unwrap_used)]
//! The HTTP API over real sockets: every endpoint, happy paths and each error status.

mod support;

use std::sync::Arc;
use std::time::Duration;

use clasp_rendezvous::{RateLimit, RendezvousConfig};
use support::{
    T0, TestServer, config, discover, error, get, http, post_register, refresh, register,
    registration, unregister, unregister_owned,
};

#[tokio::test]
async fn register_discover_refresh_unregister_happy_path() {
    let server = TestServer::start(config()).await;
    let http = http();
    let body = serde_json::json!({
        "name": "Studio A",
        "publicKey": "pk-1",
        "features": ["param", "event"],
        "endpoints": {"ws": "wss://a.example:7330", "quic": "quic://a.example:7331"},
        "tags": ["studio", "live"],
        "metadata": {"room": "A"},
        "unknownField": 1
    });
    let reg = register(&http, &server, body).await;
    let id = reg["id"].as_str().unwrap().to_owned();
    assert_eq!(uuid_version(&id), Some('4'), "{id}");
    assert_eq!(reg["timestamp"], T0);
    assert_eq!(reg["ttl"], 300);
    assert!(reg["secret"].as_str().unwrap().len() >= 32);

    let devices = discover(&http, &server, "").await;
    assert_eq!(devices.len(), 1);
    let d = &devices[0];
    assert_eq!(d["id"], id.as_str());
    assert_eq!(d["name"], "Studio A");
    assert_eq!(d["publicKey"], "pk-1");
    assert_eq!(d["features"], serde_json::json!(["param", "event"]));
    assert_eq!(d["endpoints"]["quic"], "quic://a.example:7331");
    assert_eq!(d["tags"], serde_json::json!(["studio", "live"]));
    assert_eq!(d["metadata"]["room"], "A");
    assert_eq!(d["registeredAt"], T0);
    assert_eq!(d["lastSeen"], T0);
    assert!(
        d.get("secret").is_none(),
        "the secret must not leak through discover"
    );

    // Defaults: features/tags/metadata empty, publicKey absent.
    let reg2 = register(&http, &server, registration("b")).await;
    let devices = discover(&http, &server, "").await;
    let b = devices.iter().find(|d| d["id"] == reg2["id"]).unwrap();
    assert_eq!(b["features"], serde_json::json!([]));
    assert_eq!(b["tags"], serde_json::json!([]));
    assert_eq!(b["metadata"], serde_json::json!({}));
    assert!(b.get("publicKey").is_none());
    assert_ne!(reg2["id"], reg["id"]);

    server.clock.advance(Duration::from_secs(100));
    let resp = refresh(&http, &server, &id).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().is_empty());
    let devices = discover(&http, &server, "").await;
    let a = devices.iter().find(|d| d["id"] == id.as_str()).unwrap();
    assert_eq!(a["lastSeen"], T0 + 100_000_000);
    assert_eq!(a["registeredAt"], T0);
    // Most recently seen first.
    assert_eq!(devices[0]["id"], id.as_str());

    let resp = unregister_owned(&http, &server, &reg).await;
    assert_eq!(resp.status(), 204);
    let devices = discover(&http, &server, "").await;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["id"], reg2["id"]);

    // Unknown ids: 404 with a JSON error.
    for id in [id.as_str(), "nope", "00000000-0000-4000-8000-000000000000"] {
        assert_unknown(&http, &server, id).await;
    }
    server.stop().await;
}

/// Asserts that refresh and unregister of `id` both answer 404 with a JSON error.
async fn assert_unknown(http: &reqwest::Client, server: &TestServer, id: &str) {
    error(refresh(http, server, id).await, 404).await;
    error(unregister(http, server, id).await, 404).await;
}

/// The names `discover` lists, in its order.
async fn discovered_names(http: &reqwest::Client, server: &TestServer) -> Vec<String> {
    discover(http, server, "")
        .await
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect()
}

fn uuid_version(id: &str) -> Option<char> {
    let parts: Vec<&str> = id.split('-').collect();
    if parts.len() != 5 || id.len() != 36 {
        return None;
    }
    parts[2].chars().next()
}

#[tokio::test]
async fn health_openapi_and_cors() {
    let server = TestServer::start(config()).await;
    let http = http();
    let resp = get(&http, &server, "/api/v1/health").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "OK");

    let resp = get(&http, &server, "/api/v1/openapi.json").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let doc: serde_json::Value = resp.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/register", "post"),
        ("/api/v1/discover", "get"),
        ("/api/v1/refresh/{id}", "post"),
        ("/api/v1/unregister/{id}", "delete"),
        ("/api/v1/health", "get"),
        ("/api/v1/openapi.json", "get"),
    ] {
        assert!(paths[path][method].is_object(), "{path} {method}");
    }
    // Every $ref resolves.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let pointer = r.strip_prefix('#').unwrap();
        assert!(doc.pointer(pointer).is_some(), "dangling {r}");
    }

    // Permissive CORS: preflight and simple requests.
    let resp = http
        .request(reqwest::Method::OPTIONS, server.url("/api/v1/register"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "content-type,authorization",
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let resp = http
        .get(server.url("/api/v1/discover"))
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    server.stop().await;
}

fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                if k == "$ref" {
                    out.push(v.as_str().unwrap().to_owned());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn bad_requests_get_clear_4xx_errors_and_lose_nothing() {
    let server = TestServer::start(config()).await;
    let http = http();
    let kept = register(&http, &server, registration("kept")).await;
    let post = |body: &'static str, ct: Option<&'static str>| {
        let mut req = http.post(server.url("/api/v1/register")).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    let json = Some("application/json");
    // Malformed JSON.
    error(post("{\"name\": ", json).await.unwrap(), 400).await;
    error(post("not json", json).await.unwrap(), 400).await;
    error(post("", json).await.unwrap(), 400).await;
    // Missing fields / wrong types.
    error(post("{\"name\": \"x\"}", json).await.unwrap(), 422).await;
    error(post("{\"endpoints\": {}}", json).await.unwrap(), 422).await;
    error(
        post("{\"name\": 5, \"endpoints\": {}}", json)
            .await
            .unwrap(),
        422,
    )
    .await;
    error(
        post(
            "{\"name\": \"x\", \"endpoints\": {}, \"tags\": \"t\"}",
            json,
        )
        .await
        .unwrap(),
        422,
    )
    .await;
    error(post("[]", json).await.unwrap(), 422).await;
    // Wrong or missing content type.
    error(
        post("{\"name\": \"x\", \"endpoints\": {}}", Some("text/plain"))
            .await
            .unwrap(),
        415,
    )
    .await;
    error(
        post("{\"name\": \"x\", \"endpoints\": {}}", None)
            .await
            .unwrap(),
        415,
    )
    .await;
    // Field limits.
    let long_name = serde_json::json!({"name": "n".repeat(257), "endpoints": {}});
    let resp = post_register(&http, &server, &long_name).await;
    assert!(error(resp, 422).await.contains("name"));
    let many_tags = serde_json::json!({"name": "x", "endpoints": {}, "tags": (0..33).map(|i| i.to_string()).collect::<Vec<_>>()});
    let resp = post_register(&http, &server, &many_tags).await;
    assert!(error(resp, 422).await.contains("tags"));
    let endpoints: serde_json::Map<String, serde_json::Value> = (0..17)
        .map(|i| (format!("t{i}"), "ws://x".into()))
        .collect();
    let many_endpoints = serde_json::json!({"name": "x", "endpoints": endpoints});
    let resp = post_register(&http, &server, &many_endpoints).await;
    assert!(error(resp, 422).await.contains("endpoints"));
    let big_meta =
        serde_json::json!({"name": "x", "endpoints": {}, "metadata": {"k": "v".repeat(9000)}});
    let resp = post_register(&http, &server, &big_meta).await;
    assert!(error(resp, 422).await.contains("metadata"));
    // Oversize body.
    let huge = format!(
        "{{\"name\": \"{}\", \"endpoints\": {{}}}}",
        "x".repeat(70 * 1024)
    );
    let resp = http
        .post(server.url("/api/v1/register"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    error(resp, 413).await;
    // Bad limits.
    for q in [
        "?limit=abc",
        "?limit=-1",
        "?limit=1.5",
        "?limit=",
        "?limit=99999999999999999999999",
    ] {
        let resp = get(&http, &server, &format!("/api/v1/discover{q}")).await;
        assert!(error(resp, 400).await.contains("limit"), "{q}");
    }
    let resp = get(&http, &server, "/api/v1/discover?tag=a&tag=b").await;
    error(resp, 400).await;
    // Nothing was lost or added.
    let devices = discover(&http, &server, "").await;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["id"], kept["id"]);
    server.stop().await;
}

#[tokio::test]
async fn filters_and_limits() {
    let server = TestServer::start(config()).await;
    let http = http();
    for i in 0..30 {
        let mut tags = vec![format!("group-{}", i % 3)];
        if i == 7 {
            tags.push("a b&c=d/é".to_owned());
        }
        let features = if i % 2 == 0 {
            vec!["param"]
        } else {
            vec!["param", "stream"]
        };
        register(
            &http,
            &server,
            serde_json::json!({"name": format!("d{i}"), "endpoints": {}, "tags": tags, "features": features}),
        )
        .await;
    }
    assert_eq!(discover(&http, &server, "").await.len(), 30);
    assert_eq!(discover(&http, &server, "?limit=5").await.len(), 5);
    assert_eq!(discover(&http, &server, "?limit=0").await.len(), 0);
    assert_eq!(discover(&http, &server, "?limit=5000").await.len(), 30);
    let g1 = discover(&http, &server, "?tag=group-1").await;
    assert_eq!(g1.len(), 10);
    assert!(
        g1.iter()
            .all(|d| d["tags"].as_array().unwrap().contains(&"group-1".into()))
    );
    // Exact match only.
    assert!(discover(&http, &server, "?tag=group").await.is_empty());
    assert!(discover(&http, &server, "?tag=GROUP-1").await.is_empty());
    let s = discover(&http, &server, "?feature=stream").await;
    assert_eq!(s.len(), 15);
    let both = discover(&http, &server, "?feature=stream&tag=group-1&limit=3").await;
    assert_eq!(both.len(), 3);
    for d in &both {
        assert!(d["features"].as_array().unwrap().contains(&"stream".into()));
        assert!(d["tags"].as_array().unwrap().contains(&"group-1".into()));
    }
    let odd = discover(&http, &server, "?tag=a%20b%26c%3Dd%2F%C3%A9").await;
    assert_eq!(odd.len(), 1);
    assert_eq!(odd[0]["name"], "d7");
    server.stop().await;
}

#[tokio::test]
async fn default_limit_is_100_and_cap_is_1000() {
    let cfg = RendezvousConfig {
        max_total_devices: 2000,
        max_devices_per_source: 2000,
        ..config()
    };
    let server = TestServer::start(cfg).await;
    let http = http();
    for start in (0..1100).step_by(100) {
        let tasks: Vec<_> = (start..start + 100)
            .map(|i| {
                let http = http.clone();
                let url = server.url("/api/v1/register");
                tokio::spawn(async move {
                    let r = http
                        .post(url)
                        .json(&registration(&format!("d{i}")))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 201);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    }
    assert_eq!(discover(&http, &server, "").await.len(), 100);
    assert_eq!(discover(&http, &server, "?limit=1001").await.len(), 1000);
    server.stop().await;
}

#[tokio::test]
async fn ttl_expiry_with_the_injected_clock() {
    let server = TestServer::start(config()).await;
    let http = http();
    let a = register(&http, &server, registration("a")).await;
    server.clock.advance(Duration::from_secs(200));
    let b = register(&http, &server, registration("b")).await;
    server.clock.advance(Duration::from_secs(99));
    assert_eq!(
        discover(&http, &server, "").await.len(),
        2,
        "a has 1 s left"
    );
    server.clock.advance(Duration::from_secs(1));
    // a is expired at exactly ttl: gone from discover though not swept yet.
    let devices = discover(&http, &server, "").await;
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["id"], b["id"]);
    assert_eq!(
        server.service.len(),
        2,
        "expiry is checked at read time, before any sweep"
    );
    // An expired device cannot be refreshed or unregistered.
    let id = a["id"].as_str().unwrap();
    assert_unknown(&http, &server, id).await;
    // A refresh keeps b alive past its original expiry.
    let bid = b["id"].as_str().unwrap();
    server.clock.advance(Duration::from_secs(150));
    let r = refresh(&http, &server, bid).await;
    assert_eq!(r.status(), 200);
    server.clock.advance(Duration::from_secs(299));
    assert_eq!(discover(&http, &server, "").await.len(), 1);
    server.clock.advance(Duration::from_secs(1));
    assert!(discover(&http, &server, "").await.is_empty());
    assert_eq!(server.service.sweep(), 1);
    assert!(server.service.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn capacity_evicts_the_least_recently_seen() {
    let cfg = RendezvousConfig {
        max_total_devices: 3,
        ..config()
    };
    let server = TestServer::start(cfg).await;
    let http = http();
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        ids.push(
            register(&http, &server, registration(name)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        server.clock.advance(Duration::from_secs(1));
    }
    // Refresh a: b is now the least recently seen.
    let r = refresh(&http, &server, &ids[0]).await;
    assert_eq!(r.status(), 200);
    register(&http, &server, registration("d")).await;
    let names = discovered_names(&http, &server).await;
    assert_eq!(names, ["d", "a", "c"]);
    register(&http, &server, registration("e")).await;
    let names = discovered_names(&http, &server).await;
    assert_eq!(names, ["e", "d", "a"]);
    assert_eq!(server.service.len(), 3);
    server.stop().await;
}

#[tokio::test]
async fn per_source_cap() {
    let cfg = RendezvousConfig {
        max_devices_per_source: 2,
        ..config()
    };
    let server = TestServer::start(cfg).await;
    let http = http();
    let a = register(&http, &server, registration("a")).await;
    register(&http, &server, registration("b")).await;
    let r = post_register(&http, &server, &registration("c")).await;
    assert!(error(r, 429).await.contains("registrations"));
    // Freeing a slot (unregister or expiry) lets the source register again.
    let r = unregister_owned(&http, &server, &a).await;
    assert_eq!(r.status(), 204);
    register(&http, &server, registration("c")).await;
    server.clock.advance(Duration::from_secs(300));
    register(&http, &server, registration("d")).await;
    register(&http, &server, registration("e")).await;
    assert_eq!(discover(&http, &server, "").await.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let cfg = RendezvousConfig {
        rate_limit: Some(RateLimit {
            burst: 5,
            per_second: 0.5,
        }),
        ..config()
    };
    let server = TestServer::start(cfg).await;
    let http = http();
    for _ in 0..5 {
        let r = get(&http, &server, "/api/v1/discover").await;
        assert_eq!(r.status(), 200);
    }
    let r = get(&http, &server, "/api/v1/discover").await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 2);
    assert!(error(r, 429).await.contains("too many requests"));
    let r = post_register(&http, &server, &registration("x")).await;
    error(r, 429).await;
    // Health is never limited.
    let r = get(&http, &server, "/api/v1/health").await;
    assert_eq!(r.status(), 200);
    // Tokens come back with (injected) time.
    server.clock.advance(Duration::from_secs(2));
    let r = get(&http, &server, "/api/v1/discover").await;
    assert_eq!(r.status(), 200);
    let r = get(&http, &server, "/api/v1/discover").await;
    assert_eq!(r.status(), 429);
    server.stop().await;
}

#[tokio::test]
async fn bearer_auth_on_register_and_unregister() {
    let cfg = RendezvousConfig {
        auth: Some(Arc::new(|t: Option<&str>| t == Some("good-token"))),
        ..config()
    };
    let server = TestServer::start(cfg).await;
    let http = http();
    let url = server.url("/api/v1/register");
    let r = http
        .post(&url)
        .json(&registration("a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert!(error(r, 401).await.contains("Bearer"));
    let r = http
        .post(&url)
        .bearer_auth("bad")
        .json(&registration("a"))
        .send()
        .await
        .unwrap();
    error(r, 401).await;
    let r = http
        .post(&url)
        .header("authorization", "Basic Z29vZC10b2tlbg==")
        .json(&registration("a"))
        .send()
        .await
        .unwrap();
    error(r, 401).await;
    let r = http
        .post(&url)
        .bearer_auth("good-token")
        .json(&registration("a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let reg: serde_json::Value = r.json().await.unwrap();
    let id = reg["id"].as_str().unwrap();
    let secret = reg["secret"].as_str().unwrap();
    // Discover and refresh need no token.
    assert_eq!(discover(&http, &server, "").await.len(), 1);
    let r = refresh(&http, &server, id).await;
    assert_eq!(r.status(), 200);
    // Unregister needs a good token and the owner secret: neither proves enough alone.
    let del = server.url(&format!("/api/v1/unregister/{id}"));
    error(http.delete(&del).send().await.unwrap(), 401).await;
    error(
        http.delete(&del).bearer_auth("nope").send().await.unwrap(),
        401,
    )
    .await;
    let r = http
        .delete(&del)
        .header("x-clasp-secret", secret)
        .send()
        .await
        .unwrap();
    error(r, 401).await;
    let r = http
        .delete(&del)
        .bearer_auth("good-token")
        .send()
        .await
        .unwrap();
    assert!(error(r, 403).await.contains("secret"));
    assert_eq!(discover(&http, &server, "").await.len(), 1);
    let r = http
        .delete(&del)
        .bearer_auth("good-token")
        .header("x-clasp-secret", secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(discover(&http, &server, "").await.is_empty());
    server.stop().await;

    // Opted out (the reference's behaviour): the token alone unregisters.
    let server = TestServer::start(RendezvousConfig {
        auth: Some(Arc::new(|t: Option<&str>| t == Some("good-token"))),
        require_secret: false,
        ..config()
    })
    .await;
    let r = http
        .post(server.url("/api/v1/register"))
        .bearer_auth("good-token")
        .json(&registration("a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let reg: serde_json::Value = r.json().await.unwrap();
    let del = server.url(&format!(
        "/api/v1/unregister/{}",
        reg["id"].as_str().unwrap()
    ));
    error(http.delete(&del).send().await.unwrap(), 401).await;
    let r = http
        .delete(&del)
        .bearer_auth("good-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(discover(&http, &server, "").await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn unregister_needs_the_owner_secret_by_default() {
    assert!(RendezvousConfig::default().require_secret);
    assert!(!RendezvousConfig::default().require_secret_on_refresh);
    let server = TestServer::start(config()).await;
    let http = http();
    let reg = register(&http, &server, registration("a")).await;
    let id = reg["id"].as_str().unwrap();
    let secret = reg["secret"].as_str().unwrap();
    // Refresh: a missing secret is accepted (the reference's clients send none), a wrong one
    // is not.
    let refresh_url = server.url(&format!("/api/v1/refresh/{id}"));
    let r = http
        .post(&refresh_url)
        .header("x-clasp-secret", "wrong")
        .send()
        .await
        .unwrap();
    error(r, 403).await;
    assert_eq!(refresh(&http, &server, id).await.status(), 200);
    let r = http
        .post(&refresh_url)
        .header("x-clasp-secret", secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Unregister: refused without the secret or with a wrong one; the device stays.
    let msg = error(unregister(&http, &server, id).await, 403).await;
    assert!(msg.contains("X-Clasp-Secret"), "{msg}");
    let del = server.url(&format!("/api/v1/unregister/{id}"));
    let r = http
        .delete(&del)
        .header("x-clasp-secret", "wrong")
        .send()
        .await
        .unwrap();
    error(r, 403).await;
    assert_eq!(discover(&http, &server, "").await.len(), 1);
    assert_eq!(unregister_owned(&http, &server, &reg).await.status(), 204);
    assert!(discover(&http, &server, "").await.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn the_owner_secret_requirements_can_be_changed() {
    let http = http();
    // Opted out of the unregister requirement: no secret is accepted, a wrong one is not.
    let server = TestServer::start(RendezvousConfig {
        require_secret: false,
        ..config()
    })
    .await;
    let reg = register(&http, &server, registration("a")).await;
    let id = reg["id"].as_str().unwrap();
    let r = http
        .delete(server.url(&format!("/api/v1/unregister/{id}")))
        .header("x-clasp-secret", "wrong")
        .send()
        .await
        .unwrap();
    error(r, 403).await;
    assert_eq!(unregister(&http, &server, id).await.status(), 204);
    assert!(discover(&http, &server, "").await.is_empty());
    server.stop().await;

    // Required on refresh too.
    let server = TestServer::start(RendezvousConfig {
        require_secret_on_refresh: true,
        ..config()
    })
    .await;
    let reg = register(&http, &server, registration("a")).await;
    let id = reg["id"].as_str().unwrap();
    error(refresh(&http, &server, id).await, 403).await;
    let r = http
        .post(server.url(&format!("/api/v1/refresh/{id}")))
        .header("x-clasp-secret", reg["secret"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    error(unregister(&http, &server, id).await, 403).await;
    assert_eq!(unregister_owned(&http, &server, &reg).await.status(), 204);
    server.stop().await;
}
