//! What goes into the engine (an update, its kind and where it came from) and what comes out
//! (the writes to make).

use std::sync::Arc;

use clasp_proto::{SignalType, Value};

/// What kind of update the router delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// A SET of a param (stored state).
    Param,
    /// A PUBLISH: an event (streams and gestures count as events too).
    Event,
}

impl From<SignalType> for UpdateKind {
    fn from(s: SignalType) -> UpdateKind {
        if s == SignalType::Param {
            UpdateKind::Param
        } else {
            UpdateKind::Event
        }
    }
}

/// Where an update came from, as far as the host knows.
///
/// The engine acts on its own writes when it makes them (see the crate documentation), so
/// the router's echo of a write must not be taken for someone else's change. The host says
/// what it knows:
///
/// * through the router's in-process door, an update carries `own` (the session's own SET)
///   and the attachment the host gave the write: pass [`Origin::Own`] with the
///   [`WriteId`] it attached, and [`Origin::Other`] for everything else;
/// * a host that cannot tell passes [`Origin::Unknown`]: the engine matches a param's update
///   with the SETs it made whose echo has not come back (same address and value, within
///   10 s), oldest first (the router never sends a PUBLISH back to its sender, so an event
///   is never taken for an echo);
/// * the params found when subscribing (the SNAPSHOT) are [`Origin::Snapshot`]: recorded,
///   never a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Someone else's write.
    Other,
    /// The echo of the engine's own write `id`.
    Own(WriteId),
    /// Not known: the engine recognises its own echoes by address and value.
    Unknown,
    /// State found when subscribing: remembered for conditions, thresholds and ramps, fires
    /// nothing.
    Snapshot,
}

/// The number of one write the engine asked for; the host may attach it to the write and
/// give it back with [`Origin::Own`] when the router echoes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriteId(pub u64);

/// A write the engine asks the host to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Its number (every SET and PUBLISH of a bundle shares it).
    pub id: WriteId,
    /// The id of the rule that made it.
    pub rule: Arc<str>,
    /// What to write.
    pub write: Write,
}

/// What to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// SET a param.
    Set {
        /// The address.
        address: String,
        /// The value.
        value: Value,
    },
    /// PUBLISH an event.
    Publish {
        /// The address.
        address: String,
        /// The payload.
        value: Value,
    },
    /// SETs and PUBLISHes to apply together, atomically (one CLASP BUNDLE).
    Bundle(Vec<BundleItem>),
}

/// One message of a [`Write::Bundle`].
#[derive(Debug, Clone, PartialEq)]
pub enum BundleItem {
    /// SET a param.
    Set {
        /// The address.
        address: String,
        /// The value.
        value: Value,
    },
    /// PUBLISH an event.
    Publish {
        /// The address.
        address: String,
        /// The payload.
        value: Value,
    },
}

impl BundleItem {
    /// (is a SET, address, value).
    pub fn parts(&self) -> (bool, &str, &Value) {
        match self {
            BundleItem::Set { address, value } => (true, address, value),
            BundleItem::Publish { address, value } => (false, address, value),
        }
    }
}

impl Write {
    /// Every message it holds as (is a SET, address, value): one, or a bundle's.
    pub fn parts(&self) -> Vec<(bool, &str, &Value)> {
        match self {
            Write::Set { address, value } => vec![(true, address, value)],
            Write::Publish { address, value } => vec![(false, address, value)],
            Write::Bundle(items) => items.iter().map(BundleItem::parts).collect(),
        }
    }
}

impl From<BundleItem> for Write {
    fn from(item: BundleItem) -> Write {
        match item {
            BundleItem::Set { address, value } => Write::Set { address, value },
            BundleItem::Publish { address, value } => Write::Publish { address, value },
        }
    }
}
