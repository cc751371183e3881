//! The param store: values with revisions, writers, locks and expiry.
//!
//! Write rules (protocol.md §7, with the reference's lock bypass fixed):
//!
//! * the first write of an address creates it at revision 1 (an expected revision on a creating
//!   write is not checked, as in the reference);
//! * every accepted write adds 1 to the revision;
//! * an expected revision that differs from the current one is a [`WriteError::RevisionConflict`];
//! * a param locked by another session cannot be written at all, whatever the flags
//!   ([`WriteError::LockHeld`]); the holder releases it with the unlock flag or by leaving;
//! * the lock flag makes the writer the holder.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use clasp_proto::Value;

/// One stored param.
#[derive(Debug, Clone)]
pub struct Param {
    /// Current value.
    pub value: Value,
    /// Current revision (1 after the first write).
    pub revision: u64,
    /// Session id of the last writer.
    pub writer: Arc<str>,
    /// Router wall-clock time of the last write (µs since the Unix epoch).
    pub timestamp: u64,
    /// Session id of the lock holder, if locked.
    pub lock: Option<Arc<str>>,
    /// Wall-clock expiry (µs), if the param has a TTL.
    pub expires_at: Option<u64>,
    /// A sliding TTL (seconds): each GET moves the expiry to this long after it.
    pub sliding: Option<u32>,
    /// What the adapter that wrote it attached (see [`crate::adapter::Attachment`]); any
    /// later write clears it.
    pub attached: Option<crate::adapter::Attached>,
}

/// Bytes `p` at `address` is counted for: its value and what is attached to it.
fn cost(address: &str, p: &Param) -> usize {
    param_cost(address, &p.value) + p.attached.as_ref().map_or(0, |a| a.size())
}

/// A write request, as carried by SET.
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    /// New value.
    pub value: &'a Value,
    /// Expected current revision.
    pub expected: Option<u64>,
    /// Take the lock.
    pub lock: bool,
    /// Release the lock (holder only).
    pub unlock: bool,
    /// Time to live as a v4 SET carries it (see [`ttl_expiry`]; `Some(0)` = never expire).
    pub ttl: Option<u32>,
}

/// When a param written at `now` (wall µs) with the TTL a v4 SET carries expires: `0` never;
/// otherwise the low 31 bits are seconds after this write. The high bit marks v4's "absolute"
/// TTL (counted from the last write); without it the TTL is "sliding": counted from the last
/// write or GET ([`ParamStore::touch`]).
pub fn ttl_expiry(now: u64, ttl: Option<u32>) -> Option<u64> {
    match ttl.map(|t| t & 0x7FFF_FFFF) {
        None | Some(0) => None,
        Some(secs) => Some(now.saturating_add(u64::from(secs) * 1_000_000)),
    }
}

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The expected revision does not match.
    #[error("revision conflict: expected revision {expected}, current revision is {actual}")]
    RevisionConflict {
        /// Revision the writer expected.
        expected: u64,
        /// Current revision.
        actual: u64,
    },
    /// Another session holds the lock.
    #[error("param is locked by session {holder}")]
    LockHeld {
        /// The holder's session id.
        holder: Arc<str>,
    },
    /// The store is full and the address is new.
    #[error("the router holds its maximum of {max} params; new addresses are refused")]
    AtCapacity {
        /// The configured maximum.
        max: usize,
    },
    /// The write would take the store past its byte budget.
    #[error(
        "the param store would hold {would} bytes, over its limit of {max} bytes; the write is refused (smaller values, or fewer params, fit)"
    )]
    OverBudget {
        /// The bytes the store would hold.
        would: usize,
        /// The configured maximum.
        max: usize,
    },
}

/// Bytes a stored param is counted for: its address, its value and a fixed overhead (the map
/// entry, the writer's id, the revision and times).
pub fn param_cost(address: &str, value: &Value) -> usize {
    96 + address.len() + value_cost(value)
}

/// Bytes a value takes in memory, roughly (strings and blobs by their length).
pub fn value_cost(v: &Value) -> usize {
    match v {
        Value::String(s) => 24 + s.len(),
        Value::Bytes(b) => 24 + b.len(),
        Value::Array(a) => 24 + a.iter().map(value_cost).sum::<usize>(),
        Value::Map(m) => {
            24 + m
                .iter()
                .map(|(k, v)| 24 + k.len() + value_cost(v))
                .sum::<usize>()
        }
        _ => 16,
    }
}

