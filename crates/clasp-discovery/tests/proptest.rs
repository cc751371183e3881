//! Property tests of the network-facing parsers: broadcast datagrams and router records.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use clasp_discovery::{
    BroadcastResponder, Device, RouterInfo, Source, features_from_letters, features_to_letters,
    record_from_announce,
};
use clasp_proto::{Features, Hello, Message, Str, decode_frame, encode};
use proptest::prelude::*;

fn responder() -> &'static BroadcastResponder {
    static R: OnceLock<BroadcastResponder> = OnceLock::new();
    R.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let info = RouterInfo::new("P", Features::ROUTER, 7000).with_id("prop-id");
        // The socket is never polled; `answer` is pure.
        rt.block_on(BroadcastResponder::bind(
            "127.0.0.1:0".parse().unwrap(),
            info,
        ))
        .unwrap()
    })
}

fn hello_frame(name: &str) -> Vec<u8> {
    encode(&Message::Hello(Hello {
        version: 1,
        features: Features(0xE0),
        name: Str::from(name),
        token: None,
    }))
    .unwrap()
    .to_vec()
}

proptest! {
    #[test]
    fn arbitrary_datagrams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let answered = responder().answer(&data).is_some();
        let is_hello = matches!(decode_frame(&data).map(|f| f.message), Ok(Message::Hello(_)));
        prop_assert_eq!(answered, is_hello);
    }

    #[test]
    fn mutated_hellos_never_panic(
        name in "\\PC{0,40}",
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let mut f = hello_frame(&name);
        for (i, b) in flips {
            let n = f.len();
            f[i % n] ^= b;
        }
        let cut = cut % (f.len() + 1);
        if let Some([w, a]) = responder().answer(&f[..cut]) {
            let Message::Welcome(w) = decode_frame(&w).unwrap().message else {
                panic!("not a welcome")
            };
            prop_assert_eq!(&*w.session, "prop-id");
            let Message::Announce(a) = decode_frame(&a).unwrap().message else {
                panic!("not an announce")
            };
            let rec = record_from_announce(&a).unwrap();
            prop_assert_eq!(rec.get("ws").map(String::as_str), Some("7000"));
        }
    }

    #[test]
    fn records_survive_the_announce_path(
        name in "\\PC{0,300}",
        port in 1u16..,
        bits in any::<u8>(),
        extras in proptest::collection::btree_map("[a-z]{1,8}", "\\PC{0,40}", 0..5),
    ) {
        let mut info = RouterInfo::new(name, Features(bits & 0xF8), port).with_id("x1");
        for (k, v) in extras {
            info = info.with_extra(k, v);
        }
        let Ok(record) = info.record() else {
            // Only extras shadowing standard keys are refused here.
            prop_assert!(info.extras.keys().any(|k| ["version", "id", "name", "features", "ws"].contains(&k.as_str())));
            return Ok(());
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let r = rt.block_on(BroadcastResponder::bind("127.0.0.1:0".parse().unwrap(), info.clone())).unwrap();
        let [_, a] = r.answer(&hello_frame("s")).unwrap();
        let Message::Announce(a) = decode_frame(&a).unwrap().message else { panic!() };
        let got = record_from_announce(&a).unwrap();
        let want: BTreeMap<String, String> = record.into_iter().collect();
        prop_assert_eq!(&got, &want);
        let d = Device::from_record(got, ["10.0.0.1".parse::<IpAddr>().unwrap()], "f", "f", Source::Broadcast);
        prop_assert_eq!(d.ws_port, port);
        prop_assert_eq!(d.features, Features(bits & 0xF8));
        prop_assert_eq!(d.id, "x1");
    }

    #[test]
    fn arbitrary_txt_never_panics(
        txt in proptest::collection::btree_map("\\PC{0,10}", "\\PC{0,20}", 0..10),
        v6 in any::<u128>(),
    ) {
        let addr = IpAddr::from(std::net::Ipv6Addr::from(v6));
        let d = Device::from_record(txt, [addr], "fb", "fb", Source::Mdns);
        prop_assert!(d.ws_url.starts_with("ws://[") || d.ws_url.starts_with("wss://["));
        prop_assert!(d.ws_port != 0);
    }

    #[test]
    fn feature_letters_round_trip(bits in any::<u8>()) {
        let f = Features(bits & 0xF8);
        prop_assert_eq!(features_from_letters(&features_to_letters(f)), f);
    }
}
