//! The streaming frame reader on arbitrary bytes split at arbitrary points.
//! Invariants: no panic; the buffer never holds more than one frame plus the last chunk; every
//! byte is either returned in a frame, reported as skipped or discarded, or still buffered.
#![no_main]

use clasp_proto::FrameReader;
use clasp_proto::frame::MAX_FRAME;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, Vec<u8>, Vec<u8>)| {
    let (limit, cuts, data) = input;
    let mut reader = FrameReader::with_max_payload(limit as usize);
    let mut pos = 0;
    let mut cuts = cuts.into_iter();
    while pos < data.len() {
        let step = (cuts.next().unwrap_or(255) as usize).max(1);
        let end = (pos + step).min(data.len());
        reader.push(&data[pos..end]);
        pos = end;
        while let Some(item) = reader.next_frame() {
            if let Ok(frame) = item {
                assert!(frame.payload.len() <= limit as usize);
                let _ = frame.decode();
            }
        }
        assert!(reader.buffered() <= MAX_FRAME + 256);
    }
});
