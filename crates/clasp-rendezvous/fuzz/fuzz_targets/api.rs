//! Arbitrary JSON bodies, query strings and ids through the rendezvous API's real axum routes
//! (JSON and query extraction, registration validation, discover filtering, refresh and
//! unregister by id), in memory, with a manual clock and small field limits. Invariants:
//!
//! * nothing panics and nothing answers 5xx;
//! * every status is one the endpoint documents, and error bodies are `{"error": "..."}`;
//! * a registration is accepted (201) exactly when the body is a JSON registration within the
//!   field limits and its source has room; a refused one adds no device;
//! * every device discover returns stays within the field limits, matches the tag and feature
//!   asked for, and there are at most `limit` of them.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use clasp_rendezvous::{
    Device, FieldLimits, ManualClock, Registered, Registration, RendezvousConfig,
    RendezvousService, routes,
};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const LIMITS: FieldLimits = FieldLimits {
    name_bytes: 16,
    public_key_bytes: 16,
    endpoints: 2,
    url_bytes: 24,
    list_items: 3,
    item_bytes: 8,
    metadata_entries: 3,
    metadata_bytes: 24,
};
const PER_SOURCE: usize = 4;
const TTL: u64 = 60;

#[derive(Debug, Arbitrary)]
enum Op {
    /// Raw bytes as the registration body.
    RegisterRaw { body: Vec<u8>, json_type: bool },
    /// A structurally valid registration (may break the limits).
    Register {
        name: String,
        public_key: Option<String>,
        features: Vec<String>,
        endpoints: Vec<(String, String)>,
        tags: Vec<String>,
        metadata: Vec<(String, String)>,
    },
    /// `GET /api/v1/discover?<query>`.
    Discover(String),
    /// Discover with structured filters.
    DiscoverBy {
        tag: Option<String>,
        feature: Option<String>,
        limit: Option<u16>,
    },
    /// Refresh an id: a registered one (by index) or arbitrary text.
    Refresh { id: Id, secret: Option<String> },
    /// Unregister an id.
    Unregister { id: Id, secret: Option<String> },
    /// Let time pass (seconds).
    Wait(u16),
}

#[derive(Debug, Arbitrary)]
enum Id {
    Known(u8),
    Text(String),
}

fn within_limits(r: &Registration) -> bool {
    let l = &LIMITS;
    r.name.len() <= l.name_bytes
        && r.public_key
            .as_ref()
            .is_none_or(|k| k.len() <= l.public_key_bytes)
        && r.endpoints.len() <= l.endpoints
        && r.endpoints
            .iter()
            .all(|(t, u)| t.len() <= l.item_bytes && u.len() <= l.url_bytes)
        && [&r.tags, &r.features]
            .iter()
            .all(|list| list.len() <= l.list_items && list.iter().all(|s| s.len() <= l.item_bytes))
        && r.metadata.len() <= l.metadata_entries
        && r.metadata
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
            <= l.metadata_bytes
        && r.metadata.keys().all(|k| k.len() <= l.item_bytes)
}

fn device_within_limits(d: &Device) -> bool {
    within_limits(&Registration {
        name: d.name.clone(),
        public_key: d.public_key.clone(),
        features: d.features.clone(),
        endpoints: d.endpoints.clone(),
        tags: d.tags.clone(),
        metadata: d.metadata.clone(),
    })
}

