//! Announced signals (ANNOUNCE) and QUERY.
//!
//! Each signal belongs to the session that announced it last; it goes when that session ends or
//! when it has not been announced again for `signal_ttl`. The registry is bounded per session
//! and router-wide, in signals and in bytes; an ANNOUNCE that would pass a bound is refused
//! whole (ERROR 429), so nothing is half-applied. A QUERY is answered in slices of at most
//! [`QUERY_SLICE`] registry entries per core call, in RESULT frames chunked like snapshots: a
//! large registry never holds the core long enough to delay other sessions, and a result that
//! does not fit one frame is sent as several.

use std::collections::BTreeMap;
use std::ops::Bound;

use clasp_proto::codec::binary::ResultWriter;
use clasp_proto::pattern::PatternSegment;
use clasp_proto::{SignalMeta, Value};
use rustc_hash::FxHashSet;

use super::*;
use crate::refusal::AnnounceBound;

/// Registry entries looked at per core call while answering a QUERY.
pub(super) const QUERY_SLICE: usize = 2048;
/// Bytes counted for each signal on top of its strings (map entries, shared string headers).
const SIGNAL_OVERHEAD: usize = 128;
/// Most frames a connection may send while its QUERY is answered; more are refused.
const MAX_HELD_FRAMES: usize = 1024;
/// Most bytes of such frames.
const MAX_HELD_BYTES: usize = 1 << 20;

/// One announced signal.
pub(super) struct Announced {
    def: SignalDef,
    owner: ConnId,
    cost: usize,
    refreshed: u64,
}

/// What one session has announced.
#[derive(Default)]
struct Usage {
    bytes: usize,
    addresses: FxHashSet<Str>,
}

/// The signal registry with its accounting.
#[derive(Default)]
pub(super) struct Signals {
    by_address: BTreeMap<Str, Announced>,
    usage: FxHashMap<ConnId, Usage>,
    bytes: usize,
}

/// The bounds on the registry (from [`RouterConfig`]).
struct Limits {
    per_session: usize,
    per_session_bytes: usize,
    total: usize,
    total_bytes: usize,
}

impl Signals {
    /// Signals announced.
    pub(super) fn len(&self) -> usize {
        self.by_address.len()
    }

    /// Bytes they are counted for.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Applies the definitions announced by `owner`, all or none: `Err` names the bound that
    /// would be passed.
    fn announce(
        &mut self,
        owner: ConnId,
        defs: Vec<SignalDef>,
        now: u64,
        limits: &Limits,
    ) -> Result<(), Refusal> {
        // Later definitions of the same address in one ANNOUNCE win.
        let mut planned: BTreeMap<Str, (SignalDef, usize)> = BTreeMap::new();
        for def in defs {
            let def = compact_def(def);
            let cost = def_cost(&def);
            planned.insert(def.address.clone(), (def, cost));
        }
        let own = self.usage.get(&owner);
        let (mut count, mut bytes) = own.map_or((0, 0), |u| (u.addresses.len(), u.bytes));
        let (mut total, mut total_bytes) = (self.by_address.len(), self.bytes);
        for (address, (_, cost)) in &planned {
            match self.by_address.get(address) {
                Some(old) if old.owner == owner => {
                    bytes = bytes - old.cost + cost;
                    total_bytes = total_bytes - old.cost + cost;
                }
                Some(old) => {
                    count += 1;
                    bytes += cost;
                    total_bytes = total_bytes - old.cost + cost;
                }
                None => {
                    count += 1;
                    bytes += cost;
                    total += 1;
                    total_bytes += cost;
                }
            }
        }
        if count > limits.per_session || bytes > limits.per_session_bytes {
            return Err(Refusal::Announce {
                bound: AnnounceBound::Session,
                count,
                bytes,
                max_count: limits.per_session,
                max_bytes: limits.per_session_bytes,
            });
        }
        if total > limits.total || total_bytes > limits.total_bytes {
            return Err(Refusal::Announce {
                bound: AnnounceBound::Router,
                count: total,
                bytes: total_bytes,
                max_count: limits.total,
                max_bytes: limits.total_bytes,
            });
        }
        for (address, (def, cost)) in planned {
            self.remove(&address);
            self.bytes += cost;
            let usage = self.usage.entry(owner).or_default();
            usage.bytes += cost;
            usage.addresses.insert(address.clone());
            self.by_address.insert(
                address,
                Announced {
                    def,
                    owner,
                    cost,
                    refreshed: now,
                },
            );
        }
        Ok(())
    }

