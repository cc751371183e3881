//! A handle on a running server's router, for in-process adapters: listeners that speak other
//! protocols (MQTT, OSC), and later bridges, a cluster link and rules.
//!
//! An adapter opens one session per foreign client through the typed door (see
//! [`crate::core::adapter`]): [`RouterHandle::open_adapter`] with the client's token (so
//! authentication, scopes and limits apply exactly as for a native client), then
//! [`RouterHandle::submit`]s messages, each answered in place, and drains the session's
//! [`Inbox`] for what the router delivers:
//!
//! ```no_run
//! # async fn demo(handle: clasp_router::server::RouterHandle) {
//! use clasp_proto::{Message, Qos, Subscribe};
//! use clasp_router::core::adapter::Delivery;
//! let inbox = handle.inbox();
//! let Ok(conn) = handle.open_adapter(&inbox, None) else { return };
//! let sub = Subscribe { id: 1, pattern: "/lights/**".into(), ..Default::default() };
//! if let Err(refusal) = handle.submit(conn, Message::Subscribe(sub), Qos::Confirm) {
//!     eprintln!("refused: {refusal}");
//! }
//! let mut got = Vec::new();
//! loop {
//!     inbox.ready().await;
//!     let close = inbox.drain(&mut got);
//!     for d in got.drain(..) {
//!         if let Delivery::Update(u) = d { /* translate u.message for subscription u.sub */ let _ = u; }
//!     }
//!     if close.is_some() { break; }
//! }
//! handle.close(conn);
//! # }
//! ```

use std::sync::Arc;

use super::Link;
use super::Shared;
use super::inbox::Inbox;
use crate::core::Refusal;
use crate::core::adapter::Accepted;
use crate::core::{ConnId, Now};
use clasp_proto::{Message, Qos};

/// A cheap, cloneable handle on a server's router core.
#[derive(Clone)]
pub struct RouterHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for RouterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterHandle")
            .field("name", &self.shared.config.router.name)
            .finish_non_exhaustive()
    }
}

impl RouterHandle {
    /// A new delivery queue for an adapter session, with the server's limits and counters.
    pub fn inbox(&self) -> Inbox {
        Inbox::new(self.shared.config.outbox, self.shared.counters.clone())
    }

    /// Opens an adapter session whose deliveries go to `inbox` (the typed door: see
    /// [`crate::core::adapter`]). `token` is checked as a HELLO's would be; the refusal says
    /// why a session cannot open (a bad token, the router full).
    pub fn open_adapter(&self, inbox: &Inbox, token: Option<&str>) -> Result<ConnId, Refusal> {
        self.open_adapter_named(inbox, token, "adapter")
    }

    /// Like [`RouterHandle::open_adapter`], the session named `name` in session lists (the
    /// console's): an MQTT client id, an OSC peer. [`Inbox::set_peer`] adds what it speaks.
    pub fn open_adapter_named(
        &self,
        inbox: &Inbox,
        token: Option<&str>,
        name: &str,
    ) -> Result<ConnId, Refusal> {
        let link = Link::Adapter(inbox.clone());
        self.shared
            .with_core(|core, now| core.open_adapter_named(link, token, name, now))
    }

    /// Submits `msg` from adapter session `conn` as if it came with `qos`, and answers in
    /// place; what it produces for other sessions is delivered when this returns.
    pub fn submit(&self, conn: ConnId, msg: Message, qos: Qos) -> Result<Accepted, Refusal> {
        self.shared
            .with_core(|core, now| core.submit(conn, msg, qos, now))
    }

    /// Reads the params `pattern` matches that adapter session `conn` may read (see
    /// [`crate::core::Router::read`]).
    pub fn read(
        &self,
        conn: ConnId,
        pattern: &str,
    ) -> Result<Vec<clasp_proto::ParamValue>, Refusal> {
        self.shared
            .with_core(|core, now| core.read(conn, pattern, now))
    }

    /// Like [`RouterHandle::submit`], with `attached` carried to the adapter sessions the
    /// update reaches and kept with the param a SET writes (see
    /// [`crate::core::adapter::Attachment`]).
    pub fn submit_attached(
        &self,
        conn: ConnId,
        msg: Message,
        qos: Qos,
        attached: Option<crate::core::adapter::Attached>,
    ) -> Result<Accepted, Refusal> {
        self.shared
            .with_core(|core, now| core.submit_attached(conn, msg, qos, attached, now))
    }

    /// Subscribes adapter session `conn` with `s` as a member of shared group `group`: each
    /// update the group's subscriptions match goes to one of them only.
    pub fn subscribe_shared(
        &self,
        conn: ConnId,
        s: clasp_proto::Subscribe,
        group: &str,
    ) -> Result<Accepted, Refusal> {
        self.shared
            .with_core(|core, now| core.subscribe_shared(conn, s, group, now))
    }

    /// Submits several messages in order under one lock, answering each.
    pub fn submit_all(
        &self,
        conn: ConnId,
        msgs: impl IntoIterator<Item = Message>,
        qos: Qos,
    ) -> Vec<Result<Accepted, Refusal>> {
        self.shared.with_core(|core, now| {
            msgs.into_iter()
                .map(|m| core.submit(conn, m, qos, now))
                .collect()
        })
    }

    /// Forgets `conn`: its subscriptions, locks and gestures go with it.
    pub fn close(&self, conn: ConnId) {
        self.shared.with_core(|core, now| core.close(conn, now));
    }

    /// The session id of `conn`, once its HELLO was accepted.
    pub fn session_id(&self, conn: ConnId) -> Option<String> {
        self.shared.core.lock().session_id(conn).map(str::to_owned)
    }

    /// Runs `f` on the core with the current time; output is delivered afterwards.
    pub fn with_core<T>(&self, f: impl FnOnce(&mut super::Core, Now) -> T) -> T {
        self.shared.with_core(f)
    }

    /// The router's name (as sent in WELCOME).
    pub fn name(&self) -> &str {
        &self.shared.config.router.name
    }

    /// Whether `token` is valid now and allows `action` on `address`, without using it up (a
    /// JWT can still open a session afterwards). For services beside the router that accept
    /// its tokens, such as the rendezvous API. Always `true` in open mode.
    pub fn token_allows(
        &self,
        token: Option<&str>,
        action: crate::core::auth::Action,
        address: &str,
    ) -> bool {
        let wall = self.shared.now().wall;
        let core = self.shared.core.lock();
        let auth = core.auth();
        if !auth.required() {
            return true;
        }
        let Some(token) = token else {
            return false;
        };
        auth.check(token, wall)
            .is_ok_and(|g| g.scopes.allows(action, address))
    }

    /// Whether HELLO must carry a valid token.
    pub fn auth_enabled(&self) -> bool {
        self.shared.core.lock().auth().required()
    }
}
