//! The handshake (HELLO, WELCOME, the connect snapshot) and keeping sessions within what
//! their tokens allow.

use super::*;

impl<H: Clone> Router<H> {
    /// Keeps `conn`'s session within what its token allows now: ends it (ERROR, then close)
    /// when the token was revoked, removed or has expired, or when the session was admitted
    /// without a token and tokens are now required; applies a CPSK token's edited scopes and
    /// expiry, dropping the subscriptions and releasing the locks they no longer allow.
    pub(super) fn revalidate_one(&mut self, conn: ConnId, now: Now) {
        let Some(sess) = self.session(conn) else {
            return;
        };
        let verdict = match &sess.grant {
            None if self.auth.required() => Err(AuthError::NowRequired),
            None => return,
            Some(g) => match self.auth.still_valid(g, now.wall) {
                Err(e) => Err(e),
                Ok(()) => Ok(self.auth.refreshed(g)),
            },
        };
        match verdict {
            Err(e) => {
                self.metrics.sessions_revoked += 1;
                self.refuse(conn, Refusal::SessionEnds(e), None);
                self.reject(conn, CloseReason::Shutdown);
            }
            Ok(Some(grant)) => self.regrant(conn, grant, now),
            Ok(None) => {}
        }
    }

    /// Gives `conn`'s session its token's new grant: subscriptions outside the new read scopes
    /// are removed and locks outside the new write scopes released, each subscription with an
    /// ERROR 301 naming its pattern.
    fn regrant(&mut self, conn: ConnId, grant: Grant, now: Now) {
        if let Some(at) = grant.expires_at {
            let due = now.mono.saturating_add(at.saturating_sub(now.wall));
            self.timers.push(Reverse((due, Timer::Grant(conn))));
        }
        let Some(sess) = self.conns.get_mut(&conn).and_then(|c| c.session.as_mut()) else {
            return;
        };
        let scopes = grant.scopes.clone();
        sess.grant = Some(grant);
        let mut dropped = Vec::new();
        for &id in sess.subs.keys() {
            if let Some(p) = self.index.get((conn, id))
                && !scopes.allows_pattern(Action::Read, p)
            {
                dropped.push((id, Str::from(p.as_str())));
            }
        }
        for (id, _) in &dropped {
            if let Some(sub) = sess.subs.remove(id) {
                sess.held.release_sub(&sub);
            }
        }
        let (keep, lost): (Vec<_>, Vec<_>) = std::mem::take(&mut sess.locks)
            .into_iter()
            .partition(|a| scopes.allows(Action::Write, a));
        sess.locks = keep;
        let id = sess.id.clone();
        for (sub, _) in &dropped {
            self.index_remove((conn, *sub));
        }
        self.store.release_locks(&id, &lost);
        self.cluster_release_locks(&id, &lost);
        for (_, pattern) in dropped {
            self.refuse(conn, Refusal::ScopeNarrowed, Some(pattern));
        }
    }

    /// Brings every session in line with the tokens as they are now (see
    /// [`Router::revalidate_one`]): call it after changing the authenticator. Also runs on
    /// every sweep (every 10 s), and a session is checked again when its token expires.
    pub fn revalidate(&mut self, now: Now) {
        let sessions: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.session.is_some())
            .map(|(id, _)| *id)
            .collect();
        for conn in sessions {
            self.revalidate_one(conn, now);
        }
        self.flush();
    }

    pub(super) fn on_hello(&mut self, conn: ConnId, hello: HelloInfo<'_>, now: Now) {
        let token = hello.token;
        let grant = if self.auth.required() {
            match self.auth.authenticate(token, now.wall) {
                Ok(g) => Some(g),
                Err(e) => {
                    self.metrics.auth_failures += 1;
                    self.refuse(conn, e.into(), None);
                    self.reject(conn, CloseReason::Handshake);
                    return;
                }
            }
        } else {
            None
        };
        if self.sessions.len() >= self.config.max_sessions {
            let r = Refusal::Full {
                sessions: self.sessions.len(),
            };
            self.refuse(conn, r, None);
            self.reject(conn, CloseReason::Full);
            return;
        }
        if let Some(at) = grant.as_ref().and_then(|g| g.expires_at) {
            let due = now.mono.saturating_add(at.saturating_sub(now.wall));
            self.timers.push(Reverse((due, Timer::Grant(conn))));
        }
        let id: Arc<str> = Arc::from((self.ids)());
        self.sessions.insert(id.clone(), conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(Session {
                id: id.clone(),
                name: Arc::from(session::clip_name(hello.name)),
                features: hello.features,
                since: now.wall,
                subs: FxHashMap::default(),
                locks: Vec::new(),
                scheduled: 0,
                held: Held::default(),
                served: 0,
                has_groups: false,
                grant,
                bucket: Bucket::full(self.config.rate_limit, now.mono),
            });
        }
        if self.conns.get(&conn).is_some_and(|c| c.adapter) {
            // Adapter sessions are opened in place (see [`Router::open_adapter`]).
            return;
        }
        let welcome = Welcome {
            version: 1,
            features: Features::ROUTER,
            time: now.wall,
            session: id.to_string().into(),
            name: self.config.name.clone().into(),
            token: None,
        };
        self.reply(conn, &Message::Welcome(welcome));
        let frames = match self.session(conn) {
            Some(s) if s.grant.is_some() => self.snapshot_frames(|a| s.may(Action::Read, a), true),
            _ => self.snapshot_frames(|_| true, true),
        };
        self.send_snapshot(conn, frames, true);
    }
}
