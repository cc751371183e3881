//! The engine: rules, what each address last held, timers, delayed actions and ramps, and
//! the chains of firings that keep it from looping.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use clasp_mapping::transform::StepState;
use clasp_proto::Value;

use crate::action::{Action, Firing, RampAction, WriteAction, fill};
use crate::echo::{Echo, OwnWrites};
use crate::io::{BundleItem, Origin, Output, UpdateKind, Write, WriteId};
use crate::ramp::Ramp;
use crate::ruleset::{Rule, RuleSet};
use crate::stats::{RuleStats, Stats};
use crate::trigger::{Arms, Threshold, Trigger, number};

/// Most rule firings one cause (an update, a timer, a delay's end, a ramp step) may lead to.
pub const MAX_CASCADE: usize = 256;
/// Addresses whose latest value is kept; past it new addresses are not remembered.
const MAX_VALUES: usize = 200_000;
/// Entries of a rule's per-address maps (cooldowns, thresholds, transform states).
pub(crate) const MAX_KEYS: usize = 10_000;
/// Delayed actions waiting at once.
const MAX_DELAYS: usize = 100_000;
/// Ramps running at once.
const MAX_RAMPS: usize = 10_000;

/// A rule's state.
#[derive(Debug, Default)]
pub(crate) struct RuleState {
    pub(crate) stats: RuleStats,
    /// When it last fired, per trigger address (none for timers).
    pub(crate) last_fired: HashMap<Option<String>, Duration>,
    /// Threshold state per address.
    pub(crate) arms: HashMap<String, Arms>,
    /// Transform state per (action, bundle item, target).
    pub(crate) steps: HashMap<(usize, usize, String), Vec<StepState>>,
    pub(crate) next_interval: Option<Duration>,
    /// Local minute of the schedule's next firing.
    pub(crate) next_schedule: Option<i64>,
    pub(crate) last_minute: Option<i64>,
}

/// The rest of a firing's actions, waiting for the end of a delay.
#[derive(Debug)]
pub(crate) struct Parked {
    pub(crate) rule: usize,
    pub(crate) firing: Firing,
    pub(crate) next: usize,
    pub(crate) chain: Vec<usize>,
}

/// A write (or an update from outside) to hand to the triggers.
#[derive(Debug)]
struct Work {
    address: String,
    value: Value,
    param: bool,
    changed: bool,
    prev: Option<Value>,
    /// The rules (indexes) whose firings led to it, first cause first.
    chain: Vec<usize>,
}

/// The writes one cause led to, handed to the triggers in order (breadth first).
#[derive(Debug, Default)]
pub(crate) struct Cascade {
    queue: VecDeque<Work>,
    firings: usize,
}

/// The rules engine (see the crate documentation). Sans-IO: the host gives it what the
/// router delivered and the time, and makes the writes [`Engine::poll`] returns.
#[derive(Debug)]
pub struct Engine {
    pub(crate) set: RuleSet,
    pub(crate) state: Vec<RuleState>,
    pub(crate) values: HashMap<String, Value>,
    pub(crate) own: OwnWrites,
    /// By (due, sequence number).
    pub(crate) delays: BTreeMap<(Duration, u64), Parked>,
    pub(crate) ramps: BTreeMap<String, Ramp>,
    pub(crate) out: Vec<Output>,
    pub(crate) next_id: u64,
    pub(crate) seq: u64,
    pub(crate) now: Duration,
    /// (monotonic, wall µs) at the last poll.
    pub(crate) wall: Option<(Duration, u64)>,
    pub(crate) last_sweep: Duration,
    pub(crate) totals: Stats,
}

impl Engine {
    /// An engine running `rules`, with no state yet.
    pub fn new(rules: RuleSet) -> Engine {
        let state = rules.rules.iter().map(|_| RuleState::default()).collect();
        Engine {
            set: rules,
            state,
            values: HashMap::new(),
            own: OwnWrites::default(),
            delays: BTreeMap::new(),
            ramps: BTreeMap::new(),
            out: Vec::new(),
            next_id: 1,
            seq: 0,
            now: Duration::ZERO,
            wall: None,
            last_sweep: Duration::ZERO,
            totals: Stats::default(),
        }
    }

