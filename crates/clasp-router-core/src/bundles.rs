//! BUNDLE: atomic checks, scheduling and execution.

use super::*;

impl<H: Clone> Router<H> {
    pub(super) fn on_bundle(&mut self, conn: ConnId, qos: Qos, bundle: Bundle, now: Now) {
        if let Some(bad) = bundle
            .messages
            .iter()
            .find(|m| !matches!(m, Message::Set(_) | Message::Publish(_)))
        {
            self.refuse(conn, Refusal::BundleMember(bad.name()), None);
            return;
        }
        for m in &bundle.messages {
            let (what, address) = match m {
                Message::Set(s) => ("SET", &s.address),
                Message::Publish(p) => ("PUBLISH", &p.address),
                _ => continue,
            };
            let allowed = match m {
                Message::Publish(p) => self.check_publish(conn, address, claimed_sender(p)).is_ok(),
                _ => self.permits(conn, Action::Write, address),
            };
            if !allowed {
                let r = Refusal::BundleScope {
                    what,
                    address: address.to_string(),
                };
                self.refuse(conn, r, Some(address.clone()));
                return;
            }
        }
        match bundle.timestamp {
            Some(at) if at > now.wall => {
                let ahead = at - now.wall;
                if ahead > self.config.max_schedule_ahead.as_micros() as u64 {
                    let r = Refusal::ScheduledTooFar {
                        ahead_s: ahead / 1_000_000,
                        max_s: self.config.max_schedule_ahead.as_secs(),
                    };
                    self.refuse(conn, r, None);
                    return;
                }
                let max = self.config.max_scheduled_bundles;
                let max_bytes = self.config.max_scheduled_bytes;
                let cost = bundle_cost(&bundle);
                let Some(sess) = self.session_mut(conn) else {
                    return;
                };
                let bytes = sess.held.scheduled_bytes + cost;
                if sess.scheduled >= max || bytes > max_bytes {
                    let r = Refusal::Scheduled {
                        count: sess.scheduled,
                        max,
                        bytes,
                        max_bytes,
                    };
                    self.refuse(conn, r, None);
                    return;
                }
                sess.scheduled += 1;
                sess.held.scheduled_bytes = bytes;
                let id = self.next_bundle;
                self.next_bundle += 1;
                self.bundles.insert(
                    id,
                    ScheduledBundle {
                        conn,
                        cost,
                        qos,
                        bundle,
                    },
                );
                self.timers
                    .push(Reverse((now.mono + ahead, Timer::Bundle(id))));
                self.metrics.bundles_scheduled += 1;
            }
            _ => self.run_bundle(conn, qos, bundle, now),
        }
    }

    /// Executes a bundle atomically: every inner SET is checked first (against the state as the
    /// earlier SETs of the bundle leave it); if one fails nothing is applied and one ERROR names
    /// it. Otherwise the messages are applied in order.
    pub(super) fn run_bundle(&mut self, conn: ConnId, qos: Qos, bundle: Bundle, now: Now) {
        let Some(writer) = self.writer_id(conn) else {
            return;
        };
        if let Err((address, cause)) = self.check_bundle(&writer, &bundle) {
            let r = Refusal::BundleFailed {
                address: address.to_string(),
                cause: Box::new(cause),
            };
            self.refuse(conn, r, Some(address));
            return;
        }
        if self.cluster.on {
            self.cluster_bundle(conn, qos, bundle, now);
            return;
        }
        let mut last_revision = None;
        self.bundle_out = Some(FxHashMap::default());
        for m in bundle.messages {
            match m {
                Message::Set(s) => match self.on_set(conn, Qos::Fire, &SetReq::owned(&s), now) {
                    Ok(revision) => last_revision = revision.or(last_revision),
                    // Unreachable after check_bundle; reported rather than hidden.
                    Err(r) => self.refuse(conn, r, Some(s.address.clone())),
                },
                Message::Publish(p) => self.publish_owned(conn, &p, now),
                _ => {}
            }
        }
        self.send_whole_bundles();
        if qos.wants_ack() {
            let ack = Ack {
                revision: last_revision,
                ..Ack::default()
            };
            self.ack_write(conn, qos, ack, now);
        }
    }

