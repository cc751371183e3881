//! Actions, checked: what a rule does when it fires, and the writes they make.

use std::time::Duration;

use clasp_mapping::curve::CurveType;
use clasp_mapping::pattern::{Captures, Template};
use clasp_mapping::transform::{Step, StepState, Transform};
use clasp_proto::Value;

use crate::address;
use crate::duration::parse_duration;
use crate::io::BundleItem;
use crate::locate::Seg;
use crate::ruleset::Problem;
use crate::spec::{ActionSpec, Literal};

/// Most actions in one rule (a bundle's count too).
pub(crate) const MAX_ACTIONS: usize = 256;
/// Shortest ramp step.
const MIN_STEP: Duration = Duration::from_millis(1);

/// What fired a rule: the trigger's address, value and captures (none for timers).
#[derive(Debug, Clone, Default)]
pub(crate) struct Firing {
    pub(crate) address: Option<String>,
    pub(crate) value: Option<Value>,
    pub(crate) caps: Captures,
}

/// An action ready to run.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    Write(WriteAction),
    Bundle(Vec<WriteAction>),
    Ramp(RampAction),
    Delay(Duration),
}

/// An action that makes one SET or PUBLISH.
#[derive(Debug, Clone)]
pub(crate) enum WriteAction {
    Set {
        address: Template,
        value: Value,
    },
    Publish {
        address: Template,
        value: Value,
    },
    FromTrigger {
        address: Option<Template>,
        steps: Vec<Step>,
    },
}

/// A ramp as configured.
#[derive(Debug, Clone)]
pub(crate) struct RampAction {
    pub(crate) address: Template,
    pub(crate) to: Value,
    pub(crate) to_f: f64,
    pub(crate) from: Option<f64>,
    pub(crate) over: Duration,
    pub(crate) step: Duration,
    pub(crate) curve: CurveType,
}

/// What the actions of a rule may use.
pub(crate) struct Context<'a> {
    /// The names the trigger captures.
    pub(crate) captures: &'a [String],
    /// Whether the trigger has a value (`set_from_trigger` needs one).
    pub(crate) has_value: bool,
    /// The settings' ramp step.
    pub(crate) ramp_step: Duration,
}

fn duration(text: &str, path: Vec<Seg>) -> Result<Duration, Problem> {
    parse_duration(text).map_err(|e| Problem::new(path, e))
}

/// Checks a rule's `actions` (their paths start at `actions`).
pub(crate) fn compile(specs: &[ActionSpec], cx: &Context<'_>) -> Result<Vec<Action>, Problem> {
    if specs.is_empty() {
        return Err(Problem::new(
            vec![Seg::Key("actions")],
            "a rule needs at least one action".into(),
        ));
    }
    if specs.len() > MAX_ACTIONS {
        return Err(Problem::new(
            vec![Seg::Key("actions")],
            format!("at most {MAX_ACTIONS} actions"),
        ));
    }
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let at = |k: &'static str| vec![Seg::Key("actions"), Seg::Index(i), Seg::Key(k)];
        let action = match spec {
            ActionSpec::Delay { duration: d } => {
                if i + 1 == specs.len() {
                    return Err(Problem::new(
                        vec![Seg::Key("actions"), Seg::Index(i)],
                        "a delay must be followed by an action".into(),
                    ));
                }
                Action::Delay(duration(d, at("for"))?)
            }
            ActionSpec::Ramp {
                address,
                to,
                over,
                from,
                curve,
                step,
            } => {
                let Some(to_f) = to.as_f64().filter(|x| x.is_finite()) else {
                    return Err(Problem::new(at("to"), "a ramp goes to a number".into()));
                };
                if from.is_some_and(|f| !f.is_finite()) {
                    return Err(Problem::new(
                        at("from"),
                        "`from` must be a finite number".into(),
                    ));
                }
                let curve = curve.unwrap_or(CurveType::Linear);
                curve.validate().map_err(|e| Problem::new(at("curve"), e))?;
                let step = match step {
                    Some(s) => duration(s, at("step"))?,
                    None => cx.ramp_step,
                };
                if step < MIN_STEP {
                    return Err(Problem::new(
                        at("step"),
                        "a ramp step must be at least 1ms".into(),
                    ));
                }
                Action::Ramp(RampAction {
                    address: address::template(address, cx.captures, at("address"))?,
                    to: to.to_value(),
                    to_f,
                    from: *from,
                    over: duration(over, at("over"))?,
                    step,
                    curve,
                })
            }
            ActionSpec::Bundle { actions } => {
                if actions.is_empty() {
                    return Err(Problem::new(at("actions"), "an empty bundle".into()));
                }
                if actions.len() > MAX_ACTIONS {
                    return Err(Problem::new(
                        at("actions"),
                        format!("at most {MAX_ACTIONS} actions in a bundle"),
                    ));
                }
                let mut items = Vec::with_capacity(actions.len());
                for (j, a) in actions.iter().enumerate() {
                    let path = vec![
                        Seg::Key("actions"),
                        Seg::Index(i),
                        Seg::Key("actions"),
                        Seg::Index(j),
                    ];
                    items.push(write_action(a, cx, path)?);
                }
                Action::Bundle(items)
            }
            other => Action::Write(write_action(
                other,
                cx,
                vec![Seg::Key("actions"), Seg::Index(i)],
            )?),
        };
        out.push(action);
    }
    Ok(out)
}

