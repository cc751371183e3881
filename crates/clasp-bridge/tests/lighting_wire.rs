//! The lighting codecs against Wireshark's own dissectors (`tshark`): Art-Net and sACN packets
//! as the bridges encode them are read back with no malformed-packet or expert complaint and
//! with the fields set. Prints `SKIPPED` without tshark.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../../clasp-client/tests/support/mod.rs"]
mod support;
mod wire_support;

use clasp_bridge::lighting::sacn::{self, DataHeader};

#[test]
fn sacn_packets_as_wireshark_reads_them() {
    if !wire_support::have_tshark() {
        return;
    }
    let cid = [0x5a; 16];
    let mut packets = Vec::new();
    // The bridges always send whole universes. (Wireshark 4.0's ACN dissector calls any
    // data packet with fewer than 6 slots malformed, whoever built it; E1.31 allows 0–512.)
    let mut first = vec![0u8; 512];
    first[..4].copy_from_slice(&[255, 128, 0, 7]);
    for (universe, seq, options, slots) in [
        (1u16, 0u8, 0u8, first),
        (63999, 255, 0, vec![1; 512]),
        (2, 1, sacn::OPT_TERMINATED, vec![0; 512]),
    ] {
        let mut out = Vec::new();
        sacn::encode_data(
            &DataHeader {
                cid: &cid,
                source_name: "CLASP sACN ü",
                priority: 150,
                sequence: seq,
                options,
                universe,
            },
            &slots,
            &mut out,
        );
        packets.push(out);
    }
    let heuristics = [
        "--enable-heuristic",
        "acn",
        "-o",
        "acn.dmx_enable:TRUE",
        "-o",
        "acn.dmx_display_zeros:TRUE",
    ];
    let complaints = {
        let mut c = wire_support::fields(
            &packets,
            sacn::PORT,
            &heuristics,
            &["_ws.malformed", "_ws.expert.message"],
        );
        c.retain(|r| r.iter().any(|f| !f.is_empty()));
        c
    };
    assert!(complaints.is_empty(), "{complaints:?}");
    let rows = wire_support::fields(
        &packets,
        sacn::PORT,
        &heuristics,
        &[
            "acn.dmx.universe",
            "acn.dmx.seq_number",
            "acn.dmx.priority",
            "acn.dmx.source_name",
            "acn.dmx.start_code2",
            "acn.dmx.count",
            "acn.dmx.option_s",
            "acn.cid",
        ],
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    let cid_text = "5a5a5a5a-5a5a-5a5a-5a5a-5a5a5a5a5a5a";
    assert_eq!(
        rows[0],
        ["1", "0", "150", "CLASP sACN ü", "0", "513", "0", cid_text]
    );
    assert_eq!(&rows[1][..3], ["63999", "255", "150"]);
    assert_eq!(rows[2][6], "1");

    // Synchronization and universe discovery (E1.31-2018's extended packets): Wireshark 4.0's
    // ACN dissector does not take root vector 8 as ACN at all, so all it can say is that it has
    // no complaint; their bytes are checked against the standard's tables in the unit tests.
    let mut sync = Vec::new();
    sacn::encode_sync(&cid, 4, 1, &mut sync);
    let mut disc = Vec::new();
    sacn::encode_discovery(&cid, "CLASP", 0, 0, &[1, 2, 63999], &mut disc);
    let extended = [sync, disc];
    let mut c = wire_support::fields(
        &extended,
        sacn::PORT,
        &heuristics,
        &["_ws.malformed", "_ws.expert.message"],
    );
    c.retain(|r| !r[0].is_empty() || !r[1].is_empty());
    assert!(c.is_empty(), "{c:?}");
}
