//! One MQTT session as a state machine, with no I/O: packets and the router's deliveries in,
//! encoded packets out.
//!
//! The shell (`crate::shell`) reads the socket and hands the bytes to
//! [`Session::process_input`], which frames and decodes each packet and handles it, reaching
//! the router through a [`Door`] (messages submitted and answered in place); it hands what the
//! router delivers to [`Session::on_deliveries`], and writes what [`Session::take_out`] gives.
//! Time is passed in. Concerns live in submodules: [`inbound`] (the client's PUBLISH and its
//! acknowledgements), [`alias`] (MQTT 5 topic aliases from the client), [`subscribe`]
//! (SUBSCRIBE, UNSUBSCRIBE and the MQTT subscriptions behind CLASP subscription ids),
//! [`deliver`] (what the router delivers, as PUBLISH packets), [`queue`] (the in-flight window,
//! the backlog and the offline queue) and [`saved`] (the form kept across a restart).

pub(crate) mod alias;
mod deliver;
mod inbound;
pub(crate) mod meta;
pub(crate) mod queue;
mod saved;
mod subscribe;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_wire;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use bytes::BytesMut;
use clasp_proto::ErrorCode;
use clasp_router::core::ConnId;
use rustc_hash::FxHashMap;

use crate::MqttConfig;
use crate::door::Door;
use crate::packet::{self, DisconnectReason, FrameError, Inbound, Limits, Outbound, Version, Will};
use crate::topic::Topics;
use alias::{Aliases, TOPIC_ALIAS_MAX};
use queue::Pending;
use subscribe::Sub;

/// What every session of a listener shares: settings, the topic mapping, counters.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) config: MqttConfig,
    pub(crate) topics: Topics,
    /// Messages dropped from full offline queues.
    pub(crate) offline_dropped: AtomicU64,
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// DISCONNECT from the client (`true`: v5 asked for its will anyway).
    Disconnect(bool),
    /// EOF or a socket error without DISCONNECT.
    Lost,
    /// The client broke the protocol or the keep-alive.
    Violation,
    /// A newer connection with the same client id.
    TakenOver,
    /// The router closed the session (or the client was too slow).
    Closed,
    /// The listener or the router is shutting down.
    Shutdown,
}

impl End {
    /// Whether the will is published when the connection ends this way.
    pub(crate) fn publish_will(self) -> bool {
        matches!(
            self,
            End::Disconnect(true) | End::Lost | End::Violation | End::TakenOver
        )
    }
}

/// One MQTT session: its subscriptions, the publishes in flight both ways and queued for its
/// client, and the bytes to write to the client.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) version: Version,
    ctx: Arc<Ctx>,
    /// The session's CLASP session (an adapter session of the router).
    pub(crate) conn: ConnId,
    /// MQTT subscriptions by filter.
    subs: HashMap<String, Sub>,
    /// CLASP subscription id → what deliveries need of its MQTT subscription.
    by_id: FxHashMap<u32, subscribe::SubView>,
    next_sub_id: u32,
    /// QoS 1 publishes awaiting PUBACK by packet id, with their send order (resent, DUP, to
    /// a client that resumes the session).
    pub(crate) inflight: HashMap<u16, (u64, Pending)>,
    sent_seq: u64,
    pub(crate) window: usize,
    next_pkid: u16,
    /// Publishes waiting for room in the in-flight window, or for the client's return while
    /// the session is parked.
    pub(crate) backlog: VecDeque<Pending>,
    /// Bytes of topics and payloads in the backlog.
    backlog_bytes: usize,
    /// Packet ids of unacknowledged publishes waiting in the backlog to be sent again.
    reserved: HashSet<u16>,
    /// Parked: no connection; publishes go to the backlog (see [`Session::queue_offline`]).
    pub(crate) offline: bool,
    /// Messages dropped from a full offline queue since the client was last told.
    pub(crate) dropped: u64,
    /// MQTT 5: the session expiry interval the client's DISCONNECT asked for.
    pub(crate) disconnect_expiry: Option<u32>,
    /// MQTT 5: the session expiry interval of the connection's CONNECT (0 when absent): if 0,
    /// a DISCONNECT may not set one (§3.14.2.2.2).
    connect_expiry: u32,
    /// MQTT 5: the topic aliases the client set on this connection.
    aliases: Aliases,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    qos2: HashSet<u16>,
    out: BytesMut,
    /// The largest packet the client accepts.
    pub(crate) client_max: usize,
    pub(crate) will: Option<Will>,
    /// A DISCONNECT reason to send and end with.
    closing: Option<(DisconnectReason, End)>,
    /// The last ERROR the router sent this session (says why, when it closes the session).
    last_error: Option<ErrorCode>,
    /// Retained messages already sent for the SUBSCRIBE packet being answered (its number,
    /// and the addresses): each is sent once per packet, however many of its filters match.
    retained_sent: (u64, HashSet<String>),
    /// Number of the last SUBSCRIBE packet.
    subscribe_seq: u64,
    /// The time of the call being handled (passed in by the shell).
    now: Instant,
}

