//! The checked form of a rules file ([`RuleSet`]): every pattern, template, transform,
//! duration and schedule parsed, every rule id unique.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::RulesError;
use crate::action::{self, Action, Context};
use crate::address::template_subscription;
use crate::condition::Condition;
use crate::duration::parse_duration;
use crate::locate::{Location, Seg, show_path};
use crate::spec::{RuleSpec, RulesFile};
use crate::trigger::{Trigger, parse_offset};

/// Most rules in one file.
pub const MAX_RULES: usize = 10_000;
/// Most conditions of one rule.
const MAX_CONDITIONS: usize = 64;
/// Default time between two writes of a ramp: 50 per second.
pub const DEFAULT_RAMP_STEP: Duration = Duration::from_millis(20);
/// Default longest chain of rule firings (see the crate documentation on loops).
pub const DEFAULT_MAX_CHAIN: usize = 8;

/// Something wrong with a value of the file, and where it is (path from the file's root).
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub(crate) path: Vec<Seg>,
    pub(crate) message: String,
    pub(crate) rule: Option<String>,
}

impl Problem {
    pub(crate) fn new(path: Vec<Seg>, message: String) -> Problem {
        Problem {
            path,
            message,
            rule: None,
        }
    }

    /// The problem as found in rule `index` named `id`.
    fn in_rule(mut self, index: usize, id: &str) -> Problem {
        let mut path = vec![Seg::Key("rule"), Seg::Index(index)];
        path.append(&mut self.path);
        self.path = path;
        self.rule = Some(id.to_owned());
        self
    }

    /// The error to report, at `at` if the text is known.
    pub(crate) fn into_error(self, at: Option<Location>) -> RulesError {
        let field = if self.rule.is_some() {
            show_path(self.path.get(2..).unwrap_or_default())
        } else {
            show_path(&self.path)
        };
        RulesError::Invalid {
            at,
            rule: self.rule,
            field,
            message: self.message,
        }
    }
}

/// One rule, checked.
#[derive(Debug)]
pub(crate) struct Rule {
    pub(crate) id: Arc<str>,
    pub(crate) enabled: bool,
    pub(crate) cooldown: Duration,
    pub(crate) trigger: Trigger,
    pub(crate) conditions: Vec<Condition>,
    pub(crate) actions: Vec<Action>,
    /// As written, to tell on reload whether it changed.
    pub(crate) spec: RuleSpec,
}

/// A checked rules file, ready for an [`crate::Engine`].
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub(crate) rules: Vec<Arc<Rule>>,
    pub(crate) max_chain: usize,
}

fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 {
        return Err("a rule id has 1 to 128 characters".into());
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "rule id `{id}`: use letters, digits, `_`, `-` and `.`"
        ));
    }
    Ok(())
}

impl RuleSet {
    /// Checks `file` (built in code, or read by [`RulesFile::read`]); the error names the
    /// rule and field but, without the text, no line.
    pub fn from_file(file: &RulesFile) -> Result<RuleSet, RulesError> {
        RuleSet::compile(file).map_err(|p| p.into_error(None))
    }

    pub(crate) fn compile(file: &RulesFile) -> Result<RuleSet, Problem> {
        let settings = &file.settings;
        let at = |k: &'static str| vec![Seg::Key("settings"), Seg::Key(k)];
        let ramp_step = match &settings.ramp_step {
            Some(s) => parse_duration(s).map_err(|e| Problem::new(at("ramp_step"), e))?,
            None => DEFAULT_RAMP_STEP,
        };
        if ramp_step < Duration::from_millis(1) {
            return Err(Problem::new(
                at("ramp_step"),
                "a ramp step must be at least 1ms".into(),
            ));
        }
        let offset = match &settings.utc_offset {
            Some(o) => parse_offset(o).map_err(|e| Problem::new(at("utc_offset"), e))?,
            None => 0,
        };
        let max_chain = match settings.max_chain {
            Some(n @ 1..=64) => n as usize,
            Some(n) => {
                return Err(Problem::new(
                    at("max_chain"),
                    format!("`max_chain` must be from 1 to 64 (got {n})"),
                ));
            }
            None => DEFAULT_MAX_CHAIN,
        };
        if file.rule.len() > MAX_RULES {
            return Err(Problem::new(
                vec![Seg::Key("rule")],
                format!("at most {MAX_RULES} rules"),
            ));
        }
        let mut seen = HashSet::new();
        let mut rules = Vec::with_capacity(file.rule.len());
        for (i, spec) in file.rule.iter().enumerate() {
            let rule = compile_rule(spec, ramp_step, offset).map_err(|p| p.in_rule(i, &spec.id))?;
            if !seen.insert(spec.id.as_str()) {
                return Err(Problem::new(
                    vec![Seg::Key("id")],
                    format!("two rules are called `{}`", spec.id),
                )
                .in_rule(i, &spec.id));
            }
            rules.push(Arc::new(rule));
        }
        Ok(RuleSet { rules, max_chain })
    }

    /// The CLASP patterns the host must subscribe to: the trigger patterns, the addresses
    /// conditions read, and the targets of ramps without `from` (a ramp starts from the
    /// current value). Disabled rules need none.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut add = |p: String| {
            if !out.contains(&p) {
                out.push(p);
            }
        };
        for r in self.rules.iter().filter(|r| r.enabled) {
            if let Some(p) = r.trigger.pattern() {
                add(p.subscription());
            }
            for c in &r.conditions {
                add(template_subscription(&c.address));
            }
            for a in &r.actions {
                if let Action::Ramp(ramp) = a
                    && ramp.from.is_none()
                {
                    add(template_subscription(&ramp.address));
                }
            }
        }
        out
    }

    /// The rule ids, in file order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| &*r.id)
    }

    /// How many rules (enabled or not).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether it has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn compile_rule(spec: &RuleSpec, ramp_step: Duration, offset: i64) -> Result<Rule, Problem> {
    check_id(&spec.id).map_err(|e| Problem::new(vec![Seg::Key("id")], e))?;
    let cooldown = match &spec.cooldown {
        Some(c) => parse_duration(c).map_err(|e| Problem::new(vec![Seg::Key("cooldown")], e))?,
        None => Duration::ZERO,
    };
    let trigger = Trigger::compile(&spec.trigger, offset)?;
    let captures: Vec<String> = trigger
        .pattern()
        .map(|p| p.captures().map(str::to_owned).collect())
        .unwrap_or_default();
    if spec.conditions.len() > MAX_CONDITIONS {
        return Err(Problem::new(
            vec![Seg::Key("conditions")],
            format!("at most {MAX_CONDITIONS} conditions"),
        ));
    }
    let mut conditions = Vec::with_capacity(spec.conditions.len());
    for (i, c) in spec.conditions.iter().enumerate() {
        let cond = Condition::compile(c, &captures).map_err(|mut p| {
            let mut path = vec![Seg::Key("conditions"), Seg::Index(i)];
            path.append(&mut p.path);
            p.path = path;
            p
        })?;
        conditions.push(cond);
    }
    let cx = Context {
        captures: &captures,
        has_value: trigger.pattern().is_some(),
        ramp_step,
    };
    let actions = action::compile(&spec.actions, &cx)?;
    Ok(Rule {
        id: spec.id.as_str().into(),
        enabled: spec.enabled,
        cooldown,
        trigger,
        conditions,
        actions,
        spec: spec.clone(),
    })
}
