//! Sessions: what the router keeps per session, and the rate limit.

use std::time::Duration;

use clasp_proto::rate::{Rate, TokenBucket};

use super::*;

impl<H: Clone> Router<H> {
    /// Charges a message to its session's rate limit; false (after at most one ERROR 429 a
    /// second) when the session is over it and the message must be dropped.
    pub(super) fn within_rate(&mut self, conn: ConnId, msg: &MessageView<'_>, now: Now) -> bool {
        let cost = match msg {
            MessageView::Other(m) => match &**m {
                Message::Bundle(b) => b.messages.len().max(1) as f64,
                _ => 1.0,
            },
            _ => 1.0,
        };
        self.within_rate_cost(conn, cost, now)
    }

    /// Takes `cost` from `conn`'s rate bucket; `false` (refused, counted) if it is empty.
    pub(super) fn within_rate_cost(&mut self, conn: ConnId, cost: f64, now: Now) -> bool {
        let Some(limit) = self.config.rate_limit else {
            return true;
        };
        let Some(sess) = self.session_mut(conn) else {
            return true;
        };
        if sess.bucket.take(limit, cost, now.mono) {
            return true;
        }
        let warn = sess
            .bucket
            .warned
            .is_none_or(|at| now.mono.saturating_sub(at) >= 1_000_000);
        if warn {
            sess.bucket.warned = Some(now.mono);
        }
        let r = Refusal::RateLimited {
            per_sec: limit.per_sec,
            burst: limit.burst,
        };
        if warn {
            self.refuse(conn, r, None);
        } else {
            // Counted every time; told at most once a second.
            self.metrics.refuse(RefusalKind::RateLimit);
        }
        false
    }
}

pub(super) struct Session {
    pub(super) id: Arc<str>,
    /// The name its HELLO gave (clipped), or the adapter's.
    pub(super) name: Arc<str>,
    /// The features its HELLO named.
    pub(super) features: Features,
    /// When it was admitted (wall µs).
    pub(super) since: u64,
    /// Subscriptions by the client's id (at most `max_subscriptions`, so colliding ids chosen by a
    /// client can only slow that client's own deliveries).
    pub(super) subs: FxHashMap<u32, Sub>,
    /// Addresses this session has locked (may include ones since released).
    pub(super) locks: Vec<Arc<str>>,
    pub(super) scheduled: usize,
    /// Bytes and items the router holds on this session's behalf.
    pub(super) held: Held,
    /// The last fan-out that delivered to this session.
    pub(super) served: u64,
    /// Whether it ever had a shared subscription (only then does a fan-out look for one).
    pub(super) has_groups: bool,
    /// What the session's token allows; `None` in open mode (everything).
    pub(super) grant: Option<Grant>,
    /// Rate limit state.
    pub(super) bucket: Bucket,
}

/// A session's rate limit state (see [`RateLimit`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    pub(super) bucket: TokenBucket,
    /// When the session was last told it is over the limit.
    pub(super) warned: Option<u64>,
}

impl RateLimit {
    /// As the workspace's token bucket counts it.
    pub(super) fn rate(self) -> Rate {
        Rate::new(f64::from(self.per_sec), f64::from(self.burst))
    }
}

impl Bucket {
    pub(super) fn full(limit: Option<RateLimit>, now: u64) -> Bucket {
        let rate = limit.map_or(Rate::new(0.0, 0.0), RateLimit::rate);
        Bucket {
            bucket: TokenBucket::full(rate, Duration::from_micros(now)),
            warned: None,
        }
    }

    /// Takes `cost` tokens if there are enough.
    pub(super) fn take(&mut self, limit: RateLimit, cost: f64, now: u64) -> bool {
        self.bucket
            .take(cost, limit.rate(), Duration::from_micros(now))
    }
}

impl Session {
    /// Whether the session may do `action` on `address`.
    pub(super) fn may(&self, action: Action, address: &str) -> bool {
        self.grant
            .as_ref()
            .is_none_or(|g| g.scopes.allows(action, address))
    }
}

/// What the router holds for one session, checked against the per-session budgets of
/// [`RouterConfig`] (announced signals are counted by the signal registry).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Held {
    /// Bytes of subscription patterns ([`sub_cost`]).
    pub(super) sub_bytes: usize,
    /// Gestures in progress, and their bytes (address and buffered move).
    pub(super) gestures: usize,
    pub(super) gesture_bytes: usize,
    /// Bytes of scheduled bundles.
    pub(super) scheduled_bytes: usize,
    /// Addresses with `maxRate`/`epsilon` state, and bytes of the frames held back.
    pub(super) filters: usize,
    pub(super) filter_bytes: usize,
}

impl Held {
    /// Gives back what `sub` held (it is being removed).
    pub(super) fn release_sub(&mut self, sub: &Sub) {
        self.sub_bytes -= sub.cost;
        self.filters -= sub.filters.len();
        let pending: usize = sub
            .filters
            .values()
            .filter_map(|f| f.pending.as_ref())
            .map(|(o, _)| o.frame().len())
            .sum();
        self.filter_bytes -= pending;
    }
}

/// Bytes a subscription is counted for: its pattern (kept as text and in the index) and a
/// fixed overhead.
pub(super) fn sub_cost(pattern: &str) -> usize {
    64 + 2 * pattern.len()
}

