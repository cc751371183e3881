//! Codec benchmarks: our codec and the reference codec (clasp-core 3.3.0) on the same messages,
//! in the same run. `cargo bench -p clasp-codec-bench`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use clasp_codec_bench as b;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn bench_message(
    c: &mut Criterion,
    name: &str,
    ours: clasp_proto::Message,
    reference: reference::Message,
) {
    let ours_frame = clasp_proto::encode(&ours).unwrap();
    let ref_frame = reference::codec::encode(&reference).unwrap();
    // Both codecs must agree on the content before their speed is compared.
    // (The reference keeps maps in a HashMap, so its entry order varies from run to run.)
    assert_eq!(
        sorted_maps(clasp_proto::decode_frame(&ref_frame).unwrap().message),
        sorted_maps(ours.clone()),
        "{name}: the reference frame decodes to a different message"
    );

    let mut g = c.benchmark_group(format!("encode/{name}"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("clasp-rs", |bch| {
        bch.iter(|| clasp_proto::encode(black_box(&ours)).unwrap())
    });
    g.bench_function("reference", |bch| {
        bch.iter(|| reference::codec::encode(black_box(&reference)).unwrap())
    });
    let mut buf = Vec::with_capacity(ours_frame.len());
    g.bench_function("clasp-rs-reused-buffer", |bch| {
        bch.iter(|| {
            buf.clear();
            clasp_proto::encode_into(black_box(&ours), Default::default(), &mut buf).unwrap();
        })
    });
    g.finish();

    let mut g = c.benchmark_group(format!("decode/{name}"));
    g.throughput(Throughput::Elements(1));
    g.bench_function("clasp-rs", |bch| {
        bch.iter(|| clasp_proto::decode_frame_bytes(black_box(&ours_frame)).unwrap())
    });
    g.bench_function("reference", |bch| {
        bch.iter(|| reference::codec::decode(black_box(&ref_frame)).unwrap())
    });
    // The zero-copy view the router decodes with; every field of the message is read, so lazily
    // read arrays, maps and snapshot params are paid for in full.
    g.bench_function("clasp-rs-view", |bch| {
        bch.iter(|| {
            let f = clasp_proto::decode_frame_view(black_box(&ours_frame)).unwrap();
            b::visit_view(black_box(&f.message))
        })
    });
    g.finish();
}

/// `msg` with the entries of a PUBLISH's map payload sorted by key.
fn sorted_maps(mut msg: clasp_proto::Message) -> clasp_proto::Message {
    if let clasp_proto::Message::Publish(p) = &mut msg
        && let clasp_proto::PublishPayload::Value(clasp_proto::Value::Map(m)) = &mut p.payload
    {
        m.sort_by(|a, b| a.0.cmp(&b.0));
    }
    msg
}

fn codec(c: &mut Criterion) {
    bench_message(c, "set_f64", b::set_ours(), b::set_reference());
    bench_message(
        c,
        "publish_event_map3",
        b::event_ours(),
        b::event_reference(),
    );
    bench_message(
        c,
        "snapshot_100",
        b::snapshot_ours(),
        b::snapshot_reference(),
    );
}

/// Why `clasp-proto` checks short strings with `is_ascii` before the standard validator
/// (`src/utf8.rs`): the two on the string lengths of the benchmark messages, at an odd offset as
/// in a frame.
fn utf8(c: &mut Criterion) {
    let buf = b"x/test/benchmark/value550e8400-e29b-41d4-a716-446655440000/lights/zone3/fixture7/b";
    let mut g = c.benchmark_group("utf8");
    for (name, range) in [("5B", 1..6), ("21B", 1..22), ("36B", 22..58)] {
        let s = &buf[range];
        g.bench_function(format!("std_from_utf8/{name}"), |b| {
            b.iter(|| std::str::from_utf8(black_box(s)).is_ok())
        });
        g.bench_function(format!("is_ascii/{name}"), |b| {
            b.iter(|| black_box(s).is_ascii())
        });
    }
    g.finish();
}

criterion_group!(benches, codec, utf8);
criterion_main!(benches);