/// Whether every number of `l` is finite (NaN and infinities are not written).
fn finite(l: &Literal) -> bool {
    match l {
        Literal::Float(f) => f.is_finite(),
        Literal::Array(a) => a.iter().all(finite),
        _ => true,
    }
}

fn write_action(
    spec: &ActionSpec,
    cx: &Context<'_>,
    path: Vec<Seg>,
) -> Result<WriteAction, Problem> {
    let at = |k: &'static str| {
        let mut p = path.clone();
        p.push(Seg::Key(k));
        p
    };
    if let ActionSpec::Set { value, .. }
    | ActionSpec::Publish {
        value: Some(value), ..
    } = spec
        && !finite(value)
    {
        return Err(Problem::new(
            at("value"),
            "numbers must be finite (no nan or inf)".into(),
        ));
    }
    Ok(match spec {
        ActionSpec::Set { address, value } => WriteAction::Set {
            address: address::template(address, cx.captures, at("address"))?,
            value: value.to_value(),
        },
        ActionSpec::Publish { address, value } => WriteAction::Publish {
            address: address::template(address, cx.captures, at("address"))?,
            value: value.as_ref().map_or(Value::Null, Literal::to_value),
        },
        ActionSpec::SetFromTrigger { address, transform } => {
            if !cx.has_value {
                return Err(Problem::new(
                    path,
                    "`set_from_trigger` needs a trigger with a value (change, threshold or event)"
                        .into(),
                ));
            }
            let mut steps = Vec::with_capacity(transform.len());
            for (k, t) in transform.iter().enumerate() {
                let kind = t.kind();
                let step = t.clone().prepare().map_err(|why| {
                    let mut p = at("transform");
                    p.push(Seg::Index(k));
                    Problem::new(p, format!("transform `{kind}`: {why}"))
                })?;
                steps.push(step);
            }
            WriteAction::FromTrigger {
                address: address
                    .as_ref()
                    .map(|a| address::template(a, cx.captures, at("address")))
                    .transpose()?,
                steps,
            }
        }
        other => {
            return Err(Problem::new(
                at("type"),
                format!(
                    "a bundle holds `set`, `publish` and `set_from_trigger` actions, not `{}`",
                    other.kind()
                ),
            ));
        }
    })
}

impl WriteAction {
    /// Whether it keeps transform state per target address.
    pub(crate) fn stateful(&self) -> bool {
        matches!(self, WriteAction::FromTrigger { steps, .. } if steps.iter().any(Step::stateful))
    }

    /// The target address for `firing` (`Err` if the template cannot be filled).
    pub(crate) fn target(&self, firing: &Firing) -> Result<String, String> {
        let t = match self {
            WriteAction::Set { address, .. } | WriteAction::Publish { address, .. } => address,
            WriteAction::FromTrigger {
                address: Some(a), ..
            } => a,
            WriteAction::FromTrigger { address: None, .. } => {
                return firing
                    .address
                    .clone()
                    .ok_or_else(|| "the trigger has no address".to_owned());
            }
        };
        fill(t, &firing.caps)
    }

    /// The write for `firing` to `target`, with the transform state of that target;
    /// `Ok(None)` when a filter (`deadband`) drops the value.
    pub(crate) fn eval(
        &self,
        firing: &Firing,
        target: String,
        states: &mut Vec<StepState>,
    ) -> Result<Option<BundleItem>, String> {
        Ok(Some(match self {
            WriteAction::Set { value, .. } => BundleItem::Set {
                address: target,
                value: value.clone(),
            },
            WriteAction::Publish { value, .. } => BundleItem::Publish {
                address: target,
                value: value.clone(),
            },
            WriteAction::FromTrigger { steps, .. } => {
                let Some(mut v) = firing.value.clone() else {
                    return Err("the trigger has no value".into());
                };
                states.resize(steps.len(), StepState::default());
                for (k, (step, st)) in steps.iter().zip(states.iter_mut()).enumerate() {
                    let input = v.type_name();
                    match step.apply(v, st) {
                        Some(next) => v = next,
                        None if matches!(step.transform(), Transform::Deadband { .. }) => {
                            return Ok(None);
                        }
                        None => {
                            return Err(format!(
                                "transform {} (`{}`) gave no value for a {input}",
                                k + 1,
                                step.transform().kind()
                            ));
                        }
                    }
                }
                BundleItem::Set {
                    address: target,
                    value: v,
                }
            }
        }))
    }
}

/// `t` filled with `caps`.
pub(crate) fn fill(t: &Template, caps: &Captures) -> Result<String, String> {
    t.fill(caps)
        .ok_or_else(|| format!("address `{}` cannot be filled from the trigger", t.as_str()))
}
