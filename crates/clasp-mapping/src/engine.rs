//! The engine: the rules, what each address last held, and the writes it made that have not
//! come back yet.

use std::collections::HashMap;

use clasp_proto::{SignalType, Value};
use serde::{Deserialize, Serialize};

use crate::MappingError;
use crate::echo::Echoes;
use crate::spec::{MappingSpec, Rule, Way};
use crate::transform::StepState;

/// How far one update may travel through chained rules (A → B → C …) before the engine stops.
const MAX_DEPTH: usize = 8;
/// Addresses whose stateful steps (smooth, deadband, rate limit) are tracked; past it those
/// steps start afresh for new addresses.
const MAX_STATES: usize = 100_000;
/// Addresses whose last value is remembered (for the no-change check and feedback typing).
const MAX_KNOWN: usize = 1_000_000;

/// How a write goes to the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteKind {
    /// A SET: the target is a param.
    Set,
    /// An event PUBLISH.
    Event,
}

/// A write the engine asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The address to write.
    pub address: String,
    /// The value.
    pub value: Value,
    /// SET or event.
    pub kind: WriteKind,
    /// The rule that made it (index in the configuration, from 0).
    pub rule: usize,
    /// Whether it goes back from target to source (feedback).
    pub feedback: bool,
}

/// The mapping engine (see the crate documentation).
#[derive(Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    known: HashMap<String, Value>,
    echoes: Echoes,
    state: HashMap<(usize, bool, String), Vec<StepState>>,
}

impl Engine {
    /// An engine for `specs`; the error names the mapping (from 1) that cannot be loaded.
    pub fn new(specs: Vec<MappingSpec>) -> Result<Engine, (usize, MappingError)> {
        let rules = specs
            .into_iter()
            .enumerate()
            .map(|(i, s)| Rule::new(s).map_err(|e| (i + 1, e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Engine {
            rules,
            known: HashMap::new(),
            echoes: Echoes::new(),
            state: HashMap::new(),
        })
    }

    /// How many rules it has.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The CLASP patterns to subscribe to: every source, and every target of a rule that goes
    /// both ways.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.rules {
            let ways = std::iter::once(&r.forward).chain(r.back.as_ref());
            for w in ways {
                let p = w.from.subscription();
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Records what `address` holds without acting on it (the state found at start-up: a
    /// bridge that starts moves nothing until something changes).
    pub fn prime(&mut self, address: &str, value: &Value) {
        self.remember(address, value);
    }

    /// What the router delivered: `value` at `address`, a param (`SignalType::Param`) or
    /// anything else. Returns the writes to make, in order.
    pub fn on_update(&mut self, address: &str, value: &Value, kind: SignalType) -> Vec<Write> {
        let param = kind == SignalType::Param;
        if param && self.echoes.is_echo(address, value) {
            return Vec::new();
        }
        if param {
            self.remember(address, value);
        }
        let mut out = Vec::new();
        self.process(address, value, param, None, 0, &mut out);
        out
    }

    fn remember(&mut self, address: &str, value: &Value) {
        if self.known.len() >= MAX_KNOWN && !self.known.contains_key(address) {
            return;
        }
        self.known.insert(address.to_owned(), value.clone());
    }

    fn process(
        &mut self,
        address: &str,
        value: &Value,
        param: bool,
        skip: Option<usize>,
        depth: usize,
        out: &mut Vec<Write>,
    ) {
        if depth >= MAX_DEPTH {
            return;
        }
        let mut made = Vec::new();
        for i in 0..self.rules.len() {
            if Some(i) == skip {
                continue;
            }
            for feedback in [false, true] {
                let rule = &self.rules[i];
                let way = if feedback {
                    match &rule.back {
                        Some(w) => w,
                        None => continue,
                    }
                } else {
                    &rule.forward
                };
                let Some((target, v)) = map(way, &mut self.state, i, feedback, address, value)
                else {
                    continue;
                };
                let Some(mut v) = v else { continue };
                let kind = match (feedback, rule.kind) {
                    // The way back writes the source as the source is: a param.
                    (true, _) => WriteKind::Set,
                    (false, Some(k)) => k,
                    (false, None) if param => WriteKind::Set,
                    (false, None) => WriteKind::Event,
                };
                if kind == WriteKind::Set {
                    // Feedback keeps the source's type: an integer source (a MIDI CC) gets an
                    // integer back.
                    if let (Some(Value::Int(_)), Value::Float(f)) = (self.known.get(&target), &v)
                        && f.is_finite()
                    {
                        v = Value::Int(f.round() as i64);
                    }
                    if self.known.get(&target) == Some(&v) {
                        continue;
                    }
                    self.remember(&target, &v);
                    self.echoes.sent(&target, &v);
                }
                made.push(Write {
                    address: target,
                    value: v,
                    kind,
                    rule: i,
                    feedback,
                });
            }
        }
        for w in made {
            out.push(w.clone());
            // Chains: the write feeds the other rules, never the one that made it.
            self.process(
                &w.address,
                &w.value,
                w.kind == WriteKind::Set,
                Some(w.rule),
                depth + 1,
                out,
            );
        }
    }
}

/// Runs `way` for `address`, with the per-address state of stateful steps.
fn map(
    way: &Way,
    states: &mut HashMap<(usize, bool, String), Vec<StepState>>,
    rule: usize,
    feedback: bool,
    address: &str,
    value: &Value,
) -> Option<(String, Option<Value>)> {
    if !way.stateful() {
        return way.map(address, value, &mut Vec::new());
    }
    let key = (rule, feedback, address.to_owned());
    if states.len() >= MAX_STATES && !states.contains_key(&key) {
        return way.map(address, value, &mut Vec::new());
    }
    let st = states.entry(key).or_default();
    way.map(address, value, st)
}

/// Why an engine cannot be built, as a message naming the mapping.
pub fn describe((index, e): &(usize, MappingError)) -> String {
    format!("mapping {index}: {e}")
}
