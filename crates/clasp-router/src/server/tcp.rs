//! CLASP over raw TCP: each message is a 4-byte big-endian length followed by one CLASP frame
//! (client-and-transports.md §3.6).
//!
//! A length over [`MAX_TCP_MESSAGE`] is answered with ERROR 413 and its bytes are skipped as
//! they arrive (never buffered), so the stream stays in sync; an empty message gets ERROR 100.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use clasp_proto::{ErrorCode, ErrorMessage, Message, encode};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Shared;
use super::listen::{IpTable, accept_tcp};
use super::stream::{self, Framing, FramingError, StreamEnd};
use crate::core::CloseReason;

/// The largest message a length prefix may announce: the largest legal CLASP frame (a 12-byte
/// header with a timestamp and a 65,535-byte payload).
pub const MAX_TCP_MESSAGE: usize = clasp_proto::frame::MAX_FRAME;
/// Bytes of the length prefix.
const PREFIX: usize = 4;

/// Splits a TCP byte stream into length-prefixed messages, skipping oversize ones without
/// buffering them.
#[derive(Debug, Default)]
pub(crate) struct LengthPrefixed {
    buf: BytesMut,
    /// Bytes of an oversize message still to be skipped as they arrive.
    discard: usize,
}

impl LengthPrefixed {
    /// Bytes held and not yet returned (at most one message plus one read).
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }
}

impl Framing for LengthPrefixed {
    fn push(&mut self, mut data: &[u8]) {
        if self.discard > 0 {
            let n = self.discard.min(data.len());
            self.discard -= n;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
    }

    fn next_frame(&mut self) -> Option<Result<Bytes, FramingError>> {
        if self.discard > 0 || self.buf.len() < PREFIX {
            return None;
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_TCP_MESSAGE {
            self.buf.advance(PREFIX);
            let here = len.min(self.buf.len());
            self.buf.advance(here);
            self.discard = len - here;
            return Some(Err(FramingError {
                code: ErrorCode::TooLarge,
                message: format!(
                    "message of {len} bytes exceeds the limit of {MAX_TCP_MESSAGE} bytes (one CLASP frame); skipped"
                ),
            }));
        }
        if len == 0 {
            self.buf.advance(PREFIX);
            return Some(Err(FramingError {
                code: ErrorCode::InvalidFrame,
                message: "empty message (length prefix 0)".into(),
            }));
        }
        if self.buf.len() < PREFIX + len {
            self.buf.reserve(PREFIX + len - self.buf.len());
            return None;
        }
        self.buf.advance(PREFIX);
        Some(Ok(self.buf.split_to(len).freeze()))
    }

    fn encode(frame: &[u8], out: &mut BytesMut) {
        // Frames the router emits are at most MAX_FRAME bytes, so the length fits.
        out.reserve(PREFIX + frame.len());
        out.put_u32(frame.len() as u32);
        out.extend_from_slice(frame);
    }
}

impl StreamEnd for OwnedWriteHalf {
    async fn end(mut self, _reason: CloseReason) {
        // The core has sent an ERROR first when the reason is worth telling.
        let _ = self.shutdown().await;
    }
}

/// Accepts TCP connections until `stop` is cancelled.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tracker: TaskTracker,
    table: Arc<IpTable>,
    stop: CancellationToken,
) {
    let per_ip = shared.config.max_connections_per_ip;
    loop {
        let (tcp, peer) = tokio::select! {
            c = accept_tcp(&listener, "tcp") => c,
            () = stop.cancelled() => return,
        };
        let accepted = std::time::Instant::now();
        let Some(slot) = table.admit(peer, per_ip, &shared.refused_per_ip, "tcp") else {
            tokio::spawn(refuse(tcp, per_ip));
            continue;
        };
        let shared = shared.clone();
        tracker.spawn(async move {
            let _slot = slot;
            serve(shared, tcp, peer, accepted).await;
        });
    }
}

async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, accepted: Instant) {
    let (reader, writer) = tcp.into_split();
    stream::serve(
        shared,
        reader,
        writer,
        LengthPrefixed::default(),
        peer,
        "tcp",
        accepted,
    )
    .await;
}