/// Percent-encodes `s` except for `keep` and unreserved characters (a stray `%` is kept, so
/// malformed escapes get through).
fn encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~%".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes everything but ASCII letters and digits.
fn strict(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let res = app.clone().oneshot(req).await.expect("infallible");
    let status = res.status();
    let body = res
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    assert!(
        !status.is_server_error(),
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    // A path no route matches (e.g. an empty id) gets axum's bare 404/405; every handler's
    // error has a JSON body.
    let route_miss = body.is_empty() && matches!(status.as_u16(), 404 | 405);
    if !status.is_success() && !route_miss {
        let v: serde_json::Value = serde_json::from_slice(&body).expect("error body is JSON");
        assert!(v["error"].is_string(), "error body {v}");
    }
    (status, body)
}

/// What the target knows of the service: accepted registrations and the time (s).
struct Registry {
    /// (id, secret, expiry in s) of accepted registrations.
    known: Vec<(String, String, u64)>,
    now: u64,
}

impl Registry {
    fn live(&self) -> usize {
        self.known.iter().filter(|k| k.2 > self.now).count()
    }
}

async fn discover(
    app: &axum::Router,
    svc: &RendezvousService,
    uri: &str,
    tag: Option<&str>,
    feature: Option<&str>,
    limit: Option<usize>,
) {
    let Ok(req) = Request::get(uri).body(Body::empty()) else {
        return;
    };
    let (status, body) = call(app, req).await;
    assert!(
        matches!(status.as_u16(), 200 | 400),
        "discover answered {status}"
    );
    if status == StatusCode::OK {
        let devices: Vec<Device> = serde_json::from_slice(&body).expect("device list");
        assert!(devices.len() <= svc.len());
        if let Some(l) = limit {
            assert!(devices.len() <= l.min(1000));
        }
        for d in &devices {
            assert!(device_within_limits(d), "device beyond the limits: {d:?}");
            if let Some(t) = tag {
                assert!(d.tags.iter().any(|x| x == t), "tag filter");
            }
            if let Some(f) = feature {
                assert!(d.features.iter().any(|x| x == f), "feature filter");
            }
        }
    }
}

async fn register(
    app: &axum::Router,
    svc: &RendezvousService,
    reg: &mut Registry,
    body: Vec<u8>,
    json_type: bool,
) {
    let before = svc.len();
    let parsed = serde_json::from_slice::<Registration>(&body);
    let mut req = Request::post("/api/v1/register");
    if json_type {
        req = req.header("content-type", "application/json");
    }
    let (status, answer) = call(app, req.body(Body::from(body)).expect("request")).await;
    let code = status.as_u16();
    match (&parsed, json_type) {
        (Ok(r), true) if within_limits(r) => {
            let room = reg.live() < PER_SOURCE;
            assert_eq!(
                code,
                if room { 201 } else { 429 },
                "valid registration answered {status}"
            );
        }
        (Ok(_), true) => assert_eq!(code, 422, "oversized registration answered {status}"),
        (Err(_), true) => assert!(matches!(code, 400 | 422), "bad JSON answered {status}"),
        (_, false) => assert_eq!(code, 415, "no content type answered {status}"),
    }
    if code == 201 {
        let r: Registered = serde_json::from_slice(&answer).expect("Registered");
        let secret = r.secret.expect("a secret");
        assert!(
            svc.len() >= 1 && svc.len() <= before + 1,
            "expired ones may go"
        );
        reg.known.push((r.id, secret, reg.now + TTL));
    } else {
        assert!(svc.len() <= before, "a refused registration added a device");
    }
}

fn id_of(reg: &Registry, id: &Id) -> (String, Option<String>) {
    match id {
        Id::Known(i) if !reg.known.is_empty() => {
            let (id, secret, _) = &reg.known[usize::from(*i) % reg.known.len()];
            (id.clone(), Some(secret.clone()))
        }
        Id::Known(_) => ("none".to_owned(), None),
        Id::Text(t) => (t.clone(), None),
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000_000));
    let config = RendezvousConfig {
        ttl: Duration::from_secs(TTL),
        max_total_devices: 16,
        max_devices_per_source: PER_SOURCE,
        rate_limit: None,
        limits: LIMITS,
        ..RendezvousConfig::default()
    };
    let svc = RendezvousService::open(config, clock.clone(), None).expect("service");
    let app = routes(svc.clone());
    let mut reg = Registry {
        known: Vec::new(),
        now: 0,
    };
    // A runtime per input, so the service's maintenance task goes with it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for op in ops.into_iter().take(32) {
            match op {
                Op::RegisterRaw { body, json_type } => {
                    register(&app, &svc, &mut reg, body, json_type).await
                }
                Op::Register {
                    name,
                    public_key,
                    features,
                    endpoints,
                    tags,
                    metadata,
                } => {
                    let r = Registration {
                        name,
                        public_key,
                        features,
                        endpoints: endpoints.into_iter().collect(),
                        tags,
                        metadata: metadata.into_iter().collect(),
                    };
                    let body = serde_json::to_vec(&r).expect("serialises");
                    register(&app, &svc, &mut reg, body, true).await;
                }
                Op::Discover(q) => {
                    let uri = format!("/api/v1/discover?{}", encode(&q, b"&=+"));
                    discover(&app, &svc, &uri, None, None, None).await;
                }
                Op::DiscoverBy {
                    tag,
                    feature,
                    limit,
                } => {
                    let mut q = Vec::new();
                    if let Some(t) = &tag {
                        q.push(format!("tag={}", strict(t)));
                    }
                    if let Some(f) = &feature {
                        q.push(format!("feature={}", strict(f)));
                    }
                    if let Some(l) = limit {
                        q.push(format!("limit={l}"));
                    }
                    let uri = format!("/api/v1/discover?{}", q.join("&"));
                    let limit = limit.map(usize::from);
                    discover(&app, &svc, &uri, tag.as_deref(), feature.as_deref(), limit).await;
                }
                Op::Refresh { id, secret } => {
                    let (id, known_secret) = id_of(&reg, &id);
                    let uri = format!("/api/v1/refresh/{}", encode(&id, b""));
                    let mut req = Request::post(uri);
                    if let Some(s) = secret.or(known_secret) {
                        req = req.header("x-clasp-secret", s);
                    }
                    let Ok(req) = req.body(Body::empty()) else {
                        continue;
                    };
                    let (status, _) = call(&app, req).await;
                    assert!(
                        matches!(status.as_u16(), 200 | 400 | 403 | 404),
                        "refresh answered {status}"
                    );
                    if status == StatusCode::OK {
                        let now = reg.now;
                        let k = reg
                            .known
                            .iter_mut()
                            .find(|k| k.0 == id)
                            .expect("refreshed a known id");
                        assert!(k.2 > now, "refreshed an expired registration");
                        k.2 = now + TTL;
                    }
                }
                Op::Unregister { id, secret } => {
                    let (id, known_secret) = id_of(&reg, &id);
                    let uri = format!("/api/v1/unregister/{}", encode(&id, b""));
                    let mut req = Request::delete(uri);
                    if let Some(s) = secret.or(known_secret) {
                        req = req.header("x-clasp-secret", s);
                    }
                    let Ok(req) = req.body(Body::empty()) else {
                        continue;
                    };
                    let (status, _) = call(&app, req).await;
                    assert!(
                        matches!(status.as_u16(), 204 | 400 | 403 | 404),
                        "unregister answered {status}"
                    );
                    if status.as_u16() == 204 {
                        reg.known.retain(|k| k.0 != id);
                    }
                }
                Op::Wait(s) => {
                    let s = u64::from(s % 120);
                    clock.advance(Duration::from_secs(s));
                    reg.now += s;
                }
            }
        }
    });
});
