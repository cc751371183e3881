//! Output of the core: staging frames per connection, replies and ERRORs, and handing
//! batches to the outlets.

use super::*;

impl Router {
    /// Hands every staged frame to its connection's outlet, or, with deferred output, keeps
    /// the batches for [`Router::take_output`].
    pub(super) fn flush(&mut self) {
        for conn in self.dirty.drain(..) {
            if let Some(c) = self.conns.get_mut(&conn) {
                if self.defer_output {
                    let batch = std::mem::take(&mut c.staged);
                    self.output
                        .0
                        .push((c.outlet.clone(), Delivery::Frames(batch)));
                } else if c.staged.len() == 1 {
                    if let Some(out) = c.staged.pop() {
                        c.outlet.send(out);
                    }
                } else {
                    c.outlet.send_batch(&mut c.staged);
                }
            }
        }
    }

    pub(super) fn reject(&mut self, conn: ConnId, reason: CloseReason) {
        self.flush();
        if let Some(c) = self.conns.get(&conn) {
            self.close_outlet(&c.outlet.clone(), reason);
        }
    }

    /// Asks an outlet to close, after the frames already handed to it (or kept for it).
    pub(super) fn close_outlet(&mut self, outlet: &Arc<dyn Outlet>, reason: CloseReason) {
        if self.defer_output {
            self.output
                .0
                .push((outlet.clone(), Delivery::Close(reason)));
        } else {
            outlet.close(reason);
        }
    }

    pub(super) fn send(&mut self, conn: ConnId, out: Outgoing, code: u8) {
        if let Some(c) = self.conns.get_mut(&conn) {
            self.metrics.count_out(code, out.frame().len());
            if c.staged.is_empty() {
                self.dirty.push(conn);
            }
            c.staged.push(out);
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
        self.error(conn, r.code(), r.to_string(), address);
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

/// Frames and close requests for several outlets, in order, taken from the router with
/// [`Router::take_output`].
#[derive(Default)]
pub struct Output(Vec<(Arc<dyn Outlet>, Delivery)>);

pub(super) enum Delivery {
    Frames(Vec<Outgoing>),
    Close(CloseReason),
}

impl Output {
    /// Hands everything to its outlet, in the order it was produced.
    pub fn deliver(self) {
        for (outlet, d) in self.0 {
            match d {
                Delivery::Frames(mut batch) => outlet.send_batch(&mut batch),
                Delivery::Close(reason) => outlet.close(reason),
            }
        }
    }

    /// Like [`Output::deliver`], for a shell with its own writers: when at most `few` outlets
    /// get frames they are handed over with [`Outlet::send_batch_inline`]; otherwise they are
    /// staged ([`Outlet::stage_batch`]) and the outlets still to wake are added to `wake`.
    pub fn deliver_staged(self, few: usize, wake: &mut Vec<Arc<dyn Outlet>>) {
        let inline = self.0.len() <= few;
        for (outlet, d) in self.0 {
            match d {
                Delivery::Frames(mut batch) if inline => outlet.send_batch_inline(&mut batch),
                Delivery::Frames(mut batch) => {
                    if outlet.stage_batch(&mut batch) {
                        wake.push(outlet);
                    }
                }
                Delivery::Close(reason) => outlet.close(reason),
            }
        }
    }
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("outlets", &self.0.len())
            .finish()
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
