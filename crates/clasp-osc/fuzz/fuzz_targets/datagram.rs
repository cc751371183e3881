//! Arbitrary datagrams through what the OSC listener does before and after decoding: the
//! nesting pre-check, rosc decoding, arguments → value, namespace mapping and bundle time
//! planning. Invariants:
//!
//! * nothing panics, and rosc runs on a small (256 KiB) stack, so unbounded recursion shows;
//! * a datagram that passes `check_shape` decodes (if at all) to at most the allowed bundle and
//!   array nesting;
//! * the value of a message's arguments, when in the representable subset (scalars, and
//!   arrays of two or more scalars; f32-exact floats unless doubles are used), survives
//!   value → args → value, also through rosc encoding and decoding;
//! * a normalised namespace maps an OSC address to CLASP and back unchanged;
//! * a bundle scheduled `At(t)` is in the future, within the horizon and not before its parent;
//!   time tags round-trip through Unix µs.
#![no_main]

use std::time::Duration;

use clasp_osc::map::{
    ArgOptions, ShapeError, args_to_value, check_shape, clasp_to_osc, normalize_namespace,
    osc_to_clasp, to_args, to_json,
};
use clasp_osc::time::{Due, NTP_UNIX_OFFSET, ntp_to_unix_micros, plan, unix_micros_to_ntp};
use clasp_proto::Value;
use libfuzzer_sys::fuzz_target;
use rosc::{OscMessage, OscPacket, OscType};

/// The last µs (in 2104) that `unix_micros_to_ntp` covers.
const MAX_US: u64 = ((1u64 << 32) + (1 << 31) - NTP_UNIX_OFFSET) * 1_000_000 - 1;
/// The NTP era boundary (2036-02-07T06:28:16Z): its tag is all zero, which OSC reads as
/// "immediately".
const ERA_1: u64 = ((1u64 << 32) - NTP_UNIX_OFFSET) * 1_000_000;

fn array_depth(a: &OscType) -> usize {
    match a {
        OscType::Array(x) => 1 + x.content.iter().map(array_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// (bundle nesting, array nesting) of a decoded packet.
fn depths(p: &OscPacket) -> (usize, usize) {
    match p {
        OscPacket::Message(m) => (0, m.args.iter().map(array_depth).max().unwrap_or(0)),
        OscPacket::Bundle(b) => {
            let (mut bd, mut ad) = (0, 0);
            for c in &b.content {
                let (x, y) = depths(c);
                bd = bd.max(x);
                ad = ad.max(y);
            }
            (bd + 1, ad)
        }
    }
}

fn scalar(v: &Value, float64: bool) -> bool {
    match v {
        Value::Float(f) => float64 && !f.is_nan() || f64::from(*f as f32) == *f,
        Value::Array(_) | Value::Map(_) => false,
        _ => true,
    }
}

fn representable(v: &Value, float64: bool) -> bool {
    match v {
        Value::Array(items) => items.len() >= 2 && items.iter().all(|i| scalar(i, float64)),
        v => scalar(v, float64),
    }
}

fn no_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => !s.contains('\0'),
        Value::Array(items) => items.iter().all(no_nul),
        _ => true,
    }
}

struct Ctx<'a> {
    float64: bool,
    namespace: Option<String>,
    raw_namespace: &'a str,
    now: u64,
    ahead: Duration,
}