/// Result of an accepted write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The stored key of the address (shared, so callers need not allocate their own).
    pub key: Arc<str>,
    /// The new revision.
    pub revision: u64,
    /// The lock holder after the write, if the param is locked.
    pub holder: Option<Arc<str>>,
}

/// Params changed since the last persistence pass, and addresses removed since then.
pub type Dirty = (Vec<(Arc<str>, Param)>, Vec<Arc<str>>);

/// The map of params.
#[derive(Debug)]
pub struct ParamStore {
    params: HashMap<Arc<str>, Param>,
    max_params: usize,
    /// Bytes the params are counted for ([`param_cost`]), and the most allowed.
    bytes: usize,
    max_bytes: usize,
    /// Expiry index: (expires_at, address).
    expiries: BTreeSet<(u64, Arc<str>)>,
    /// Addresses changed or removed since the last [`ParamStore::take_dirty`].
    dirty: HashMap<Arc<str>, ()>,
    /// Changes so far: a write or expiry adds 1 (see [`ParamStore::epoch`]).
    epoch: u64,
}

impl ParamStore {
    /// An empty store holding at most `max_params` params.
    pub fn new(max_params: usize) -> Self {
        ParamStore::with_budget(max_params, usize::MAX)
    }

    /// An empty store holding at most `max_params` params and `max_bytes` bytes of them (see
    /// [`param_cost`]).
    pub fn with_budget(max_params: usize, max_bytes: usize) -> Self {
        ParamStore {
            params: HashMap::new(),
            max_params,
            bytes: 0,
            max_bytes,
            epoch: 0,
            expiries: BTreeSet::new(),
            dirty: HashMap::new(),
        }
    }

    /// Number of params.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Bytes the params are counted for.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The byte budget.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Whether the store can grow by `delta` bytes (negative: shrink); `Err` says by how much
    /// it would pass its budget.
    pub fn fits(&self, delta: isize) -> Result<(), WriteError> {
        let would = self.bytes.saturating_add_signed(delta);
        if delta > 0 && would > self.max_bytes {
            return Err(WriteError::OverBudget {
                would,
                max: self.max_bytes,
            });
        }
        Ok(())
    }

    /// Bytes the param at `address` is counted for (0 if there is none).
    pub fn cost_of(&self, address: &str) -> usize {
        self.params.get(address).map_or(0, |p| cost(address, p))
    }

    /// How many bytes writing `value` at `address` adds to the store (negative: frees).
    pub fn growth(&self, address: &str, value: &Value) -> isize {
        param_cost(address, value) as isize - self.cost_of(address) as isize
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The param at `address`.
    pub fn get(&self, address: &str) -> Option<&Param> {
        self.params.get(address)
    }

    /// Every param.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Param)> {
        self.params.iter()
    }

    /// Checks whether `write` by `writer` would be accepted, without applying it; returns the
    /// revision the write would produce.
    pub fn check(&self, address: &str, writer: &str, write: &Write<'_>) -> Result<u64, WriteError> {
        self.fits(self.growth(address, write.value))?;
        match self.params.get(address) {
            None => {
                if self.params.len() >= self.max_params {
                    Err(WriteError::AtCapacity {
                        max: self.max_params,
                    })
                } else {
                    Ok(1)
                }
            }
            Some(p) => {
                if let Some(expected) = write.expected
                    && expected != p.revision
                {
                    return Err(WriteError::RevisionConflict {
                        expected,
                        actual: p.revision,
                    });
                }
                match &p.lock {
                    Some(holder) if &**holder != writer => Err(WriteError::LockHeld {
                        holder: holder.clone(),
                    }),
                    _ => Ok(p.revision + 1),
                }
            }
        }
    }