/// Answers a connection over the per-IP limit with ERROR 429, then closes it.
async fn refuse(mut tcp: TcpStream, max: usize) {
    let msg = Message::Error(ErrorMessage {
        code: ErrorCode::RateLimited,
        message: format!("too many connections from this address (the limit is {max})").into(),
        address: None,
        correlation_id: None,
    });
    if let Ok(frame) = encode(&msg) {
        let mut out = BytesMut::new();
        LengthPrefixed::encode(&frame, &mut out);
        let _ = tokio::time::timeout(Duration::from_secs(2), tcp.write_all(&out)).await;
    }
    let _ = tcp.shutdown().await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wire(messages: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            out.extend_from_slice(&(m.len() as u32).to_be_bytes());
            out.extend_from_slice(m);
        }
        out
    }

    /// Everything the reader yields for `data` fed in pieces cut at `cuts`.
    fn read_all(data: &[u8], cuts: &[usize]) -> (Vec<Result<Bytes, ErrorCode>>, usize) {
        let mut r = LengthPrefixed::default();
        let mut out = Vec::new();
        let mut most = 0;
        let mut at = 0;
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
        points.sort_unstable();
        points.push(data.len());
        for p in points {
            r.push(&data[at..p.max(at)]);
            at = p.max(at);
            while let Some(item) = r.next_frame() {
                out.push(item.map_err(|e| e.code));
            }
            most = most.max(r.buffered());
        }
        (out, most)
    }

    #[test]
    fn oversize_is_skipped_without_buffering_and_the_next_message_is_read() {
        let big = vec![7u8; MAX_TCP_MESSAGE + 1000];
        let data = wire(&[b"abc".to_vec(), big, b"def".to_vec()]);
        let (out, most) = read_all(&data, &[10, 1000, 40_000, 70_000]);
        assert_eq!(
            out,
            vec![
                Ok(Bytes::from_static(b"abc")),
                Err(ErrorCode::TooLarge),
                Ok(Bytes::from_static(b"def"))
            ]
        );
        assert!(most < 70_000, "buffered {most} bytes");
    }

    #[test]
    fn empty_message_is_an_error_and_stays_in_sync() {
        let data = wire(&[vec![], b"x".to_vec()]);
        let (out, _) = read_all(&data, &[]);
        assert_eq!(
            out,
            vec![Err(ErrorCode::InvalidFrame), Ok(Bytes::from_static(b"x"))]
        );
    }

    #[test]
    fn huge_prefix_does_not_allocate() {
        let mut r = LengthPrefixed::default();
        r.push(&u32::MAX.to_be_bytes());
        assert!(matches!(r.next_frame(), Some(Err(_))));
        assert!(r.buf.capacity() < 1 << 20);
        assert_eq!(r.discard, u32::MAX as usize);
    }

    proptest! {
        /// Any chunking of the same bytes yields the same messages and errors, in order.
        #[test]
        fn chunking_does_not_change_the_messages(
            messages in proptest::collection::vec(
                prop_oneof![
                    8 => proptest::collection::vec(any::<u8>(), 0..300),
                    1 => (MAX_TCP_MESSAGE + 1..MAX_TCP_MESSAGE + 3000).prop_map(|n| vec![0x53; n]),
                ],
                0..12,
            ),
            cuts in proptest::collection::vec(any::<usize>(), 0..40),
        ) {
            let data = wire(&messages);
            let (whole, _) = read_all(&data, &[]);
            let (chunked, most) = read_all(&data, &cuts);
            prop_assert_eq!(&whole, &chunked);
            let expected: Vec<Result<Bytes, ErrorCode>> = messages
                .iter()
                .map(|m| match m.len() {
                    0 => Err(ErrorCode::InvalidFrame),
                    n if n > MAX_TCP_MESSAGE => Err(ErrorCode::TooLarge),
                    _ => Ok(Bytes::from(m.clone())),
                })
                .collect();
            prop_assert_eq!(whole, expected);
            // After draining, at most one incomplete message is held.
            prop_assert!(most < PREFIX + MAX_TCP_MESSAGE);
        }

        /// Arbitrary bytes never panic, and the buffer stays bounded.
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000),
                                cuts in proptest::collection::vec(any::<usize>(), 0..20)) {
            let (_, most) = read_all(&data, &cuts);
            prop_assert!(most <= data.len());
        }
    }
}