fn message(ctx: &Ctx, m: &OscMessage) {
    let v = args_to_value(&m.args);
    let _ = to_json(&v).to_string();
    let opts = ArgOptions {
        float64: ctx.float64,
    };
    let args = to_args(&v, opts);
    if representable(&v, ctx.float64) {
        assert_eq!(args_to_value(&args), v, "value → args → value");
        if no_nul(&v) {
            let msg = OscPacket::Message(OscMessage {
                addr: "/x".into(),
                args,
            });
            let bytes = rosc::encoder::encode(&msg).expect("encodes");
            let (rest, back) = rosc::decoder::decode_udp(&bytes).expect("decodes");
            assert!(rest.is_empty());
            let OscPacket::Message(back) = back else {
                panic!("not a message")
            };
            assert_eq!(args_to_value(&back.args), v, "through rosc");
        }
    }
    match &ctx.namespace {
        Some(ns) => {
            assert!(ns.is_empty() || (ns.starts_with('/') && !ns.ends_with('/')));
            if m.addr.starts_with('/') {
                let clasp = osc_to_clasp(ns, &m.addr);
                assert_eq!(clasp_to_osc(ns, &clasp), Some(m.addr.as_str()));
            }
        }
        None => assert!(
            ctx.raw_namespace
                .trim_end_matches('/')
                .contains(['*', '\0', ' ', '\t', '\n', '\r'])
        ),
    }
}

fn walk(ctx: &Ctx, p: &OscPacket, parent: Option<u64>) {
    match p {
        OscPacket::Message(m) => message(ctx, m),
        OscPacket::Bundle(b) => {
            let due = plan(b.timetag, parent, ctx.now, ctx.ahead);
            if let Due::At(t) = due {
                assert!(t > ctx.now, "scheduled in the past");
                assert!(
                    u128::from(t - ctx.now) <= ctx.ahead.as_micros(),
                    "beyond the horizon"
                );
                assert!(parent.is_none_or(|p| t >= p), "before its parent");
            }
            if due != Due::TooFar {
                for c in &b.content {
                    walk(ctx, c, due.parent());
                }
            }
        }
    }
}

/// Namespaces the listener may be configured with, valid and not.
const NAMESPACES: [&str; 8] = ["", "/", "/osc", "osc/", "/a/b", "/bad ns", "/x*", "//"];
/// 2025-01-01T00:00:00Z in µs.
const BASE_NOW: u64 = 1_735_689_600_000_000;

/// Input: bundle and array depth limits (mod 9), flags (bit 0: doubles; bits 1-3: namespace),
/// the schedule horizon (s), 4 bytes of offset from 2025 (ms), 8 bytes of µs for the time-tag
/// round trip, then the datagram.
fn run(raw: Vec<u8>) {
    let Some((head, datagram)) = raw.split_first_chunk::<16>() else {
        return;
    };
    let (mb, ma) = (usize::from(head[0] % 9), usize::from(head[1] % 9));
    let float64 = head[2] & 1 == 1;
    let ns = NAMESPACES[usize::from(head[2] >> 1) % NAMESPACES.len()].to_owned();
    let ahead = u32::from(head[3]) * 60;
    let offset = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let now = BASE_NOW + u64::from(offset) * 1000;
    let us = u64::from_be_bytes(head[8..16].try_into().expect("8 bytes"));
    if us <= MAX_US && us != ERA_1 {
        assert_eq!(
            ntp_to_unix_micros(unix_micros_to_ntp(us)),
            Some(us),
            "{us} µs"
        );
    }
    let shape = check_shape(datagram, mb, ma);
    if let Err(e) = shape {
        match e {
            ShapeError::BundleDepth(n) => assert_eq!(n, mb),
            ShapeError::ArrayDepth(n) => assert_eq!(n, ma),
            ShapeError::Unbalanced | ShapeError::Truncated => {}
        }
        return;
    }
    let Ok((_rest, packet)) = rosc::decoder::decode_udp(datagram) else {
        return;
    };
    let (bd, ad) = depths(&packet);
    assert!(bd <= mb, "bundles nest {bd} deep, limit {mb}");
    assert!(ad <= ma, "arrays nest {ad} deep, limit {ma}");
    let ctx = Ctx {
        float64,
        namespace: normalize_namespace(&ns),
        raw_namespace: &ns,
        now,
        ahead: Duration::from_secs(u64::from(ahead)),
    };
    walk(&ctx, &packet, None);
}

fuzz_target!(|raw: &[u8]| {
    let input = raw.to_vec();
    // A small stack, so that recursion the pre-check should have bounded overflows it.
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || run(input))
        .expect("thread")
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
});