    pub(super) fn check_bundle(
        &self,
        writer: &Arc<str>,
        bundle: &Bundle,
    ) -> Result<(), (Str, Refusal)> {
        // Revisions and locks as they will be after the earlier SETs of this bundle.
        let mut planned: HashMap<&str, (u64, Option<&str>)> = HashMap::new();
        let mut new_addresses = 0usize;
        // The store's growth, with each address's cost as the earlier SETs leave it.
        let mut costs: HashMap<&str, usize> = HashMap::new();
        let mut growth = 0isize;
        for m in &bundle.messages {
            let Message::Set(s) = m else { continue };
            let fail = |r: Refusal| (s.address.clone(), r);
            check_address(&s.address).map_err(fail)?;
            let new_cost = state::param_cost(&s.address, &s.value);
            let old_cost = match costs.get(&*s.address) {
                Some(&c) => c as isize,
                None => self.store.cost_of(&s.address) as isize,
            };
            growth += new_cost as isize - old_cost;
            costs.insert(&s.address, new_cost);
            self.store.fits(growth).map_err(|e| fail(e.into()))?;
            let current = match planned.get(&*s.address) {
                Some(&(rev, lock)) => Some((rev, lock)),
                None => self
                    .store
                    .get(&s.address)
                    .map(|p| (p.revision, p.lock.as_deref())),
            };
            match current {
                None => {
                    new_addresses += 1;
                    if self.store.len() + new_addresses > self.config.max_params {
                        let e = WriteError::AtCapacity {
                            max: self.config.max_params,
                        };
                        return Err(fail(e.into()));
                    }
                    let lock = s.lock.then_some(&**writer);
                    planned.insert(&s.address, (1, lock));
                }
                Some((rev, lock)) => {
                    if let Some(expected) = s.revision
                        && expected != rev
                    {
                        let e = WriteError::RevisionConflict {
                            expected,
                            actual: rev,
                        };
                        return Err(fail(e.into()));
                    }
                    if let Some(holder) = lock
                        && holder != &**writer
                    {
                        let e = WriteError::LockHeld {
                            holder: holder.into(),
                        };
                        return Err(fail(e.into()));
                    }
                    let lock = if s.lock {
                        Some(&**writer)
                    } else if s.unlock {
                        None
                    } else {
                        lock
                    };
                    planned.insert(&s.address, (rev + 1, lock));
                }
            }
        }
        Ok(())
    }
}

/// Bytes a scheduled bundle is counted for: its messages' addresses and values, and a fixed
/// overhead each.
fn bundle_cost(bundle: &Bundle) -> usize {
    bundle
        .messages
        .iter()
        .map(|m| match m {
            Message::Set(s) => 64 + s.address.len() + state::value_cost(&s.value),
            Message::Publish(p) => {
                let payload = match &p.payload {
                    PublishPayload::Value(v) => state::value_cost(v),
                    PublishPayload::Samples(s) => 8 * s.len(),
                    PublishPayload::None => 0,
                };
                64 + p.address.len() + payload
            }
            _ => 64,
        })
        .sum::<usize>()
        + 64
}

impl<H: Clone> Router<H> {
    /// Sends each session that asked for whole bundles what the bundle just applied gave it,
    /// as one BUNDLE (a single update as itself).
    fn send_whole_bundles(&mut self) {
        let Some(whole) = self.bundle_out.take() else {
            return;
        };
        let mut conns: Vec<_> = whole.into_iter().collect();
        conns.sort_unstable_by_key(|(c, _)| *c);
        for (conn, mut outs) in conns {
            if outs.len() == 1 {
                let o = outs.remove(0);
                self.stage(conn, o);
                continue;
            }
            let messages: Vec<Message> = outs
                .iter()
                .filter_map(|o| clasp_proto::decode_frame(o.frame()).ok().map(|d| d.message))
                .collect();
            let bundle = Message::Bundle(Bundle {
                timestamp: None,
                messages,
            });
            match encode(&bundle) {
                Ok(frame) => self.stage(conn, Outgoing::Event(frame)),
                // Too large for one frame: as separate updates, as to everyone else.
                Err(_) => {
                    for o in outs {
                        self.stage(conn, o);
                    }
                }
            }
        }
    }
}