    /// The patterns to subscribe to (see [`RuleSet::subscriptions`]).
    pub fn subscriptions(&self) -> Vec<String> {
        self.set.subscriptions()
    }

    /// The latest value the engine knows at `address` (delivered, or written by itself).
    pub fn value(&self, address: &str) -> Option<&Value> {
        self.values.get(address)
    }

    /// The monotonic clock never goes back inside the engine.
    fn tick(&mut self, now: Duration) -> Duration {
        self.now = self.now.max(now);
        self.now
    }

    /// What the router delivered: `value` at `address`, a param or an event, from `origin`,
    /// at `now` (monotonic). The writes it leads to are returned by the next
    /// [`Engine::poll`] (and [`Engine::next_deadline`] says so).
    pub fn on_update(
        &mut self,
        address: &str,
        value: &Value,
        kind: UpdateKind,
        origin: Origin,
        now: Duration,
    ) {
        let now = self.tick(now);
        self.totals.updates += 1;
        let param = kind == UpdateKind::Param;
        let echo = match origin {
            Origin::Snapshot => {
                if param {
                    self.store(address, value);
                    // Thresholds start again from the state found.
                    for st in &mut self.state {
                        st.arms.remove(address);
                    }
                }
                return;
            }
            Origin::Own(id) => Some(self.own.take_id(id, param, address, now).unwrap_or(Echo {
                newer_pending: self.own.waiting(param, address),
            })),
            Origin::Unknown => self.own.take_value(param, address, value, now),
            Origin::Other => None,
        };
        if let Some(e) = echo {
            // Acted on when it was written; only the state the router now holds matters.
            self.totals.echoes += 1;
            if param && !e.newer_pending {
                self.store(address, value);
            }
            return;
        }
        let prev = if param {
            self.store(address, value)
        } else {
            None
        };
        let work = Work {
            address: address.to_owned(),
            value: value.clone(),
            param,
            changed: param && prev.as_ref() != Some(value),
            prev,
            chain: Vec::new(),
        };
        let mut cx = Cascade::default();
        self.deliver(&work, now, &mut cx);
        self.drain(now, &mut cx);
    }

    /// Runs what is due at `now` (monotonic) and `wall_us` (wall clock, µs since the Unix
    /// epoch, for schedules): intervals, schedules, the ends of delays, ramp steps. Returns
    /// every write to make, in order, those caused by [`Engine::on_update`] since the last
    /// poll first.
    pub fn poll(&mut self, now: Duration, wall_us: u64) -> Vec<Output> {
        let now = self.tick(now);
        self.wall = Some((now, wall_us));
        self.timers(now, wall_us);
        self.wake_delays(now);
        self.step_ramps(now);
        // A ramp step may have started a zero delay.
        self.wake_delays(now);
        if now.saturating_sub(self.last_sweep) >= Duration::from_secs(1) {
            self.own.expire(now);
            self.last_sweep = now;
        }
        self.totals.outputs += self.out.len() as u64;
        std::mem::take(&mut self.out)
    }

    /// The engine's counters and every rule's.
    pub fn stats(&self) -> Stats {
        let mut s = self.totals.clone();
        s.ramps = self.ramps.len();
        s.delays = self.delays.len();
        s.awaiting_echo = self.own.len();
        s.rules = self
            .set
            .rules
            .iter()
            .zip(&self.state)
            .map(|(r, st)| (Arc::clone(&r.id), st.stats.clone()))
            .collect();
        s
    }

    /// The counters of rule `id`.
    pub fn rule_stats(&self, id: &str) -> Option<&RuleStats> {
        let i = self.set.rules.iter().position(|r| &*r.id == id)?;
        self.state.get(i).map(|s| &s.stats)
    }

    /// Records `value` at `address`; the value it replaces.
    fn store(&mut self, address: &str, value: &Value) -> Option<Value> {
        if let Some(v) = self.values.get_mut(address) {
            return Some(std::mem::replace(v, value.clone()));
        }
        if self.values.len() < MAX_VALUES {
            self.values.insert(address.to_owned(), value.clone());
        }
        None
    }

    fn error(&mut self, rule: usize, e: String) {
        if let Some(st) = self.state.get_mut(rule) {
            st.stats.errors += 1;
            st.stats.last_error = Some(e);
        }
    }