/// Bytes a gesture in progress is counted for, besides its buffered move.
pub(super) fn gesture_cost(address: &str) -> usize {
    96 + address.len()
}

pub(super) struct Sub {
    /// Bytes counted for it ([`sub_cost`]).
    pub(super) cost: usize,
    pub(super) types: SignalTypes,
    pub(super) interval_us: Option<u64>,
    pub(super) epsilon: Option<f64>,
    /// Per-address delivery state, only for subscriptions with `max_rate` or `epsilon`.
    pub(super) filters: HashMap<Arc<str>, Filter>,
    /// A shared subscription's group: each update goes to one subscription of the group only
    /// (see `shared.rs`).
    pub(super) group: Option<Arc<str>>,
}

#[derive(Default)]
pub(super) struct Filter {
    pub(super) last_sent: Option<u64>,
    pub(super) last_value: Option<f64>,
    pub(super) pending: Option<(Outgoing, Option<f64>)>,
    pub(super) armed: bool,
}

/// What a HELLO brings to the handshake.
#[derive(Debug, Clone, Copy)]
pub(super) struct HelloInfo<'a> {
    pub(super) token: Option<&'a str>,
    pub(super) name: &'a str,
    pub(super) features: Features,
}

/// Longest session name kept (a HELLO's name is the client's to choose).
const MAX_SESSION_NAME: usize = 128;

/// A HELLO's name, cut to [`MAX_SESSION_NAME`] bytes at a character boundary.
pub(super) fn clip_name(name: &str) -> &str {
    let mut cut = name.len().min(MAX_SESSION_NAME);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    &name[..cut]
}

/// A session as an operator sees it (see [`Router::sessions_info`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    /// Its connection.
    pub conn: ConnId,
    /// Its id.
    pub id: Arc<str>,
    /// The name its HELLO gave.
    pub name: Arc<str>,
    /// The features its HELLO named.
    pub features: Features,
    /// The subject of its token, if it has one and it says.
    pub subject: Option<String>,
    /// An in-process adapter session (not a wire client).
    pub adapter: bool,
    /// Subscriptions it holds.
    pub subscriptions: usize,
    /// Params it has locked.
    pub locks: usize,
    /// Whether it announced itself for P2P.
    pub p2p: bool,
    /// When it was admitted (wall µs).
    pub since: u64,
}

impl<H: Clone> Router<H> {
    /// Every session, for an operator's view (the console).
    pub fn sessions_info(&self) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self
            .conns
            .iter()
            .filter_map(|(conn, c)| {
                let s = c.session.as_ref()?;
                Some(SessionInfo {
                    conn: *conn,
                    id: s.id.clone(),
                    name: s.name.clone(),
                    features: s.features,
                    subject: s.grant.as_ref().and_then(|g| g.subject.clone()),
                    adapter: c.adapter,
                    subscriptions: s.subs.len(),
                    locks: s.locks.len(),
                    p2p: self.p2p_announces.contains_key(conn),
                    since: s.since,
                })
            })
            .collect();
        v.sort_by(|a, b| a.since.cmp(&b.since).then_with(|| a.id.cmp(&b.id)));
        v
    }

    /// Whether session `conn` may do `action` on `address` (everything in open mode).
    pub fn session_allows(&self, conn: ConnId, action: Action, address: &str) -> bool {
        self.session(conn).is_some_and(|s| s.may(action, address))
    }

    /// Whether session `conn` may do `action` on everything `pattern` matches (everything in
    /// open mode).
    pub fn session_allows_pattern(&self, conn: ConnId, action: Action, pattern: &str) -> bool {
        let Ok(p) = Pattern::compile(pattern) else {
            return false;
        };
        self.session(conn).is_some_and(|s| {
            s.grant
                .as_ref()
                .is_none_or(|g| g.scopes.allows_pattern(action, &p))
        })
    }

    /// The patterns session `conn` may read (`/**` in open mode), for a viewer that wants all
    /// it may see.
    pub fn session_read_patterns(&self, conn: ConnId) -> Vec<String> {
        match self.session(conn).map(|s| s.grant.as_ref()) {
            None => Vec::new(),
            Some(None) => vec!["/**".to_owned()],
            Some(Some(g)) => {
                if Pattern::compile("/**").is_ok_and(|p| g.scopes.allows_pattern(Action::Read, &p))
                {
                    return vec!["/**".to_owned()];
                }
                g.scopes
                    .iter()
                    .map(|s| s.pattern().as_str().to_owned())
                    .collect()
            }
        }
    }

    /// The connection of session `id`, if it is here.
    pub fn conn_of(&self, id: &str) -> Option<ConnId> {
        self.sessions.get(id).copied()
    }

    /// The transport handle of a connection.
    pub fn handle_of(&self, conn: ConnId) -> Option<&H> {
        self.conns.get(&conn).map(|c| &c.handle)
    }

    /// Ends session `id` at an operator's request: it gets ERROR 403 saying so, then its
    /// connection is closed. `false` if there is no such session.
    pub fn kick(&mut self, id: &str, by: &str, now: Now) -> bool {
        let Some(&conn) = self.sessions.get(id) else {
            return false;
        };
        self.last_now = now;
        self.refuse(conn, Refusal::Kicked(by.to_owned()), None);
        self.reject(conn, CloseReason::Shutdown);
        self.flush();
        true
    }
}
