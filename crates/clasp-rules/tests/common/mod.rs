//! Helpers shared by the integration tests: an engine from TOML text, updates and polls at
//! times given in milliseconds, and outputs flattened to (kind, address, value).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::time::Duration;

use clasp_proto::Value;
use clasp_rules::{Engine, Format, Origin, Output, RulesFile, UpdateKind, Write};

/// 2024-05-01 00:00:00 UTC (a Wednesday), in µs since the Unix epoch.
pub const WALL_2024_05_01: u64 = 1_714_521_600_000_000;

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn engine(toml_text: &str) -> Engine {
    match RulesFile::parse(toml_text, Format::Toml) {
        Ok(set) => Engine::new(set),
        Err(e) => panic!("{e}"),
    }
}

/// A SET from someone else at `t` ms.
pub fn set(e: &mut Engine, address: &str, v: impl Into<Value>, t: u64) {
    e.on_update(address, &v.into(), UpdateKind::Param, Origin::Other, ms(t));
}

/// An event from someone else at `t` ms.
pub fn publish(e: &mut Engine, address: &str, v: impl Into<Value>, t: u64) {
    e.on_update(address, &v.into(), UpdateKind::Event, Origin::Other, ms(t));
}

/// A poll at `t` ms (wall clock: 2024-05-01 00:00 UTC plus `t`).
pub fn poll(e: &mut Engine, t: u64) -> Vec<Output> {
    e.poll(ms(t), WALL_2024_05_01 + t * 1000)
}

/// What a write is, flattened: ("set" | "publish", address, value) for each message.
pub fn flat(outs: &[Output]) -> Vec<(&'static str, String, Value)> {
    let mut v = Vec::new();
    for o in outs {
        for (param, address, value) in o.write.parts() {
            v.push((
                if param { "set" } else { "publish" },
                address.to_owned(),
                value.clone(),
            ));
        }
    }
    v
}

/// The SETs, as (address, value).
pub fn sets(outs: &[Output]) -> Vec<(String, Value)> {
    flat(outs)
        .into_iter()
        .filter(|(k, _, _)| *k == "set")
        .map(|(_, a, v)| (a, v))
        .collect()
}

/// Whether the output is a bundle.
pub fn is_bundle(o: &Output) -> bool {
    matches!(o.write, Write::Bundle(_))
}

pub fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}
