//! Writes: SET validation, application, broadcast and ACK.

use clasp_proto::codec::binary::{SNAPSHOT_HEADER_LEN, snapshot_entry_len};

use super::*;

impl<H: Clone> Router<H> {
    /// Validates and applies a SET, broadcasts it and ACKs it; returns the new revision (`None`
    /// on a clustered router, where it comes later), or the refusal for the caller to report.
    pub(super) fn on_set(
        &mut self,
        conn: ConnId,
        qos: Qos,
        req: &SetReq<'_>,
        now: Now,
    ) -> Result<Option<u64>, Refusal> {
        if self.cluster.on {
            return self.cluster_set(conn, qos, req, now);
        }
        let writer = self.writer_id(conn).ok_or(Refusal::NoSession)?;
        let set = &req.set;
        if !self.permits(conn, Action::Write, set.address) {
            return Err(Refusal::Scope(Operation::Write));
        }
        let (frame, written) = self.apply_set(&writer, set, now)?;
        if set.lock
            && let Some(sess) = self.session_mut(conn)
        {
            sess.locks.push(written.key.clone());
        }
        let numeric = set.value.as_f64();
        // Adapter sessions get the SET as a message built from the write itself (the same
        // one the frame decodes to), not by decoding the frame.
        self.fan_out_typed(
            &written.key,
            SignalType::Param,
            Sender::Included(conn),
            numeric,
            now,
            || Outgoing::Param(frame.clone()),
            || {
                Some(Message::Set(clasp_proto::Set {
                    address: Str::from(&*written.key),
                    value: set.value.clone(),
                    revision: Some(written.revision),
                    lock: set.lock,
                    unlock: set.unlock,
                    ttl: None,
                }))
            },
        );
        if qos.wants_ack() {
            let locked = written.holder.is_some();
            let holder = written.holder.as_deref().map(Str::from);
            let ack = Ack {
                address: Some(req.address_str()),
                revision: Some(written.revision),
                locked: (set.lock || set.unlock || locked).then_some(locked),
                holder,
                correlation_id: None,
            };
            self.ack_write(conn, qos, ack, now);
        }
        Ok(Some(written.revision))
    }

    /// Checks a SET, encodes its broadcast and applies it. Returns the broadcast frame and what
    /// the store did.
    pub(super) fn apply_set(
        &mut self,
        writer: &Arc<str>,
        set: &SetRef<'_>,
        now: Now,
    ) -> Result<(Bytes, state::Written), Refusal> {
        check_address(set.address)?;
        // The router's default TTL counts from the last write (v4's "absolute" bit).
        let ttl = set.ttl.or(self.config.param_ttl.map(|d| {
            u32::try_from(d.as_secs()).map_or(0x7FFF_FFFF, |s| s.min(0x7FFF_FFFF)) | 0x8000_0000
        }));
        let write = Write {
            value: set.value,
            expected: set.revision,
            lock: set.lock,
            unlock: set.unlock,
            ttl,
        };
        let next_revision = self.store.check(set.address, writer, &write)?;
        let broadcast = SetRef {
            revision: Some(next_revision),
            ttl: None,
            ..*set
        };
        let frame = encode_set(&broadcast, FrameOptions::default())?;
        self.check_snapshot_fit(set.address, set.value, writer)?;
        let written = self.store.write(set.address, writer, &write, now.wall)?;
        if let Some(a) = &self.attaching {
            self.store.attach(&written.key, a.clone());
        }
        Ok((frame, written))
    }
}

impl<H: Clone> Router<H> {
    /// The param must also fit in a SNAPSHOT (which adds the writer and a timestamp), or a
    /// late joiner could never receive it.
    pub(super) fn check_snapshot_fit(
        &self,
        address: &str,
        value: &clasp_proto::Value,
        writer: &Arc<str>,
    ) -> Result<(), Refusal> {
        let snapshot_len = snapshot_entry_len(address, value, Some(writer), true)
            .map_or(usize::MAX, |n| n + SNAPSHOT_HEADER_LEN);
        if snapshot_len > self.config.max_payload {
            return Err(Refusal::TooLargeToStore {
                len: snapshot_len,
                max: self.config.max_payload,
            });
        }
        Ok(())
    }
}

pub(super) fn check_address(address: &str) -> Result<(), Refusal> {
    clasp_proto::address::validate_address(address)?;
    if address.contains('*') {
        return Err(Refusal::Wildcard(address.to_owned()));
    }
    Ok(())
}

pub(super) fn param_value(address: &str, p: &state::Param) -> ParamValue {
    ParamValue {
        address: address.to_owned().into(),
        value: p.value.clone(),
        revision: p.revision,
        writer: Some(p.writer.to_string().into()),
        timestamp: Some(p.timestamp),
    }
}
