//! Entry points for the fuzz targets in `crates/clasp-router/fuzz`, wrapping private readers
//! unchanged. Exists for the fuzzer only: not a supported API.

use bytes::Bytes;
use clasp_proto::ErrorCode;

use super::stream::Framing;
use super::tcp::LengthPrefixed;

/// The raw TCP listener's u32 length-prefix reader.
#[derive(Debug, Default)]
pub struct TcpReader(LengthPrefixed);

impl TcpReader {
    /// A reader with nothing buffered.
    pub fn new() -> TcpReader {
        TcpReader::default()
    }

    /// Appends bytes read from the socket.
    pub fn push(&mut self, data: &[u8]) {
        self.0.push(data);
    }

    /// The next message, `None` if more bytes are needed, or the error code the listener
    /// answers with (the reader has already resynchronised).
    pub fn next_frame(&mut self) -> Option<Result<Bytes, ErrorCode>> {
        self.0.next_frame().map(|r| r.map_err(|e| e.code))
    }

    /// Bytes held and not yet returned.
    pub fn buffered(&self) -> usize {
        self.0.buffered()
    }
}