    /// Forgets the signal at `address`, whoever announced it.
    fn remove(&mut self, address: &str) {
        let Some(old) = self.by_address.remove(address) else {
            return;
        };
        self.bytes -= old.cost;
        if let Some(u) = self.usage.get_mut(&old.owner) {
            u.bytes -= old.cost;
            u.addresses.remove(address);
            if u.addresses.is_empty() {
                self.usage.remove(&old.owner);
            }
        }
    }

    /// Forgets everything `owner` announced (its session ended).
    pub(super) fn remove_owner(&mut self, owner: ConnId) {
        let Some(u) = self.usage.remove(&owner) else {
            return;
        };
        for address in u.addresses {
            if let Some(old) = self.by_address.remove(&address) {
                self.bytes -= old.cost;
            }
        }
    }

    /// Forgets the signals not announced again within `ttl` (µs) of `now`.
    pub(super) fn expire(&mut self, now: u64, ttl: u64) {
        let stale: Vec<Str> = self
            .by_address
            .iter()
            .filter(|(_, s)| now.saturating_sub(s.refreshed) >= ttl)
            .map(|(a, _)| a.clone())
            .collect();
        for address in stale {
            self.remove(&address);
        }
    }
}

/// Frames a connection sent while its QUERY was being answered, handled once it is.
#[derive(Default)]
pub(super) struct Deferred {
    frames: std::collections::VecDeque<Bytes>,
    bytes: usize,
}

/// A QUERY being answered.
pub(super) struct QueryJob {
    conn: ConnId,
    pattern: Pattern,
    /// Addresses all start with this (the pattern's literal leading segments).
    prefix: String,
    /// Where the scan resumes (inclusive); `None` before the first slice.
    resume: Option<Str>,
    writer: ResultWriter,
}

impl QueryJob {
    /// The connection that asked.
    pub(super) fn conn(&self) -> ConnId {
        self.conn
    }
}

impl<H: Clone> Router<H> {
    /// ANNOUNCE: scope-checked, then applied whole or refused whole.
    pub(super) fn on_announce(
        &mut self,
        conn: ConnId,
        qos: Qos,
        a: clasp_proto::Announce,
        now: Now,
    ) {
        let denied = std::iter::once(&a.namespace)
            .chain(a.signals.iter().map(|d| &d.address))
            .find(|addr| !self.permits(conn, Action::Write, addr))
            .cloned();
        if let Some(addr) = denied {
            self.refuse(conn, Refusal::Scope(Operation::Announce), Some(addr));
            return;
        }
        let c = &self.config;
        let limits = Limits {
            per_session: c.max_signals_per_session,
            per_session_bytes: c.max_signal_bytes_per_session,
            total: c.max_signals,
            total_bytes: c.max_signal_bytes,
        };
        if let Err(r) = self.signals.announce(conn, a.signals, now.mono, &limits) {
            self.refuse(conn, r, Some(a.namespace));
            return;
        }
        if qos.wants_ack() {
            let ack = Ack {
                address: Some(a.namespace),
                ..Ack::default()
            };
            self.reply(conn, &Message::Ack(ack));
        }
    }

    /// QUERY: the first slice is answered at once; a larger registry is scanned on later
    /// ticks (see [`Router::query_step`]).
    pub(super) fn on_query(&mut self, conn: ConnId, pattern: &str, now: Now) {
        let pattern = match Pattern::compile(pattern) {
            Ok(p) => p,
            Err(e) => {
                self.refuse(conn, e.into(), Some(Str::from(pattern)));
                return;
            }
        };
        let job = QueryJob {
            conn,
            prefix: literal_prefix(&pattern),
            pattern,
            resume: None,
            writer: ResultWriter::new(self.config.max_payload),
        };
        if let Some(job) = self.query_slice(job) {
            if self.queries.is_empty() {
                self.timers.push(Reverse((now.mono + 1, Timer::Query)));
            }
            self.queries.push_back(job);
            self.busy.insert(conn, Deferred::default());
        }
    }

    /// Keeps a frame `conn` sent while its QUERY is answered, or refuses it past the bound.
    pub(super) fn defer(&mut self, conn: ConnId, frame: &Bytes) {
        let Some(held) = self.busy.get_mut(&conn) else {
            return;
        };
        if held.frames.len() >= MAX_HELD_FRAMES || held.bytes + frame.len() > MAX_HELD_BYTES {
            let r = Refusal::QueryBacklog {
                frames: held.frames.len(),
                bytes: held.bytes,
            };
            self.refuse(conn, r, None);
            return;
        }
        held.bytes += frame.len();
        held.frames.push_back(frame.clone());
    }

