//! What the core asks of connections, pulled by the shell.
//!
//! The core never blocks and never touches a socket: each call queues, per connection, the
//! frames it produced (one [`Transmit::Frames`] batch per connection per call, in order) and
//! the closes it asks for. The shell takes them with [`Router::poll_transmit`] or, all at once
//! (to deliver them after releasing a lock), [`Router::take_output`]. Each frame is tagged
//! with its kind so the shell can apply the back-pressure policy of that kind when the peer
//! reads slowly:
//!
//! * [`Outgoing::Param`]: state (a SET frame). May be coalesced to the latest frame per address
//!   (intermediate values are skipped, the final state is never lost).
//! * [`Outgoing::Stream`]: samples. The oldest may be dropped (and counted).
//! * [`Outgoing::Event`] and [`Outgoing::Control`]: never dropped silently. Past a hard limit the
//!   transport sends an ERROR and disconnects, and the client resynchronises on reconnect.
//! * [`Outgoing::Snapshot`]: the connect snapshot, sent once per connection; it counts toward
//!   the queue's size but is never refused for it (it is bounded by the param store).
//!
//! [`Router::poll_transmit`]: crate::Router::poll_transmit
//! [`Router::take_output`]: crate::Router::take_output

use bytes::Bytes;

use crate::ConnId;

/// One frame for a connection, with its back-pressure class.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// Replies and session traffic: WELCOME, SNAPSHOT, ACK, ERROR, PONG, SYNC, RESULT.
    Control(Bytes),
    /// A forwarded event, gesture, timeline or P2P signal.
    Event(Bytes),
    /// A forwarded stream sample.
    Stream(Bytes),
    /// A param update: an encoded SET frame. Its address is the coalescing key
    /// ([`clasp_proto::codec::set_address`]).
    Param(Bytes),
    /// A frame of the state snapshot that follows WELCOME.
    Snapshot(Bytes),
}

impl Outgoing {
    /// The encoded frame.
    pub fn frame(&self) -> &Bytes {
        match self {
            Outgoing::Control(b)
            | Outgoing::Event(b)
            | Outgoing::Stream(b)
            | Outgoing::Param(b)
            | Outgoing::Snapshot(b) => b,
        }
    }
}

/// Why the core asks a transport to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The handshake failed (an ERROR was sent first).
    Handshake,
    /// The router is full (an ERROR was sent first).
    Full,
    /// The router is shutting down.
    Shutdown,
}

/// What the core asks of one connection.
#[derive(Debug, Clone)]
pub enum Transmit {
    /// Send these frames, in order, after what was asked before.
    Frames(Vec<Outgoing>),
    /// For an adapter session (see [`crate::adapter`]): these deliveries, in order.
    Deliver(Vec<crate::adapter::Delivery>),
    /// Close once what was asked before has been sent.
    Close(CloseReason),
}

/// One item of the core's output: what to do for connection `conn`, whose shell handle (given
/// to [`Router::open`](crate::Router::open)) is `to`.
#[derive(Debug, Clone)]
pub struct Output<H> {
    /// The connection.
    pub conn: ConnId,
    /// The shell's handle of the connection (its queue, say).
    pub to: H,
    /// What to do.
    pub transmit: Transmit,
}

/// Something the shell should act on that concerns no single connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// QoS Commit writes wait for the disk: persist the dirty params now and then call
    /// [`Router::persisted`](crate::Router::persisted), instead of at the next periodic flush.
    CommitsWaiting,
}
