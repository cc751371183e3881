//! Output of the core: staging frames per connection, replies and ERRORs, and queueing the
//! batches for the shell to pull.

use super::*;

impl<H: Clone> Router<H> {
    /// Queues every staged frame as one [`Transmit::Frames`] batch per connection.
    pub(super) fn flush(&mut self) {
        let mut overflow = Vec::new();
        for conn in self.dirty.drain(..) {
            if let Some(c) = self.conns.get_mut(&conn) {
                if c.staged.is_empty() && c.typed.is_empty() {
                    // What was staged went into a history's hold as it was released.
                    continue;
                }
                let transmit = if c.adapter {
                    Transmit::Deliver(std::mem::take(&mut c.typed))
                } else {
                    Transmit::Frames(std::mem::take(&mut c.staged))
                };
                // A connection waiting for a history keeps everything until it comes.
                let transmit = if self.journal.held(conn) {
                    match self.journal.hold(conn, transmit) {
                        Ok(full) => {
                            if full {
                                overflow.push(conn);
                            }
                            continue;
                        }
                        Err(t) => t,
                    }
                } else {
                    transmit
                };
                self.output.push_back(Output {
                    conn,
                    to: c.handle.clone(),
                    transmit,
                });
            }
        }
        for conn in overflow {
            let r =
                Refusal::HistoryLate(format!("over {} MiB of updates waited for the history", 16));
            self.release_hold(conn, Some(r));
        }
    }

    pub(super) fn reject(&mut self, conn: ConnId, reason: CloseReason) {
        self.flush();
        self.close_conn(conn, reason);
    }

    /// Asks for `conn` to be closed, after the frames already queued for it.
    pub(super) fn close_conn(&mut self, conn: ConnId, reason: CloseReason) {
        if self.journal.held(conn) {
            self.release_hold(conn, None);
        }
        if let Some(c) = self.conns.get(&conn) {
            self.output.push_back(Output {
                conn,
                to: c.handle.clone(),
                transmit: Transmit::Close(reason),
            });
        }
    }

    /// The next thing to do for a connection, in the order the core produced them.
    pub fn poll_transmit(&mut self) -> Option<Output<H>> {
        self.output.pop_front()
    }

    /// Everything [`Router::poll_transmit`] would give, at once: a shell holding the router
    /// under a lock takes it and delivers after releasing the lock.
    pub fn take_output(&mut self) -> std::collections::VecDeque<Output<H>> {
        std::mem::take(&mut self.output)
    }

    pub(super) fn send(&mut self, conn: ConnId, out: Outgoing, code: u8) {
        if self.conns.contains_key(&conn) {
            self.metrics.count_out(code, out.frame().len());
            self.stage(conn, out);
        }
    }

    /// Stages a frame (already counted) for `conn`; an adapter session gets it decoded.
    pub(super) fn stage(&mut self, conn: ConnId, out: Outgoing) {
        if let Some(c) = self.conns.get_mut(&conn) {
            if c.staged.is_empty() && c.typed.is_empty() {
                self.dirty.push(conn);
            }
            if c.adapter {
                // Replies to adapters are rare (a SUBSCRIBE's SNAPSHOT, a late ACK): decoded
                // here, from the frame built for everyone else.
                if let Ok(d) = clasp_proto::decode_frame(out.frame()) {
                    c.typed.push(adapter::Delivery::Reply(Box::new(d.message)));
                }
            } else {
                c.staged.push(out);
            }
        }
    }

    /// Queues an update that subscription `sub` of `conn` let through later (its `maxRate`).
    pub(super) fn send_update(&mut self, conn: ConnId, sub: u32, out: Outgoing, code: u8) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.adapter {
            self.send(conn, out, code);
            return;
        }
        self.metrics.count_out(code, out.frame().len());
        if let Ok(d) = clasp_proto::decode_frame(out.frame()) {
            if c.staged.is_empty() && c.typed.is_empty() {
                self.dirty.push(conn);
            }
            c.typed.push(adapter::Delivery::Update(adapter::Update {
                sub,
                also: Vec::new(),
                message: Arc::new(d.message),
                size: out.frame().len(),
                own: false,
                attached: None,
            }));
        }
    }

    /// Queues SNAPSHOT frames: the connect snapshot ([`Outgoing::Snapshot`], never refused
    /// for its size) or a later one (a reply like any other).
    pub(super) fn send_snapshot(&mut self, conn: ConnId, frames: Vec<Bytes>, connect: bool) {
        for f in frames {
            let out = if connect {
                Outgoing::Snapshot(f)
            } else {
                Outgoing::Control(f)
            };
            self.send(conn, out, clasp_proto::message::code::SNAPSHOT);
        }
    }

    pub(super) fn reply(&mut self, conn: ConnId, msg: &Message) {
        match encode(msg) {
            Ok(frame) => self.send(conn, Outgoing::Control(frame), msg.code()),
            // Replies are built from bounded data; report rather than drop silently.
            Err(e) => self.refuse(conn, Refusal::Reply(e), None),
        }
    }

    /// Answers `conn` with the ERROR for `r` (naming `address`), counted in `/metrics` by its
    /// kind.
    pub(super) fn refuse(&mut self, conn: ConnId, r: Refusal, address: Option<Str>) {
        if let Some(kind) = r.kind() {
            self.metrics.refuse(kind);
        }
        let mut r = Some(r);
        if self.capture_refusal(conn, &mut r) {
            // Answered in place to an adapter: still an error answer, counted as one.
            self.metrics.errors_sent += 1;
            return;
        }
        if let Some(r) = r {
            self.error(conn, r.code(), r.to_string(), address);
        }
    }

    pub(super) fn error(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        message: String,
        address: Option<Str>,
    ) {
        self.metrics.errors_sent += 1;
        let msg = Message::Error(ErrorMessage {
            code,
            message: clip(message).into(),
            address: address.map(|a| clip_str(&a)),
            correlation_id: None,
        });
        if let Ok(frame) = encode(&msg) {
            self.send(
                conn,
                Outgoing::Control(frame),
                clasp_proto::message::code::ERROR,
            );
        }
    }

    pub(super) fn decode_error(&mut self, conn: ConnId, e: &DecodeError) {
        self.refuse(conn, Refusal::Decode(e.clone()), None);
    }
}

/// Error texts and addresses are clipped so an ERROR always fits a frame.
pub(super) fn clip_str(s: &Str) -> Str {
    if s.len() <= 1024 {
        s.clone()
    } else {
        clip(s.to_string()).into()
    }
}

pub(super) fn clip(s: String) -> String {
    const MAX: usize = 1024;
    if s.len() <= MAX {
        return s;
    }
    let mut cut = MAX;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}
