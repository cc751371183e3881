//! The subscription index: which subscriptions does an address reach?
//!
//! [`SubscriptionIndex`] maps subscription keys to compiled [`Pattern`]s and answers "every key
//! whose pattern matches this address" without scanning all subscriptions. It agrees exactly with
//! [`Pattern::matches`], which stays the normative definition.
//!
//! # Structure
//!
//! * `entries: HashMap<K, Pattern>` — the pattern of every key. A pattern alone determines where
//!   its key sits below, so removal and replacement need nothing more.
//! * `exact: HashMap<String, Vec<K>>` — patterns that match a single address: exact patterns
//!   (keyed by their text), and glob patterns whose compiled segments are all literals, such as
//!   `/a/\*` (keyed by the one address they match, `/a/*`). A lookup costs one hash of the full
//!   address; no segment walk.
//! * `root: Node` — a trie over the compiled [`PatternSegment`]s of every other pattern. A node
//!   has literal children (hashed by segment text), at most one `*` child
//!   ([`PatternSegment::AnySegment`]), glob children (one per distinct glob text), at most one
//!   `**` child ([`PatternSegment::MultiSegment`]), and the keys whose pattern ends there.
//!
//! # Lookup
//!
//! The address must start with `/`; the rest is walked segment by segment (by byte offset, without
//! splitting it into a vector), depth first from the root. At a node with the address at segment
//! `i`, the literal child named by segment `i`, the `*` child and every glob child that accepts it
//! are visited at `i + 1`; the `**` child `M` is visited at every `j` in `i..=n`, where it acts as
//! a plain node whose children consume segment `j` (that is, `M` has already swallowed
//! segments `i..j`). When all `n` segments are consumed, the node's keys match.
//!
//! Each node is reached by a single trie path, so below the first `**` on a path the only source
//! of repeated work is the same `**` node being entered at different positions, through different
//! choices made by an earlier `**`. Every such `**` node remembers the lowest position it has been
//! entered at during the lookup. Entering at `i` covers all of `i..=n`, so a later entry at
//! `i' >= i` has nothing left to do (and one at `i' < i`, which the depth-first order never
//! produces since entries come in increasing order, would only cover `i'..i`). Hence every
//! (node, position) state is expanded at most once — the lookup is polynomial,
//! O(nodes · segments), however many `**` a pattern has — and every key, living in exactly one
//! node, is reported at most once without any deduplication of keys. The bookkeeping map is only
//! touched for a `**` below another `**`, so lookups that meet no such pattern (exact patterns,
//! `*`, globs, `/lights/**`, `/**`) allocate nothing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use clasp_proto::pattern::{Pattern, PatternSegment, SegmentGlob};

/// The set of active subscriptions, indexed for matching addresses against their patterns.
///
/// `K` identifies a subscription; it should be a small `Copy` key, such as a (session, sub id)
/// pair. See the [module docs](self) for the structure.
pub struct SubscriptionIndex<K> {
    entries: HashMap<K, Pattern>,
    exact: HashMap<String, Vec<K>>,
    root: Node<K>,
}

/// One trie node; see the module docs.
struct Node<K> {
    /// Keys whose pattern ends here.
    keys: Vec<K>,
    /// Children for `PatternSegment::Literal`, by segment text.
    literals: HashMap<String, Node<K>>,
    /// Child for `PatternSegment::AnySegment`.
    any: Option<Box<Node<K>>>,
    /// Children for `PatternSegment::Glob`, one per distinct glob text.
    globs: Vec<(SegmentGlob, Node<K>)>,
    /// Child for `PatternSegment::MultiSegment`.
    multi: Option<Box<Node<K>>>,
}

impl<K> Node<K> {
    fn new() -> Self {
        Node {
            keys: Vec::new(),
            literals: HashMap::new(),
            any: None,
            globs: Vec::new(),
            multi: None,
        }
    }

    /// Whether the node holds no key and has no child, so it can be pruned.
    fn is_empty(&self) -> bool {
        self.keys.is_empty()
            && self.literals.is_empty()
            && self.any.is_none()
            && self.globs.is_empty()
            && self.multi.is_none()
    }

    /// Number of nodes below this one.
    fn descendants(&self) -> usize {
        let count = |n: &Node<K>| 1 + n.descendants();
        self.literals.values().map(count).sum::<usize>()
            + self.any.as_deref().map_or(0, count)
            + self.globs.iter().map(|(_, n)| count(n)).sum::<usize>()
            + self.multi.as_deref().map_or(0, count)
    }