    pub(crate) fn drain(&mut self, now: Duration, cx: &mut Cascade) {
        while let Some(w) = cx.queue.pop_front() {
            self.deliver(&w, now, cx);
        }
    }

    /// Hands one write or update to every rule's trigger.
    fn deliver(&mut self, w: &Work, now: Duration, cx: &mut Cascade) {
        for i in 0..self.set.rules.len() {
            let rule = Arc::clone(&self.set.rules[i]);
            if !rule.enabled {
                continue;
            }
            let caps = match &rule.trigger {
                Trigger::Change { pattern, events }
                    if (w.param && w.changed) || (!w.param && *events) =>
                {
                    pattern.matches(&w.address)
                }
                Trigger::Event { pattern } if !w.param => pattern.matches(&w.address),
                Trigger::Threshold(t) => t
                    .pattern
                    .matches(&w.address)
                    .filter(|_| self.crossed(i, t, w)),
                _ => None,
            };
            if let Some(caps) = caps {
                let firing = Firing {
                    address: Some(w.address.clone()),
                    value: Some(w.value.clone()),
                    caps,
                };
                self.fire(i, &rule, firing, &w.chain, now, cx);
            }
        }
    }

    /// Whether `w` makes threshold `t` of rule `i` fire.
    fn crossed(&mut self, i: usize, t: &Threshold, w: &Work) -> bool {
        let Some(x) = number(&w.value) else {
            let e = format!(
                "threshold: `{}` holds a {}, not a number",
                w.address,
                w.value.type_name()
            );
            self.error(i, e);
            return false;
        };
        let arms = &mut self.state[i].arms;
        if let Some(a) = arms.get_mut(&w.address) {
            return t.cross(a, x);
        }
        // First value seen here since the rule started: from the previous value if known.
        let (a, fired) = match w.prev.as_ref().and_then(number) {
            Some(p) => {
                let mut a = t.arms(p);
                let fired = t.cross(&mut a, x);
                (a, fired)
            }
            None => (t.arms(x), false),
        };
        if arms.len() >= MAX_KEYS {
            arms.clear();
        }
        arms.insert(w.address.clone(), a);
        fired
    }

    /// Fires rule `i` for `firing`, if loops, conditions and the cooldown allow.
    pub(crate) fn fire(
        &mut self,
        i: usize,
        rule: &Arc<Rule>,
        firing: Firing,
        chain: &[usize],
        now: Duration,
        cx: &mut Cascade,
    ) {
        if chain.contains(&i) || chain.len() >= self.set.max_chain || cx.firings >= MAX_CASCADE {
            self.state[i].stats.suppressed_loop += 1;
            return;
        }
        for c in &rule.conditions {
            match c.holds(&firing.caps, &self.values) {
                Ok(true) => {}
                Ok(false) => {
                    self.state[i].stats.conditions_false += 1;
                    return;
                }
                Err(e) => {
                    self.error(i, e);
                    return;
                }
            }
        }
        let st = &mut self.state[i];
        if !rule.cooldown.is_zero() {
            if let Some(last) = st.last_fired.get(&firing.address)
                && now < last.saturating_add(rule.cooldown)
            {
                st.stats.suppressed_cooldown += 1;
                return;
            }
            if st.last_fired.len() >= MAX_KEYS {
                st.last_fired
                    .retain(|_, t| now < t.saturating_add(rule.cooldown));
                if st.last_fired.len() >= MAX_KEYS {
                    st.last_fired.clear();
                }
            }
            st.last_fired.insert(firing.address.clone(), now);
        }
        st.stats.firings += 1;
        cx.firings += 1;
        // A new firing for the same trigger address restarts: what the last one left
        // waiting is dropped.
        self.delays
            .retain(|_, p| !(p.rule == i && p.firing.address == firing.address));
        let mut chain = chain.to_vec();
        chain.push(i);
        self.run(i, rule, firing, 0, chain, now, cx);
    }

