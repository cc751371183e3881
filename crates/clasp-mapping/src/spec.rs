//! A mapping as configured ([`MappingSpec`], the `[[mapping]]` table) and as checked and
//! ready to run ([`Rule`]).

use serde::{Deserialize, Serialize};

use crate::MappingError;
use crate::engine::WriteKind;
use crate::pattern::{Captures, Pattern, Template};
use crate::transform::{Step, StepState, Transform};

/// One `[[mapping]]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    /// The source address or pattern (`{name}` captures a segment; `*`, `**` match).
    pub from: String,
    /// The target address, using the source's captures (`/mixer/{n}/volume`).
    pub to: String,
    /// The steps from source to target, in order.
    #[serde(default)]
    pub transform: Vec<Transform>,
    /// With `both_ways`: the steps from target back to source (default: each step undone, in
    /// reverse order; required when a step cannot be undone).
    #[serde(default)]
    pub inverse: Option<Vec<Transform>>,
    /// Also carry changes of the target back to the source (feedback).
    #[serde(default)]
    pub both_ways: bool,
    /// How the target is written: `set` (a param) or `event`; default: as the source came
    /// (a param sets, anything else is an event).
    #[serde(default)]
    pub kind: Option<WriteKind>,
}

/// One direction of a rule.
#[derive(Debug, Clone)]
pub(crate) struct Way {
    pub(crate) from: Pattern,
    pub(crate) to: Template,
    pub(crate) steps: Vec<Step>,
}

impl Way {
    /// The target and the transformed value for `address`, if it matches.
    pub(crate) fn map(
        &self,
        address: &str,
        value: &clasp_proto::Value,
        state: &mut Vec<StepState>,
    ) -> Option<(String, Option<clasp_proto::Value>)> {
        let caps: Captures = self.from.matches(address)?;
        let target = self.to.fill(&caps)?;
        state.resize(self.steps.len(), StepState::default());
        let mut v = value.clone();
        for (step, st) in self.steps.iter().zip(state.iter_mut()) {
            match step.apply(v, st) {
                Some(next) => v = next,
                None => return Some((target, None)),
            }
        }
        Some((target, Some(v)))
    }

    pub(crate) fn stateful(&self) -> bool {
        self.steps.iter().any(Step::stateful)
    }
}

/// A mapping checked and ready to run.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) forward: Way,
    pub(crate) back: Option<Way>,
    pub(crate) kind: Option<WriteKind>,
}

fn prepare(chain: Vec<Transform>) -> Result<Vec<Step>, MappingError> {
    chain
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let kind = t.kind();
            t.prepare().map_err(|why| MappingError::Transform {
                index: i + 1,
                kind,
                why,
            })
        })
        .collect()
}

impl Rule {
    /// Checks `spec`.
    pub fn new(spec: MappingSpec) -> Result<Rule, MappingError> {
        let from = Pattern::parse(&spec.from)?;
        let to = Template::parse(&spec.to)?;
        for name in to.captures() {
            if !from.captures().any(|c| c == name) {
                return Err(MappingError::Rule(format!(
                    "`to` uses `{{{name}}}`, which `from` does not capture"
                )));
            }
        }
        if to
            .as_pattern()
            .is_some_and(|p| p.subscription() == from.subscription())
        {
            return Err(MappingError::Rule(
                "`from` and `to` are the same addresses: the mapping would feed itself".into(),
            ));
        }
        let back = if spec.both_ways {
            if !from.fully_captured() {
                return Err(MappingError::Rule(format!(
                    "both ways needs every wildcard of `from` named (`{{name}}` instead of `*` or `**` in `{}`), so the way back knows the source address",
                    spec.from
                )));
            }
            let Some(to_pattern) = to.as_pattern() else {
                return Err(MappingError::Rule(format!(
                    "both ways needs `to` made of whole segments (`{}` mixes text and captures in a segment)",
                    spec.to
                )));
            };
            for name in from.captures() {
                if !to.captures().any(|c| c == name) {
                    return Err(MappingError::Rule(format!(
                        "both ways needs `to` to use `{{{name}}}` too, so the way back can fill it"
                    )));
                }
            }
            let chain = match spec.inverse {
                Some(chain) => chain,
                None => {
                    let mut back = Vec::new();
                    for (i, t) in spec.transform.iter().enumerate().rev() {
                        let inv = t.inverse().map_err(|why| MappingError::Transform {
                            index: i + 1,
                            kind: t.kind(),
                            why: format!("{why}; give the way back as `inverse = [...]`"),
                        })?;
                        back.push(inv);
                    }
                    back
                }
            };
            Some(Way {
                from: to_pattern,
                to: Template::parse(&spec.from)?,
                steps: prepare(chain)?,
            })
        } else {
            if spec.inverse.is_some() {
                return Err(MappingError::Rule(
                    "`inverse` is only used with `both_ways = true`".into(),
                ));
            }
            None
        };
        Ok(Rule {
            forward: Way {
                from,
                to,
                steps: prepare(spec.transform)?,
            },
            back,
            kind: spec.kind,
        })
    }
}
