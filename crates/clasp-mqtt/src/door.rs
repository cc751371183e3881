//! How an MQTT session reaches the router: the core's typed door
//! (`clasp_router::core::adapter`), behind a trait so the session state machine can be driven
//! by a running server ([`RouterHandle`]) or, in tests, by a bare core with a clock passed by
//! hand.

use clasp_proto::{Message, Qos, Subscribe};
use clasp_router::core::Router;
use clasp_router::core::adapter::{Accepted, Attached};
use clasp_router::core::{ConnId, Now, Refusal};
use clasp_router::server::Link;
use clasp_router::server::RouterHandle;

/// The router as an MQTT session sees it.
pub(crate) trait Door {
    /// Submits `msg` from session `conn` with `attached`, answered in place.
    fn submit(
        &mut self,
        conn: ConnId,
        msg: Message,
        attached: Option<Attached>,
    ) -> Result<Accepted, Refusal>;

    /// Subscribes session `conn` with `s` as a member of shared group `group`.
    fn subscribe_shared(
        &mut self,
        conn: ConnId,
        s: Subscribe,
        group: &str,
    ) -> Result<Accepted, Refusal>;
}

/// The core itself, while the caller holds it (`RouterHandle::with_core`): the packets of
/// one read are handled under one lock, and what they produce is delivered once afterwards.
pub(crate) struct CoreDoor<'a, H = Link> {
    pub(crate) core: &'a mut Router<H>,
    pub(crate) now: Now,
}

impl<H: Clone> Door for CoreDoor<'_, H> {
    fn submit(
        &mut self,
        conn: ConnId,
        msg: Message,
        attached: Option<Attached>,
    ) -> Result<Accepted, Refusal> {
        self.core
            .submit_attached(conn, msg, Qos::Confirm, attached, self.now)
    }

    fn subscribe_shared(
        &mut self,
        conn: ConnId,
        s: Subscribe,
        group: &str,
    ) -> Result<Accepted, Refusal> {
        self.core.subscribe_shared(conn, s, group, self.now)
    }
}

impl Door for RouterHandle {
    fn submit(
        &mut self,
        conn: ConnId,
        msg: Message,
        attached: Option<Attached>,
    ) -> Result<Accepted, Refusal> {
        self.submit_attached(conn, msg, Qos::Confirm, attached)
    }

    fn subscribe_shared(
        &mut self,
        conn: ConnId,
        s: Subscribe,
        group: &str,
    ) -> Result<Accepted, Refusal> {
        RouterHandle::subscribe_shared(self, conn, s, group)
    }
}
