//! Arbitrary frames from the router through every parser P2P applies to other peers' signals
//! (CLASP decode, signal envelope, announce, ICE candidate JSON and line, SDP): no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    clasp_client::p2p::fuzzing::signal_frame(data);
});
