//! BUNDLE: atomic checks, scheduling and execution.

use super::*;

impl Router {
    pub(super) fn on_bundle(&mut self, conn: ConnId, qos: Qos, bundle: Bundle, now: Now) {
        if let Some(bad) = bundle
            .messages
            .iter()
            .find(|m| !matches!(m, Message::Set(_) | Message::Publish(_)))
        {
            let msg = format!(
                "BUNDLE may contain only SET and PUBLISH, not {}; nothing was applied",
                bad.name()
            );
            self.error(conn, ErrorCode::BundleRejected, msg, None);
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
                let msg = format!(
                    "Bundle rejected: insufficient scope for {what} to {address}; nothing was applied"
                );
                self.error(conn, ErrorCode::BundleRejected, msg, Some(address.clone()));
                return;
            }
        }
        match bundle.timestamp {
            Some(at) if at > now.wall => {
                let ahead = at - now.wall;
                if ahead > self.config.max_schedule_ahead.as_micros() as u64 {
                    let msg = format!(
                        "BUNDLE scheduled {} s ahead; the limit is {} s",
                        ahead / 1_000_000,
                        self.config.max_schedule_ahead.as_secs()
                    );
                    self.error(conn, ErrorCode::BundleRejected, msg, None);
                    return;
                }
                let max = self.config.max_scheduled_bundles;
                let Some(sess) = self.session_mut(conn) else {
                    return;
                };
                if sess.scheduled >= max {
                    let msg = format!("too many scheduled bundles (max {max})");
                    self.error(conn, ErrorCode::RateLimited, msg, None);
                    return;
                }
                sess.scheduled += 1;
                let id = self.next_bundle;
                self.next_bundle += 1;
                self.bundles
                    .insert(id, ScheduledBundle { conn, qos, bundle });
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
        if let Err((address, code, text)) = self.check_bundle(&writer, &bundle) {
            let msg = format!("BUNDLE rejected, nothing was applied: SET {address}: {text}");
            self.error(conn, code, msg, Some(address));
            return;
        }
        let mut last_revision = None;
        for m in bundle.messages {
            match m {
                Message::Set(s) => match self.on_set(conn, Qos::Fire, &SetReq::owned(&s), now) {
                    Ok(revision) => last_revision = Some(revision),
                    // Unreachable after check_bundle; reported rather than hidden.
                    Err((code, text)) => self.error(conn, code, text, Some(s.address.clone())),
                },
                Message::Publish(p) => self.publish_owned(conn, &p, now),
                _ => {}
            }
        }
        if qos.wants_ack() {
            let ack = Ack {
                revision: last_revision,
                ..Ack::default()
            };
            self.reply(conn, &Message::Ack(ack));
        }
    }

    pub(super) fn check_bundle(
        &self,
        writer: &Arc<str>,
        bundle: &Bundle,
    ) -> Result<(), (Str, ErrorCode, String)> {
        // Revisions and locks as they will be after the earlier SETs of this bundle.
        let mut planned: HashMap<&str, (u64, Option<&str>)> = HashMap::new();
        let mut new_addresses = 0usize;
        for m in &bundle.messages {
            let Message::Set(s) = m else { continue };
            let fail = |code, text: String| (s.address.clone(), code, text);
            check_address(&s.address).map_err(|(c, t)| fail(c, t))?;
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
                        let (c, t) = write_error(e);
                        return Err(fail(c, t));
                    }
                    let lock = s.lock.then_some(&**writer);
                    planned.insert(&s.address, (1, lock));
                }
                Some((rev, lock)) => {
                    if let Some(expected) = s.revision
                        && expected != rev
                    {
                        let (c, t) = write_error(WriteError::RevisionConflict {
                            expected,
                            actual: rev,
                        });
                        return Err(fail(c, t));
                    }
                    if let Some(holder) = lock
                        && holder != &**writer
                    {
                        let (c, t) = write_error(WriteError::LockHeld {
                            holder: holder.into(),
                        });
                        return Err(fail(c, t));
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
