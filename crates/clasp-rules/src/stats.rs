//! Counters, per rule and for the engine, for status pages and `/metrics`.

use std::fmt::Write as _;
use std::sync::Arc;

/// What one rule has done since it was loaded (kept across reloads while its id stays).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleStats {
    /// Times it fired (its actions started).
    pub firings: u64,
    /// Firings suppressed because the rule fired within its cooldown.
    pub suppressed_cooldown: u64,
    /// Firings suppressed by loop prevention (the rule was already in the chain of firings
    /// that led here, or the chain was too long).
    pub suppressed_loop: u64,
    /// Triggers that came while a condition did not hold.
    pub conditions_false: u64,
    /// Errors: a transform that gave no value, a value of the wrong type, an address that
    /// could not be filled, a ramp with no number to start from.
    pub errors: u64,
    /// The last error, for a status page.
    pub last_error: Option<String>,
}

/// The engine's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Updates given to [`crate::Engine::on_update`].
    pub updates: u64,
    /// Of those, echoes of the engine's own writes.
    pub echoes: u64,
    /// Outputs returned by [`crate::Engine::poll`].
    pub outputs: u64,
    /// Ramps running now.
    pub ramps: usize,
    /// Delayed actions waiting now.
    pub delays: usize,
    /// Own writes whose echo has not come back.
    pub awaiting_echo: usize,
    /// Each rule's counters, in file order.
    pub rules: Vec<(Arc<str>, RuleStats)>,
}

impl Stats {
    /// The counters in the Prometheus text format, names starting with `prefix`
    /// (`clasp_rules`): `{prefix}_firings_total{rule="…"}` and so on.
    pub fn prometheus(&self, prefix: &str) -> String {
        let mut out = String::new();
        let totals = [
            ("updates_total", "counter", self.updates as f64),
            ("echoes_total", "counter", self.echoes as f64),
            ("outputs_total", "counter", self.outputs as f64),
            ("ramps", "gauge", self.ramps as f64),
            ("delays", "gauge", self.delays as f64),
            ("awaiting_echo", "gauge", self.awaiting_echo as f64),
        ];
        for (name, kind, v) in totals {
            let _ = writeln!(out, "# TYPE {prefix}_{name} {kind}\n{prefix}_{name} {v}");
        }
        type Field = fn(&RuleStats) -> u64;
        let per_rule: [(&str, Field); 5] = [
            ("firings_total", |s| s.firings),
            ("suppressed_cooldown_total", |s| s.suppressed_cooldown),
            ("suppressed_loop_total", |s| s.suppressed_loop),
            ("conditions_false_total", |s| s.conditions_false),
            ("errors_total", |s| s.errors),
        ];
        for (name, get) in per_rule {
            let _ = writeln!(out, "# TYPE {prefix}_rule_{name} counter");
            for (id, s) in &self.rules {
                // Rule ids are letters, digits, `_`, `-` and `.`: nothing to escape.
                let _ = writeln!(out, "{prefix}_rule_{name}{{rule=\"{id}\"}} {}", get(s));
            }
        }
        out
    }
}