impl Session {
    /// A new session on CLASP adapter session `conn`, nothing subscribed.
    pub(crate) fn new(
        version: Version,
        ctx: Arc<Ctx>,
        conn: ConnId,
        window: usize,
        client_max: usize,
    ) -> Box<Session> {
        Box::new(Session {
            version,
            ctx,
            conn,
            subs: HashMap::new(),
            by_id: FxHashMap::default(),
            next_sub_id: 1,
            inflight: HashMap::new(),
            sent_seq: 0,
            window,
            next_pkid: 1,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            reserved: HashSet::new(),
            offline: false,
            dropped: 0,
            disconnect_expiry: None,
            connect_expiry: 0,
            aliases: Aliases::default(),
            qos2: HashSet::new(),
            out: BytesMut::new(),
            client_max,
            will: None,
            closing: None,
            last_error: None,
            retained_sent: (0, HashSet::new()),
            subscribe_seq: 0,
            now: Instant::now(),
        })
    }

    /// Starts a network connection of the session (new or resumed) whose CONNECT asked for
    /// session expiry `connect_expiry` (MQTT 5; 0 when absent): no topic aliases yet, and no
    /// session expiry from a DISCONNECT.
    pub(crate) fn start_connection(&mut self, connect_expiry: u32) {
        self.connect_expiry = connect_expiry;
        self.disconnect_expiry = None;
        self.aliases.clear();
    }

