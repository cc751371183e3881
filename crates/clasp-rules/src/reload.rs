//! Hot reload: a new rule set in a running engine, keeping what still makes sense.

use std::collections::HashMap;
use std::sync::Arc;

use crate::engine::{Engine, RuleState};
use crate::ruleset::RuleSet;

impl Engine {
    /// Runs `rules` from now on. For a rule whose id was there before:
    ///
    /// * its counters and cooldowns carry on;
    /// * with the same trigger, so do its threshold states and interval clock (schedules
    ///   start again from the current minute);
    /// * with the same actions, so does the state of stateful transforms;
    /// * if it is entirely unchanged (and still enabled), the actions waiting at the end of
    ///   a delay still run; otherwise they are dropped;
    /// * its ramps run on while it stays enabled.
    ///
    /// Everything of a rule that is gone (or now disabled) is dropped: delays, ramps,
    /// counters. Known values and writes awaiting their echo are kept.
    pub fn replace(&mut self, rules: RuleSet) {
        let old = std::mem::replace(&mut self.set, rules);
        let mut old_state: HashMap<Arc<str>, (usize, RuleState)> = old
            .rules
            .iter()
            .zip(std::mem::take(&mut self.state))
            .enumerate()
            .map(|(i, (r, s))| (Arc::clone(&r.id), (i, s)))
            .collect();
        // Old index → new index: by id, while running, and unchanged.
        let mut by_id = HashMap::new();
        let mut running = HashMap::new();
        let mut unchanged = HashMap::new();
        let mut state = Vec::with_capacity(self.set.rules.len());
        for (j, new) in self.set.rules.iter().enumerate() {
            let Some((i, mut s)) = old_state.remove(&new.id) else {
                state.push(RuleState::default());
                continue;
            };
            let was = &old.rules[i];
            by_id.insert(i, j);
            if was.enabled && new.enabled {
                running.insert(i, j);
                if was.spec == new.spec {
                    unchanged.insert(i, j);
                }
            }
            if was.spec.trigger != new.spec.trigger || !new.enabled {
                s.arms.clear();
                s.next_interval = None;
            }
            s.next_schedule = None;
            s.last_minute = None;
            if was.spec.actions != new.spec.actions {
                s.steps.clear();
            }
            state.push(s);
        }
        self.state = state;
        let remap = |chain: &[usize]| -> Vec<usize> {
            chain.iter().filter_map(|i| by_id.get(i).copied()).collect()
        };
        let delays = std::mem::take(&mut self.delays);
        for (key, mut p) in delays {
            if let Some(&j) = unchanged.get(&p.rule) {
                p.rule = j;
                p.chain = remap(&p.chain);
                self.delays.insert(key, p);
            }
        }
        self.ramps.retain(|_, r| match running.get(&r.rule) {
            Some(&j) => {
                r.rule = j;
                r.chain = remap(&r.chain);
                true
            }
            None => false,
        });
    }
}