    /// Runs rule `i`'s actions from `from` until the end or a delay.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        &mut self,
        i: usize,
        rule: &Arc<Rule>,
        firing: Firing,
        from: usize,
        chain: Vec<usize>,
        now: Duration,
        cx: &mut Cascade,
    ) {
        for (idx, action) in rule.actions.iter().enumerate().skip(from) {
            match action {
                Action::Write(w) => match self.write_item(i, idx, 0, w, &firing) {
                    Ok(Some(item)) => self.emit(i, item.into(), &chain, now, false, cx),
                    Ok(None) => {}
                    Err(e) => self.error(i, e),
                },
                Action::Bundle(items) => {
                    let mut out = Vec::with_capacity(items.len());
                    let mut failed = None;
                    for (j, w) in items.iter().enumerate() {
                        match self.write_item(i, idx, j, w, &firing) {
                            Ok(Some(item)) => out.push(item),
                            Ok(None) => {}
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    match failed {
                        // All or nothing.
                        Some(e) => self.error(i, format!("bundle not sent: {e}")),
                        None if out.is_empty() => {}
                        None => self.emit(i, Write::Bundle(out), &chain, now, false, cx),
                    }
                }
                Action::Ramp(r) => self.start_ramp(i, r, &firing, &chain, now, cx),
                Action::Delay(d) => {
                    if self.delays.len() >= MAX_DELAYS {
                        self.error(i, format!("more than {MAX_DELAYS} delays waiting"));
                        return;
                    }
                    self.seq += 1;
                    let parked = Parked {
                        rule: i,
                        firing,
                        next: idx + 1,
                        chain,
                    };
                    self.delays
                        .insert((now.saturating_add(*d), self.seq), parked);
                    return;
                }
            }
        }
    }

    fn write_item(
        &mut self,
        i: usize,
        idx: usize,
        j: usize,
        w: &WriteAction,
        firing: &Firing,
    ) -> Result<Option<BundleItem>, String> {
        let target = w.target(firing)?;
        if !w.stateful() {
            return w.eval(firing, target, &mut Vec::new());
        }
        let steps = &mut self.state[i].steps;
        let key = (idx, j, target.clone());
        if steps.len() >= MAX_KEYS && !steps.contains_key(&key) {
            steps.clear();
        }
        w.eval(firing, target, steps.entry(key).or_default())
    }

    fn start_ramp(
        &mut self,
        i: usize,
        r: &RampAction,
        firing: &Firing,
        chain: &[usize],
        now: Duration,
        cx: &mut Cascade,
    ) {
        let address = match fill(&r.address, &firing.caps) {
            Ok(a) => a,
            Err(e) => return self.error(i, e),
        };
        let from = r
            .from
            .or_else(|| self.values.get(&address).and_then(number));
        let Some(from) = from.filter(|_| !r.over.is_zero()) else {
            if from.is_none() {
                let e = format!("ramp: `{address}` holds no number to start from; set at once");
                self.error(i, e);
            }
            let set = Write::Set {
                address,
                value: r.to.clone(),
            };
            return self.emit(i, set, chain, now, false, cx);
        };
        if self.ramps.len() >= MAX_RAMPS && !self.ramps.contains_key(&address) {
            return self.error(i, format!("more than {MAX_RAMPS} ramps running"));
        }
        let ramp = Ramp::new(
            i,
            chain.to_vec(),
            from,
            r.to.clone(),
            r.to_f,
            now,
            r.over,
            r.step,
            r.curve,
        );
        // A new ramp on an address replaces the one running there.
        self.ramps.insert(address, ramp);
    }

    /// Queues `write` of rule `i` for the host and hands it to the triggers. A SET that is
    /// not a ramp's own step stops the ramp on its address.
    pub(crate) fn emit(
        &mut self,
        i: usize,
        write: Write,
        chain: &[usize],
        now: Duration,
        ramp_step: bool,
        cx: &mut Cascade,
    ) {
        let id = WriteId(self.next_id);
        self.next_id += 1;
        for (param, address, value) in write.parts() {
            let (changed, prev) = if param {
                // The router never sends a PUBLISH back to its sender: only SETs have echoes.
                self.own.sent(id, param, address, value, now);
                if !ramp_step {
                    self.ramps.remove(address);
                }
                let prev = self.store(address, value);
                (prev.as_ref() != Some(value), prev)
            } else {
                (false, None)
            };
            cx.queue.push_back(Work {
                address: address.to_owned(),
                value: value.clone(),
                param,
                changed,
                prev,
                chain: chain.to_vec(),
            });
        }
        self.out.push(Output {
            id,
            rule: Arc::clone(&self.set.rules[i].id),
            write,
        });
    }
}