    /// Runs one slice of the oldest QUERY in progress; schedules the next if any remain.
    pub(super) fn query_step(&mut self, now: Now) {
        let Some(job) = self.queries.pop_front() else {
            return;
        };
        let conn = job.conn;
        match self.query_slice(job) {
            Some(job) => self.queries.push_back(job),
            None => {
                // Answered: what the connection sent meanwhile is handled now, in order (a
                // QUERY among it holds the rest back again).
                if let Some(held) = self.busy.remove(&conn) {
                    for frame in held.frames {
                        if self.busy.contains_key(&conn) {
                            self.defer(conn, &frame);
                        } else {
                            self.process(conn, &frame, now);
                        }
                    }
                }
            }
        }
        if !self.queries.is_empty() {
            // A microsecond later, so this tick ends and other sessions get the core first.
            self.timers.push(Reverse((now.mono + 1, Timer::Query)));
        }
    }

    /// Scans up to [`QUERY_SLICE`] entries for `job`, sending the RESULT frames that are
    /// complete; the job back if the scan is not over.
    fn query_slice(&mut self, mut job: QueryJob) -> Option<QueryJob> {
        let sess = self.session(job.conn)?;
        let start = match &job.resume {
            Some(a) => Bound::Included(&**a),
            None => Bound::Included(job.prefix.as_str()),
        };
        let mut done = true;
        let mut resume = None;
        for (i, (address, s)) in self
            .signals
            .by_address
            .range::<str, _>((start, Bound::Unbounded))
            .enumerate()
        {
            if !address.starts_with(job.prefix.as_str()) {
                break;
            }
            if i == QUERY_SLICE {
                done = false;
                resume = Some(address.clone());
                break;
            }
            if job.pattern.matches(address) && sess.may(Action::Read, address) {
                let def = SignalDef {
                    meta: None,
                    ..s.def.clone()
                };
                // A signal too large for a RESULT frame cannot have been announced.
                if job.writer.push(&def).is_err() {
                    debug_assert!(false, "announced signal too large for RESULT: {address}");
                }
            }
        }
        job.resume = resume;
        let frames = if done {
            std::mem::replace(&mut job.writer, ResultWriter::new(0)).finish(true)
        } else {
            job.writer.take_sealed()
        };
        for f in frames {
            self.send(
                job.conn,
                Outgoing::Control(f),
                clasp_proto::message::code::RESULT,
            );
        }
        (!done).then_some(job)
    }
}

/// The text every address matched by `pattern` starts with: its leading literal segments
/// (followed by `/` when something else follows them).
fn literal_prefix(pattern: &Pattern) -> String {
    let mut prefix = String::new();
    for seg in pattern.segments() {
        prefix.push('/');
        let PatternSegment::Literal(lit) = seg else {
            return prefix;
        };
        prefix.push_str(lit);
    }
    prefix
}

/// `def` with its strings in buffers of their own (a string decoded from a frame may share the
/// whole frame's buffer, which storing it would keep alive).
fn compact_def(def: SignalDef) -> SignalDef {
    let s = |x: Str| Str::from(&*x);
    SignalDef {
        address: s(def.address),
        signal: def.signal,
        datatype: def.datatype.map(s),
        access: def.access.map(s),
        meta: def.meta.map(|m| SignalMeta {
            unit: m.unit.map(s),
            range: m.range,
            default: m.default.map(compact_value),
            description: m.description.map(s),
        }),
    }
}

fn compact_value(v: Value) -> Value {
    match v {
        Value::String(x) => Value::String(Str::from(&*x)),
        Value::Bytes(b) => Value::Bytes(Bytes::copy_from_slice(&b)),
        Value::Array(a) => Value::Array(a.into_iter().map(compact_value).collect()),
        Value::Map(m) => Value::Map(
            m.into_iter()
                .map(|(k, v)| (Str::from(&*k), compact_value(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Bytes a signal is counted for.
fn def_cost(def: &SignalDef) -> usize {
    let len = |x: &Option<Str>| x.as_ref().map_or(0, |s| s.len());
    let meta = def.meta.as_ref().map_or(0, |m| {
        len(&m.unit) + len(&m.description) + m.default.as_ref().map_or(0, state::value_cost) + 32
    });
    SIGNAL_OVERHEAD + 2 * def.address.len() + len(&def.datatype) + len(&def.access) + meta
}