    /// Handles every whole packet buffered in `inbuf`. Returns whether a packet was read (the
    /// keep-alive restarts) and `Some` if the connection ends at once (no DISCONNECT sent).
    pub(crate) fn process_input(
        &mut self,
        inbuf: &mut BytesMut,
        door: &mut impl Door,
        now: Instant,
    ) -> (bool, Option<End>) {
        self.now = now;
        let max = self.ctx.config.max_packet_size;
        let mut read = false;
        while self.closing.is_none() {
            match packet::frame(inbuf, max) {
                Ok(Some(f)) => {
                    read = true;
                    let limits = Limits {
                        topic_alias_max: TOPIC_ALIAS_MAX,
                    };
                    match packet::decode_with(self.version, f, limits) {
                        Ok(p) => {
                            if let Some(end) = self.on_packet(p, door) {
                                return (read, Some(end));
                            }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "bad MQTT packet");
                            self.close(e.reason(), End::Violation);
                        }
                    }
                }
                Ok(None) => break,
                Err(FrameError::TooLarge(n)) => {
                    tracing::debug!(bytes = n, limit = max, "MQTT packet too large");
                    self.close(DisconnectReason::PacketTooLarge, End::Violation);
                }
                Err(FrameError::Malformed(e)) => {
                    tracing::debug!(error = %e, "malformed MQTT packet");
                    self.close(DisconnectReason::MalformedPacket, End::Violation);
                }
            }
        }
        (read, None)
    }

    /// Handles one packet; `Some` ends the connection at once (no DISCONNECT sent).
    pub(crate) fn on_packet(&mut self, p: Inbound, door: &mut impl Door) -> Option<End> {
        match p {
            Inbound::Publish(p) => self.on_publish(p, door),
            Inbound::PubAck(pkid) => self.on_puback(pkid),
            Inbound::PubRec { pkid, reason } => self.on_pubrec(pkid, reason),
            Inbound::PubComp(pkid) => self.on_pubcomp(pkid),
            Inbound::PubRel(pkid) => {
                self.qos2.remove(&pkid);
                self.emit(Outbound::PubComp {
                    pkid,
                    reason: packet::PubCompReason::Success,
                });
            }
            Inbound::Subscribe {
                pkid,
                filters,
                subscription_id,
            } => self.on_subscribe(pkid, filters, subscription_id, door),
            Inbound::Unsubscribe { pkid, filters } => self.on_unsubscribe(pkid, filters, door),
            Inbound::PingReq => self.emit(Outbound::PingResp),
            Inbound::Disconnect {
                will,
                session_expiry,
            } => {
                if self.connect_expiry == 0 && session_expiry.is_some_and(|e| e != 0) {
                    // A session expiry after a CONNECT without one (MQTT 5 §3.14.2.2.2): a
                    // protocol error, answered with DISCONNECT 0x82 as Mosquitto does; the
                    // DISCONNECT is not taken, so the will goes out.
                    tracing::debug!("MQTT DISCONNECT sets a session expiry the CONNECT had not");
                    self.close(DisconnectReason::ProtocolError, End::Violation);
                } else {
                    self.disconnect_expiry = session_expiry;
                    return Some(End::Disconnect(will));
                }
            }
            Inbound::SecondConnect => {
                // A protocol error; Mosquitto closes without a DISCONNECT, and so do we.
                tracing::debug!("second MQTT CONNECT on a connection");
                return Some(End::Violation);
            }
            Inbound::Unexpected(what) => {
                tracing::debug!(what, "unexpected MQTT packet from a client");
                self.close(DisconnectReason::ProtocolError, End::Violation);
            }
        }
        None
    }

    /// Ends the connection with DISCONNECT `reason` (MQTT 5) once what is queued is written.
    pub(crate) fn close(&mut self, reason: DisconnectReason, end: End) {
        self.closing.get_or_insert((reason, end));
    }

    /// Takes the close asked for, if any.
    pub(crate) fn take_closing(&mut self) -> Option<(DisconnectReason, End)> {
        self.closing.take()
    }

    /// Forgets a close asked for (the session is parked or resumed).
    pub(crate) fn clear_closing(&mut self) {
        self.closing = None;
    }

    /// Whether a close was asked for, and how the connection then ends.
    pub(crate) fn closing_end(&self) -> Option<End> {
        self.closing.map(|(_, end)| end)
    }

    /// The bytes to write to the client (the buffer is left empty).
    pub(crate) fn take_out(&mut self) -> BytesMut {
        self.out.split()
    }

    /// Forgets what was to be written (the connection is gone).
    pub(crate) fn clear_out(&mut self) {
        self.out.clear();
    }

    /// Encodes `p` for sending (dropped, with a debug line, if over the client's maximum packet
    /// size).
    pub(crate) fn emit(&mut self, p: Outbound) {
        let _ = self.try_emit(p);
    }

    /// Encodes `p` for sending; `false` if it is over the client's maximum packet size and was
    /// not sent.
    fn try_emit(&mut self, p: Outbound) -> bool {
        let sent = packet::encode(self.version, p, &mut self.out, self.client_max);
        if !sent {
            tracing::debug!("MQTT packet over the client's maximum packet size; not sent");
        }
        sent
    }
}
