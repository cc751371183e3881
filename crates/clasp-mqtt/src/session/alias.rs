//! MQTT 5 topic aliases from client to server (§3.3.2.3.4): a PUBLISH with a topic name and a
//! topic alias sets the alias, one with an empty topic name and an alias stands for the topic
//! the alias was last set to. The table belongs to the network connection: a resumed session
//! starts with none.

use std::collections::HashMap;

use super::{End, Session};
use crate::packet::{DisconnectReason, Publish};

/// The topic alias maximum announced in CONNACK, as Mosquitto's default (aliases above it are
/// refused by the decoder, so the table holds at most this many topics).
pub(crate) const TOPIC_ALIAS_MAX: u16 = 10;

/// Topic aliases set by the client on this connection: alias → topic name.
#[derive(Debug, Default)]
pub(crate) struct Aliases(HashMap<u16, String>);

impl Aliases {
    /// Forgets every alias (a new connection).
    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }
}

impl Session {
    /// Resolves `p`'s topic alias: sets it (topic and alias) or replaces the empty topic by
    /// the alias's (alias only). `None` if the alias was never set on this connection: a
    /// protocol error, closed with DISCONNECT 0x82 as Mosquitto does.
    pub(super) fn resolve_alias(&mut self, mut p: Publish) -> Option<Publish> {
        let Some(alias) = p.topic_alias else {
            return Some(p);
        };
        if p.topic.is_empty() {
            match self.aliases.0.get(&alias) {
                Some(topic) => p.topic.clone_from(topic),
                None => {
                    tracing::debug!(alias, "MQTT publish with a topic alias never set");
                    self.close(DisconnectReason::ProtocolError, End::Violation);
                    return None;
                }
            }
        } else {
            self.aliases.0.insert(alias, p.topic.clone());
        }
        Some(p)
    }
}
