//! The handshake (HELLO, WELCOME, the connect snapshot) and keeping sessions within what
//! their tokens allow.

use super::*;

impl Router {
    /// Ends `conn`'s session if its token is no longer valid at `now`.
    pub(super) fn revalidate_one(&mut self, conn: ConnId, now: Now) {
        let invalid = self
            .session(conn)
            .and_then(|s| s.grant.as_ref())
            .and_then(|g| self.auth.still_valid(g, now.wall).err());
        if let Some(e) = invalid {
            self.metrics.sessions_revoked += 1;
            let msg = format!("{e}; the session ends");
            self.error(conn, e.code(), msg, None);
            self.reject(conn, CloseReason::Shutdown);
        }
    }

    /// Ends (ERROR, then close) every session whose token is no longer valid at `now`:
    /// revoked, removed or expired. Also runs on every sweep (every 10 s), and a session is
    /// checked again when its token expires.
    pub fn revalidate(&mut self, now: Now) {
        let with_grant: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.session.as_ref().is_some_and(|s| s.grant.is_some()))
            .map(|(id, _)| *id)
            .collect();
        for conn in with_grant {
            self.revalidate_one(conn, now);
        }
        self.flush();
    }

    pub(super) fn on_hello(&mut self, conn: ConnId, token: Option<&str>, now: Now) {
        let grant = if self.auth.enabled() {
            match self.auth.authenticate(token, now.wall) {
                Ok(g) => Some(g),
                Err(e) => {
                    self.metrics.auth_failures += 1;
                    self.error(conn, e.code(), e.to_string(), None);
                    self.reject(conn, CloseReason::Handshake);
                    return;
                }
            }
        } else {
            None
        };
        if self.sessions.len() >= self.config.max_sessions {
            let msg = format!(
                "router is full: {} sessions (the maximum); try again later",
                self.sessions.len()
            );
            self.error(conn, ErrorCode::Overloaded, msg, None);
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
                subs: FxHashMap::default(),
                locks: Vec::new(),
                scheduled: 0,
                served: 0,
                grant,
                bucket: Bucket::full(self.config.rate_limit, now.mono),
            });
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
        if self.conns.get(&conn).is_some_and(|c| !c.connect_snapshot) {
            return;
        }
        let frames = match self.session(conn) {
            Some(s) if s.grant.is_some() => self.snapshot_frames(|a| s.may(Action::Read, a), true),
            _ => self.snapshot_frames(|_| true, true),
        };
        self.send_frames(conn, frames);
    }
}
