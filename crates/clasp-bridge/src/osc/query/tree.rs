//! The params an OSC bridge knows, by OSC address, with their OSCQuery attributes (ranges,
//! descriptions, units…) and a stream of their changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use clasp_proto::Value;
use clasp_proto::pattern::Pattern;
use parking_lot::RwLock;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};
use tokio::sync::broadcast;

/// Params kept at most; past it new addresses are not added (their changes still stream).
const MAX_PARAMS: usize = 100_000;

/// What happened to the tree.
#[derive(Debug, Clone, PartialEq)]
pub enum TreeChange {
    /// A param at this OSC address has a new value.
    Value(String, Value),
    /// A path the tree did not have before (OSCQuery `PATH_ADDED`).
    Added(String),
}

/// OSCQuery attributes for the params whose OSC address matches `pattern` (a CLASP pattern:
/// `*` is one segment, `**` any number), from the bridge's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Describe {
    /// Which OSC addresses, e.g. `/mixer/*/volume`.
    pub pattern: String,
    /// `[min, max]` of the value (OSCQuery `RANGE` `{MIN, MAX}`).
    #[serde(default)]
    pub range: Option<[f64; 2]>,
    /// The only values allowed (OSCQuery `RANGE` `{VALS}`).
    #[serde(default)]
    pub values: Option<Vec<Json>>,
    /// Human-readable text (`DESCRIPTION`).
    #[serde(default)]
    pub description: Option<String>,
    /// Unit, e.g. `dB` or `distance.m` (`UNIT`).
    #[serde(default)]
    pub unit: Option<String>,
    /// 1 read-only, 2 write-only, 3 both (`ACCESS`; default 3).
    #[serde(default)]
    pub access: Option<u8>,
}

impl Describe {
    /// The attributes this rule gives, as OSCQuery JSON.
    fn attrs(&self) -> Map<String, Json> {
        let mut m = Map::new();
        if let Some([min, max]) = self.range {
            m.insert("RANGE".into(), json!([{"MIN": min, "MAX": max}]));
        } else if let Some(vals) = &self.values {
            m.insert("RANGE".into(), json!([{ "VALS": vals }]));
        }
        if let Some(d) = &self.description {
            m.insert("DESCRIPTION".into(), d.clone().into());
        }
        if let Some(u) = &self.unit {
            m.insert("UNIT".into(), json!([u]));
        }
        if let Some(a) = self.access {
            m.insert("ACCESS".into(), a.into());
        }
        m
    }
}

/// Describe rules compiled once.
#[derive(Debug, Default)]
struct Rules(Vec<(Pattern, Map<String, Json>)>);

#[derive(Debug, Default)]
struct Inner {
    values: BTreeMap<String, Value>,
    /// Attributes learnt for one path (from a mirrored OSCQuery server); they win over rules.
    attrs: HashMap<String, Map<String, Json>>,
}

/// The params the bridge knows, by OSC address, and their changes.
#[derive(Debug, Clone)]
pub struct Tree {
    inner: Arc<RwLock<Inner>>,
    rules: Arc<Rules>,
    changes: broadcast::Sender<TreeChange>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            inner: Arc::default(),
            rules: Arc::default(),
            changes: broadcast::channel(1024).0,
        }
    }
}

/// A describe rule whose pattern does not compile.
#[derive(Debug, thiserror::Error)]
#[error("describe pattern `{pattern}`: {why}")]
pub struct DescribeError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub why: String,
}

impl Tree {
    /// An empty tree whose params get the attributes of the first matching rule.
    pub fn with_rules(rules: &[Describe]) -> Result<Tree, DescribeError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for r in rules {
            let p = Pattern::compile(&r.pattern).map_err(|e| DescribeError {
                pattern: r.pattern.clone(),
                why: e.to_string(),
            })?;
            if r.range.is_some() && r.values.is_some() {
                return Err(DescribeError {
                    pattern: r.pattern.clone(),
                    why: "give `range` or `values`, not both".into(),
                });
            }
            if r.access.is_some_and(|a| !(1..=3).contains(&a)) {
                return Err(DescribeError {
                    pattern: r.pattern.clone(),
                    why: "`access` is 1 (read), 2 (write) or 3 (both)".into(),
                });
            }
            compiled.push((p, r.attrs()));
        }
        Ok(Tree {
            rules: Arc::new(Rules(compiled)),
            ..Tree::default()
        })
    }

    /// Records the value of the param at OSC address `path` (and tells listeners).
    pub fn set(&self, path: &str, value: &Value) {
        let added = {
            let mut inner = self.inner.write();
            let fresh = !inner.values.contains_key(path);
            if !fresh || inner.values.len() < MAX_PARAMS {
                inner.values.insert(path.to_owned(), value.clone());
            }
            fresh && inner.values.contains_key(path)
        };
        if added {
            let _ = self.changes.send(TreeChange::Added(path.to_owned()));
        }
        let _ = self
            .changes
            .send(TreeChange::Value(path.to_owned(), value.clone()));
    }

    /// Sets the OSCQuery attributes of one path (they win over the describe rules).
    pub fn set_attrs(&self, path: &str, attrs: Map<String, Json>) {
        let mut inner = self.inner.write();
        if inner.attrs.len() < MAX_PARAMS || inner.attrs.contains_key(path) {
            inner.attrs.insert(path.to_owned(), attrs);
        }
    }

    /// The attributes of `path`: learnt ones, else the first matching rule's.
    pub fn attrs(&self, path: &str) -> Option<Map<String, Json>> {
        if let Some(a) = self.inner.read().attrs.get(path) {
            return Some(a.clone());
        }
        self.rule_attrs(path).cloned()
    }

    fn rule_attrs(&self, path: &str) -> Option<&Map<String, Json>> {
        self.rules
            .0
            .iter()
            .find(|(p, _)| p.matches(path))
            .map(|(_, a)| a)
    }

    /// The OSC addresses of the params `keep` accepts.
    pub fn paths(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        self.inner
            .read()
            .values
            .keys()
            .filter(|p| keep(p))
            .cloned()
            .collect()
    }

    /// Changes from now on.
    pub fn changes(&self) -> broadcast::Receiver<TreeChange> {
        self.changes.subscribe()
    }

    /// Runs `f` over the values and each path's attributes (for answering a query).
    pub(crate) fn with_values<R>(
        &self,
        f: impl FnOnce(&BTreeMap<String, Value>, &dyn Fn(&str) -> Option<Map<String, Json>>) -> R,
    ) -> R {
        let inner = self.inner.read();
        let attrs = |p: &str| {
            inner
                .attrs
                .get(p)
                .cloned()
                .or_else(|| self.rule_attrs(p).cloned())
        };
        f(&inner.values, &attrs)
    }
}
