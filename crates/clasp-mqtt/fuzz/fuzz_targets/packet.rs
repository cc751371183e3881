//! Arbitrary bytes through the MQTT listener's packet framing and decoding (3.1.1 and 5), then
//! the topic/filter and payload mappings on what decodes. Invariants:
//!
//! * nothing panics;
//! * framing only ever splits whole packets off the front of the buffer (the packet is the
//!   buffer's first bytes, the rest stays; no packet exceeds the limit plus its fixed header;
//!   an incomplete packet or an error leaves the buffer untouched, a too-large one is reported
//!   with its announced size above the limit);
//! * any chunking of the stream gives the same packets and the same final outcome;
//! * decoding a packet makes no allocation larger than 64 × its size + 4 KiB (nothing is
//!   allocated from an untrusted length);
//! * topic names that map to an address map back to the same topic; filters give one or two
//!   patterns, and match the addresses of decoded topic names exactly as MQTT matching says
//!   (the `$` rule and shared subscriptions included);
//! * payload → value → payload → value gives the same value (except a top-level JSON string
//!   that reads as a number, bool or null once sent raw, as documented).
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use clasp_mqtt::Topics;
use clasp_mqtt::fuzzing::{self, Decoded, FrameFailure};
use clasp_mqtt::payload::{to_payload, to_value};
use clasp_proto::Value;
use libfuzzer_sys::fuzz_target;

/// Records the largest single allocation since the last reset.
struct Tracking;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

type Outcome = (Vec<Vec<u8>>, Result<(), FrameFailure>);

/// Frames everything in `buf`, checking the whole-packet invariants.
fn frame_all(
    buf: &mut BytesMut,
    max: usize,
    frames: &mut Vec<Vec<u8>>,
) -> Result<(), FrameFailure> {
    loop {
        let before = buf.clone();
        match fuzzing::frame(buf, max) {
            Ok(Some(f)) => {
                assert!(
                    f.len() >= 2 && f.len() <= max + 5,
                    "{} > {max} + 5",
                    f.len()
                );
                assert_eq!(
                    &f[..],
                    &before[..f.len()],
                    "packet is not the buffer's front"
                );
                assert_eq!(&buf[..], &before[f.len()..], "rest of the buffer changed");
                frames.push(f.to_vec());
            }
            Ok(None) => {
                assert_eq!(buf, &before, "incomplete packet consumed bytes");
                return Ok(());
            }
            Err(e) => {
                assert_eq!(buf, &before, "error consumed bytes");
                if let FrameFailure::TooLarge(n) = e {
                    assert!(n > max, "too large: {n} <= {max}");
                }
                return Err(e);
            }
        }
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, a), (kb, b))| ka == kb && same(a, b))
        }
        _ => a == b,
    }
}

/// MQTT 3.1.1 §4.7 matching, written plainly: a filter starting with a wildcard does not match
/// a topic starting with `$`.
fn mqtt_matches(filter: &str, topic: &str) -> bool {
    if filter.starts_with(['+', '#']) && topic.starts_with('$') {
        return false;
    }
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    for (i, level) in f.iter().enumerate() {
        match *level {
            "#" => return true,
            "+" if i < t.len() => {}
            l if t.get(i) == Some(&l) => {}
            _ => return false,
        }
    }
    f.len() == t.len()
}

fn check_payload(payload: &[u8]) {
    let v = to_value(payload);
    let back = to_value(&to_payload(&v));
    if let Value::String(s) = &v
        && !matches!(to_value(s.as_bytes()), Value::String(_))
    {
        return;
    }
    assert!(same(&v, &back), "{v:?} came back as {back:?}");
}

// Input: 2 bytes packet limit (mod 8192), 1 byte flags (bit 0: MQTT 5 unless CONNECT says),
// 1 byte chunk-size seed, then the stream.
fuzz_target!(|raw: &[u8]| {
    let Some((head, data)) = raw.split_first_chunk::<4>() else {
        return;
    };
    let max = usize::from(u16::from_be_bytes([head[0], head[1]]) % 8192);
    let v5_hint = head[2] & 1 == 1;
    let mut seed = u32::from(head[3]);
    let cuts = std::iter::from_fn(move || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        Some(1 + (seed >> 16) as usize % 97)
    });

    // The whole stream at once.
    let mut buf = BytesMut::from(&data[..]);
    let mut frames = Vec::new();
    let end = frame_all(&mut buf, max, &mut frames);
    let whole: Outcome = (frames, end);

    // The same stream in chunks, framing after every read as the listener does.
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut end = Ok(());
    let mut pos = 0;
    let mut cuts = cuts;
    while pos < data.len() {
        let step = cuts.next().unwrap_or(64);
        let next = (pos + step).min(data.len());
        buf.extend_from_slice(&data[pos..next]);
        pos = next;
        end = frame_all(&mut buf, max, &mut frames);
        if end.is_err() {
            break;
        }
    }
    assert_eq!(whole, (frames, end), "chunking changed the packets");

    // Decode as a connection would: the first packet picks the version.
    let mut v5 = v5_hint;
    let mut decoded = Vec::new();
    for (i, f) in whole.0.iter().enumerate() {
        let limit = 64 * f.len() + 4096;
        if i == 0 {
            match fuzzing::connect_level(f) {
                Some(4) => v5 = false,
                Some(5) => v5 = true,
                _ => {}
            }
            LARGEST.store(0, Ordering::Relaxed);
            let will = fuzzing::decode_connect(v5, BytesMut::from(&f[..]));
            let most = LARGEST.load(Ordering::Relaxed);
            assert!(
                most <= limit,
                "CONNECT of {} bytes allocated {most}",
                f.len()
            );
            if let Ok(Some((topic, payload))) = will {
                decoded.push(Decoded::Publish { topic, payload });
            }
        }
        LARGEST.store(0, Ordering::Relaxed);
        let d = fuzzing::decode(v5, BytesMut::from(&f[..]));
        let most = LARGEST.load(Ordering::Relaxed);
        assert!(
            most <= limit,
            "packet of {} bytes allocated {most}",
            f.len()
        );
        if let Ok(d) = d {
            decoded.push(d);
        }
    }

    // Map what decoded.
    for ns in ["", "/mqtt"] {
        let topics = Topics::new(ns).unwrap();
        let mut addresses = Vec::new();
        let mut filters = Vec::new();
        for d in &decoded {
            match d {
                Decoded::Publish { topic, payload } => {
                    check_payload(payload);
                    if let Ok(a) = topics.address(topic) {
                        assert_eq!(topics.topic(&a).as_deref(), Some(topic.as_str()));
                        addresses.push((topic.as_str(), a));
                    }
                }
                Decoded::Subscribe(fs) | Decoded::Unsubscribe(fs) => {
                    for f in fs {
                        if let Ok(c) = topics.filter(f) {
                            assert!((1..=2).contains(&c.patterns.len()));
                            filters.push((f.as_str(), c));
                        }
                    }
                }
                Decoded::Other => {}
            }
        }
        for (f, c) in &filters {
            // A shared subscription matches like the filter after `$share/{group}/`.
            let f: &str = f;
            let f = match &c.share {
                Some(group) => &f[8 + group.len()..],
                None => f,
            };
            for (t, a) in &addresses {
                assert_eq!(
                    c.matches(a),
                    mqtt_matches(f, t),
                    "filter {f:?} vs topic {t:?}"
                );
            }
        }
    }
});