    /// Applies `write` by session `writer` at wall-clock `now` (µs).
    pub fn write(
        &mut self,
        address: &str,
        writer: &Arc<str>,
        write: &Write<'_>,
        now: u64,
    ) -> Result<Written, WriteError> {
        self.check(address, writer, write)?;
        let growth = self.growth(address, write.value);
        self.bytes = self.bytes.saturating_add_signed(growth);
        let expires_at = ttl_expiry(now, write.ttl);
        let key = match self.params.get_key_value(address) {
            Some((k, _)) => k.clone(),
            None => Arc::from(address),
        };
        let param = self.params.entry(key.clone()).or_insert_with(|| Param {
            value: Value::Null,
            revision: 0,
            writer: writer.clone(),
            timestamp: now,
            lock: None,
            expires_at: None,
            sliding: None,
            attached: None,
        });
        param.value = write.value.clone();
        param.attached = None;
        param.revision += 1;
        param.writer = writer.clone();
        param.timestamp = now;
        param.sliding = write.ttl.filter(|t| *t != 0 && t & 0x8000_0000 == 0);
        if write.unlock {
            param.lock = None;
        }
        if write.lock {
            param.lock = Some(writer.clone());
        }
        // Each write sets the TTL anew: a write without one makes the param permanent.
        if write.ttl.is_some() || param.expires_at.is_some() {
            if let Some(old) = param.expires_at.take() {
                self.expiries.remove(&(old, key.clone()));
            }
            let new = if write.ttl.is_some() {
                expires_at
            } else {
                None
            };
            param.expires_at = new;
            if let Some(at) = new {
                self.expiries.insert((at, key.clone()));
            }
        }
        let written = Written {
            key: key.clone(),
            revision: param.revision,
            holder: param.lock.clone(),
        };
        self.dirty.insert(key, ());
        self.epoch += 1;
        Ok(written)
    }

    /// Sets the param at `address` as an outside authority decided it (a clustered router's
    /// shared bucket): `value` at `revision`, written by `writer` at `timestamp` (µs), expiring
    /// at `expires_at` (wall-clock µs; `None`: never). Nothing
    /// happens unless `revision` is newer than the one held (the same change can arrive twice:
    /// as the answer to this router's write and from the bucket's watch). The budgets are not
    /// applied: the authority already took the write, and a replica that left it out would
    /// silently differ. Returns the stored key when the change was applied.
    pub fn apply_at(
        &mut self,
        address: &str,
        value: &Value,
        revision: u64,
        writer: &Arc<str>,
        timestamp: u64,
        expires_at: Option<u64>,
    ) -> Option<Arc<str>> {
        if self
            .params
            .get(address)
            .is_some_and(|p| p.revision >= revision)
        {
            return None;
        }
        let growth = self.growth(address, value);
        self.bytes = self.bytes.saturating_add_signed(growth);
        let key = match self.params.get_key_value(address) {
            Some((k, _)) => k.clone(),
            None => Arc::from(address),
        };
        let param = self.params.entry(key.clone()).or_insert_with(|| Param {
            value: Value::Null,
            revision: 0,
            writer: writer.clone(),
            timestamp,
            lock: None,
            expires_at: None,
            sliding: None,
            attached: None,
        });
        // `growth` counted the old attachment as freed. The authority decides expiries: no
        // sliding TTL here.
        param.attached = None;
        param.sliding = None;
        param.value = value.clone();
        param.revision = revision;
        param.writer = writer.clone();
        param.timestamp = timestamp;
        if param.expires_at != expires_at {
            if let Some(old) = param.expires_at.take() {
                self.expiries.remove(&(old, key.clone()));
            }
            param.expires_at = expires_at;
            if let Some(at) = expires_at {
                self.expiries.insert((at, key.clone()));
            }
        }
        self.dirty.insert(key.clone(), ());
        self.epoch += 1;
        Some(key)
    }

    /// Removes the param at `address` as an outside authority decided it, unless what is held
    /// is newer than `revision`; whether it was removed.
    pub fn remove_at(&mut self, address: &str, revision: u64) -> bool {
        if self
            .params
            .get(address)
            .is_none_or(|p| p.revision >= revision)
        {
            return false;
        }
        let Some((key, p)) = self.params.remove_entry(address) else {
            return false;
        };
        self.bytes = self.bytes.saturating_sub(cost(&key, &p));
        if let Some(at) = p.expires_at {
            self.expiries.remove(&(at, key.clone()));
        }
        self.dirty.insert(key, ());
        self.epoch += 1;
        true
    }

