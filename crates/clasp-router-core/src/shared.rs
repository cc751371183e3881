//! Shared subscriptions: subscriptions in the same group split the updates they match, each
//! update going to one of them only (MQTT 5's `$share/{group}/{filter}`; an adapter makes one
//! with [`Router::subscribe_shared`]). The member is chosen by the fan-out's number, so
//! consecutive updates rotate through the group. Shared subscriptions get no snapshot of the
//! current state worth keeping: MQTT sends no retained messages for them.

use super::*;

impl<H: Clone> Router<H> {
    /// Subscribes adapter session `conn` with `s` as a member of shared group `group` (a
    /// name of the adapter's choosing: subscriptions with the same name and pattern should
    /// share it). Answered like [`Router::submit`].
    pub fn subscribe_shared(
        &mut self,
        conn: ConnId,
        s: Subscribe,
        group: &str,
        now: Now,
    ) -> Result<adapter::Accepted, Refusal> {
        let id = s.id;
        let accepted = self.submit(conn, Message::Subscribe(s), Qos::Confirm, now)?;
        let group: Arc<str> = Arc::from(group);
        if let Some(sess) = self.session_mut(conn)
            && let Some(sub) = sess.subs.get_mut(&id)
        {
            sub.group = Some(group);
            sess.has_groups = true;
        }
        Ok(accepted)
    }

    /// Delivers `o` (its decoded form in `typed`, made once) to one member of each group in
    /// `matched` ((group, connection, subscription), emptied).
    pub(super) fn deliver_shared(
        &mut self,
        matched: &mut Vec<(Arc<str>, ConnId, u32)>,
        fanout: u64,
        o: Outgoing,
        typed: &mut Option<Arc<Message>>,
        origin: Option<ConnId>,
        out_code: u8,
    ) {
        matched.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut i = 0;
        while i < matched.len() {
            let n = matched[i..]
                .iter()
                .take_while(|m| m.0 == matched[i].0)
                .count();
            let pick = i + usize::try_from(fanout % n as u64).unwrap_or(0);
            let (_, conn, sub) = matched[pick].clone();
            self.matched += 1;
            self.deliver_to(conn, sub, &o, typed, origin, out_code);
            i += n;
        }
        matched.clear();
    }

    /// Stages `o` for subscription `sub` of `conn`.
    fn deliver_to(
        &mut self,
        conn: ConnId,
        sub: u32,
        o: &Outgoing,
        typed: &mut Option<Arc<Message>>,
        origin: Option<ConnId>,
        out_code: u8,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        self.metrics.count_out(out_code, o.frame().len());
        if c.staged.is_empty() && c.typed.is_empty() {
            self.dirty.push(conn);
        }
        if !c.adapter {
            c.staged.push(o.clone());
            return;
        }
        let message = match typed {
            Some(m) => m.clone(),
            None => match clasp_proto::decode_frame(o.frame()) {
                Ok(d) => typed.insert(Arc::new(d.message)).clone(),
                Err(_) => return,
            },
        };
        c.typed.push(adapter::Delivery::Update(adapter::Update {
            sub,
            also: Vec::new(),
            message,
            size: o.frame().len(),
            own: origin == Some(conn),
            attached: self.attaching.clone(),
        }));
    }
}
