#![allow(clippy::unwrap_used)]
//! Property tests over real HTTP: arbitrary bodies and queries never cause a 5xx, never add a
//! device unless answered 201, and never take the server down.

mod support;

use proptest::prelude::*;
use support::{TestServer, config, http};

fn json_ish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        // Near-valid registrations with random field values.
        (
            any::<String>(),
            proptest::collection::btree_map(any::<String>(), any::<String>(), 0..4),
            proptest::collection::vec(any::<String>(), 0..4),
            any::<Option<bool>>()
        )
            .prop_map(|(name, endpoints, tags, extra)| {
                let mut v = serde_json::json!({"name": name, "endpoints": endpoints, "tags": tags});
                if let Some(b) = extra {
                    v["metadata"] = if b {
                        serde_json::json!({"k": 1})
                    } else {
                        serde_json::json!(null)
                    };
                }
                serde_json::to_vec(&v).unwrap()
            }),
    ]
}

#[test]
fn arbitrary_requests_never_5xx() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(TestServer::start(config()));
    let http = http();
    proptest!(ProptestConfig::with_cases(96), |(body in json_ish(), query in any::<String>(), path_id in "[^/?#]{0,40}")| {
        let before = server.service.len();
        let status = rt.block_on(async {
            http.post(server.url("/api/v1/register"))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap()
                .status()
        });
        prop_assert!(
            matches!(status.as_u16(), 201 | 400 | 413 | 415 | 422),
            "register answered {} to {:?}", status, String::from_utf8_lossy(&body)
        );
        let (discover, refresh) = rt.block_on(async {
            let mut url = reqwest::Url::parse(&server.url("/api/v1/discover")).unwrap();
            url.set_query(Some(&query));
            let d = http.get(url).send().await.unwrap().status();
            let mut url = reqwest::Url::parse(&server.url("/api/v1/refresh/")).unwrap();
            url.path_segments_mut().unwrap().pop().push(&path_id);
            let r = http.post(url).send().await.unwrap().status();
            (d, r)
        });
        prop_assert!(matches!(discover.as_u16(), 200 | 400), "discover {} for {:?}", discover, query);
        prop_assert!(matches!(refresh.as_u16(), 404), "refresh {} for {:?}", refresh, path_id);
        prop_assert_eq!(server.service.len(), before + usize::from(status == 201));
    });
    rt.block_on(server.stop());
}