    /// A read of the param at `address` at `now` (wall µs): a sliding TTL starts again (not
    /// for a param already past its expiry and waiting to be swept; a move of less than a
    /// second is not worth a write to disk).
    pub fn touch(&mut self, address: &str, now: u64) {
        let Some((key, p)) = self.params.get_key_value(address) else {
            return;
        };
        let (Some(secs), Some(old)) = (p.sliding, p.expires_at) else {
            return;
        };
        let Some(new) = ttl_expiry(now, Some(secs)) else {
            return;
        };
        if old <= now || new < old.saturating_add(1_000_000) {
            return;
        }
        let key = key.clone();
        self.expiries.remove(&(old, key.clone()));
        self.expiries.insert((new, key.clone()));
        if let Some(p) = self.params.get_mut(address) {
            p.expires_at = Some(new);
        }
        self.dirty.insert(key, ());
    }

    /// Releases every lock held by `session`; returns the addresses released.
    pub fn release_locks(&mut self, session: &str, addresses: &[Arc<str>]) -> Vec<Arc<str>> {
        let mut released = Vec::new();
        for a in addresses {
            if let Some(p) = self.params.get_mut(a)
                && p.lock.as_deref() == Some(session)
            {
                p.lock = None;
                released.push(a.clone());
            }
        }
        released
    }

    /// Removes params whose expiry is at or before `now`; returns their addresses and the
    /// revisions they had.
    pub fn expire(&mut self, now: u64) -> Vec<(Arc<str>, u64)> {
        let mut gone = Vec::new();
        while let Some((at, addr)) = self.expiries.first().cloned() {
            if at > now {
                break;
            }
            self.expiries.pop_first();
            let mut revision = 0;
            if let Some(p) = self.params.remove(&addr) {
                self.bytes = self.bytes.saturating_sub(cost(&addr, &p));
                revision = p.revision;
            }
            self.dirty.insert(addr.clone(), ());
            self.epoch += 1;
            gone.push((addr, revision));
        }
        gone
    }