    /// The child for `seg`, created if missing.
    fn child_mut(&mut self, seg: &PatternSegment) -> &mut Node<K> {
        match seg {
            PatternSegment::Literal(text) => self.literals.entry(text.clone()).or_default(),
            PatternSegment::AnySegment => self.any.get_or_insert_with(Box::default),
            PatternSegment::MultiSegment => self.multi.get_or_insert_with(Box::default),
            PatternSegment::Glob(glob) => {
                match self
                    .globs
                    .iter()
                    .position(|(g, _)| g.as_str() == glob.as_str())
                {
                    Some(i) => &mut self.globs[i].1,
                    None => {
                        self.globs.push((glob.clone(), Node::new()));
                        let last = self.globs.len() - 1;
                        &mut self.globs[last].1
                    }
                }
            }
        }
    }
}

impl<K: Copy + Eq> Node<K> {
    /// Adds `key` at the end of the path `segs` below this node.
    fn insert(&mut self, segs: &[PatternSegment], key: K) {
        let mut node = self;
        for seg in segs {
            node = node.child_mut(seg);
        }
        node.keys.push(key);
    }

    /// Removes `key` from the end of the path `segs` below this node, pruning children left
    /// empty. Returns whether the key was found.
    fn remove(&mut self, segs: &[PatternSegment], key: K) -> bool {
        let Some((seg, rest)) = segs.split_first() else {
            return remove_key(&mut self.keys, key);
        };
        match seg {
            PatternSegment::Literal(text) => {
                let Some(child) = self.literals.get_mut(text.as_str()) else {
                    return false;
                };
                let found = child.remove(rest, key);
                if child.is_empty() {
                    self.literals.remove(text.as_str());
                }
                found
            }
            PatternSegment::AnySegment => remove_boxed(&mut self.any, rest, key),
            PatternSegment::MultiSegment => remove_boxed(&mut self.multi, rest, key),
            PatternSegment::Glob(glob) => {
                let Some(i) = self
                    .globs
                    .iter()
                    .position(|(g, _)| g.as_str() == glob.as_str())
                else {
                    return false;
                };
                let child = &mut self.globs[i].1;
                let found = child.remove(rest, key);
                if child.is_empty() {
                    self.globs.swap_remove(i);
                }
                found
            }
        }
    }
}

impl<K> Default for Node<K> {
    fn default() -> Self {
        Node::new()
    }
}

/// [`Node::remove`] on an optional boxed child, dropping it when left empty.
fn remove_boxed<K: Copy + Eq>(
    slot: &mut Option<Box<Node<K>>>,
    segs: &[PatternSegment],
    key: K,
) -> bool {
    let Some(child) = slot.as_deref_mut() else {
        return false;
    };
    let found = child.remove(segs, key);
    if child.is_empty() {
        *slot = None;
    }
    found
}

/// Removes one occurrence of `key` from `keys`; returns whether there was one.
fn remove_key<K: Eq>(keys: &mut Vec<K>, key: K) -> bool {
    match keys.iter().position(|k| *k == key) {
        Some(i) => {
            keys.swap_remove(i);
            if keys.is_empty() {
                // Free the buffer: a bucket or node may outlive its keys until pruned.
                *keys = Vec::new();
            }
            true
        }
        None => false,
    }
}

/// The single address `pattern` matches, if it matches exactly one: the text of an exact pattern,
/// or the literal segments of a glob pattern that compiled to literals only (`/a/\*` → `/a/*`).
fn exact_address(pattern: &Pattern) -> Option<Cow<'_, str>> {
    if pattern.is_exact() {
        return Some(Cow::Borrowed(pattern.as_str()));
    }
    let mut address = String::with_capacity(pattern.as_str().len());
    for seg in pattern.segments() {
        let PatternSegment::Literal(text) = seg else {
            return None;
        };
        address.push('/');
        address.push_str(text);
    }
    Some(Cow::Owned(address))
}

impl<K> SubscriptionIndex<K> {
    /// Number of subscriptions in the index.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of trie nodes (root excluded) plus exact-address buckets: 0 whenever the index is
    /// empty. For leak tests.
    #[doc(hidden)]
    pub fn node_count(&self) -> usize {
        self.root.descendants() + self.exact.len()
    }
}

impl<K: Copy + Eq + Hash> SubscriptionIndex<K> {
    /// An empty index.
    pub fn new() -> Self {
        SubscriptionIndex {
            entries: HashMap::new(),
            exact: HashMap::new(),
            root: Node::new(),
        }
    }

    /// Adds `key` with `pattern`; if `key` is already present, its old pattern is replaced.
    pub fn insert(&mut self, key: K, pattern: Pattern) {
        self.remove(key);
        match exact_address(&pattern) {
            Some(address) => match self.exact.get_mut(address.as_ref()) {
                Some(keys) => keys.push(key),
                None => {
                    self.exact.insert(address.into_owned(), vec![key]);
                }
            },
            None => self.root.insert(pattern.segments(), key),
        }
        self.entries.insert(key, pattern);
    }