    /// The earliest expiry (wall-clock µs), if any param has a TTL.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiries.first().map(|(at, _)| *at)
    }

    /// Inserts a param loaded from persistent storage (not marked dirty).
    pub fn restore(&mut self, address: Arc<str>, param: Param) {
        if let Some(at) = param.expires_at {
            self.expiries.insert((at, address.clone()));
        }
        self.bytes += cost(&address, &param);
        if let Some(old) = self.params.insert(address.clone(), param) {
            self.bytes = self.bytes.saturating_sub(cost(&address, &old));
        }
    }

    /// Attaches `attached` to the param at `address` (just written by an adapter), counting
    /// its size against the store's bytes.
    pub fn attach(&mut self, address: &str, attached: crate::adapter::Attached) {
        if let Some(p) = self.params.get_mut(address) {
            self.bytes += attached.size();
            if let Some(old) = p.attached.replace(attached) {
                self.bytes = self.bytes.saturating_sub(old.size());
            }
        }
    }

    /// Takes the set of addresses changed since the last call: `(present, removed)`.
    pub fn take_dirty(&mut self) -> Dirty {
        let mut present = Vec::new();
        let mut removed = Vec::new();
        for (addr, ()) in self.dirty.drain() {
            match self.params.get(&addr) {
                Some(p) => present.push((addr, p.clone())),
                None => removed.push(addr),
            }
        }
        (present, removed)
    }

    /// How many changes the store has had: the changes [`ParamStore::take_dirty`] returns
    /// include every change up to the epoch read at the same time.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Number of addresses waiting to be persisted.
    pub fn dirty_len(&self) -> usize {
        self.dirty.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(value: &Value) -> Write<'_> {
        Write {
            value,
            expected: None,
            lock: false,
            unlock: false,
            ttl: None,
        }
    }

    #[test]
    fn revisions_start_at_one_and_count_writes() {
        let mut s = ParamStore::new(10);
        let a: Arc<str> = "A".into();
        let v = Value::Int(1);
        assert_eq!(s.write("/x", &a, &w(&v), 5).unwrap().revision, 1);
        assert_eq!(s.write("/x", &a, &w(&v), 6).unwrap().revision, 2);
        let p = s.get("/x").unwrap();
        assert_eq!((p.revision, p.timestamp, &*p.writer), (2, 6, "A"));
    }

    #[test]
    fn expected_revision_is_checked_on_existing_params_only() {
        let mut s = ParamStore::new(10);
        let a: Arc<str> = "A".into();
        let v = Value::Int(1);
        let mut write = w(&v);
        write.expected = Some(99);
        assert!(s.write("/x", &a, &write, 0).is_ok(), "creation ignores it");
        assert_eq!(
            s.write("/x", &a, &write, 0),
            Err(WriteError::RevisionConflict {
                expected: 99,
                actual: 1
            })
        );
        write.expected = Some(1);
        assert_eq!(s.write("/x", &a, &write, 0).unwrap().revision, 2);
    }

    #[test]
    fn locks_cannot_be_bypassed_and_are_released_by_the_holder() {
        let mut s = ParamStore::new(10);
        let (a, b): (Arc<str>, Arc<str>) = ("A".into(), "B".into());
        let v = Value::Float(0.5);
        let mut lock = w(&v);
        lock.lock = true;
        assert!(s.write("/f", &a, &lock, 0).unwrap().holder.is_some());
        let mut unlock = w(&v);
        unlock.unlock = true;
        // The reference let a non-holder write with the unlock flag; we do not.
        assert!(matches!(
            s.write("/f", &b, &unlock, 0),
            Err(WriteError::LockHeld { .. })
        ));
        assert!(matches!(
            s.write("/f", &b, &w(&v), 0),
            Err(WriteError::LockHeld { .. })
        ));
        assert!(
            s.write("/f", &a, &w(&v), 0).unwrap().holder.is_some(),
            "holder keeps it"
        );
        assert!(s.write("/f", &a, &unlock, 0).unwrap().holder.is_none());
        assert!(s.write("/f", &b, &w(&v), 0).is_ok());
        assert!(s.write("/f", &b, &lock, 0).unwrap().holder.is_some());
        assert_eq!(s.release_locks("B", &["/f".into()]).len(), 1);
        assert!(s.write("/f", &a, &w(&v), 0).is_ok());
    }

    #[test]
    fn capacity_refuses_new_addresses_only() {
        let mut s = ParamStore::new(1);
        let a: Arc<str> = "A".into();
        let v = Value::Null;
        s.write("/1", &a, &w(&v), 0).unwrap();
        assert_eq!(
            s.write("/2", &a, &w(&v), 0),
            Err(WriteError::AtCapacity { max: 1 })
        );
        assert!(s.write("/1", &a, &w(&v), 0).is_ok());
    }

    #[test]
    fn ttl_expires_and_is_tracked_for_persistence() {
        let mut s = ParamStore::new(10);
        let a: Arc<str> = "A".into();
        let v = Value::Null;
        let mut t = w(&v);
        t.ttl = Some(2);
        s.write("/t", &a, &t, 1_000_000).unwrap();
        s.write("/keep", &a, &w(&v), 1_000_000).unwrap();
        assert_eq!(s.next_expiry(), Some(3_000_000));
        let _ = s.take_dirty();
        assert!(s.expire(2_999_999).is_empty());
        assert_eq!(s.expire(3_000_000), vec![(Arc::<str>::from("/t"), 1)]);
        assert!(s.get("/t").is_none());
        let (present, removed) = s.take_dirty();
        assert!(present.is_empty());
        assert_eq!(removed, vec![Arc::<str>::from("/t")]);
        // v4's "absolute" TTL (high bit): the same seconds after the write, not 68 years.
        t.ttl = Some(0x8000_0000 | 5);
        s.write("/abs", &a, &t, 10_000_000).unwrap();
        assert_eq!(s.get("/abs").unwrap().expires_at, Some(15_000_000));
        t.ttl = Some(0x8000_0000);
        s.write("/never", &a, &t, 0).unwrap();
        assert_eq!(s.get("/never").unwrap().expires_at, None);
        assert!(s.expire(15_000_000).iter().any(|(a, _)| &**a == "/abs"));
        t.ttl = Some(2);
        // A later write without TTL clears an existing TTL.
        s.write("/u", &a, &t, 0).unwrap();
        s.write("/u", &a, &w(&v), 0).unwrap();
        assert_eq!(s.get("/u").unwrap().expires_at, None);
        assert_eq!(s.next_expiry(), None);
    }
}