    /// Removes `key`; returns whether it was present. Trie nodes and buckets left empty are freed.
    pub fn remove(&mut self, key: K) -> bool {
        let Some(pattern) = self.entries.remove(&key) else {
            return false;
        };
        match exact_address(&pattern) {
            Some(address) => {
                if let Some(keys) = self.exact.get_mut(address.as_ref()) {
                    remove_key(keys, key);
                    if keys.is_empty() {
                        self.exact.remove(address.as_ref());
                    }
                }
            }
            None => {
                self.root.remove(pattern.segments(), key);
            }
        }
        true
    }

    /// Every subscription's pattern, in unspecified order.
    pub fn patterns(&self) -> impl Iterator<Item = &Pattern> {
        self.entries.values()
    }

    /// The pattern stored for `key`.
    pub fn get(&self, key: K) -> Option<&Pattern> {
        self.entries.get(&key)
    }

    /// Calls `f` once for every key whose pattern matches `address`, in unspecified order.
    pub fn for_each_match(&self, address: &str, mut f: impl FnMut(K)) {
        if let Some(keys) = self.exact.get(address) {
            keys.iter().copied().for_each(&mut f);
        }
        if self.root.is_empty() {
            return;
        }
        let Some(rest) = address.strip_prefix('/') else {
            return;
        };
        let mut walk = Walk {
            rest,
            end: rest.len() + 1,
            covered: HashMap::new(),
            f: &mut f,
        };
        walk.visit(&self.root, 0, false);
    }

    /// The keys whose pattern matches `address` (each once, in unspecified order).
    pub fn matches(&self, address: &str) -> Vec<K> {
        let mut out = Vec::new();
        self.for_each_match(address, |k| out.push(k));
        out
    }
}

impl<K: Copy + Eq + Hash> Default for SubscriptionIndex<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: fmt::Debug> fmt::Debug for SubscriptionIndex<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, p)| (k, p.as_str())))
            .finish()
    }
}

/// State of one trie lookup.
///
/// Positions are byte offsets into `rest` (the address without its leading `/`) at which a
/// segment starts; `end` (`rest.len() + 1`) means every segment has been consumed.
struct Walk<'a, 'f, K, F> {
    rest: &'a str,
    end: usize,
    /// For each `**` node entered below another `**`: the lowest position it was entered at.
    /// Positions from there to `end` have all been expanded.
    covered: HashMap<*const Node<K>, usize>,
    f: &'f mut F,
}

impl<'a, K: Copy, F: FnMut(K)> Walk<'a, '_, K, F> {
    /// The segment starting at `pos` (< `end`) and the position of the next one.
    fn segment_at(&self, pos: usize) -> (&'a str, usize) {
        let tail = self.rest.get(pos..).unwrap_or("");
        match tail.find('/') {
            Some(k) => (&tail[..k], pos + k + 1),
            None => (tail, self.end),
        }
    }

    /// Expands `node` with the address consumed up to `pos`. `under_multi` tells whether a `**`
    /// lies on the trie path to `node` (only then can a `**` node be reached more than once).
    fn visit(&mut self, node: &Node<K>, pos: usize, under_multi: bool) {
        if let Some(multi) = node.multi.as_deref() {
            self.enter_multi(multi, pos, under_multi);
        }
        if pos >= self.end {
            node.keys.iter().copied().for_each(&mut *self.f);
            return;
        }
        let (seg, next) = self.segment_at(pos);
        // Skip hashing the segment when there is nothing to look up.
        if !node.literals.is_empty()
            && let Some(child) = node.literals.get(seg)
        {
            self.visit(child, next, under_multi);
        }
        if let Some(child) = node.any.as_deref() {
            self.visit(child, next, under_multi);
        }
        for (glob, child) in &node.globs {
            if glob.matches(seg) {
                self.visit(child, next, under_multi);
            }
        }
    }

    /// Enters the `**` node `multi` at `pos`: expands it at every position from `pos` to `end`
    /// that no earlier entry has covered.
    fn enter_multi(&mut self, multi: &Node<K>, pos: usize, under_multi: bool) {
        let mut stop = usize::MAX;
        if under_multi {
            let id: *const Node<K> = multi;
            match self.covered.get_mut(&id) {
                Some(lowest) if *lowest <= pos => return,
                Some(lowest) => {
                    stop = *lowest;
                    *lowest = pos;
                }
                None => {
                    self.covered.insert(id, pos);
                }
            }
        }
        let mut j = pos;
        loop {
            self.visit(multi, j, true);
            if j >= self.end {
                break;
            }
            j = self.segment_at(j).1;
            if j >= stop {
                break;
            }
        }
    }
}
